//! The Hugging Face VPTQ packed layout (vptq-spec.md §2): the `quantization_config` of `config.json`
//! ([`config`]), the validated per-layer shape ([`layout`]), the index bit packing ([`bits`]), the per-linear
//! tensors ([`tensors`], read side) and their writer ([`writer`]), and the int8 codebook extension
//! ([`int8_codebook`]).
//!
//! Depends on this crate's safetensors store only; no math beyond bit unpacking (dequantization lives in
//! `vptq-kernels`).

pub mod bits;
pub mod config;
pub mod int8_codebook;
pub mod layout;
pub mod tensors;
pub mod writer;

pub use bits::{pack_indices, read_index, unpack_indices, words_for};
pub use config::{VptqConfig, VptqConfigRaw, VqLayerConfigRaw, QUANT_METHOD_VPTQ};
pub use int8_codebook::int8_grid_step;
pub use layout::VqLayout;
pub use tensors::{read_vq_tensors, VqTensors};
pub use writer::{layer_config_json, vq_owned_tensors, vq_owned_tensors_int8, VqLayerData};
