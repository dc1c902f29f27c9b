//! End-to-end tests of the pipeline on a tiny random LLaMA in Hugging Face layout.

use super::*;
use crate::VqConfig;
use std::path::Path;
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_format::vptq::unpack_indices;
use vptq_kernels::DenseWeight;
use vptq_model::load::load_hf_weights;
use vptq_model::EmbedStorage;
use vptq_model::{DenseLinear, KvCache, KvPrecision, LoadOptions, LogitsMode};

const HIDDEN: usize = 32;
const FFN: usize = 48;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = 16;
const VOCAB: usize = 50;
const LAYERS: usize = 2;

/// Values in (−scale, scale) + offset, rounded to f16 so that a dense f16 write is exact.
fn rng_vec(seed: &mut u64, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let x = ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale + offset;
            half::f16::from_f32(x).to_f32()
        })
        .collect()
}

/// Writes a tiny HF folder (f32 tensors) whose linear weights come from `weight(name, rows, cols)`.
fn write_tiny(dir: &Path, mut weight: impl FnMut(&str, usize, usize) -> Vec<f32>) {
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 64, "tie_word_embeddings": false, "hidden_act": "silu",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut seed = 11u64;
    let mut t = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, v: Vec<f32>| {
        t.push(OwnedTensor::from_float(name, shape, &HalfOrFloat::F32(v)));
    };
    add("model.embed_tokens.weight".into(), vec![VOCAB, HIDDEN], rng_vec(&mut seed, VOCAB * HIDDEN, 1.0, 0.0));
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    for b in 0..LAYERS {
        let p = format!("model.layers.{b}");
        for n in ["input_layernorm", "post_attention_layernorm"] {
            add(format!("{p}.{n}.weight"), vec![HIDDEN], rng_vec(&mut seed, HIDDEN, 0.2, 1.0));
        }
        for (short, rows, cols) in [
            ("q_proj", q, HIDDEN),
            ("k_proj", kv, HIDDEN),
            ("v_proj", kv, HIDDEN),
            ("o_proj", HIDDEN, q),
            ("gate_proj", FFN, HIDDEN),
            ("up_proj", FFN, HIDDEN),
            ("down_proj", HIDDEN, FFN),
        ] {
            let name = module_name(b, short);
            add(format!("{name}.weight"), vec![rows, cols], weight(&name, rows, cols));
        }
    }
    add("model.norm.weight".into(), vec![HIDDEN], rng_vec(&mut seed, HIDDEN, 0.2, 1.0));
    add("lm_head.weight".into(), vec![VOCAB, HIDDEN], rng_vec(&mut seed, VOCAB * HIDDEN, 0.3, 0.0));
    write_safetensors(&dir.join("model.safetensors"), &t, None).unwrap();
}

fn random_model(dir: &Path) -> Llama {
    let mut seed = 5u64;
    write_tiny(dir, |_, r, c| rng_vec(&mut seed, r * c, 0.3, 0.0));
    load_hf_weights(dir, &LoadOptions::default()).unwrap()
}

fn calib() -> Vec<Vec<u32>> {
    (0..4u32).map(|s| (0..12u32).map(|t| (s * 17 + t * 7 + t * t) % VOCAB as u32).collect()).collect()
}

fn options(method: &Method, mode: CalibMode) -> QuantizeOptions<'_> {
    QuantizeOptions {
        method,
        mode,
        include: &[],
        exclude: &[],
        checkpoint: None,
        clamp_centroids: false,
        int8_codebooks: false,
        overrides: &[],
        share_codebooks: false,
    }
}

