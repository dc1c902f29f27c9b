//! Whole-model quantization, reference mode (vptq-spec.md §1.1): run calibration tokens through the
//! full-precision model capturing every linear's input into Hessian accumulators ([`collect_hessians`]),
//! quantize the selected decoder linears ([`quantize_model`]) and write the Hugging Face VPTQ folder
//! ([`write_vptq_folder`]).
//!
//! The only file of this crate that knows the model (`vptq-model`); the model has no hooks, so
//! [`forward_capture`] re-runs the decoder from its public pieces, mirroring `Llama::forward` (checked by a
//! test to give the same logits). Q/K rows of GGUF-sourced models (interleaved RoPE) are un-permuted to the
//! Hugging Face order before quantization, so the written folder is in HF order throughout.

use crate::algo::hessian::HessianAccumulator;
use crate::config::VqConfig;
use crate::error::QuantError;
use crate::layer::{quantize_linear_prepared, PreparedHessian, QuantizedLinear};
use std::path::Path;
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_format::vptq::{layer_config_json, vq_owned_tensors, VqLayerData, VqLayout, QUANT_METHOD_VPTQ};
use vptq_format::FormatError;
use vptq_kernels::ops::RopeLayout;
use vptq_model::export::{hf_config_json, permute_rows, write_dir_atomic, ExportDtype, RowOrder};
use vptq_model::{KvCache, Linear, Llama, LogitsMode, ModelError, Tokenizer};

/// Errors of the whole-model pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A per-layer quantizer error, with the module it happened in.
    #[error("{module}: {source}")]
    Quant {
        /// Full module path (`model.layers.0.self_attn.q_proj`), or `*` for Hessian collection.
        module: String,
        /// The quantizer error.
        source: QuantError,
    },
    /// Model errors (bad calibration token, IO while writing the folder).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A quantized layer that does not form valid VPTQ tensors.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A request that cannot be served (e.g. re-quantizing a VPTQ layer).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result alias of the pipeline.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

fn quant_err(module: impl Into<String>) -> impl FnOnce(QuantError) -> PipelineError {
    let module = module.into();
    move |source| PipelineError::Quant { module, source }
}

/// Which linear input a captured activation is (the model's own observation points).
pub use vptq_model::LinearInput as Site;

/// The four Hessian accumulators of one decoder block.
#[derive(Debug, Clone)]
pub struct BlockHessians {
    /// Shared by q_proj, k_proj, v_proj.
    pub qkv: HessianAccumulator,
    /// o_proj.
    pub o: HessianAccumulator,
    /// Shared by gate_proj, up_proj.
    pub up: HessianAccumulator,
    /// down_proj.
    pub down: HessianAccumulator,
}

impl BlockHessians {
    fn site(&mut self, s: Site) -> &mut HessianAccumulator {
        match s {
            Site::Qkv => &mut self.qkv,
            Site::O => &mut self.o,
            Site::Up => &mut self.up,
            Site::Down => &mut self.down,
        }
    }
}

