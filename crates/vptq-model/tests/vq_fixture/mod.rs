//! Test-only writer of tiny VPTQ model folders, written from vptq-spec.md §2 directly (its own bit packer and
//! its own per-element dequantization formula; nothing shared with the reader or the kernels), plus the dense
//! folder of the same model with the reconstructed weights.

use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};

/// Dimensions of the tiny decoder (as in tests/tiny_model.rs).
pub const HIDDEN: usize = 64;
pub const FFN: usize = 96;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 16;
pub const VOCAB: usize = 300;

/// Stored precision of codebooks and scale/offset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prec {
    F32,
    F16,
    Bf16,
}

impl Prec {
    fn round(self, x: f32) -> f32 {
        match self {
            Prec::F32 => x,
            Prec::F16 => f16::from_f32(x).to_f32(),
            Prec::Bf16 => bf16::from_f32(x).to_f32(),
        }
    }
    fn encode(self, v: &[f32]) -> HalfOrFloat {
        match self {
            Prec::F32 => HalfOrFloat::F32(v.to_vec()),
            Prec::F16 => HalfOrFloat::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            Prec::Bf16 => HalfOrFloat::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }
}

/// Quantization parameters of one linear.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub v: usize,
    pub k: usize,
    /// 0 = no residual.
    pub kr: usize,
    pub groups: usize,
    /// 0 = no outliers.
    pub outliers: usize,
    pub v0: usize,
    pub k0: usize,
    pub perm: bool,
    pub norm: bool,
    pub prec: Prec,
}

impl Spec {
    pub const fn new(v: usize, k: usize, kr: usize) -> Self {
        Spec { v, k, kr, groups: 1, outliers: 0, v0: 0, k0: 0, perm: true, norm: true, prec: Prec::F16 }
    }
}

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [−scale, scale].
    pub fn float(&mut self, scale: f32) -> f32 {
        ((self.next() % 20001) as f32 / 10000.0 - 1.0) * scale
    }
}

/// One quantized linear: what is written and the dense weight it must reconstruct to.
pub struct QLayer {
    pub name: String,
    pub spec: Spec,
    pub m: usize,
    pub n: usize,
    pub bias: Option<Vec<f32>>,
    /// Tensors in the §2.2 layout, by full name.
    pub tensors: Vec<OwnedTensor>,
    /// Expected Ŵ `[m, n]`.
    pub weight: Vec<f32>,
}