/// All logits, with an f32 cache: tests compare two computations of the same keys and values, and f16 rounding
/// could turn an f32 ulp of difference between them into an f16 ulp.
fn logits(model: &Llama, tokens: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::with_precision(&model.config, tokens.len(), KvPrecision::F32);
    model.forward(tokens, &mut cache, LogitsMode::All).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `results` written as a VPTQ folder (f16 embeddings) and loaded back; the folder lives as long as the `TempDir`.
fn write_and_load(model: &Llama, results: &[LayerResult]) -> (tempfile::TempDir, Llama) {
    let dir = tempfile::tempdir().unwrap();
    write_vptq_folder(model, None, results, serde_json::Value::Null, EmbedStorage::F16, dir.path(), true).unwrap();
    let loaded = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap();
    (dir, loaded)
}

#[test]
fn capture_forward_matches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let tokens = &calib()[1];
    let mut seen = Vec::new();
    let ours = forward_capture(&model, tokens, |l, s, x| {
        seen.push((l, s, x.len()));
        Ok(())
    })
    .unwrap();
    assert!(max_abs_diff(&ours, &logits(&model, tokens)) < 1e-5);
    let n = tokens.len();
    assert_eq!(seen.len(), LAYERS * 4);
    assert_eq!(
        seen[..4],
        [(0, Site::Qkv, n * HIDDEN), (0, Site::O, n * 32), (0, Site::Up, n * HIDDEN), (0, Site::Down, n * FFN)]
    );
}

/// The weight `[M, N]` the packed tensors stand for (vptq-spec.md §2.4), read straight from the stored
/// tensors with the format's bit unpacker; independent of the kernels' dequantizer.
fn spec_dequant(r: &LayerResult) -> Vec<f32> {
    let LayerWeights::Vq(t) = &r.weights else { panic!("VPTQ layer expected") };
    let l = &t.layout;
    let (m, n, v, gs, os) = (l.out_features, l.in_features, l.vector_len, l.group_size, l.outlier_size);
    assert!(t.outlier_indices.is_none());
    let floats = |h: &HalfOrFloat| match h {
        HalfOrFloat::F16(x) => x.iter().map(|x| x.to_f32()).collect::<Vec<f32>>(),
        HalfOrFloat::F32(x) => x.clone(),
        HalfOrFloat::Bf16(x) => x.iter().map(|x| x.to_f32()).collect(),
    };
    let cb = floats(&t.centroids);
    let rcb = t.res_centroids.as_ref().map(floats);
    let (ib, rb) = (l.index_bits(), l.res_index_bits());
    let wpr = l.words_per_row();
    let mut wp = vec![0f32; m * n]; // [M, N] permuted columns
    for c in 0..l.group_num {
        for i in 0..l.num_indices() {
            let row_words = &t.indices[(c * l.num_indices() + i) * wpr..][..wpr];
            let (main, res) = unpack_indices(row_words, gs, ib, rb);
            for g in 0..gs {
                for k in 0..v {
                    let row = i * v + k;
                    if row >= m {
                        continue;
                    }
                    let mut x = cb[(c * l.num_centroids + main[g] as usize) * v + k];
                    if let Some(rcb) = &rcb {
                        x += rcb[(c * l.num_res_centroids + res[g] as usize) * v + k];
                    }
                    wp[row * n + os + c * gs + g] = x;
                }
            }
        }
    }
    let mut w = vec![0f32; m * n];
    for row in 0..m {
        for qc in 0..n {
            let j = t.perm.as_ref().map_or(qc, |p| p[qc] as usize);
            let (s, o) = (t.weight_scale.as_ref().map_or(1.0, |s| s[j]), t.weight_bias.as_ref().map_or(0.0, |b| b[j]));
            w[row * n + j] = wp[row * n + qc] * s + o;
        }
    }
    w
}

/// `model` with the quantized layers replaced by dense f32 weights from `weight(q)`.
fn with_dense(model: &Llama, quantized: &[LayerResult], weight: impl Fn(&LayerResult) -> Vec<f32>) -> Llama {
    let mut m = model.clone();
    for (b, block) in m.blocks.iter_mut().enumerate() {
        for (short, slot) in block.linears_mut() {
            if let Some(q) = quantized.iter().find(|r| r.module == module_name(b, short)) {
                let dense = DenseWeight::F32(weight(q));
                *slot = Linear::Dense(DenseLinear::new(dense, None, q.in_features, q.out_features));
            }
        }
    }
    m
}

fn small_cfg(preset: &str) -> VqConfig {
    let mut cfg: VqConfig = preset.parse().unwrap();
    cfg.kmeans_iters = 4;
    cfg
}

