//! CPU kernels for the decoder: dense matmul/GEMV over f32, f16, bf16 and int8 ([`q8`]) weights, VPTQ
//! dequantization and matmul ([`vq`]), RMSNorm, RoPE in both layouts, softmax, SwiGLU. Kernels see slices and
//! shapes only, never models or configs; the one type taken from `vptq-format` is the validated shape of a VPTQ
//! weight (`VqLayout`) and its bit reader.
//!
//! Every fast path sits beside a scalar reference (`*_ref`, in [`reference`]) and is tested against it.
//! Shapes: weights are `[out_features, in_features]` row-major; activations are `[n_tokens, features]`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod attn;
pub mod dense;
pub mod ops;
pub mod q8;
pub mod q8_gemv;
pub mod reference;
mod simd;
pub mod vq;
pub mod vq_fast;

pub use dense::{matmul, DenseWeight, WeightView};
pub use q8::{Q8Error, Q8View, Q8Weight};
pub use simd::{dot_f32, exp_approx};