fn bytes_u32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_u16(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// LSB-first bit stream of `bits`-wide values, zero-padded to 32-bit words, written one bit at a time.
pub fn pack_bitwise(values: &[u64], bits: usize) -> Vec<u32> {
    let mut words = vec![0u32; (values.len() * bits).div_ceil(32)];
    for (g, &val) in values.iter().enumerate() {
        for t in 0..bits {
            if (val >> t) & 1 == 1 {
                let pos = g * bits + t;
                words[pos / 32] |= 1 << (pos % 32);
            }
        }
    }
    words
}

fn log2(x: usize) -> usize {
    x.trailing_zeros() as usize
}

impl QLayer {
    /// Random codebooks / indices / perm / scale for an `[m, n]` linear.
    pub fn random(name: &str, m: usize, n: usize, bias: bool, s: Spec, rng: &mut Rng) -> Self {
        let (v, g_num, os) = (s.v, s.groups, s.outliers);
        let gs = (n - os) / g_num;
        assert_eq!(gs * g_num + os, n, "fixture spec");
        let ni = m.div_ceil(v);
        let cb = |rng: &mut Rng, len: usize, scale: f32| -> Vec<f32> {
            (0..len).map(|_| s.prec.round(rng.float(scale))).collect()
        };
        let centroids = cb(rng, g_num * s.k * v, 0.3); // [G, k·v]
        let res_centroids = cb(rng, g_num * s.kr * v, 0.05); // [G, kr·v]
        let main: Vec<usize> = (0..g_num * ni * gs).map(|_| rng.below(s.k)).collect(); // [G, ni, gs]
        let res: Vec<usize> = (0..g_num * ni * gs).map(|_| if s.kr > 0 { rng.below(s.kr) } else { 0 }).collect();
        let ni0 = if os > 0 { m.div_ceil(s.v0) } else { 0 };
        let out_cb = cb(rng, s.k0 * s.v0, 0.5); // [1, k0·v0]
        let out_idx: Vec<u16> = (0..ni0 * os).map(|_| rng.below(s.k0) as u16).collect(); // [ni0, os]
        let mut perm: Vec<u16> = (0..n as u16).collect();
        if s.perm {
            for i in (1..n).rev() {
                perm.swap(i, rng.below(i + 1));
            }
        }
        let scale: Vec<f32> = (0..n).map(|_| if s.norm { s.prec.round(1.0 + rng.float(0.5)) } else { 1.0 }).collect();
        let offset: Vec<f32> = (0..n).map(|_| if s.norm { s.prec.round(rng.float(0.05)) } else { 0.0 }).collect();
        let bias = bias.then(|| (0..m).map(|_| rng.float(0.2)).collect::<Vec<f32>>());

        // Ŵ per element (§2.4, read as: permuted column q holds original column perm[q]).
        let mut weight = vec![0f32; m * n];
        for r in 0..m {
            for (q, &pq) in perm.iter().enumerate() {
                let j = pq as usize;
                let val = if q < os {
                    out_cb[out_idx[(r / s.v0) * os + q] as usize * s.v0 + r % s.v0]
                } else {
                    let (c, g) = ((q - os) / gs, (q - os) % gs);
                    let at = (c * ni + r / v) * gs + g;
                    let cv = centroids[(c * s.k + main[at]) * v + r % v];
                    if s.kr > 0 {
                        cv + res_centroids[(c * s.kr + res[at]) * v + r % v]
                    } else {
                        cv
                    }
                };
                weight[r * n + j] = val * scale[j] + offset[j];
            }
        }

        let (b, rb) = (log2(s.k), if s.kr > 0 { log2(s.kr) } else { 0 });
        let mut words = Vec::new();
        for row in 0..g_num * ni {
            let merged: Vec<u64> =
                (0..gs).map(|g| ((res[row * gs + g] as u64) << b) | main[row * gs + g] as u64).collect();
            words.extend(pack_bitwise(&merged, b + rb));
        }
        let p = (gs * (b + rb)).div_ceil(32);
        let mut tensors = vec![
            OwnedTensor::from_float(
                format!("{name}.centroids.weight"),
                vec![g_num, s.k * v],
                &s.prec.encode(&centroids),
            ),
            OwnedTensor {
                name: format!("{name}.indices"),
                dtype: Dtype::I32,
                shape: vec![g_num, ni, p],
                data: bytes_u32(&words),
            },
        ];
        if s.kr > 0 {
            let t = OwnedTensor::from_float(
                format!("{name}.res_centroids.weight"),
                vec![g_num, s.kr * v],
                &s.prec.encode(&res_centroids),
            );
            tensors.push(t);
        }
        if s.perm {
            tensors.push(OwnedTensor {
                name: format!("{name}.perm"),
                dtype: Dtype::I16,
                shape: vec![n],
                data: bytes_u16(&perm),
            });
        }
        if s.norm {
            tensors.push(OwnedTensor::from_float(format!("{name}.weight_scale"), vec![n], &s.prec.encode(&scale)));
            tensors.push(OwnedTensor::from_float(format!("{name}.weight_bias"), vec![n], &s.prec.encode(&offset)));
        }
        if let Some(bv) = &bias {
            tensors.push(OwnedTensor::from_float(format!("{name}.bias"), vec![m], &HalfOrFloat::F32(bv.clone())));
        }
        if os > 0 {
            tensors.push(OwnedTensor::from_float(
                format!("{name}.outlier_centroids.weight"),
                vec![1, s.k0 * s.v0],
                &s.prec.encode(&out_cb),
            ));
            tensors.push(OwnedTensor {
                name: format!("{name}.outlier_indices"),
                dtype: Dtype::I16,
                shape: vec![1, ni0, os],
                data: bytes_u16(&out_idx),
            });
        }
        QLayer { name: name.to_string(), spec: s, m, n, bias, tensors, weight }
    }

    /// The per-layer dict of `config_for_layers`. "None" is written −1 or 0 depending on `none_as_zero`.
    pub fn config(&self, none_as_zero: bool) -> Value {
        let s = &self.spec;
        let none = if none_as_zero { 0 } else { -1 };
        let opt = |x: usize| if x > 0 { x as i64 } else { none };
        json!({
            "in_features": self.n, "out_features": self.m,
            "vector_lens": [if s.outliers > 0 { s.v0 as i64 } else { -1 }, s.v],
            "num_centroids": [if s.outliers > 0 { s.k0 as i64 } else { -1 }, s.k],
            "num_res_centroids": [-1, opt(s.kr)],
            "group_num": s.groups, "group_size": (self.n - s.outliers) / s.groups, "outlier_size": s.outliers,
            "enable_norm": s.norm, "enable_perm": s.perm, "is_indice_packed": true, "indices_as_float": false,
            "bias": self.bias.is_some(), "enable_proxy_error": false,
        })
    }
}

/// How the VPTQ map is written in config.json.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigStyle {
    /// `quantization_config.config_for_layers` keyed by full module path.
    ForLayers,
    /// `quantization_config.shared_layer_config` keyed by short name (specs must then agree across layers).
    Shared,
    /// Legacy top-level `quant_config` flat map.
    Legacy,
}

