//! The Hugging Face VPTQ packed layout (vptq-spec.md §2): the `quantization_config` of `config.json`
//! ([`config`]), the validated per-layer shape ([`layout`]), the index bit packing ([`bits`]), the per-linear
//! tensors ([`tensors`], read side) and their writer ([`writer`]).
//!
//! Depends on this crate's safetensors store only; no math beyond bit unpacking (dequantization lives in
//! `vptq-kernels`).

pub mod bits;
pub mod config;
pub mod layout;
pub mod tensors;
pub mod writer;

pub use bits::{pack_indices, read_index, unpack_indices, words_for};
pub use config::{VptqConfig, VptqConfigRaw, VqLayerConfigRaw, QUANT_METHOD_VPTQ};
pub use layout::VqLayout;
pub use tensors::{read_vq_tensors, VqTensors};
pub use writer::{layer_config_json, vq_owned_tensors, VqLayerData};
