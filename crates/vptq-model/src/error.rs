//! Errors of the model crate.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file-format problem (names the file).
    #[error(transparent)]
    Format(#[from] vptq_format::FormatError),
    /// A tokenizer problem.
    #[error(transparent)]
    Tokenizer(#[from] vptq_tokenizer::TokenizerError),
    /// A configuration value that is missing, inconsistent or out of range.
    #[error("{path}: invalid model configuration: {reason}")]
    Config {
        /// File the configuration came from.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An architecture this engine does not implement.
    #[error("{path}: unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// File naming the architecture.
        path: PathBuf,
        /// The architecture found.
        arch: String,
        /// What is supported.
        supported: String,
    },
    /// The model spec resolves to nothing loadable.
    #[error("cannot find model `{spec}`: {reason}")]
    NotFound {
        /// What the user asked for.
        spec: String,
        /// Where it was looked for.
        reason: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// The sequence would exceed the model's context or the cache capacity.
    #[error("sequence of {needed} tokens exceeds the context length {max}")]
    ContextOverflow {
        /// Tokens needed.
        needed: usize,
        /// Maximum.
        max: usize,
    },
    /// An output path that exists and would be overwritten.
    #[error("{path}: output exists and is not empty (use --force to replace it)")]
    OutputExists {
        /// The path.
        path: PathBuf,
    },
    /// An 8-bit embedding or head (`quantization_config.dense_layers`) whose record or tensors are invalid.
    #[error("{path}: 8-bit `{module}`: {reason}")]
    Int8Weight {
        /// config.json, or the file or folder holding the tensor.
        path: PathBuf,
        /// Module path (`model.embed_tokens`, `lm_head`), or `*` for the whole record.
        module: String,
        /// What is wrong, naming the tensor or config key.
        reason: String,
    },
    /// Invalid argument passed by the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An IO error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::Config { path: path.into(), reason: reason.into() }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }
}