/// A tiny model: dense tensors (norms, embeddings, head, unquantized linears) and quantized layers.
pub struct Model {
    pub arch: &'static str,
    pub layers: usize,
    pub qkv_bias: bool,
    pub tied: bool,
    pub dense: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub quant: Vec<QLayer>,
    pub not_convert: Vec<String>,
}

/// The seven projections: (path under the layer, short name, out, in).
pub fn projections() -> [(&'static str, &'static str, usize, usize); 7] {
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    [
        ("self_attn.q_proj", "q_proj", q, HIDDEN),
        ("self_attn.k_proj", "k_proj", kv, HIDDEN),
        ("self_attn.v_proj", "v_proj", kv, HIDDEN),
        ("self_attn.o_proj", "o_proj", HIDDEN, q),
        ("mlp.gate_proj", "gate_proj", FFN, HIDDEN),
        ("mlp.up_proj", "up_proj", FFN, HIDDEN),
        ("mlp.down_proj", "down_proj", HIDDEN, FFN),
    ]
}

impl Model {
    /// Builds a model; `spec(layer, short_name)` gives the quantization of each projection (`None` = dense).
    pub fn new(
        arch: &'static str,
        layers: usize,
        tied: bool,
        seed: u64,
        spec: impl Fn(usize, &str) -> Option<Spec>,
    ) -> Self {
        let qkv_bias = arch == "qwen2";
        let mut rng = Rng(seed);
        let mut dense = BTreeMap::new();
        let mut add = |rng: &mut Rng, name: String, shape: Vec<usize>, scale: f32, offset: f32| {
            let v = (0..shape.iter().product::<usize>()).map(|_| rng.float(scale) + offset).collect();
            dense.insert(name, (shape, v));
        };
        add(&mut rng, "model.embed_tokens.weight".into(), vec![VOCAB, HIDDEN], 1.0, 0.0);
        add(&mut rng, "model.norm.weight".into(), vec![HIDDEN], 0.2, 1.0);
        if !tied {
            add(&mut rng, "lm_head.weight".into(), vec![VOCAB, HIDDEN], 0.3, 0.0);
        }
        let mut quant = Vec::new();
        for l in 0..layers {
            let p = format!("model.layers.{l}");
            add(&mut rng, format!("{p}.input_layernorm.weight"), vec![HIDDEN], 0.2, 1.0);
            add(&mut rng, format!("{p}.post_attention_layernorm.weight"), vec![HIDDEN], 0.2, 1.0);
            for (path, short, out, inn) in projections() {
                let name = format!("{p}.{path}");
                let bias = qkv_bias && matches!(short, "q_proj" | "k_proj" | "v_proj");
                match spec(l, short) {
                    Some(s) => quant.push(QLayer::random(&name, out, inn, bias, s, &mut rng)),
                    None => {
                        add(&mut rng, format!("{name}.weight"), vec![out, inn], 0.2, 0.0);
                        if bias {
                            add(&mut rng, format!("{name}.bias"), vec![out], 0.2, 0.0);
                        }
                    }
                }
            }
        }
        Model { arch, layers, qkv_bias, tied, dense, quant, not_convert: Vec::new() }
    }

