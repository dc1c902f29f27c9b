//! Checks the real cache (`$VPTQ_CACHE`, default `~/.cache/vptq`) when its files are there.
//! Absent files are skipped with a message, unless `VPTQ_REQUIRE_ASSETS=1` makes them failures.
//! Files are fully rehashed (stamps ignored).

use std::path::PathBuf;

use vptq_assets::assets::{qwen_coder_asset, BROWN, BROWN_DATA_MD};
use vptq_assets::verify::hash_file;
use vptq_assets::{check, default_cache_dir, standard_assets, Cache, FileState};

fn real_cache() -> Cache {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    Cache::new(default_cache_dir(std::env::var_os("VPTQ_CACHE").as_deref(), home.as_deref()))
}

fn require_assets() -> bool {
    std::env::var_os("VPTQ_REQUIRE_ASSETS").is_some_and(|v| v == "1")
}

#[test]
fn cached_assets_match_the_table() {
    let cache = real_cache();
    let mut assets = standard_assets(false);
    if cache.qwen_coder_gguf().exists() {
        assets.push(qwen_coder_asset());
    }
    let mut missing = Vec::new();
    for (path, state) in check(&cache, &assets, false).unwrap() {
        match state {
            FileState::Valid { .. } => {}
            FileState::Missing => missing.push(path),
            FileState::Invalid { n_bytes, sha256 } => {
                panic!("{}: wrong file ({n_bytes} bytes, sha256 {sha256})", path.display())
            }
        }
    }
    if !missing.is_empty() {
        assert!(!require_assets(), "VPTQ_REQUIRE_ASSETS=1 but missing: {missing:?}");
        eprintln!("skipped (run `vptq fetch`): missing {missing:?}");
    }
}

#[test]
fn cached_brown_split_follows_the_ninety_percent_rule() {
    let cache = real_cache();
    if !cache.brown_txt().exists() {
        assert!(!require_assets(), "VPTQ_REQUIRE_ASSETS=1 but Brown is missing");
        eprintln!("skipped: {} is missing", cache.brown_txt().display());
        return;
    }
    let (_, sha256) = hash_file(&cache.brown_txt()).unwrap();
    let (calibration, held_out) = cache.brown_split().unwrap();
    let total = calibration.len() + 1 + held_out.len();
    assert!(calibration.len() <= total * 9 / 10);
    assert!(!held_out.contains('\n') || held_out.ends_with('\n'));
    // Both data.md's reference text and ours (one paragraph per line, 368 characters shorter) split where
    // data.md says the held-out part begins.
    assert!(sha256 == BROWN_DATA_MD.sha256 || sha256 == BROWN.sha256, "unexpected Brown text {sha256}");
    assert!(held_out.starts_with("A carbine cracked more loudly"), "{}", &held_out[..80.min(held_out.len())]);
}
