//! Model configuration: from GGUF metadata or a Hugging Face `config.json` (raw) to one validated
//! [`LlamaConfig`] with no optional fields. Qwen2 and Mistral are flags of the same config, not separate models.

use crate::error::{ModelError, Result};
use std::path::Path;
use vptq_format::gguf::GgufFile;
use vptq_format::hf::HfConfigRaw;
pub use vptq_kernels::ops::RopeLayout;

/// Upper bound on any dimension read from a file, so absurd values fail as errors, not allocations.
const MAX_DIM: usize = 1 << 20;
/// Upper bound on the layer count.
const MAX_LAYERS: usize = 1024;

/// Architecture family, as named by the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// LLaMA 1/2/3 and SmolLM (`llama`).
    Llama,
    /// Mistral (`mistral`): LLaMA with GQA, no bias.
    Mistral,
    /// Qwen2 / Qwen2.5 (`qwen2`): q/k/v bias.
    Qwen2,
}

impl Architecture {
    /// The name used in `config.json`'s `model_type` and GGUF's `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// The transformers class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    const SUPPORTED: &'static str = "llama, mistral, qwen2";

    fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "llama" => Ok(Architecture::Llama),
            "mistral" => Ok(Architecture::Mistral),
            "qwen2" => Ok(Architecture::Qwen2),
            other => Err(ModelError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: other.to_string(),
                supported: Self::SUPPORTED.to_string(),
            }),
        }
    }
}

/// RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain θ_i = base^(−2i/d).
    None,
    /// Llama 3.1's piecewise scaling of long wavelengths.
    Llama3 {
        /// Divisor of low frequencies.
        factor: f64,
        /// Low-frequency boundary factor.
        low_freq_factor: f64,
        /// High-frequency boundary factor.
        high_freq_factor: f64,
        /// Context length the model was trained with before scaling.
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors read from a GGUF `rope_freqs.weight` tensor (llama.cpp's encoding of Llama 3).
    Factors(Vec<f32>),
}

/// Validated decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Architecture family.
    pub arch: Architecture,
    /// Residual stream width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Features per head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// How RoPE pairs features (depends on how q/k rows are stored).
    pub rope_layout: RopeLayout,
    /// Maximum context length.
    pub max_seq_len: usize,
    /// The head reuses the embedding matrix.
    pub tie_embeddings: bool,
    /// q/k/v projections carry biases.
    pub qkv_bias: bool,
}

