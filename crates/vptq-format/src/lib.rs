//! Model file formats: GGUF input checkpoints (read, dequantize, write for fixtures), safetensors tensors and
//! Hugging Face model folders (config.json, sharded safetensors, tokenizer files), and the Hugging Face VPTQ
//! packed layout (quantization config, packed index bit streams, per-linear tensors).
//!
//! Depends on no other crate of the workspace. Every length and count read from a file is checked against the
//! file's size before anything is allocated; file contents never cause a panic.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod atomic;
pub mod error;
pub mod gguf;
pub mod hf;
pub mod vptq;

pub use error::{FormatError, Result};
