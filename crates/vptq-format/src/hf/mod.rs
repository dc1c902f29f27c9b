//! Hugging Face model folders: `config.json` (raw serde mirror), safetensors tensors (single file or sharded
//! with `model.safetensors.index.json`, memory-mapped), and writing safetensors atomically.

mod config;
mod safetensors_io;

pub use config::{HfConfigRaw, RopeScalingRaw, TokenIdOrList};
pub use safetensors_io::{write_safetensors, HalfOrFloat, OwnedTensor, SafetensorsFile, TensorRef, TensorStore};

/// Reads and parses a JSON file, naming the file in every error.
///
/// # Errors
/// [`crate::FormatError::Io`] or [`crate::FormatError::Json`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> crate::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::FormatError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| crate::FormatError::Json { path: path.to_path_buf(), reason: e.to_string() })
}
