//! Tokenizers and chat templates for LLaMA-family models: byte-level BPE tokenizers built from GGUF metadata
//! or loaded from a Hugging Face `tokenizer.json` folder, exported back to that folder form, decoded
//! incrementally during generation, and chat templates rendered the way transformers renders them.
//!
//! Allowed dependencies: `vptq-format` (GGUF metadata), `tokenizers`, `minijinja` (+ contrib), `serde`,
//! `serde_json`, `thiserror`. No IO beyond reading/writing the tokenizer files named in `hf.rs`.
#![warn(missing_docs)]

pub mod chat;
pub mod error;
mod gguf;
mod hf;
pub mod pretokenize;
pub mod stream;
mod template_fns;
mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate, TemplateExtras, CHATML_TEMPLATE};
pub use error::{Result, TokenizerError};
pub use gguf::SUPPORTED_MODELS;
pub use hf::{CHAT_TEMPLATE_JINJA, GENERATION_CONFIG_JSON, TOKENIZER_CONFIG_JSON, TOKENIZER_JSON};
pub use pretokenize::SUPPORTED_PRE_TOKENIZERS;
pub use stream::StreamDecoder;
pub use tokenizer::{SpecialToken, Tokenizer, EOS_LIKE_TOKENS};