#[test]
fn quantize_write_load_round_trip() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let method = Method::Vq(small_cfg("v4-k16"));
    let mut reported = Vec::new();
    let exclude = vec!["layers.1.mlp.down_proj".to_string()];
    let opts = QuantizeOptions { exclude: &exclude, ..options(&method, CalibMode::Reference) };
    let quantized = quantize_model(&model, &calib(), &opts, &mut |e| {
        if let Event::Layer { done, total, .. } = e {
            reported.push((done, total));
        }
    })
    .unwrap();
    assert_eq!(quantized.len(), 13);
    assert_eq!(reported.last(), Some(&(13, 13)));
    assert!(quantized.iter().all(|q| q.stats.proxy_err.is_finite()));

    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("q");
    let run = serde_json::json!({"method": method.to_string()});
    write_vptq_folder(&model, None, &quantized, run.clone(), EmbedStorage::F16, &folder, false).unwrap();
    assert!(
        write_vptq_folder(&model, None, &quantized, run.clone(), EmbedStorage::F16, &folder, false).is_err(),
        "exists without force"
    );
    write_vptq_folder(&model, None, &quantized, run, EmbedStorage::F16, &folder, true).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("quantization_report.json")).unwrap()).unwrap();
    assert!(report["layers"]["model.layers.0.self_attn.q_proj"]["proxy_err"].is_f64());
    let bpw = report["summary"]["bits_per_weight_quantized"].as_f64().unwrap();
    assert!(bpw > 1.0 && bpw < 16.0, "{bpw}");
    let loaded = load_hf_weights(&folder, &LoadOptions::default()).unwrap();
    assert!(matches!(loaded.blocks[0].q_proj, Linear::Vq(_)));
    assert!(matches!(loaded.blocks[1].down_proj, Linear::Dense(_)));

    let tokens = &calib()[2];
    let got = logits(&loaded, tokens);
    let want = logits(&with_dense(&model, &quantized, spec_dequant), tokens);
    let d = max_abs_diff(&got, &want);
    assert!(d < 1e-4, "loaded VPTQ vs spec dequantization: {d}");
    // …and the kernels' dequantization the driver uses agrees.
    let kernels = logits(&with_dense(&model, &quantized, LayerResult::dequantized), tokens);
    assert!(max_abs_diff(&got, &kernels) < 1e-4);
}

#[test]
fn layer_overrides_give_matching_layers_their_own_configuration() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let (base, first, down) = (small_cfg("v4-k16"), small_cfg("v2-k16-4"), small_cfg("v8-k8"));
    let method = Method::Vq(base.clone());
    let overrides = [
        LayerOverride { pattern: "layers.0.".into(), config: first.clone() },
        LayerOverride { pattern: "down_proj".into(), config: down.clone() },
    ];
    let opts = QuantizeOptions { overrides: &overrides, ..options(&method, CalibMode::Reference) };
    let mixed = quantize_model(&model, &calib(), &opts, &mut |_| {}).unwrap();
    // In reference mode every layer depends only on its own configuration: each equals the plain run of it.
    let plain = |cfg: &VqConfig| {
        let m = Method::Vq(cfg.clone());
        quantize_model(&model, &calib(), &options(&m, CalibMode::Reference), &mut |_| {}).unwrap()
    };
    let runs = [(&base, plain(&base)), (&first, plain(&first)), (&down, plain(&down))];
    for r in &mixed {
        // The last matching override wins: layers.0's down_proj is down's.
        let want = if r.module.contains("down_proj") {
            &down
        } else if r.module.contains("layers.0.") {
            &first
        } else {
            &base
        };
        let LayerWeights::Vq(t) = &r.weights else { panic!("{} is not VPTQ", r.module) };
        assert_eq!(
            (t.layout.vector_len, t.layout.num_centroids, t.layout.num_res_centroids),
            (want.vector_len, want.num_centroids, want.num_res_centroids),
            "{}",
            r.module
        );
        let same = &runs.iter().find(|(c, _)| *c == want).unwrap().1;
        let same = same.iter().find(|q| q.module == r.module).unwrap();
        assert_eq!(fingerprint(std::slice::from_ref(r)), fingerprint(std::slice::from_ref(same)), "{}", r.module);
    }
    // The mixed folder loads, each layer with its own shape.
    let (_dir, loaded) = write_and_load(&model, &mixed);
    let tokens = &calib()[1];
    let d = max_abs_diff(&logits(&loaded, tokens), &logits(&with_dense(&model, &mixed, spec_dequant), tokens));
    assert!(d < 1e-4, "mixed folder vs spec dequantization: {d}");
    // Scalar baselines have no per-layer configurations.
    let scalar = Method::Scalar("rtn-w4-g16".parse().unwrap());
    let opts = QuantizeOptions { overrides: &overrides, ..options(&scalar, CalibMode::Reference) };
    assert!(matches!(quantize_model(&model, &calib(), &opts, &mut |_| {}), Err(PipelineError::InvalidArgument(_))));
}

