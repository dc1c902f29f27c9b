//! End-to-end tests of the pipeline on a tiny random LLaMA in Hugging Face layout.

use super::*;
use vptq_kernels::DenseWeight;
use vptq_model::load::load_hf_weights;
use vptq_model::{DenseLinear, KvCache, LoadOptions, LogitsMode};

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

fn logits(model: &Llama, tokens: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(&model.config, tokens.len());
    model.forward(tokens, &mut cache, LogitsMode::All).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
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
    let hs = collect_hessians(&model, &calib()).unwrap();
    assert_eq!(hs.len(), LAYERS);
    assert_eq!((hs[1].qkv.rows(), hs[1].down.in_features()), (48, FFN));
}

/// The weight `[M, N]` the packed tensors stand for (vptq-spec.md §2.4), codebooks and scale/bias rounded
/// to f16 as written; independent of the model crate's dequantizer.
fn spec_dequant(q: &QuantizedLinear) -> Vec<f32> {
    let r = |x: f32| half::f16::from_f32(x).to_f32();
    let (m, n, v, gs, os) = (q.out_features, q.in_features, q.vector_len, q.group_size, q.outlier_size);
    assert!(q.outlier.is_none());
    let mut wp = vec![0f32; m * n]; // [M, N] permuted columns
    for c in 0..q.group_num {
        for i in 0..q.num_indices {
            for g in 0..gs {
                let at = (c * q.num_indices + i) * gs + g;
                for t in 0..v {
                    let row = i * v + t;
                    if row >= m {
                        continue;
                    }
                    let mut x = r(q.centroids[(c * q.num_centroids + q.indices[at] as usize) * v + t]);
                    if q.num_res_centroids > 0 {
                        x += r(q.res_centroids[(c * q.num_res_centroids + q.res_indices[at] as usize) * v + t]);
                    }
                    wp[row * n + os + c * gs + g] = x;
                }
            }
        }
    }
    let mut w = vec![0f32; m * n];
    for row in 0..m {
        for qc in 0..n {
            let j = q.perm[qc] as usize;
            w[row * n + j] = wp[row * n + qc] * r(q.weight_scale[j]) + r(q.weight_bias[j]);
        }
    }
    w
}

/// `model` with the quantized layers replaced by dense f32 weights from `weight(q)`.
fn with_dense(
    model: &Llama,
    quantized: &[(String, QuantizedLinear)],
    weight: impl Fn(&QuantizedLinear) -> Vec<f32>,
) -> Llama {
    let mut m = model.clone();
    for (b, block) in m.blocks.iter_mut().enumerate() {
        let slots: [(&str, &mut Linear); 7] = [
            ("q_proj", &mut block.q_proj),
            ("k_proj", &mut block.k_proj),
            ("v_proj", &mut block.v_proj),
            ("o_proj", &mut block.o_proj),
            ("gate_proj", &mut block.gate_proj),
            ("up_proj", &mut block.up_proj),
            ("down_proj", &mut block.down_proj),
        ];
        for (short, slot) in slots {
            if let Some((_, q)) = quantized.iter().find(|(name, _)| *name == module_name(b, short)) {
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
    let hs = collect_hessians(&model, &calib()).unwrap();
    let cfg = small_cfg("v4-k16");
    let mut reported = Vec::new();
    let exclude = vec!["layers.1.mlp.down_proj".to_string()];
    let quantized = quantize_model(&model, &hs, &cfg, &[], &exclude, |p| reported.push((p.done, p.total))).unwrap();
    assert_eq!(quantized.len(), 13);
    assert_eq!(reported.last(), Some(&(13, 13)));
    assert!(quantized.iter().all(|(_, q)| q.report.proxy_err.is_finite()));

    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("q");
    write_vptq_folder(&model, None, &quantized, &folder, false).unwrap();
    assert!(write_vptq_folder(&model, None, &quantized, &folder, false).is_err(), "exists without force");
    write_vptq_folder(&model, None, &quantized, &folder, true).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("quantization_report.json")).unwrap()).unwrap();
    assert!(report["model.layers.0.self_attn.q_proj"]["proxy_err"].is_f64());
    let loaded = load_hf_weights(&folder, &LoadOptions::default()).unwrap();
    assert!(matches!(loaded.blocks[0].q_proj, Linear::Vq(_)));
    assert!(matches!(loaded.blocks[1].down_proj, Linear::Dense(_)));

    let tokens = &calib()[2];
    let got = logits(&loaded, tokens);
    let want = logits(&with_dense(&model, &quantized, spec_dequant), tokens);
    let d = max_abs_diff(&got, &want);
    assert!(d < 1e-4, "loaded VPTQ vs spec dequantization: {d}");
    // The quantizer's own dequantized weight differs only by the f16 rounding of the stored codebooks.
    let unrounded = logits(&with_dense(&model, &quantized, |q| q.quantized_weight.clone()), tokens);
    let scale = unrounded.iter().fold(0f32, |a, x| a.max(x.abs()));
    assert!(max_abs_diff(&got, &unrounded) < 1e-2 * scale.max(1.0));
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
    let hs = collect_hessians(&model, &calib()).unwrap();
    let mut cfg = small_cfg("v4-k16");
    cfg.norm = crate::NormMode::None;
    cfg.kmeans_init = crate::algo::kmeans::KMeansInit::KMeansPlusPlus;
    let quantized = quantize_model(&model, &hs, &cfg, &[], &[], |_| {}).unwrap();
    assert!(
        quantized.iter().all(|(_, q)| q.report.proxy_err < 1e-10),
        "{:?}",
        quantized.iter().map(|(m, q)| (m.as_str(), q.report.proxy_err)).collect::<Vec<_>>()
    );
    let out = tempfile::tempdir().unwrap();
    write_vptq_folder(&model, None, &quantized, out.path(), true).unwrap();
    let loaded = load_hf_weights(out.path(), &LoadOptions::default()).unwrap();
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
    let hs = collect_hessians(&gguf, &calib()).unwrap();
    let include = vec!["self_attn".to_string()];
    let quantized = quantize_model(&gguf, &hs, &small_cfg("v4-k16"), &include, &[], |_| {}).unwrap();
    assert_eq!(quantized.len(), 4 * LAYERS);
    let out = tempfile::tempdir().unwrap();
    write_vptq_folder(&gguf, None, &quantized, out.path(), true).unwrap();
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
            let q = &quantized.iter().find(|(m, _)| *m == module_name(b, short)).unwrap().1;
            let err = |w: &[f32]| -> f32 { w.iter().zip(&q.quantized_weight).map(|(a, b)| (a - b).powi(2)).sum() };
            assert!(err(&w_hf) < 0.5 * err(&w_gguf), "{short}: {} vs {}", err(&w_hf), err(&w_gguf));
        }
    }
}
