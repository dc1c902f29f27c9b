//! Whole-model quantization (vptq-spec.md §1.1): calibration windows ([`calibration_windows`]), the
//! block-streaming driver with reference or sequential calibration ([`quantize_model`]), per-layer checkpoints
//! ([`Checkpoint`]) and the Hugging Face VPTQ folder writer ([`write_vptq_folder`]).
//!
//! The only part of this crate that knows the model (`vptq-model`). Q/K rows of GGUF-sourced models
//! (interleaved RoPE) are un-permuted to the Hugging Face order before quantization, so results and the
//! written folder are in HF order throughout.

mod calib;
mod checkpoint;
mod driver;
mod result;
mod write;

pub use calib::calibration_windows;
pub use checkpoint::Checkpoint;
pub use driver::{quantize_model, CalibMode, Event, LayerOverride, QuantizeOptions};
pub use result::{LayerResult, LayerStats, LayerWeights, Method};
pub use write::write_vptq_folder;

use crate::error::QuantError;
use crate::layer::QuantizedLinear;
use std::path::PathBuf;
use vptq_format::vptq::{VqLayerData, VqLayout};
use vptq_format::FormatError;
use vptq_kernels::ops::RopeLayout;
use vptq_model::export::{permute_rows, RowOrder};
use vptq_model::{KvCache, KvPrecision, Linear, Llama, LogitsMode, ModelError};

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
    /// A checkpoint folder that cannot be used.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of the pipeline.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

pub(crate) fn quant_err(module: impl Into<String>) -> impl FnOnce(QuantError) -> PipelineError {
    let module = module.into();
    move |source| PipelineError::Quant { module, source }
}

/// Which linear input a captured activation is (the model's own observation points).
pub use vptq_model::LinearInput as Site;

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
    // Calibration sees keys and values unrounded, as the model computes them.
    let mut cache = KvCache::with_precision(&model.config, tokens.len(), KvPrecision::F32);
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

/// `(group, short name, site)` of the seven decoder linears, in `Block::linears` order.
pub(crate) const LINEARS: [(&str, &str, Site); 7] = [
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
pub(crate) fn hf_weight(model: &Llama, short: &str, l: &Linear, module: &str) -> Result<Vec<f32>> {
    let Linear::Dense(d) = l else {
        return Err(PipelineError::InvalidArgument(format!("{module} is already VPTQ-quantized")));
    };
    let mut w = vec![0f32; d.weight.len()]; // [M, N]
    d.weight.view().to_f32_range(0, &mut w);
    Ok(hf_rows(model, short, w, l.in_features()))
}

/// The layer's bias `[M]` in Hugging Face row order.
pub(crate) fn hf_bias(model: &Llama, short: &str, l: &Linear) -> Option<Vec<f32>> {
    let bias = match l {
        Linear::Dense(d) => d.bias.clone(),
        Linear::Vq(v) => v.bias().map(<[f32]>::to_vec),
    };
    bias.map(|b| hf_rows(model, short, b, 1))
}

/// Permutes q/k rows in Hugging Face order back to the model's own order (the inverse of [`hf_rows`]).
pub(crate) fn model_rows(model: &Llama, short: &str, w: Vec<f32>, cols: usize) -> Vec<f32> {
    let c = &model.config;
    match short {
        "q_proj" | "k_proj" if c.rope_layout == RopeLayout::Interleaved => {
            let heads = if short == "q_proj" { c.n_heads } else { c.n_kv_heads };
            permute_rows(&w, heads, c.head_dim, cols, RowOrder::HfToGguf)
        }
        _ => w,
    }
}

/// Un-permutes q/k rows (or biases, `cols = 1`) of GGUF-sourced models to the Hugging Face order.
pub(crate) fn hf_rows(model: &Llama, short: &str, w: Vec<f32>, cols: usize) -> Vec<f32> {
    let c = &model.config;
    match short {
        "q_proj" | "k_proj" if c.rope_layout == RopeLayout::Interleaved => {
            let heads = if short == "q_proj" { c.n_heads } else { c.n_kv_heads };
            permute_rows(&w, heads, c.head_dim, cols, RowOrder::GgufToHf)
        }
        _ => w,
    }
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

#[cfg(test)]
mod tests;