#[test]
fn shared_codebooks_are_one_per_kind_and_may_exceed_a_layers_vectors() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    // k_proj/v_proj [16, 32] have 4·32 = 128 length-4 vectors per layer: k = 256 fits only the two layers together.
    let method = Method::Vq(VqConfig { norm: crate::NormMode::None, ..small_cfg("v4-k256") });
    let per_layer = quantize_model(&model, &calib(), &options(&method, CalibMode::Sequential), &mut |_| {});
    assert!(per_layer.is_err(), "k = 256 exceeds one k_proj's vectors");
    let mut trained = Vec::new();
    let opts = QuantizeOptions { share_codebooks: true, ..options(&method, CalibMode::Sequential) };
    let shared = quantize_model(&model, &calib(), &opts, &mut |e| {
        if let Event::SharedCodebook { kind } = e {
            trained.push(kind.to_string());
        }
    })
    .unwrap();
    assert_eq!(trained, LINEARS.map(|l| l.1.to_string()));
    let centroids = |r: &LayerResult| match &r.weights {
        LayerWeights::Vq(t) => t.centroids.clone(),
        LayerWeights::Dense(_) => panic!("not VPTQ"),
    };
    for (_, short, _) in LINEARS {
        let a = shared.iter().find(|r| r.module.ends_with(short)).unwrap();
        let b = shared.iter().rfind(|r| r.module.ends_with(short)).unwrap();
        assert_ne!(a.module, b.module);
        assert_eq!(centroids(a), centroids(b), "{short}: one codebook for both layers");
        assert_eq!(a.main_codebook_bits(), 256 * 4 * 16);
    }
    // The folder stores it in every layer, as the HF layout needs, and loads.
    let (_dir, loaded) = write_and_load(&model, &shared);
    let tokens = &calib()[3];
    let d = max_abs_diff(&logits(&loaded, tokens), &logits(&with_dense(&model, &shared, spec_dequant), tokens));
    assert!(d < 1e-4, "shared-codebook folder vs spec dequantization: {d}");
    // Settings a shared codebook cannot serve are refused.
    let mut grouped = VqConfig { norm: crate::NormMode::None, ..small_cfg("v4-k16") };
    grouped.group_num = 2;
    let mut normed = small_cfg("v4-k16");
    normed.norm = crate::NormMode::MinMax;
    for cfg in [grouped, normed] {
        let m = Method::Vq(cfg);
        let opts = QuantizeOptions { share_codebooks: true, ..options(&m, CalibMode::Sequential) };
        let r = quantize_model(&model, &calib(), &opts, &mut |_| {});
        assert!(matches!(r, Err(PipelineError::InvalidArgument(_))), "{m}");
    }
}

