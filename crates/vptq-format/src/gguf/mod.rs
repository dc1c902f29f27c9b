//! GGUF (llama.cpp's single-file model format), versions 2 and 3: header, metadata, tensor table, tensor data
//! (memory-mapped), dequantization of the common block types to f32, and a writer used for test fixtures.
//!
//! Layout reference: the GGUF specification in the ggml repository (little-endian throughout).

mod dequant;
mod error;
mod reader;
mod types;
mod writer;

pub use dequant::{dequantize, dequantize_into};
pub use error::GgufError;
pub use types::{GgmlType, GgufFile, MetaValue, TensorInfo};
pub use writer::GgufWriter;
