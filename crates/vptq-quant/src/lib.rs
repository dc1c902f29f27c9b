//! VPTQ quantizer (vptq-spec.md §1): per linear layer, from a weight `W [M, N]` and a Hessian proxy
//! `H = E[x xᵀ] [N, N]` to codebooks, indices, permutation and per-column scale/bias in the shape the packed
//! Hugging Face VPTQ format needs.
//!
//! `algo/*` is pure math (no IO, no model), `layer.rs` runs the per-layer pipeline, `config.rs` holds the
//! resolved [`VqConfig`] and its presets (`"v8-k65536-256"`); `scalar_layer.rs` the RTN/GPTQ scalar baselines
//! ([`ScalarConfig`], `"gptq-w3-g128"`); `pipeline.rs`, the only file that knows the model
//! (`vptq-model`, `vptq-format`), collects Hessians, quantizes a whole model and writes the VPTQ folder.
//! Dependencies: `rayon` (threads; every parallel reduction has a fixed chunking, so results do not depend on
//! the thread count), `gemm` (imported by `algo/linalg.rs` only), `thiserror`.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod algo;
pub mod config;
pub mod error;
pub mod layer;
pub mod pipeline;
pub mod scalar_layer;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::{NormMode, VqConfig};
pub use error::{QuantError, Result};
pub use layer::{
    quantize_linear, quantize_linear_prepared, quantize_linear_shared, train_shared_codebook, LayerReport,
    OutlierCodes, PreparedHessian, QuantizedLinear,
};
pub use scalar_layer::{quantize_linear_scalar, ScalarConfig, ScalarMethod, ScalarQuantized, ScalarStorageBits};