#[test]
fn weights_from_few_vectors_quantize_losslessly() {
    // Every length-4 vector (4 consecutive rows of one column) of every linear is one of 8 patterns, fewer than
    // k = 16 centroids: with no normalization the codebook holds them exactly and the error feedback adds none.
    let mut seed = 3u64;
    let patterns = rng_vec(&mut seed, 8 * 4, 0.3, 0.0); // [8, 4]
    let src = tempfile::tempdir().unwrap();
    let mut pick = 9u64;
    write_tiny(src.path(), |_, rows, cols| {
        let mut w = vec![0f32; rows * cols];
        for i in 0..rows / 4 {
            for j in 0..cols {
                pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let p = (pick >> 45) as usize % 8;
                for t in 0..4 {
                    w[(i * 4 + t) * cols + j] = patterns[p * 4 + t];
                }
            }
        }
        w
    });
    let model = load_hf_weights(src.path(), &LoadOptions::default()).unwrap();
    let mut cfg = small_cfg("v4-k16");
    cfg.norm = crate::NormMode::None;
    cfg.kmeans_init = crate::algo::kmeans::KMeansInit::KMeansPlusPlus;
    // The int8 grid must not snap a codebook whose fit is exact: rounding would be all of its error.
    let mut quantized = Vec::new();
    for int8_grid in [false, true] {
        let method = Method::Vq(crate::VqConfig { int8_grid, ..cfg.clone() });
        quantized = quantize_model(&model, &calib(), &options(&method, CalibMode::Reference), &mut |_| {}).unwrap();
        assert!(
            quantized.iter().all(|q| q.stats.proxy_err < 1e-10),
            "int8_grid {int8_grid}: {:?}",
            quantized.iter().map(|q| (q.module.as_str(), q.stats.proxy_err)).collect::<Vec<_>>()
        );
    }
    let (_dir, loaded) = write_and_load(&model, &quantized);
    let tokens = &calib()[3];
    let d = max_abs_diff(&logits(&loaded, tokens), &logits(&model, tokens));
    assert!(d < 1e-4, "lossless setup: {d}");
}

fn dense_f32(l: &Linear) -> Vec<f32> {
    let Linear::Dense(d) = l else { panic!("dense expected") };
    let mut w = vec![0f32; d.weight.len()];
    d.weight.view().to_f32_range(0, &mut w);
    w
}

