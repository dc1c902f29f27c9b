//! A tiny random LLaMA written by this test in both GGUF (llama.cpp layout: permuted q/k rows, adjacent-pair
//! RoPE) and Hugging Face layouts (rotate-half) must give the same logits, and both must match a naive f64
//! forward written from the definition. Qwen2-style biases and GQA are exercised too.

use std::collections::HashMap;
use vptq_format::gguf::{GgufFile, GgufWriter, MetaValue};
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_model::export::{permute_rows, RowOrder};
use vptq_model::load::{load_gguf_weights, load_hf_weights};
use vptq_model::{KvCache, KvPrecision, LoadOptions, LogitsMode, WeightDtype};

struct Tiny {
    arch: &'static str,
    hidden: usize,
    ffn: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    bias: bool,
    tied: bool,
    theta: f64,
    eps: f64,
    /// HF-layout tensors by HF name, row-major.
    t: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn rng_vec(seed: &mut u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

impl Tiny {
    fn new(arch: &'static str, bias: bool, tied: bool) -> Self {
        let mut m = Tiny {
            arch,
            hidden: 64,
            ffn: 96,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            vocab: 300,
            bias,
            tied,
            theta: 10000.0,
            eps: 1e-5,
            t: HashMap::new(),
        };
        let mut seed = 7u64;
        let (h, q, kv, f) = (m.hidden, m.heads * m.head_dim, m.kv_heads * m.head_dim, m.ffn);
        let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
            let n = shape.iter().product();
            let v = rng_vec(&mut seed, n, scale).iter().map(|x| x + offset).collect();
            m.t.insert(name, (shape, v));
        };
        add("model.embed_tokens.weight".into(), vec![m.vocab, h], 1.0, 0.0);
        for i in 0..m.layers {
            let p = format!("model.layers.{i}");
            add(format!("{p}.input_layernorm.weight"), vec![h], 0.2, 1.0);
            add(format!("{p}.post_attention_layernorm.weight"), vec![h], 0.2, 1.0);
            for (n, o, inn) in [("self_attn.q_proj", q, h), ("self_attn.k_proj", kv, h), ("self_attn.v_proj", kv, h)] {
                add(format!("{p}.{n}.weight"), vec![o, inn], 0.3, 0.0);
                if bias {
                    add(format!("{p}.{n}.bias"), vec![o], 0.3, 0.0);
                }
            }
            add(format!("{p}.self_attn.o_proj.weight"), vec![h, q], 0.2, 0.0);
            add(format!("{p}.mlp.gate_proj.weight"), vec![f, h], 0.2, 0.0);
            add(format!("{p}.mlp.up_proj.weight"), vec![f, h], 0.2, 0.0);
            add(format!("{p}.mlp.down_proj.weight"), vec![h, f], 0.2, 0.0);
        }
        add("model.norm.weight".into(), vec![h], 0.2, 1.0);
        if !tied {
            add("lm_head.weight".into(), vec![m.vocab, h], 0.3, 0.0);
        }
        m
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.t[name].1
    }

    fn write_hf(&self, dir: &std::path::Path) {
        let config = serde_json::json!({
            "architectures": ["X"], "model_type": self.arch, "hidden_size": self.hidden,
            "intermediate_size": self.ffn, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "vocab_size": self.vocab, "rms_norm_eps": self.eps,
            "rope_theta": self.theta, "max_position_embeddings": 128, "tie_word_embeddings": self.tied,
            "attention_bias": self.bias, "hidden_act": "silu", "some_unknown_key": {"ignored": true},
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let mut names: Vec<&String> = self.t.keys().collect();
        names.sort();
        let tensors: Vec<OwnedTensor> = names
            .iter()
            .map(|n| OwnedTensor::from_float(n.as_str(), self.t[*n].0.clone(), &HalfOrFloat::F32(self.t[*n].1.clone())))
            .collect();
        write_safetensors(&dir.join("model.safetensors"), &tensors, None).unwrap();
    }

    fn gguf_bytes(&self) -> Vec<u8> {
        let a = self.arch;
        let mut w = GgufWriter::new();
        w.add_meta("general.architecture", MetaValue::String(a.into()))
            .add_meta(format!("{a}.block_count"), MetaValue::U32(self.layers as u32))
            .add_meta(format!("{a}.embedding_length"), MetaValue::U32(self.hidden as u32))
            .add_meta(format!("{a}.feed_forward_length"), MetaValue::U32(self.ffn as u32))
            .add_meta(format!("{a}.attention.head_count"), MetaValue::U32(self.heads as u32))
            .add_meta(format!("{a}.attention.head_count_kv"), MetaValue::U32(self.kv_heads as u32))
            .add_meta(format!("{a}.attention.layer_norm_rms_epsilon"), MetaValue::F32(self.eps as f32))
            .add_meta(format!("{a}.rope.freq_base"), MetaValue::F32(self.theta as f32))
            .add_meta(format!("{a}.context_length"), MetaValue::U32(128));
        // llama.cpp permutes q/k rows (and biases) of `llama` models only.
        let permute = a == "llama";
        let put = |w: &mut GgufWriter, gg: &str, hf: &str, rows_heads: Option<usize>| {
            let (shape, v) = &self.t[hf];
            let v = match rows_heads {
                Some(heads) if permute => {
                    permute_rows(v, heads, self.head_dim, shape.get(1).copied().unwrap_or(1), RowOrder::HfToGguf)
                }
                _ => v.clone(),
            };
            w.add_tensor_f32(gg, shape, &v);
        };
        put(&mut w, "token_embd.weight", "model.embed_tokens.weight", None);
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            let b = format!("blk.{i}");
            put(&mut w, &format!("{b}.attn_norm.weight"), &format!("{p}.input_layernorm.weight"), None);
            put(&mut w, &format!("{b}.ffn_norm.weight"), &format!("{p}.post_attention_layernorm.weight"), None);
            for (gg, hf, heads) in [
                ("attn_q", "self_attn.q_proj", Some(self.heads)),
                ("attn_k", "self_attn.k_proj", Some(self.kv_heads)),
                ("attn_v", "self_attn.v_proj", None),
            ] {
                put(&mut w, &format!("{b}.{gg}.weight"), &format!("{p}.{hf}.weight"), heads);
                if self.bias {
                    put(&mut w, &format!("{b}.{gg}.bias"), &format!("{p}.{hf}.bias"), heads);
                }
            }
            put(&mut w, &format!("{b}.attn_output.weight"), &format!("{p}.self_attn.o_proj.weight"), None);
            put(&mut w, &format!("{b}.ffn_gate.weight"), &format!("{p}.mlp.gate_proj.weight"), None);
            put(&mut w, &format!("{b}.ffn_up.weight"), &format!("{p}.mlp.up_proj.weight"), None);
            put(&mut w, &format!("{b}.ffn_down.weight"), &format!("{p}.mlp.down_proj.weight"), None);
        }
        put(&mut w, "output_norm.weight", "model.norm.weight", None);
        if !self.tied {
            put(&mut w, "output.weight", "lm_head.weight", None);
        }
        w.to_bytes()
    }

    /// Naive forward in f64 from the definition (HF layout, rotate-half RoPE), all logits `[n, vocab]`.
    fn forward_ref(&self, tokens: &[u32]) -> Vec<f64> {
        let (h, d, nh, nkv) = (self.hidden, self.head_dim, self.heads, self.kv_heads);
        let n = tokens.len();
        let lin = |x: &[f64], name: &str, out: usize, inn: usize, bias: Option<&str>| -> Vec<f64> {
            let w = self.get(name);
            let mut y = vec![0f64; n * out];
            for t in 0..n {
                for o in 0..out {
                    let mut acc = bias.map_or(0.0, |b| self.get(b)[o] as f64);
                    for i in 0..inn {
                        acc += x[t * inn + i] * w[o * inn + i] as f64;
                    }
                    y[t * out + o] = acc;
                }
            }
            y
        };
        let norm = |x: &[f64], name: &str| -> Vec<f64> {
            let w = self.get(name);
            let mut y = x.to_vec();
            for r in 0..x.len() / h {
                let row = &x[r * h..(r + 1) * h];
                let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / h as f64 + self.eps).sqrt();
                for i in 0..h {
                    y[r * h + i] = row[i] * inv * w[i] as f64;
                }
            }
            y
        };
        let rope = |x: &mut [f64], heads: usize| {
            for t in 0..n {
                for hh in 0..heads {
                    for i in 0..d / 2 {
                        let ang = t as f64 * self.theta.powf(-(2.0 * i as f64) / d as f64);
                        let base = t * heads * d + hh * d;
                        let (a, b) = (x[base + i], x[base + i + d / 2]);
                        x[base + i] = a * ang.cos() - b * ang.sin();
                        x[base + i + d / 2] = a * ang.sin() + b * ang.cos();
                    }
                }
            }
        };
        let emb = self.get("model.embed_tokens.weight");
        let mut x: Vec<f64> = tokens
            .iter()
            .flat_map(|&id| emb[id as usize * h..(id as usize + 1) * h].iter().map(|&v| v as f64))
            .collect();
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            let hn = norm(&x, &format!("{p}.input_layernorm.weight"));
            let bn = |s: &str| if self.bias { Some(format!("{p}.self_attn.{s}.bias")) } else { None };
            let mut q = lin(&hn, &format!("{p}.self_attn.q_proj.weight"), nh * d, h, bn("q_proj").as_deref());
            let mut k = lin(&hn, &format!("{p}.self_attn.k_proj.weight"), nkv * d, h, bn("k_proj").as_deref());
            let mut v = lin(&hn, &format!("{p}.self_attn.v_proj.weight"), nkv * d, h, bn("v_proj").as_deref());
            rope(&mut q, nh);
            rope(&mut k, nkv);
            // The KV cache stores f16: the reference rounds the same way, so the tolerance stays tight.
            for e in k.iter_mut().chain(v.iter_mut()) {
                *e = half::f16::from_f64(*e).to_f64();
            }
            let mut att = vec![0f64; n * nh * d];
            for t in 0..n {
                for hh in 0..nh {
                    let kh = hh / (nh / nkv);
                    let s: Vec<f64> = (0..=t)
                        .map(|j| {
                            (0..d).map(|c| q[t * nh * d + hh * d + c] * k[j * nkv * d + kh * d + c]).sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..d {
                        att[t * nh * d + hh * d + c] = (0..=t).map(|j| e[j] / z * v[j * nkv * d + kh * d + c]).sum();
                    }
                }
            }
            let o = lin(&att, &format!("{p}.self_attn.o_proj.weight"), h, nh * d, None);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let hn = norm(&x, &format!("{p}.post_attention_layernorm.weight"));
            let g = lin(&hn, &format!("{p}.mlp.gate_proj.weight"), self.ffn, h, None);
            let u = lin(&hn, &format!("{p}.mlp.up_proj.weight"), self.ffn, h, None);
            let act: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let dn = lin(&act, &format!("{p}.mlp.down_proj.weight"), h, self.ffn, None);
            x.iter_mut().zip(&dn).for_each(|(a, b)| *a += b);
        }
        let xn = norm(&x, "model.norm.weight");
        let head = if self.tied { "model.embed_tokens.weight" } else { "lm_head.weight" };
        lin(&xn, head, self.vocab, h, None)
    }
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

fn check(arch: &'static str, bias: bool, tied: bool) {
    let m = Tiny::new(arch, bias, tied);
    let dir = tempfile::tempdir().unwrap();
    m.write_hf(dir.path());
    let gguf = GgufFile::from_bytes("tiny.gguf".into(), m.gguf_bytes()).unwrap();
    let from_gguf = load_gguf_weights(&gguf, &LoadOptions::default()).unwrap();
    let from_hf = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap();
    let tokens: Vec<u32> = (0..11).map(|i| (i * 37 + 5) % m.vocab as u32).collect();
    let want = m.forward_ref(&tokens);
    for model in [&from_gguf, &from_hf] {
        // Batched prefill of all tokens.
        let mut cache = KvCache::new(&model.config, 64);
        let all = model.forward(&tokens, &mut cache, LogitsMode::All).unwrap();
        assert!(max_abs_diff(&all, &want) < 1e-3, "{arch}: prefill diff {}", max_abs_diff(&all, &want));
        // Prefill of 4 then one token at a time gives the same logits per position.
        let mut cache = KvCache::new(&model.config, 64);
        let mut stepped = model.forward(&tokens[..4], &mut cache, LogitsMode::All).unwrap();
        for &t in &tokens[4..] {
            stepped.extend(model.forward(&[t], &mut cache, LogitsMode::Last).unwrap());
        }
        assert!(max_abs_diff(&stepped, &want) < 1e-3, "{arch}: decode diff {}", max_abs_diff(&stepped, &want));
    }
    // Half-precision weights stay close.
    let f16 = load_hf_weights(dir.path(), &LoadOptions { dtype: WeightDtype::F16, ..Default::default() }).unwrap();
    let mut cache = KvCache::new(&f16.config, 64);
    let logits = f16.forward(&tokens, &mut cache, LogitsMode::All).unwrap();
    assert!(max_abs_diff(&logits, &want) < 5e-2);
    // `kv_cache: F32` reaches the caches the model makes: twice the bytes, and logits that skip the f16 rounding
    // of K and V (which the reference applies), so not bit-identical to the default's but close to them.
    let f32_kv =
        load_hf_weights(dir.path(), &LoadOptions { kv_cache: KvPrecision::F32, ..Default::default() }).unwrap();
    let (mut c16, mut c32) = (from_hf.new_cache(64), f32_kv.new_cache(64));
    let l16 = from_hf.forward(&tokens, &mut c16, LogitsMode::All).unwrap();
    let l32 = f32_kv.forward(&tokens, &mut c32, LogitsMode::All).unwrap();
    assert_eq!(c32.n_bytes(), 2 * c16.n_bytes());
    assert_ne!(l16, l32, "{arch}: the f32 cache changed nothing");
    let diff = l16.iter().zip(&l32).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 5e-2, "{arch}: f16 against f32 cache {diff}");
}

#[test]
fn llama_gguf_and_hf_match_reference() {
    check("llama", false, true);
}

#[test]
fn llama_untied_head_matches_reference() {
    check("llama", false, false);
}

#[test]
fn qwen2_with_bias_matches_reference() {
    check("qwen2", true, false);
}

#[test]
fn wrong_rope_layout_is_detected() {
    // Loading the GGUF (permuted) weights but forcing the HF rotation must change the logits: the test above
    // would catch a layout mix-up.
    let m = Tiny::new("llama", false, true);
    let gguf = GgufFile::from_bytes("tiny.gguf".into(), m.gguf_bytes()).unwrap();
    let mut model = load_gguf_weights(&gguf, &LoadOptions::default()).unwrap();
    model.config.rope_layout = vptq_model::config::RopeLayout::HalfSplit;
    let model = vptq_model::Llama::new(
        model.config.clone(),
        model.embed.clone(),
        model.blocks.clone(),
        model.norm.clone(),
        None,
    );
    let tokens = [1u32, 2, 3, 4, 5];
    let mut cache = KvCache::new(&model.config, 64);
    let got = model.forward(&tokens, &mut cache, LogitsMode::All).unwrap();
    assert!(max_abs_diff(&got, &m.forward_ref(&tokens)) > 1e-3);
}