/// Runs one sequence `tokens` (positions 0…) through `model` in full precision, calling
/// `capture(layer, site, x)` with every linear input `x [n, in_features]`; returns all logits `[n, vocab]`.
/// Uses the model's own forward pass ([`Llama::forward_observed`]), so capture and inference cannot drift apart.
///
/// # Errors
/// An empty sequence, a token outside the vocabulary, or whatever `capture` returns.
pub fn forward_capture(
    model: &Llama,
    tokens: &[u32],
    mut capture: impl FnMut(usize, Site, &[f32]) -> Result<()>,
) -> Result<Vec<f32>> {
    if tokens.is_empty() {
        return Err(PipelineError::InvalidArgument("calibration sequence is empty".into()));
    }
    let mut cache = KvCache::new(&model.config, tokens.len());
    // The observer cannot return an error: keep the first one and report it after the pass.
    let mut failed: Option<PipelineError> = None;
    let logits = model.forward_observed(tokens, &mut cache, LogitsMode::All, &mut |layer, site, x| {
        if failed.is_none() {
            if let Err(e) = capture(layer, site, x) {
                failed = Some(e);
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(logits),
    }
}

/// Accumulates `E[x xᵀ]` of every decoder linear's input over the calibration sequences (reference mode: the
/// full-precision model's activations). One entry per block.
///
/// # Errors
/// As [`forward_capture`]; non-finite activations.
pub fn collect_hessians(model: &Llama, calib_tokens: &[Vec<u32>]) -> Result<Vec<BlockHessians>> {
    let c = &model.config;
    let mut hs: Vec<BlockHessians> = (0..model.blocks.len())
        .map(|_| BlockHessians {
            qkv: HessianAccumulator::new(c.hidden_size),
            o: HessianAccumulator::new(c.n_heads * c.head_dim),
            up: HessianAccumulator::new(c.hidden_size),
            down: HessianAccumulator::new(c.intermediate_size),
        })
        .collect();
    for seq in calib_tokens {
        forward_capture(model, seq, |layer, site, x| hs[layer].site(site).add_batch(x).map_err(quant_err("*")))?;
    }
    Ok(hs)
}

/// Progress of [`quantize_model`], reported after each layer.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Layers done so far (this one included).
    pub done: usize,
    /// Layers selected in total.
    pub total: usize,
    /// The layer just quantized.
    pub module: &'a str,
    /// Its result.
    pub layer: &'a QuantizedLinear,
}

/// `(group, short name, site)` of the seven decoder linears, in `Block::linears` order.
const LINEARS: [(&str, &str, Site); 7] = [
    ("self_attn", "q_proj", Site::Qkv),
    ("self_attn", "k_proj", Site::Qkv),
    ("self_attn", "v_proj", Site::Qkv),
    ("self_attn", "o_proj", Site::O),
    ("mlp", "gate_proj", Site::Up),
    ("mlp", "up_proj", Site::Up),
    ("mlp", "down_proj", Site::Down),
];

/// Full Hugging Face module path of a decoder linear.
pub fn module_name(layer: usize, short: &str) -> String {
    let group = LINEARS.iter().find(|l| l.1 == short).map_or("mlp", |l| l.0);
    format!("model.layers.{layer}.{group}.{short}")
}

/// True when `name` is selected: it contains some `include` pattern (or `include` is empty) and no `exclude`
/// pattern (substring match, like `modules_to_not_convert`).
pub fn is_selected(name: &str, include: &[String], exclude: &[String]) -> bool {
    (include.is_empty() || include.iter().any(|p| name.contains(p.as_str())))
        && !exclude.iter().any(|p| !p.is_empty() && name.contains(p.as_str()))
}

/// The weight `[M, N]` of a dense linear in f32, rows in Hugging Face order.
fn hf_weight(model: &Llama, short: &str, l: &Linear, module: &str) -> Result<Vec<f32>> {
    let Linear::Dense(d) = l else {
        return Err(PipelineError::InvalidArgument(format!("{module} is already VPTQ-quantized")));
    };
    let mut w = vec![0f32; d.weight.len()]; // [M, N]
    d.weight.view().to_f32_range(0, &mut w);
    Ok(hf_rows(model, short, w, l.in_features()))
}

/// Un-permutes q/k rows (or biases, `cols = 1`) of GGUF-sourced models to the Hugging Face order.
fn hf_rows(model: &Llama, short: &str, w: Vec<f32>, cols: usize) -> Vec<f32> {
    let c = &model.config;
    match short {
        "q_proj" | "k_proj" if c.rope_layout == RopeLayout::Interleaved => {
            let heads = if short == "q_proj" { c.n_heads } else { c.n_kv_heads };
            permute_rows(&w, heads, c.head_dim, cols, RowOrder::GgufToHf)
        }
        _ => w,
    }
}

/// Quantizes the selected decoder linears with `cfg`; q/k/v share one [`PreparedHessian`], as do gate/up.
/// Weights are quantized in Hugging Face row order. Returns `(module path, layer)` in model order.
///
/// # Errors
/// Hessians that do not match the model, a layer that is already VPTQ, quantizer errors (naming the module).
pub fn quantize_model(
    model: &Llama,
    hessians: &[BlockHessians],
    cfg: &VqConfig,
    include: &[String],
    exclude: &[String],
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Vec<(String, QuantizedLinear)>> {
    if hessians.len() != model.blocks.len() {
        return Err(PipelineError::InvalidArgument(format!(
            "{} Hessian sets for {} blocks",
            hessians.len(),
            model.blocks.len()
        )));
    }
    let selected: Vec<(usize, usize)> = (0..model.blocks.len())
        .flat_map(|b| (0..LINEARS.len()).map(move |i| (b, i)))
        .filter(|&(b, i)| is_selected(&module_name(b, LINEARS[i].1), include, exclude))
        .collect();
    let total = selected.len();
    let mut out = Vec::with_capacity(total);
    let mut prepared: Option<(usize, Site, PreparedHessian)> = None;
    for (b, i) in selected {
        let (_, short, site) = LINEARS[i];
        let module = module_name(b, short);
        let block = &model.blocks[b];
        let lin = block.linears()[i].1;
        if !matches!(&prepared, Some((pb, ps, _)) if *pb == b && *ps == site) {
            let hs = &hessians[b];
            let acc = match site {
                Site::Qkv => &hs.qkv,
                Site::O => &hs.o,
                Site::Up => &hs.up,
                Site::Down => &hs.down,
            };
            let n = acc.in_features();
            if n != lin.in_features() {
                return Err(PipelineError::InvalidArgument(format!(
                    "{module}: Hessian is {n} wide, the layer has {} inputs",
                    lin.in_features()
                )));
            }
            let h = acc.finish().map_err(quant_err(&module))?;
            prepared = Some((b, site, PreparedHessian::new(&h, n, cfg).map_err(quant_err(&module))?));
        }
        let ph = &prepared.as_ref().expect("invariant: prepared just above").2;
        let w = hf_weight(model, short, lin, &module)?;
        let started = std::time::Instant::now();
        let mut q = quantize_linear_prepared(&w, lin.out_features(), ph, cfg).map_err(quant_err(&module))?;
        q.report.secs = started.elapsed().as_secs_f64();
        out.push((module, q));
        let (module, layer) = out.last().expect("invariant: just pushed");
        progress(Progress { done: out.len(), total, module, layer });
    }
    Ok(out)
}

/// The packed-format data of one quantized layer; `bias` is the layer's bias `[M]` in HF row order.
///
/// # Errors
/// [`PipelineError::Format`] when the layer does not form a valid VPTQ layout.
pub fn vq_layer_data(module: &str, q: &QuantizedLinear, bias: Option<Vec<f32>>) -> Result<VqLayerData> {
    let o = q.outlier.as_ref();
    let layout = VqLayout {
        in_features: q.in_features,
        out_features: q.out_features,
        vector_len: q.vector_len,
        num_centroids: q.num_centroids,
        num_res_centroids: q.num_res_centroids,
        group_num: q.group_num,
        group_size: q.group_size,
        outlier_size: q.outlier_size,
        outlier_vector_len: o.map_or(0, |o| o.vector_len),
        outlier_num_centroids: o.map_or(0, |o| o.num_centroids),
        enable_norm: q.enable_norm,
        enable_perm: q.enable_perm,
        bias: bias.is_some(),
    };
    let residual = q.num_res_centroids > 0;
    let data = VqLayerData {
        layout,
        centroids: q.centroids.clone(),
        res_centroids: residual.then(|| q.res_centroids.clone()),
        indices: q.indices.clone(),
        res_indices: residual.then(|| q.res_indices.clone()),
        perm: q.enable_perm.then(|| q.perm.clone()),
        weight_scale: q.enable_norm.then(|| q.weight_scale.clone()),
        weight_bias: q.enable_norm.then(|| q.weight_bias.clone()),
        bias,
        outlier_centroids: o.map(|o| o.centroids.clone()),
        outlier_indices: o.map(|o| o.indices.iter().map(|&x| x as u16).collect()),
    };
    // Check here so that a bad layer is reported before anything is written.
    data.to_vq_tensors().map_err(|e| FormatError::vptq("<quantizer>", module, e))?;
    Ok(data)
}

/// Writes the quantized model as a Hugging Face VPTQ folder at `out` (atomically): `config.json` with
/// `quantization_config`, `model.safetensors` (quantized layers packed, everything else dense f16, HF row
/// order), the tokenizer files when given, and `quantization_report.json` (per layer proxy error, seconds,
/// layout).
///
/// # Errors
/// Output exists (without `force`), a layer that is already VPTQ, invalid quantized layers, IO errors.
pub fn write_vptq_folder(
    model: &Llama,
    tokenizer: Option<&Tokenizer>,
    quantized: &[(String, QuantizedLinear)],
    out: &Path,
    force: bool,
) -> Result<()> {
    let c = &model.config;
    let dtype = ExportDtype::F16;
    let f16 = |v: Vec<f32>| HalfOrFloat::F16(v.into_iter().map(half_f16).collect());
    let mut tensors: Vec<OwnedTensor> = Vec::new();
    let mut layers = serde_json::Map::new();
    let mut report = serde_json::Map::new();
    let mut embed = vec![0f32; model.embed.weight.len()]; // [vocab, hidden]
    model.embed.weight.view().to_f32_range(0, &mut embed);
    tensors.push(OwnedTensor::from_float("model.embed_tokens.weight", vec![c.vocab_size, c.hidden_size], &f16(embed)));
    for (b, block) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{b}");
        let norms = [("input_layernorm", &block.attn_norm), ("post_attention_layernorm", &block.ffn_norm)];
        for (name, w) in norms {
            tensors.push(OwnedTensor::from_float(format!("{p}.{name}.weight"), vec![c.hidden_size], &f16(w.clone())));
        }
        for (short, lin) in block.linears() {
            let module = module_name(b, short);
            let bias = match lin {
                Linear::Dense(d) => d.bias.clone(),
                Linear::Vq(v) => v.tensors.bias.clone(),
            }
            .map(|bias| hf_rows(model, short, bias, 1));
            if let Some((_, q)) = quantized.iter().find(|(m, _)| *m == module) {
                let data = vq_layer_data(&module, q, bias)?;
                let t = data.to_vq_tensors().map_err(|e| FormatError::vptq("<quantizer>", module.as_str(), e))?;
                tensors.extend(vq_owned_tensors(&module, &t));
                layers.insert(module.clone(), layer_config_json(&data.layout));
                report.insert(
                    module.clone(),
                    serde_json::json!({"proxy_err": q.report.proxy_err, "secs": q.report.secs,
                        "kmeans_secs": q.report.kmeans_secs, "loop_secs": q.report.loop_secs,
                        "layout": data.layout.describe(), "config": layer_config_json(&data.layout)}),
                );
            } else {
                let w = hf_weight(model, short, lin, &module)?;
                let shape = vec![lin.out_features(), lin.in_features()];
                tensors.push(OwnedTensor::from_float(format!("{module}.weight"), shape, &f16(w)));
                if let Some(bias) = bias {
                    tensors.push(OwnedTensor::from_float(format!("{module}.bias"), vec![bias.len()], &f16(bias)));
                }
            }
        }
    }
    tensors.push(OwnedTensor::from_float("model.norm.weight", vec![c.hidden_size], &f16(model.norm.clone())));
    if let Some(h) = &model.head {
        let w = hf_weight(model, "lm_head", h, "lm_head")?;
        tensors.push(OwnedTensor::from_float("lm_head.weight", vec![c.vocab_size, c.hidden_size], &f16(w)));
    }
    let mut config = hf_config_json(c, tokenizer, dtype);
    config["quantization_config"] = serde_json::json!({
        "quant_method": QUANT_METHOD_VPTQ,
        "config_for_layers": layers,
        "shared_layer_config": {},
    });
    let report = serde_json::Value::Object(report);
    let json =
        |v: &serde_json::Value| serde_json::to_string_pretty(v).map_err(|e| ModelError::InvalidArgument(e.to_string()));
    write_dir_atomic(out, force, |dir| {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        write_safetensors(&dir.join("model.safetensors"), &tensors, Some(meta))?;
        vptq_format::atomic::write_bytes_atomic(&dir.join("config.json"), json(&config)?.as_bytes())?;
        vptq_format::atomic::write_bytes_atomic(&dir.join("quantization_report.json"), json(&report)?.as_bytes())?;
        if let Some(t) = tokenizer {
            t.save_hf_files(dir)?;
            let generation = json(&t.generation_config_json())?;
            vptq_format::atomic::write_bytes_atomic(&dir.join("generation_config.json"), generation.as_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}

fn half_f16(x: f32) -> half::f16 {
    half::f16::from_f32(x)
}

#[cfg(test)]
mod tests;