/// The HF model as a llama.cpp GGUF (q/k rows permuted, interleaved RoPE).
fn to_gguf(m: &Llama) -> Llama {
    use vptq_format::gguf::{GgufFile, GgufWriter, MetaValue};
    let mut w = GgufWriter::new();
    let u = |x: usize| MetaValue::U32(x as u32);
    w.add_meta("general.architecture", MetaValue::String("llama".into()))
        .add_meta("llama.block_count", u(LAYERS))
        .add_meta("llama.embedding_length", u(HIDDEN))
        .add_meta("llama.feed_forward_length", u(FFN))
        .add_meta("llama.attention.head_count", u(HEADS))
        .add_meta("llama.attention.head_count_kv", u(KV_HEADS))
        .add_meta("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5))
        .add_meta("llama.rope.freq_base", MetaValue::F32(10000.0))
        .add_meta("llama.context_length", u(64));
    let mut embed = vec![0f32; m.embed.weight.len()];
    m.embed.weight.view().to_f32_range(0, &mut embed);
    w.add_tensor_f32("token_embd.weight", &[VOCAB, HIDDEN], &embed);
    for (b, block) in m.blocks.iter().enumerate() {
        let p = format!("blk.{b}");
        w.add_tensor_f32(format!("{p}.attn_norm.weight"), &[HIDDEN], &block.attn_norm);
        w.add_tensor_f32(format!("{p}.ffn_norm.weight"), &[HIDDEN], &block.ffn_norm);
        for (short, gg) in [
            ("q_proj", "attn_q"),
            ("k_proj", "attn_k"),
            ("v_proj", "attn_v"),
            ("o_proj", "attn_output"),
            ("gate_proj", "ffn_gate"),
            ("up_proj", "ffn_up"),
            ("down_proj", "ffn_down"),
        ] {
            let l = block.linears().into_iter().find(|(s, _)| *s == short).unwrap().1;
            let mut v = dense_f32(l);
            if let Some(heads) = [("q_proj", HEADS), ("k_proj", KV_HEADS)].iter().find(|h| h.0 == short).map(|h| h.1) {
                v = permute_rows(&v, heads, HEAD_DIM, l.in_features(), RowOrder::HfToGguf);
            }
            w.add_tensor_f32(format!("{p}.{gg}.weight"), &[l.out_features(), l.in_features()], &v);
        }
    }
    w.add_tensor_f32("output_norm.weight", &[HIDDEN], &m.norm);
    w.add_tensor_f32("output.weight", &[VOCAB, HIDDEN], &dense_f32(m.head.as_ref().unwrap()));
    let gguf = GgufFile::from_bytes("tiny.gguf".into(), w.to_bytes()).unwrap();
    vptq_model::load::load_gguf_weights(&gguf, &LoadOptions::default()).unwrap()
}

#[test]
fn gguf_sourced_model_is_written_in_hf_row_order() {
    let src = tempfile::tempdir().unwrap();
    let hf = random_model(src.path());
    let gguf = to_gguf(&hf);
    assert_eq!(gguf.config.rope_layout, RopeLayout::Interleaved);
    let tokens = &calib()[0];
    assert!(max_abs_diff(&logits(&gguf, tokens), &logits(&hf, tokens)) < 1e-4);
    let include = vec!["self_attn".to_string()];
    let method = Method::Vq(small_cfg("v4-k16"));
    let opts = QuantizeOptions { include: &include, ..options(&method, CalibMode::Reference) };
    let quantized = quantize_model(&gguf, &calib(), &opts, &mut |_| {}).unwrap();
    assert_eq!(quantized.len(), 4 * LAYERS);
    let out = tempfile::tempdir().unwrap();
    write_vptq_folder(&gguf, None, &quantized, serde_json::Value::Null, EmbedStorage::F16, out.path(), true).unwrap();
    let loaded = load_hf_weights(out.path(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.config.rope_layout, RopeLayout::HalfSplit);
    // The quantized q/k are in HF order: a dense HF model built from them gives the loaded logits.
    let want = logits(&with_dense(&hf, &quantized, spec_dequant), tokens);
    let d = max_abs_diff(&logits(&loaded, tokens), &want);
    assert!(d < 1e-4, "GGUF-sourced: {d}");
    // …and they approximate the HF rows, not llama.cpp's.
    for (b, block) in hf.blocks.iter().enumerate() {
        for (short, heads) in [("q_proj", HEADS), ("k_proj", KV_HEADS)] {
            let l = block.linears().into_iter().find(|(s, _)| *s == short).unwrap().1;
            let w_hf = dense_f32(l);
            let w_gguf = permute_rows(&w_hf, heads, HEAD_DIM, HIDDEN, RowOrder::HfToGguf);
            let q = quantized.iter().find(|r| r.module == module_name(b, short)).unwrap().dequantized();
            let err = |w: &[f32]| -> f32 { w.iter().zip(&q).map(|(a, b)| (a - b).powi(2)).sum() };
            assert!(err(&w_hf) < 0.5 * err(&w_gguf), "{short}: {} vs {}", err(&w_hf), err(&w_gguf));
        }
    }
}

/// Every stored tensor of every layer, as bytes: equal means bit-identical results.
fn fingerprint(results: &[LayerResult]) -> Vec<(String, Vec<u8>)> {
    results.iter().flat_map(|r| r.tensors(None)).map(|t| (t.name, t.data)).collect()
}

#[test]
fn sequential_mode_calibrates_on_the_quantized_blocks() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let method = Method::Vq(small_cfg("v4-k16"));
    let reference = quantize_model(&model, &calib(), &options(&method, CalibMode::Reference), &mut |_| {}).unwrap();
    let sequential = quantize_model(&model, &calib(), &options(&method, CalibMode::Sequential), &mut |_| {}).unwrap();
    let (r, s) = (fingerprint(&reference), fingerprint(&sequential));
    let block0 =
        |f: &[(String, Vec<u8>)]| f.iter().filter(|t| t.0.starts_with("model.layers.0.")).cloned().collect::<Vec<_>>();
    assert_eq!(block0(&r), block0(&s), "block 0 sees the same inputs in both modes");
    assert_ne!(r, s, "block 1 sees the quantized block 0 in sequential mode");
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let method = Method::Vq(small_cfg("v4-k16"));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let opts = options(&method, CalibMode::Sequential);
            fingerprint(&quantize_model(&model, &calib(), &opts, &mut |_| {}).unwrap())
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint_with_the_same_result() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let method = Method::Vq(small_cfg("v4-k16"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ckpt");
    let ckpt = Checkpoint::open(&dir, "cmd-1", false).unwrap();
    let opts = QuantizeOptions { checkpoint: Some(&ckpt), ..options(&method, CalibMode::Sequential) };
    let full = fingerprint(&quantize_model(&model, &calib(), &opts, &mut |_| {}).unwrap());
    // What a kill leaves: the first 5 layers complete, the 6th with its tensors but no record, nothing after.
    for b in 0..LAYERS {
        for (k, (_, short, _)) in LINEARS.iter().enumerate() {
            let module = module_name(b, short);
            let i = b * LINEARS.len() + k;
            if i >= 5 {
                std::fs::remove_file(dir.join(format!("{module}.json"))).unwrap();
            }
            if i >= 6 {
                std::fs::remove_file(dir.join(format!("{module}.safetensors"))).unwrap();
            }
        }
    }
    let ckpt = Checkpoint::open(&dir, "cmd-1", false).unwrap();
    let opts = QuantizeOptions { checkpoint: Some(&ckpt), ..options(&method, CalibMode::Sequential) };
    let mut resumed = 0;
    let again = quantize_model(&model, &calib(), &opts, &mut |e| {
        if let Event::Layer { resumed: true, .. } = e {
            resumed += 1;
        }
    })
    .unwrap();
    assert_eq!(resumed, 5);
    assert_eq!(fingerprint(&again), full, "resumed run is bit-identical");
    // Another command's checkpoint is refused, unless discarded.
    assert!(matches!(Checkpoint::open(&dir, "cmd-2", false), Err(PipelineError::Checkpoint { .. })));
    let fresh = Checkpoint::open(&dir, "cmd-2", true).unwrap();
    assert!(fresh.load("model.layers.0.self_attn.q_proj", 32, HIDDEN).unwrap().is_none());
    fresh.remove().unwrap();
    assert!(!dir.exists());
}

#[test]
fn scalar_baselines_run_through_the_pipeline_and_load_as_dense() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    // bits + f16 scale per 16 + zero points, word padding and (GPTQ act-order) a 32-bit g_idx per column over
    // as few as 16 rows.
    for (name, bits) in [("gptq-w3-g16", 3.0), ("rtn-w4-g16", 4.0)] {
        let method: Method = name.parse().unwrap();
        assert!(matches!(method, Method::Scalar(_)));
        let results = quantize_model(&model, &calib(), &options(&method, CalibMode::Sequential), &mut |_| {}).unwrap();
        assert_eq!(results.len(), 7 * LAYERS);
        assert!(results.iter().all(|r| matches!(r.weights, LayerWeights::Dense(_))));
        assert!(results.iter().all(|r| r.bits_per_weight() > bits + 1.0 && r.bits_per_weight() < bits + 4.5));
        let (out, loaded) = write_and_load(&model, &results);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("config.json")).unwrap()).unwrap();
        assert!(config.get("quantization_config").is_none(), "no VPTQ layer: a plain dense folder");
        let tokens = &calib()[1];
        let want = logits(&with_dense(&model, &results, LayerResult::dequantized), tokens);
        assert!(max_abs_diff(&logits(&loaded, tokens), &want) < 1e-4, "{name}");
    }
    assert!("gptq-w0-g128".parse::<Method>().is_err());
    assert!("v6-k4095".parse::<Method>().is_err());
}

