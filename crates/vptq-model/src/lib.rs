//! One LLaMA-family decoder (LLaMA 2/3, Mistral, Qwen2, SmolLM) whose projections are a swappable [`Linear`],
//! its configuration (raw file values → validated [`LlamaConfig`]), loading from GGUF files and Hugging Face
//! folders, export to a Hugging Face folder, KV cache, sampling and generation.
//!
//! Depends on `vptq-format` (files), `vptq-kernels` (math) and `vptq-tokenizer`. The model never knows how a
//! weight was stored or quantized: it only calls [`Linear::forward`].
#![deny(unsafe_op_in_unsafe_fn)]

pub mod attention;
pub mod config;
pub mod embed_storage;
pub mod error;
pub mod export;
pub mod generate;
pub mod kv_cache;
pub mod linear;
pub mod llama;
pub mod load;
pub mod sampling;
pub mod source;

pub use config::{Architecture, LlamaConfig, RopeScaling};
pub use embed_storage::{convert_embeddings, export_embeddings, EmbedExport, EmbedStorage};
pub use error::{ModelError, Result};
pub use generate::{generate, GenerateOptions, Generation, Session, StopReason};
pub use kv_cache::{HeadCache, KvCache, KvPrecision, LayerCache};
pub use linear::{DenseLinear, Linear, VqLinear};
pub use llama::{Block, LinearInput, Llama, LogitsMode};
pub use load::{load_model, LoadOptions, LoadedModel, WeightDtype};
pub use sampling::{Sampler, SamplingParams};
pub use source::{resolve_model, ModelSource};
pub use vptq_kernels::vq_fast::BookPrecision;
pub use vptq_tokenizer::Tokenizer;
