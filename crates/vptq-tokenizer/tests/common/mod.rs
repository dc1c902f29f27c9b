//! Shared test helpers: locating the SmolLM2 GGUF asset and the golden ids computed for it.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::sync::OnceLock;

use vptq_tokenizer::Tokenizer;

/// File name of the SmolLM2 GGUF in the asset cache (see docs/data.md).
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$VPTQ_CACHE/models/<name>`, `~/.cache/vptq/models/<name>` without VPTQ_CACHE.
pub fn asset_path(name: &str) -> PathBuf {
    let cache = match std::env::var_os("VPTQ_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vptq"),
    };
    cache.join("models").join(name)
}

/// The SmolLM2 tokenizer, built once per test binary; `None` (after printing why) when the asset is missing,
/// unless VPTQ_REQUIRE_ASSETS=1, which turns a missing asset into a failure.
pub fn smollm2() -> Option<&'static Tokenizer> {
    static TOKENIZER: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = asset_path(SMOLLM2_GGUF);
            if !path.exists() {
                if std::env::var("VPTQ_REQUIRE_ASSETS").as_deref() == Ok("1") {
                    panic!("asset missing: {} (VPTQ_REQUIRE_ASSETS=1)", path.display());
                }
                println!("skipped: asset missing ({})", path.display());
                return None;
            }
            Some(Tokenizer::from_gguf_path(&path).expect("SmolLM2 GGUF tokenizer loads"))
        })
        .as_ref()
}

/// Golden SmolLM2 ids, `encode(text, add_special = false)`.
///
/// Obtained with tests/golden/make_golden.py from the same GGUF: the Python `tokenizers` library (0.23)
/// assembled from the GGUF vocabulary and merges with SmolLM2's published pre-tokenizer (Digits(individual)
/// then ByteLevel). llama.cpp (llama-cpp-python 0.3.36, vocab_only) gives the same ids on every string.
/// transformers' GGUF converter (5.23) agrees except on the last string, where it ignores the "smollm"
/// pre-tokenizer name and applies the plain GPT-2 regex.
pub const GOLDEN: &[(&str, &[u32])] = &[
    ("12345", &[33, 34, 35, 36, 37]),
    ("café 日本語 🙂", &[83, 1939, 2756, 17097, 241, 115, 40993, 179, 120, 248, 47526]),
    ("a  \n\n   b\t\tc", &[81, 256, 39892, 278, 197, 197, 83]),
    ("<|im_start|>user\nhi<|im_end|>", &[1, 4093, 198, 6004, 2]),
    ("The quick brown fox jumps over the lazy dog.", &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]),
    (
        "Hello world! It's 2024, isn't it? x=3.14 ok",
        &[19556, 905, 17, 657, 506, 216, 34, 32, 34, 36, 28, 3247, 982, 357, 47, 1792, 45, 35, 30, 33, 36, 10907],
    ),
    (" 123 abc  ", &[216, 33, 34, 35, 43239, 256]),
    ("🙂🙂 naïve", &[10813, 38887, 10813, 38887, 15486, 46494]),
    // Digits split before the GPT-2 regex: "  1" is "ĠĠ" + "1", not "Ġ" + "Ġ" + "1".
    ("a  1 and  22", &[81, 256, 33, 284, 256, 34, 34]),
];