#[test]
fn int8_embeddings_are_written_recorded_and_loaded() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let method = Method::Vq(small_cfg("v4-k16"));
    let include = vec!["layers.0.".to_string()];
    let opts = QuantizeOptions { include: &include, ..options(&method, CalibMode::Reference) };
    let results = quantize_model(&model, &calib(), &opts, &mut |_| {}).unwrap();
    let (f16_dir, q8_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_vptq_folder(&model, None, &results, serde_json::Value::Null, EmbedStorage::F16, f16_dir.path(), true)
        .unwrap();
    write_vptq_folder(&model, None, &results, serde_json::Value::Null, EmbedStorage::Q8, q8_dir.path(), true).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(q8_dir.path().join("config.json")).unwrap()).unwrap();
    let q = &config["quantization_config"];
    assert!(q["dense_layers"]["model.embed_tokens"].is_object() && q["config_for_layers"].is_object(), "{q}");
    let a = load_hf_weights(f16_dir.path(), &LoadOptions::default()).unwrap();
    let b = load_hf_weights(q8_dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(b.embed.weight.kind(), "q8");
    let tokens = &calib()[0];
    let (la, lb) = (logits(&a, tokens), logits(&b, tokens));
    let scale = la.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(max_abs_diff(&la, &lb) < 0.05 * scale, "int8 head: {}", max_abs_diff(&la, &lb));
}

