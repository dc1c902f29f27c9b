//! GGUF (llama.cpp's single-file model format), versions 2 and 3: header, metadata, tensor table, tensor data
//! (memory-mapped), dequantization of the ggml block types to f32, and a writer plus simple quantizers used for
//! test fixtures.
//!
//! Layout reference: the GGUF specification in the ggml repository (little-endian throughout). Depends on no
//! other module of this crate but `error` and `atomic`. Nothing in a file can cause a panic: every count, length
//! and offset is checked before use.

mod dequant;
mod error;
mod file;
mod quantize;
mod reader;
mod types;
mod writer;

pub use dequant::{dequantize, dequantize_into, is_supported};
pub use error::GgufError;
pub use file::ARCHITECTURE_KEY;
pub use quantize::{quantize_q4_0, quantize_q4_1, quantize_q8_0};
pub use reader::{MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS};
pub use types::{GgmlType, GgufFile, MetaValue, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC};
pub use writer::GgufWriter;
