//! Errors of the tokenizer crate: each names the file (or key, or template) concerned and what is wrong.
//!
//! Allowed dependencies: `thiserror`, `vptq-format` (for wrapping its errors).

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Everything that can go wrong building a tokenizer, encoding, decoding or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Opening or parsing a GGUF file failed (only from [`crate::Tokenizer::from_gguf_path`]).
    #[error(transparent)]
    Format(#[from] vptq_format::FormatError),
    /// An operating-system error on a path.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A metadata key the tokenizer needs is absent.
    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey {
        /// The GGUF file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has the wrong type or an impossible value.
    #[error("{path}: metadata key `{key}`: {problem}")]
    BadMetadata {
        /// The GGUF file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with the value.
        problem: String,
    },
    /// `tokenizer.ggml.model` names a tokenizer model this crate does not build.
    #[error("{path}: unsupported tokenizer model `{model}` (supported: {supported})")]
    UnsupportedModel {
        /// The GGUF file.
        path: PathBuf,
        /// The model name found.
        model: String,
        /// Supported names, comma-separated.
        supported: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not know.
    #[error("{path}: unsupported pre-tokenizer `{name}` in tokenizer.ggml.pre (supported: {supported})")]
    UnsupportedPreTokenizer {
        /// The GGUF file.
        path: PathBuf,
        /// The pre-tokenizer name found.
        name: String,
        /// Supported names, comma-separated.
        supported: String,
    },
    /// One entry of `tokenizer.ggml.merges` is malformed or refers to unknown tokens.
    #[error("{path}: tokenizer.ggml.merges[{index}] = {merge:?}: {problem}")]
    BadMerge {
        /// The GGUF file.
        path: PathBuf,
        /// Position of the merge in the array.
        index: usize,
        /// The merge string.
        merge: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A token id (bos, eos, ...) read from a file is not below the vocabulary size.
    #[error("{path}: `{key}` = {id} is out of range (vocabulary has {vocab_size} tokens)")]
    TokenIdOutOfRange {
        /// File the id came from.
        path: PathBuf,
        /// Key holding the id.
        key: String,
        /// The id.
        id: u64,
        /// Number of tokens in the vocabulary.
        vocab_size: usize,
    },
    /// A token named in a configuration file (e.g. `eos_token`) is not in the vocabulary.
    #[error("{path}: `{key}` = {token:?} is not a token of the vocabulary")]
    UnknownToken {
        /// File the token came from.
        path: PathBuf,
        /// Key holding the token.
        key: String,
        /// The token text.
        token: String,
    },
    /// A JSON file (tokenizer.json, tokenizer_config.json, generation_config.json) is malformed.
    #[error("{path}: {reason}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `tokenizers` library refused to build the tokenizer from otherwise well-formed data.
    #[error("{path}: cannot build tokenizer: {reason}")]
    Build {
        /// File the tokenizer came from.
        path: PathBuf,
        /// The library's message.
        reason: String,
    },
    /// Encoding text failed.
    #[error("encoding failed: {reason}")]
    Encode {
        /// The library's message.
        reason: String,
    },
    /// Decoding failed, e.g. an id not in the vocabulary.
    #[error("decoding failed: {reason}")]
    Decode {
        /// What went wrong.
        reason: String,
    },
    /// Serializing the tokenizer to tokenizer.json failed.
    #[error("exporting tokenizer.json failed: {reason}")]
    Export {
        /// The library's message.
        reason: String,
    },
    /// A chat template does not compile.
    #[error("chat template syntax error: {message}")]
    TemplateSyntax {
        /// minijinja's message, with the line.
        message: String,
    },
    /// Rendering a chat template failed (including `raise_exception` called by the template).
    #[error("chat template rendering failed: {message}")]
    TemplateRender {
        /// minijinja's message, or the template's own exception text.
        message: String,
    },
}

impl TokenizerError {
    /// Wraps an IO error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TokenizerError::Io { path: path.into(), source }
    }

    /// A metadata problem on `key` of the GGUF file at `path`.
    pub(crate) fn meta(path: impl Into<PathBuf>, key: &str, problem: impl Into<String>) -> Self {
        TokenizerError::BadMetadata { path: path.into(), key: key.to_owned(), problem: problem.into() }
    }

    /// A JSON problem in the file at `path`.
    pub(crate) fn json(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TokenizerError::Json { path: path.into(), reason: reason.into() }
    }
}
