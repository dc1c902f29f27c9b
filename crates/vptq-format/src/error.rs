//! Errors of the format crate: each names the file and what is wrong with it.

use std::path::PathBuf;

pub use crate::gguf::GgufError;

/// Result alias for this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Everything that can go wrong reading or writing a model file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// An operating-system error on a path.
    #[error("{path}: {source}")]
    Io {
        /// File or folder concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A malformed GGUF file.
    #[error("{path}: {source}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong with it.
        source: GgufError,
    },
    /// A malformed or inconsistent safetensors file.
    #[error("{path}: invalid safetensors: {reason}")]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON file that does not parse or lacks what is needed.
    #[error("{path}: {reason}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor that a model needs is absent.
    #[error("{path}: tensor `{name}` not found")]
    MissingTensor {
        /// File or folder searched.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor whose shape is not the one expected.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// File or folder holding the tensor.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// A tensor whose element type cannot be used here.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// File or folder holding the tensor.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A VPTQ-quantized layer whose configuration or tensors are invalid or unsupported (vptq-spec.md §2).
    #[error("{path}: VPTQ layer `{layer}`: {reason}")]
    Vptq {
        /// The file concerned (config.json or the safetensors shard holding the tensor).
        path: PathBuf,
        /// Full module path of the layer (e.g. `model.layers.0.self_attn.q_proj`), or `*` for the whole config.
        layer: String,
        /// What is wrong, naming the tensor or config key.
        reason: String,
    },
}

impl FormatError {
    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io { path: path.into(), source }
    }

    /// A [`FormatError::Vptq`] for `layer` read from `path`.
    pub fn vptq(path: impl Into<PathBuf>, layer: impl Into<String>, reason: impl Into<String>) -> Self {
        FormatError::Vptq { path: path.into(), layer: layer.into(), reason: reason.into() }
    }
}