    fn base_config(&self) -> Value {
        json!({
            "architectures": ["X"], "model_type": self.arch, "hidden_size": HIDDEN, "intermediate_size": FFN,
            "num_hidden_layers": self.layers, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
            "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
            "tie_word_embeddings": self.tied, "attention_bias": self.qkv_bias, "hidden_act": "silu",
        })
    }

    /// config.json of the VPTQ folder.
    pub fn vq_config(&self, style: ConfigStyle) -> Value {
        let mut c = self.base_config();
        let per_layer: serde_json::Map<String, Value> =
            self.quant.iter().enumerate().map(|(i, q)| (q.name.clone(), q.config(i % 2 == 1))).collect();
        match style {
            ConfigStyle::ForLayers | ConfigStyle::Shared => {
                let mut qc = json!({"quant_method": "vptq", "modules_to_not_convert": self.not_convert});
                if style == ConfigStyle::ForLayers {
                    qc["config_for_layers"] = Value::Object(per_layer);
                } else {
                    let shared: serde_json::Map<String, Value> =
                        per_layer.into_iter().map(|(k, v)| (k.rsplit('.').next().unwrap().to_string(), v)).collect();
                    qc["shared_layer_config"] = Value::Object(shared);
                }
                c["quantization_config"] = qc;
            }
            ConfigStyle::Legacy => c["quant_config"] = Value::Object(per_layer),
        }
        c
    }

    /// All tensors of the VPTQ folder.
    pub fn vq_tensors(&self) -> Vec<OwnedTensor> {
        let mut t: Vec<OwnedTensor> = self
            .dense
            .iter()
            .map(|(n, (shape, v))| OwnedTensor::from_float(n.as_str(), shape.clone(), &HalfOrFloat::F32(v.clone())))
            .collect();
        t.extend(self.quant.iter().flat_map(|q| q.tensors.iter().cloned()));
        t
    }

    /// Writes the VPTQ folder, with `config` and `tensors` (possibly altered by a test).
    pub fn write_vq(dir: &Path, config: &Value, tensors: &[OwnedTensor]) {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        write_safetensors(&dir.join("model.safetensors"), tensors, None).unwrap();
    }

    /// Writes the dense folder of the same model: reconstructed weights for quantized layers.
    pub fn write_dense(&self, dir: &Path) {
        std::fs::write(dir.join("config.json"), self.base_config().to_string()).unwrap();
        let mut t: Vec<OwnedTensor> = self
            .dense
            .iter()
            .map(|(n, (shape, v))| OwnedTensor::from_float(n.as_str(), shape.clone(), &HalfOrFloat::F32(v.clone())))
            .collect();
        for q in &self.quant {
            t.push(OwnedTensor::from_float(
                format!("{}.weight", q.name),
                vec![q.m, q.n],
                &HalfOrFloat::F32(q.weight.clone()),
            ));
            if let Some(b) = &q.bias {
                t.push(OwnedTensor::from_float(format!("{}.bias", q.name), vec![q.m], &HalfOrFloat::F32(b.clone())));
            }
        }
        write_safetensors(&dir.join("model.safetensors"), &t, None).unwrap();
    }
}