#[test]
fn int8_codebook_storage_halves_codebook_bytes_and_loads_bit_identically() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let method = Method::Vq(VqConfig { int8_grid: true, ..small_cfg("v4-k64-16") });
    let include = vec!["layers.1.".to_string()];
    let base = QuantizeOptions { include: &include, ..options(&method, CalibMode::Reference) };
    let f16s = quantize_model(&model, &calib(), &base, &mut |_| {}).unwrap();
    let int8s =
        quantize_model(&model, &calib(), &QuantizeOptions { int8_codebooks: true, ..base }, &mut |_| {}).unwrap();
    let mut snapped = 0;
    for (a, b) in f16s.iter().zip(&int8s) {
        let LayerWeights::Vq(t) = &a.weights else { panic!("vq expected") };
        let (k, v) = (t.layout.num_centroids, t.layout.vector_len);
        let names: Vec<String> = b.tensors(None).into_iter().map(|t| t.name).collect();
        if names.iter().any(|n| n.ends_with("centroids.qweight")) {
            // f16 → int8 values plus one f32 step per lane; nothing else changes.
            snapped += 1;
            assert_eq!(a.stats.storage_bits - b.stats.storage_bits, (k * v * 8 - v * 32) as u64, "{}", a.module);
            assert!(!names.iter().any(|n| n.ends_with(".centroids.weight")));
        } else {
            assert_eq!(a.stats.storage_bits, b.stats.storage_bits, "{}: unsnapped layers keep f16", a.module);
        }
    }
    assert!(snapped > 0, "the random model's codebooks have distortion to spare");
    let ((_f16_dir, a), (_int8_dir, b)) = (write_and_load(&model, &f16s), write_and_load(&model, &int8s));
    let tokens = &calib()[2];
    let (la, lb) = (logits(&a, tokens), logits(&b, tokens));
    assert!(la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()), "same values, same kernels");
    // A checkpointed int8 layer reads back as it was written.
    let ckpt_dir = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::open(&ckpt_dir.path().join("ckpt"), "t", false).unwrap();
    let r = &int8s[0];
    ckpt.save(r, None).unwrap();
    let back = ckpt.load(&r.module, r.out_features, r.in_features).unwrap().unwrap();
    assert!(back.int8_codebooks && back.stats.storage_bits == r.stats.storage_bits);
    assert_eq!(back.dequantized(), r.dequantized());
}

#[test]
fn residual_outliers_and_groups_end_to_end() {
    let src = tempfile::tempdir().unwrap();
    let model = random_model(src.path());
    let tokens = &calib()[2];
    let dense = logits(&model, tokens);
    let mut errs = Vec::new();
    for (residual, outliers, groups) in [(0, 0.0, 1), (4, 0.0, 1), (0, 10.0, 1), (0, 0.0, 2), (4, 10.0, 2)] {
        let mut cfg = small_cfg("v4-k16");
        cfg.num_res_centroids = residual;
        cfg.outlier_percent = outliers;
        cfg.outlier_vector_len = 2;
        cfg.outlier_num_centroids = 16;
        cfg.group_num = groups;
        let method = Method::Vq(cfg);
        let include = vec!["self_attn".to_string()];
        let opts =
            QuantizeOptions { include: &include, clamp_centroids: true, ..options(&method, CalibMode::Sequential) };
        let results = quantize_model(&model, &calib(), &opts, &mut |_| {}).unwrap();
        let (_dir, loaded) = write_and_load(&model, &results);
        let Linear::Vq(q) = &loaded.blocks[0].q_proj else { panic!("q_proj is VPTQ") };
        let l = q.layout();
        assert_eq!((l.num_res_centroids, l.outlier_size > 0, l.group_num), (residual, outliers > 0.0, groups));
        let got = logits(&loaded, tokens);
        let want = logits(&with_dense(&model, &results, LayerResult::dequantized), tokens);
        assert!(max_abs_diff(&got, &want) < 1e-4, "{residual} {outliers} {groups}");
        errs.push(max_abs_diff(&got, &dense));
    }
    // A residual codebook adds bits and lowers the error of the plain configuration.
    assert!(errs[1] < errs[0], "{errs:?}");
}