impl LlamaConfig {
    /// Width of the q projection output.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the k and v projection outputs.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// RoPE inverse frequencies θ_i, `head_dim / 2` of them, with scaling applied.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|i| {
                let freq = self.rope_theta.powf(-(2.0 * i as f64) / d);
                let scaled = match &self.rope_scaling {
                    RopeScaling::None => freq,
                    RopeScaling::Factors(f) => freq / f.get(i).copied().unwrap_or(1.0) as f64,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position_embeddings,
                    } => {
                        let orig = *original_max_position_embeddings as f64;
                        let low_wavelen = orig / low_freq_factor;
                        let high_wavelen = orig / high_freq_factor;
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        }
                    }
                };
                scaled as f32
            })
            .collect()
    }

    /// Checks internal consistency (called by both constructors).
    fn validate(self, path: &Path) -> Result<Self> {
        let bad = |reason: String| Err(ModelError::config(path, reason));
        for (name, v) in [
            ("hidden size", self.hidden_size),
            ("intermediate size", self.intermediate_size),
            ("head count", self.n_heads),
            ("kv head count", self.n_kv_heads),
            ("head dim", self.head_dim),
            ("vocab size", self.vocab_size),
        ] {
            if v == 0 || v > MAX_DIM * 4 {
                return bad(format!("{name} = {v} is out of range"));
            }
        }
        if self.n_layers == 0 || self.n_layers > MAX_LAYERS {
            return bad(format!("layer count {} is out of range", self.n_layers));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!("{} heads not divisible by {} kv heads", self.n_heads, self.n_kv_heads));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dim {} must be even for RoPE", self.head_dim));
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return bad(format!("rms_norm_eps {} is out of range", self.rms_eps));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return bad(format!("rope theta {} is out of range", self.rope_theta));
        }
        if let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } =
            &self.rope_scaling
        {
            if *factor <= 0.0 || low_freq_factor >= high_freq_factor || *original_max_position_embeddings == 0 {
                return bad("llama3 rope_scaling needs factor > 0, low_freq_factor < high_freq_factor".into());
            }
        }
        if let RopeScaling::Factors(f) = &self.rope_scaling {
            if f.len() != self.head_dim / 2 {
                return bad(format!("rope_freqs has {} entries, expected {}", f.len(), self.head_dim / 2));
            }
        }
        Ok(self)
    }

    /// Resolves a Hugging Face `config.json` (already parsed) read from `path`.
    ///
    /// # Errors
    /// Unsupported `model_type`, inconsistent or out-of-range values, unsupported `rope_scaling` or activation.
    pub fn from_hf(raw: &HfConfigRaw, path: &Path) -> Result<Self> {
        let arch = Architecture::parse(&raw.model_type, path)?;
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(ModelError::config(path, format!("hidden_act `{act}` is not supported (only silu)")));
            }
        }
        if raw.mlp_bias == Some(true) {
            return Err(ModelError::config(path, "mlp_bias = true is not supported"));
        }
        if raw.num_attention_heads == 0 {
            return Err(ModelError::config(path, "num_attention_heads is 0"));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads);
        let rope_scaling = match &raw.rope_scaling {
            None => RopeScaling::None,
            Some(s) => match s.rope_type.as_deref() {
                Some("llama3") => RopeScaling::Llama3 {
                    factor: s.factor.unwrap_or(8.0),
                    low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                    original_max_position_embeddings: s.original_max_position_embeddings.unwrap_or(8192),
                },
                Some("default") | None => RopeScaling::None,
                Some(other) => {
                    return Err(ModelError::config(
                        path,
                        format!("rope_scaling type `{other}` is not supported (llama3 only)"),
                    ))
                }
            },
        };
        LlamaConfig {
            arch,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            n_layers: raw.num_hidden_layers,
            n_heads: raw.num_attention_heads,
            n_kv_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim,
            vocab_size: raw.vocab_size,
            rms_eps: raw.rms_norm_eps as f32,
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            rope_layout: RopeLayout::HalfSplit,
            max_seq_len: raw.max_position_embeddings.unwrap_or(4096),
            tie_embeddings: raw.tie_word_embeddings,
            qkv_bias: raw.attention_bias.unwrap_or(arch == Architecture::Qwen2),
        }
        .validate(path)
    }

    /// Resolves the configuration from GGUF metadata (`{arch}.*` keys) and tensor shapes.
    ///
    /// # Errors
    /// Unsupported architecture, missing keys, inconsistent values.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path.as_path();
        let arch_name = file.architecture()?.to_string();
        let arch = Architecture::parse(&arch_name, path)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let usize_key = |k: &str| -> Result<usize> {
            let v = file.get_u64(&key(k))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v <= MAX_DIM * 4)
                .ok_or_else(|| ModelError::config(path, format!("{} = {v} is out of range", key(k))))
        };
        let n_heads = usize_key("attention.head_count")?;
        let hidden_size = usize_key("embedding_length")?;
        let n_kv_heads = match file.opt_u64(&key("attention.head_count_kv"))? {
            Some(v) => v as usize,
            None => n_heads,
        };
        if n_heads == 0 {
            return Err(ModelError::config(path, "attention.head_count is 0"));
        }
        let head_dim = match file.opt_u64(&key("attention.key_length"))? {
            Some(v) => v as usize,
            None => hidden_size / n_heads,
        };
        let embd = file.tensor("token_embd.weight").ok_or_else(|| vptq_format::FormatError::MissingTensor {
            path: path.to_path_buf(),
            name: "token_embd.weight".into(),
        })?;
        let vocab_size = embd.dims.get(1).copied().unwrap_or(0);
        let rope_scaling = match file.tensor("rope_freqs.weight") {
            Some(_) => RopeScaling::Factors(file.dequantize("rope_freqs.weight")?),
            None => RopeScaling::None,
        };
        let has_bias = file.tensor("blk.0.attn_q.bias").is_some();
        LlamaConfig {
            arch,
            hidden_size,
            intermediate_size: usize_key("feed_forward_length")?,
            n_layers: usize_key("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            rms_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta: file.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f64,
            rope_scaling,
            // llama.cpp's converter permutes q/k rows of `llama` models so that adjacent-pair RoPE applies;
            // qwen2 weights are stored as in Hugging Face and use the half-split rotation.
            rope_layout: match arch {
                Architecture::Llama | Architecture::Mistral => RopeLayout::Interleaved,
                Architecture::Qwen2 => RopeLayout::HalfSplit,
            },
            max_seq_len: file.opt_u64(&key("context_length"))?.map(|v| v as usize).unwrap_or(4096),
            tie_embeddings: file.tensor("output.weight").is_none(),
            qkv_bias: has_bias,
        }
        .validate(path)
    }
}
