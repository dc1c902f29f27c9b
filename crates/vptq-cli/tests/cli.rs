//! The `vptq` binary on a tiny random model with a byte-level tokenizer, generated here as a GGUF file:
//! every command runs, JSON outputs have their documented fields, GGUF and converted folder agree, and bad
//! arguments or inputs fail with clear messages and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vptq_format::gguf::{GgufWriter, MetaValue};

/// GPT-2's byte-to-character map, so that every byte is one token of a byte-level BPE vocabulary.
fn byte_token(b: u8) -> String {
    let printable = |c: u32| (33..=126).contains(&c) || (161..=172).contains(&c) || (174..=255).contains(&c);
    if printable(b as u32) {
        return char::from_u32(b as u32).unwrap().to_string();
    }
    let offset = (0..b as u32).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + offset).unwrap().to_string()
}

fn tiny_gguf(dir: &Path) -> PathBuf {
    let (hidden, ffn, layers, heads, kv, vocab) = (32usize, 64usize, 2usize, 4usize, 2usize, 259usize);
    let mut seed = 1u64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    };
    let mut tokens: Vec<MetaValue> = (0..=255u8).map(|b| MetaValue::String(byte_token(b))).collect();
    tokens.push(MetaValue::String("th".into()));
    tokens.push(MetaValue::String("<|im_start|>".into()));
    tokens.push(MetaValue::String("<|im_end|>".into()));
    let mut types = vec![MetaValue::I32(1); 257];
    types.extend([MetaValue::I32(3), MetaValue::I32(3)]);
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::String("llama".into()))
        .add_meta("llama.block_count", MetaValue::U32(layers as u32))
        .add_meta("llama.embedding_length", MetaValue::U32(hidden as u32))
        .add_meta("llama.feed_forward_length", MetaValue::U32(ffn as u32))
        .add_meta("llama.attention.head_count", MetaValue::U32(heads as u32))
        .add_meta("llama.attention.head_count_kv", MetaValue::U32(kv as u32))
        .add_meta("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5))
        .add_meta("llama.rope.freq_base", MetaValue::F32(10000.0))
        .add_meta("llama.context_length", MetaValue::U32(256))
        .add_meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .add_meta("tokenizer.ggml.pre", MetaValue::String("smollm".into()))
        .add_meta("tokenizer.ggml.tokens", MetaValue::Array(tokens))
        .add_meta("tokenizer.ggml.token_type", MetaValue::Array(types))
        .add_meta("tokenizer.ggml.merges", MetaValue::Array(vec![MetaValue::String("t h".into())]))
        .add_meta("tokenizer.ggml.bos_token_id", MetaValue::U32(257))
        .add_meta("tokenizer.ggml.eos_token_id", MetaValue::U32(258))
        .add_meta(
            "tokenizer.chat_template",
            MetaValue::String(
                "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}\
                 {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
                    .into(),
            ),
        );
    w.add_tensor_f32("token_embd.weight", &[vocab, hidden], &rand(vocab * hidden, 1.0));
    for i in 0..layers {
        let b = format!("blk.{i}");
        w.add_tensor_f32(format!("{b}.attn_norm.weight"), &[hidden], &vec![1.0; hidden]);
        w.add_tensor_f32(format!("{b}.ffn_norm.weight"), &[hidden], &vec![1.0; hidden]);
        w.add_tensor_f32(format!("{b}.attn_q.weight"), &[hidden, hidden], &rand(hidden * hidden, 0.3));
        w.add_tensor_f32(format!("{b}.attn_k.weight"), &[kv * 8, hidden], &rand(kv * 8 * hidden, 0.3));
        w.add_tensor_f32(format!("{b}.attn_v.weight"), &[kv * 8, hidden], &rand(kv * 8 * hidden, 0.3));
        w.add_tensor_f32(format!("{b}.attn_output.weight"), &[hidden, hidden], &rand(hidden * hidden, 0.3));
        w.add_tensor_f32(format!("{b}.ffn_gate.weight"), &[ffn, hidden], &rand(ffn * hidden, 0.3));
        w.add_tensor_f32(format!("{b}.ffn_up.weight"), &[ffn, hidden], &rand(ffn * hidden, 0.3));
        w.add_tensor_f32(format!("{b}.ffn_down.weight"), &[hidden, ffn], &rand(ffn * hidden, 0.3));
    }
    w.add_tensor_f32("output_norm.weight", &[hidden], &vec![1.0; hidden]);
    let path = dir.join("tiny.gguf");
    w.write(&path).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vptq")).args(args).arg("--quiet").output().expect("run vptq")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "vptq {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], needle: &str) {
    let out = run(args);
    assert!(!out.status.success(), "vptq {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "vptq {args:?}: stderr lacks `{needle}`:\n{err}");
    assert!(!err.contains("panicked"), "vptq {args:?} panicked:\n{err}");
}

fn greedy_tokens(model: &str) -> Vec<u64> {
    let out = run(&["generate", "-m", model, "-p", "the cat", "--temperature", "0", "--max-tokens", "12", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with('{')).expect("json on stderr");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect()
}

#[test]
fn every_command_runs_on_the_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(tmp.path());
    let m = gguf.to_str().unwrap();

    let info = ok(&["inspect", m]);
    assert!(info.contains("llama (2 layers, hidden 32") && info.contains("vocab 259"), "{info}");

    let text = tmp.path().join("text.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["ppl", "-m", m, "--text", text.to_str().unwrap(), "--ctx", "64", "--json"]))
            .unwrap();
    let windows = v["tokens_total"].as_u64().unwrap() / 64;
    assert!(windows >= 10, "{v}");
    assert_eq!(v["windows"], windows);
    assert_eq!(v["tokens_scored"], windows * 63);
    let ppl = v["ppl"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{v}");
    let f32_kv: serde_json::Value = serde_json::from_str(&ok(&[
        "ppl",
        "-m",
        m,
        "--text",
        text.to_str().unwrap(),
        "--ctx",
        "64",
        "--kv-cache",
        "f32",
        "--json",
    ]))
    .unwrap();
    let ppl32 = f32_kv["ppl"].as_f64().unwrap();
    assert!((ppl32 / ppl - 1.0).abs() < 1e-2, "f32 KV cache: {ppl32} against f16: {ppl}");

    let b: serde_json::Value = serde_json::from_str(&ok(&[
        "bench",
        "-m",
        m,
        "--prompt-len",
        "16",
        "--gen-len",
        "4",
        "--repeats",
        "2",
        "--json",
        "--threads",
        "1",
    ]))
    .unwrap();
    for key in [
        "prefill_tok_s",
        "decode_tok_s",
        "peak_rss_bytes",
        "weight_bytes_per_token",
        "read_bandwidth_gb_s",
        "decode_bound_tok_s",
    ] {
        assert!(b[key].as_f64().is_some_and(|x| x > 0.0), "bench --json lacks {key}: {b}");
    }
    assert_eq!(b["threads"], 1);

    // Greedy generation is deterministic, and identical from the converted folder (f32).
    let tokens = greedy_tokens(m);
    assert_eq!(tokens, greedy_tokens(m));
    let hf = tmp.path().join("hf");
    ok(&["convert", "-m", m, "-o", hf.to_str().unwrap(), "--dtype", "f32"]);
    assert_eq!(tokens, greedy_tokens(hf.to_str().unwrap()));
    // Converting again onto a non-empty folder needs --force and leaves the folder intact otherwise.
    fails(&["convert", "-m", m, "-o", hf.to_str().unwrap()], "--force");
    assert!(hf.join("model.safetensors").is_file());
    ok(&["convert", "-m", m, "-o", hf.to_str().unwrap(), "--dtype", "bf16", "--force"]);

    // Sampling with a seed is reproducible.
    let sample = |seed: &str| {
        ok(&[
            "generate",
            "-m",
            m,
            "-p",
            "a",
            "--temperature",
            "1",
            "--top-k",
            "20",
            "--seed",
            seed,
            "--max-tokens",
            "10",
        ])
    };
    assert_eq!(sample("3"), sample("3"));

    // Chat reads turns from stdin and stops at an empty line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vptq"))
        .args(["chat", "-m", m, "--temperature", "0", "--max-tokens", "5", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\nand again\n\nignored\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= 2, "one reply line per turn");
}

#[test]
fn bad_arguments_and_inputs_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(tmp.path());
    let m = gguf.to_str().unwrap();
    fails(&["generate", "-m", m, "-p", "x", "--top-p", "1.5"], "top-p");
    fails(&["generate", "-m", m, "-p", "x", "--temperature=-1"], "temperature");
    fails(&["generate", "-m", "/no/such/model", "-p", "x"], "/no/such/model");
    fails(&["generate", "-m", m, "-p", "x", "--threads", "0"], "--threads");
    fails(&["generate", "-m", m, "-p", "x", "--kv-cache", "f8"], "--kv-cache");
    fails(&["generate", "-m", m], "--prompt");
    fails(&["frobnicate"], "unrecognized subcommand");
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, "tiny").unwrap();
    fails(&["ppl", "-m", m, "--text", short.to_str().unwrap(), "--ctx", "64"], "fewer than one window");
    fails(&["ppl", "-m", m, "--text", "/no/such/text.txt"], "/no/such/text.txt");
    let binary = tmp.path().join("binary.txt");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    fails(&["ppl", "-m", m, "--text", binary.to_str().unwrap()], "not UTF-8");
    fails(&["ppl", "-m", m, "--text", short.to_str().unwrap(), "--ctx", "100000"], "context");

    // A truncated GGUF names the file.
    let bytes = std::fs::read(&gguf).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    fails(&["inspect", cut.to_str().unwrap()], "cut.gguf");
    fails(&["generate", "-m", cut.to_str().unwrap(), "-p", "x"], "cut.gguf");
    // A folder without config.json, and a non-GGUF file.
    fails(&["inspect", tmp.path().to_str().unwrap()], "config.json");
    fails(&["inspect", short.to_str().unwrap()], "not a GGUF file");
}

#[test]
fn quantize_writes_a_loadable_vptq_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(tmp.path());
    let m = gguf.to_str().unwrap();
    let text = tmp.path().join("calib.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let out = tmp.path().join("vq");
    let o = out.to_str().unwrap();
    let args = [
        "quantize",
        "-m",
        m,
        "-o",
        o,
        "--preset",
        "v4-k16",
        "--calib",
        text.to_str().unwrap(),
        "--calib-samples",
        "4",
        "--calib-len",
        "32",
        "--kmeans-iters",
        "3",
        "--exclude",
        "down_proj",
    ];
    ok(&args);
    fails(&args, "--force");
    let mut forced = args.to_vec();
    forced.push("--force");
    ok(&forced);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let layers = config["quantization_config"]["config_for_layers"].as_object().unwrap();
    assert_eq!(layers.len(), 2 * 6, "{config}");
    assert!(
        layers.contains_key("model.layers.1.self_attn.k_proj") && !layers.contains_key("model.layers.0.mlp.down_proj")
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("quantization_report.json")).unwrap()).unwrap();
    assert!(report["layers"]["model.layers.0.mlp.up_proj"]["proxy_err"].as_f64().unwrap().is_finite());
    let info = ok(&["inspect", o]);
    assert!(info.contains("llama (2 layers, hidden 32"), "{info}");
    assert_eq!(greedy_tokens(o).len(), 12);
    fails(
        &["quantize", "-m", m, "-o", o, "--calib", text.to_str().unwrap(), "--calib-len", "100000", "--force"],
        "fewer than one window",
    );
}

#[test]
fn bench_json_on_a_vptq_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(tmp.path());
    let text = tmp.path().join("calib.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let out = tmp.path().join("vq");
    let o = out.to_str().unwrap();
    let calib = text.to_str().unwrap();
    let quantize =
        ["quantize", "-m", gguf.to_str().unwrap(), "-o", o, "--preset", "v4-k16", "--calib", calib, "--calib-samples"];
    let mut args = quantize.to_vec();
    args.extend(["2", "--calib-len", "32", "--kmeans-iters", "2"]);
    ok(&args);
    let bench = |model: &str| -> serde_json::Value {
        let args = ["bench", "-m", model, "--prompt-len", "8", "--gen-len", "2", "--repeats", "1", "--json"];
        let mut args = args.to_vec();
        args.extend(["--threads", "1"]);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let b = bench(o);
    for key in
        ["prefill_tok_s", "decode_tok_s", "peak_rss_bytes", "read_bandwidth_gb_s", "decode_bound_tok_s", "weight_bytes"]
    {
        assert!(b[key].as_f64().is_some_and(|x| x > 0.0), "bench --json lacks {key}: {b}");
    }
    assert_eq!(b["model"], o);
    assert_eq!((b["threads"].as_u64(), b["prompt_len"].as_u64(), b["gen_len"].as_u64()), (Some(1), Some(8), Some(2)));
    assert_eq!(b["prefill_samples"].as_array().map(Vec::len), Some(1));
    assert_eq!(b["decode_samples"].as_array().map(Vec::len), Some(1));
    let eff = b["decode_efficiency"].as_f64().unwrap();
    assert!((eff - b["decode_tok_s"].as_f64().unwrap() / b["decode_bound_tok_s"].as_f64().unwrap()).abs() < 1e-9);

    // Bytes per token: the parts add up, every projection is VPTQ (2 layers × 7), the tied head is the
    // f16 embedding table (vocab 259 × hidden 32) and one of its rows is read per token.
    let w = &b["weight_bytes_breakdown"];
    let part = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("breakdown lacks {k}: {b}"));
    let total = part("linears") + part("head") + part("embed_row") + part("norms");
    assert_eq!(part("total"), total);
    assert_eq!(b["weight_bytes_per_token"].as_u64(), Some(total));
    assert_eq!(w["linear_kinds"].as_object().unwrap().len(), 1, "{w}");
    let (kind, count) = w["linear_kinds"].as_object().unwrap().iter().next().unwrap();
    assert!(kind.starts_with("vq") && count == 14, "{w}");
    assert_eq!((w["head_kind"].as_str(), w["embed_kind"].as_str()), (Some("f16"), Some("f16")));
    assert_eq!((part("head"), part("embed_row")), (259 * 32 * 2, 32 * 2));
    assert_eq!(part("norms"), (2 * 2 + 1) * 32 * 4);

    // The dense f32 model reads more bytes per token than its VPTQ folder.
    let dense = bench(gguf.to_str().unwrap());
    assert!(dense["weight_bytes_per_token"].as_u64().unwrap() > total, "{dense}");
    assert_eq!(dense["weight_bytes_breakdown"]["linear_kinds"]["f32"], 14);
}

#[test]
fn impossible_quantization_settings_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(tmp.path());
    let m = gguf.to_str().unwrap();
    let text = tmp.path().join("calib.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let out = tmp.path().join("vq");
    let base = ["quantize", "-m", m, "-o", out.to_str().unwrap(), "--calib", text.to_str().unwrap()];
    let with = |extra: &[&'static str]| -> Vec<&str> { base.iter().copied().chain(extra.iter().copied()).collect() };
    fails(&with(&["--preset", "v6-k4095"]), "power of two");
    fails(&with(&["--preset", "v17-k256"]), "2..=16");
    fails(&with(&["--preset", "v6-k131072"]), "65536");
    fails(
        &with(&["--preset", "v4-k16", "--centroids", "4096", "--calib-samples", "2", "--calib-len", "32"]),
        "--clamp-centroids",
    );
    fails(&with(&["--preset", "gptq-w2-g128", "--vector-len", "4"]), "do not apply");
    fails(&with(&["--preset", "rtn-w3-g128", "--codebook-grid", "free"]), "do not apply");
    fails(&with(&["--codebook-grid", "int4"]), "invalid value");
    fails(&with(&["--codebook-grid", "free", "--codebook-storage", "int8"]), "needs --codebook-grid int8");
    fails(&with(&["--preset", "gptq-w9-g128"]), "bits");
    fails(&with(&["--preset", "v4-k16", "--mode", "sideways"]), "sequential");
    fails(&with(&["--preset", "v4-k16", "--calib-samples", "0"]), "at least one window");
    fails(&with(&["--share-codebooks", "--norm", "min-max"]), "no normalization");
    fails(&with(&["--layer-preset", "layers.0."]), "PATTERN=PRESET");
    fails(&with(&["--layer-preset", "=v4-k16"]), "PATTERN=PRESET");
    fails(&with(&["--layer-preset", "layers.0.=gptq-w2-g128"]), "not a VPTQ preset");
    fails(&with(&["--layer-preset", "layers.0.=v4-k15"]), "power of two");
    fails(&with(&["--layer-preset", "layer.0.=v4-k16"]), "matches no selected linear");
    fails(&with(&["--preset", "rtn-w3-g128", "--layer-preset", "layers.0.=v4-k16"]), "needs a VPTQ --preset");
    fails(&with(&["--preset", "v4-k16", "--calib-samples", "2", "--layer-preset", "down_proj=v4-k4096"]), "down_proj");
    assert!(!out.exists(), "a failed run leaves no output folder");
    // Clamping makes the oversized codebook fit each layer instead.
    let clamp = ["--preset", "v4-k16", "--centroids", "4096", "--calib-samples", "2", "--calib-len", "32"];
    let mut args = with(&clamp);
    args.extend(["--clamp-centroids", "--kmeans-iters", "2"]);
    ok(&args);
    assert!(out.join("model.safetensors").is_file() && !tmp.path().join("vq.vptq-checkpoint").exists());
    // A per-layer preset shows in the layer's config.
    let mut args = with(&["--preset", "v4-k16", "--calib-samples", "2", "--calib-len", "32", "--kmeans-iters", "2"]);
    args.extend(["--layer-preset", "layers.0.=v2-k16-4", "--force"]);
    ok(&args);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let layers = &config["quantization_config"]["config_for_layers"];
    let lens = |m: &str| (layers[m]["vector_lens"][1].as_u64(), layers[m]["num_res_centroids"][1].as_u64());
    assert_eq!(lens("model.layers.0.mlp.up_proj"), (Some(2), Some(4)), "{layers}");
    assert_eq!(lens("model.layers.1.mlp.up_proj"), (Some(4), None), "{layers}");
    assert_eq!(layers["model.layers.1.mlp.up_proj"]["num_res_centroids"][1].as_i64(), Some(-1));
}
