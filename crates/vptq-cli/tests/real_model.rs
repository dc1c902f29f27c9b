//! End-to-end on the real SmolLM2-135M GGUF and texts from the asset cache: the reference perplexities of
//! shared/docs/data.md, the same numbers from the folder `vptq convert` writes (f32 exactly, f16 within 0.5%),
//! and identical greedy generations from the GGUF and the converted folder.
//!
//! Needs `vptq fetch` to have run. Without the assets these tests print a note and pass, unless
//! `VPTQ_REQUIRE_ASSETS=1` (set by CI), which turns a missing asset into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cache_dir() -> PathBuf {
    match std::env::var_os("VPTQ_CACHE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vptq"),
    }
}

fn asset(rel: &str) -> Option<PathBuf> {
    let p = cache_dir().join(rel);
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("VPTQ_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("asset missing: {} (run `vptq fetch`)", p.display());
    }
    eprintln!("skipped: asset missing: {}", p.display());
    None
}

fn vptq(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vptq")).args(args).arg("--quiet").output().expect("run vptq");
    assert!(out.status.success(), "vptq {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn ppl(model: &Path, text: &Path, windows: usize) -> f64 {
    let out = vptq(&[
        "ppl",
        "--model",
        model.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--ctx",
        "512",
        "--max-windows",
        &windows.to_string(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("ppl --json prints one JSON object");
    assert_eq!(v["windows"], windows);
    assert_eq!(v["tokens_scored"], windows * 511);
    assert!(v["seconds"].as_f64().unwrap() > 0.0);
    v["ppl"].as_f64().unwrap()
}

fn assert_within(got: f64, want: f64, rel: f64, what: &str) {
    assert!((got / want - 1.0).abs() <= rel, "{what}: ppl {got:.4}, expected {want} ± {:.1}%", rel * 100.0);
}

fn greedy(model: &Path, prompt: &str) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_vptq"))
        .args(["generate", "--model", model.to_str().unwrap(), "--prompt", prompt, "--temperature", "0"])
        .args(["--max-tokens", "24", "--json", "--quiet"])
        .output()
        .expect("run vptq");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with('{')).expect("JSON report on stderr");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect()
}

#[test]
fn smollm2_reference_perplexities_gguf_and_converted() {
    let (Some(gguf), Some(pp), Some(brown)) = (
        asset("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        asset("text/austen/prideprejudice.txt"),
        asset("text/brown.txt"),
    ) else {
        return;
    };
    assert_within(ppl(&gguf, &pp, 32), 25.14, 0.01, "GGUF, Pride and Prejudice");
    let gguf_brown = ppl(&gguf, &brown, 16);
    assert_within(gguf_brown, 36.17, 0.01, "GGUF, Brown");

    let tmp = tempfile::tempdir().unwrap();
    let f32_dir = tmp.path().join("smollm2-f32");
    let f16_dir = tmp.path().join("smollm2-f16");
    vptq(&["convert", "--model", gguf.to_str().unwrap(), "--out", f32_dir.to_str().unwrap(), "--dtype", "f32"]);
    vptq(&["convert", "--model", gguf.to_str().unwrap(), "--out", f16_dir.to_str().unwrap(), "--dtype", "f16"]);
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(f32_dir.join(f).is_file(), "convert wrote no {f}");
    }

    let hf_pp = ppl(&f32_dir, &pp, 32);
    assert_within(hf_pp, 25.14, 0.01, "HF f32, Pride and Prejudice");
    assert_within(ppl(&f32_dir, &brown, 16), gguf_brown, 1e-4, "HF f32 vs GGUF, Brown");
    assert_within(ppl(&f16_dir, &pp, 32), hf_pp, 0.005, "HF f16 vs f32, Pride and Prejudice");

    let prompt = "It is a truth universally acknowledged, that";
    let from_gguf = greedy(&gguf, prompt);
    assert!(from_gguf.len() >= 8, "too few tokens generated: {from_gguf:?}");
    assert_eq!(from_gguf, greedy(&f32_dir, prompt), "greedy tokens differ between GGUF and converted folder");
}

/// End to end on the real model, kept small for CI: quantize the first two blocks of SmolLM2 (v4-k256, 2 index
/// bits, int8 embeddings, int8-stored codebooks), load the folder, check perplexity stays near the dense
/// model's, that bench runs on it and that the codebooks load as int8. Measured: 4 windows of Pride and Prejudice, dense 20.8, these two blocks at ~2 bits 25.6.
#[test]
fn smollm2_two_blocks_quantize_load_perplexity() {
    let (Some(gguf), Some(pp)) =
        (asset("models/SmolLM2-135M-Instruct.Q4_1.gguf"), asset("text/austen/prideprejudice.txt"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2-vq");
    let summary = vptq(&[
        "quantize",
        "--model",
        gguf.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--preset",
        "v4-k256",
        "--include",
        "layers.0.",
        "--include",
        "layers.1.",
        "--calib-samples",
        "8",
        "--calib-len",
        "256",
        "--kmeans-iters",
        "5",
        "--embed-dtype",
        "q8",
        "--codebook-storage",
        "int8",
        // A per-layer preset: block 0's down projection gets a 16-entry residual codebook (1 more index bit).
        "--layer-preset",
        "layers.0.mlp.down_proj=v4-k256-16",
        "--json",
    ]);
    let s: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(s["layers"], 14);
    let bpw = s["bits_per_weight"].as_f64().unwrap();
    // 2 index bits plus codebooks; the residual adds 1 bit on an eighth of the weights.
    assert!((2.1..2.3).contains(&bpw), "v4-k256 with one v4-k256-16 layer: {bpw}");
    let dense = ppl(&gguf, &pp, 4);
    let quant = ppl(&out, &pp, 4);
    assert!(quant > dense && quant < dense * 1.4, "two quantized blocks: ppl {quant:.3} vs dense {dense:.3}");
    let bench = vptq(&["bench", "--model", out.to_str().unwrap(), "--prompt-len", "16", "--gen-len", "4", "--json"]);
    let b: serde_json::Value = serde_json::from_str(bench.trim()).unwrap();
    assert!(b["decode_tok_s"].as_f64().unwrap() > 0.0, "{b}");
    // The quantizer's default int8 grid lets the loader keep every codebook in int8 (losslessly); with
    // k = 256 every codebook has distortion to spare, so all are snapped and stored as int8.
    let kinds = &b["weight_bytes_breakdown"]["linear_kinds"];
    assert_eq!(kinds["vq v4 k256 i8-codebook"], 13, "{kinds}");
    assert_eq!(kinds["vq v4 k256+16 i8-codebook"], 1, "{kinds}");
}
