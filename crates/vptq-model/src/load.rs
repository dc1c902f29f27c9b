//! Loading a model and its tokenizer from a GGUF file or a Hugging Face folder.
//!
//! GGUF tensors are dequantized to f32 (then optionally narrowed); q/k rows stay in llama.cpp's permuted order
//! and the config selects adjacent-pair RoPE for them. HF tensors keep their stored precision unless a dtype is
//! requested. Every tensor's shape is checked against the config before use.
//!
//! A Hugging Face folder whose `config.json` has `quantization_config.quant_method == "vptq"` (or the legacy
//! top-level `quant_config`) loads each listed decoder projection as [`Linear::Vq`] (vptq-spec.md §2): looked up
//! by full module path, then by short name, skipping `modules_to_not_convert`; the other projections, the
//! embeddings and `lm_head` load as stored. VPTQ codebooks keep their stored precision whatever
//! [`LoadOptions::dtype`] says.
//!
//! The embedding and an untied head may be stored in 8 bits (`*.qweight` + `*.scales`, recorded in
//! `quantization_config.dense_layers`; [`crate::embed_storage`] describes the scheme and why it is named so).
//! They load as `DenseWeight::Q8`, also whatever [`LoadOptions::dtype`] says: widening them would only undo the
//! saving the folder was written for.

use crate::config::LlamaConfig;
use crate::embed_storage::{DenseLayers, EMBED_MODULE, HEAD_MODULE};
use crate::error::{ModelError, Result};
use crate::kv_cache::KvPrecision;
use crate::linear::{DenseLinear, Linear, VqLinear};
use crate::llama::{Block, Llama};
use crate::source::ModelSource;
use half::{bf16, f16};
use rayon::prelude::*;
use std::path::Path;
use vptq_format::gguf::GgufFile;
use vptq_format::hf::{HalfOrFloat, HfConfigRaw, TensorStore};
use vptq_format::vptq::{read_vq_tensors, VptqConfig};
use vptq_format::FormatError;
use vptq_kernels::dense::DenseWeight;
use vptq_kernels::vq_fast::BookPrecision;
use vptq_tokenizer::Tokenizer;

/// Precision of dense weights in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// As stored (f32 for dequantized GGUF tensors).
    #[default]
    Stored,
    /// f32.
    F32,
    /// f16.
    F16,
    /// bf16.
    Bf16,
}

/// Loading options.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Precision of dense weights.
    pub dtype: WeightDtype,
    /// Precision of the VPTQ codebooks in the kernels' prepared form.
    pub codebooks: BookPrecision,
    /// Element type of the model's KV caches ([`Llama::kv_precision`]).
    pub kv_cache: KvPrecision,
}

/// A model with its tokenizer and where it came from.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Where it was loaded from.
    pub source: ModelSource,
}

/// Loads model and tokenizer.
///
/// # Errors
/// Any format, config, shape or tokenizer problem, naming the file.
pub fn load_model(source: &ModelSource, opts: &LoadOptions) -> Result<LoadedModel> {
    let (model, tokenizer) = match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let tokenizer = Tokenizer::from_gguf(&file)?;
            (load_gguf_weights(&file, opts)?, tokenizer)
        }
        ModelSource::HfDir(dir) => (load_hf_weights(dir, opts)?, Tokenizer::from_hf_dir(dir)?),
    };
    Ok(LoadedModel { model, tokenizer, source: source.clone() })
}

fn narrow(v: Vec<f32>, dtype: WeightDtype) -> DenseWeight {
    match dtype {
        WeightDtype::Stored | WeightDtype::F32 => DenseWeight::F32(v),
        WeightDtype::F16 => DenseWeight::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
        WeightDtype::Bf16 => DenseWeight::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
    }
}

fn convert(data: HalfOrFloat, dtype: WeightDtype) -> DenseWeight {
    match (data, dtype) {
        (HalfOrFloat::F32(v), d) => narrow(v, d),
        (HalfOrFloat::F16(v), WeightDtype::Stored | WeightDtype::F16) => DenseWeight::F16(v),
        (HalfOrFloat::Bf16(v), WeightDtype::Stored | WeightDtype::Bf16) => DenseWeight::Bf16(v),
        (HalfOrFloat::F16(v), d) => narrow(v.iter().map(|x| x.to_f32()).collect(), d),
        (HalfOrFloat::Bf16(v), d) => narrow(v.iter().map(|x| x.to_f32()).collect(), d),
    }
}

/// Loads weights from an opened GGUF file (the tokenizer is loaded separately).
///
/// # Errors
/// Missing tensors, wrong shapes, unsupported tensor types.
pub fn load_gguf_weights(file: &GgufFile, opts: &LoadOptions) -> Result<Llama> {
    let config = LlamaConfig::from_gguf(file)?;
    let c = &config;
    let fetch = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let info = file
            .tensor(name)
            .ok_or_else(|| FormatError::MissingTensor { path: file.path.clone(), name: name.to_string() })?;
        if info.shape() != shape {
            return Err(FormatError::ShapeMismatch {
                path: file.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                got: info.shape(),
            }
            .into());
        }
        Ok(file.dequantize(name)?)
    };
    let linear = |name: String, out_f: usize, in_f: usize, bias: bool| -> Result<Linear> {
        let w = fetch(&format!("{name}.weight"), &[out_f, in_f])?;
        let b = if bias { Some(fetch(&format!("{name}.bias"), &[out_f])?) } else { None };
        Ok(Linear::Dense(DenseLinear::new(narrow(w, opts.dtype), b, in_f, out_f)))
    };
    let (h, q, kv, ff) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
    let blocks = (0..c.n_layers)
        .into_par_iter()
        .map(|i| -> Result<Block> {
            let p = |s: &str| format!("blk.{i}.{s}");
            Ok(Block {
                attn_norm: fetch(&p("attn_norm.weight"), &[h])?,
                q_proj: linear(p("attn_q"), q, h, c.qkv_bias)?,
                k_proj: linear(p("attn_k"), kv, h, c.qkv_bias)?,
                v_proj: linear(p("attn_v"), kv, h, c.qkv_bias)?,
                o_proj: linear(p("attn_output"), h, q, false)?,
                ffn_norm: fetch(&p("ffn_norm.weight"), &[h])?,
                gate_proj: linear(p("ffn_gate"), ff, h, false)?,
                up_proj: linear(p("ffn_up"), ff, h, false)?,
                down_proj: linear(p("ffn_down"), h, ff, false)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let embed =
        DenseLinear::new(narrow(fetch("token_embd.weight", &[c.vocab_size, h])?, opts.dtype), None, h, c.vocab_size);
    let head = if c.tie_embeddings { None } else { Some(linear("output".into(), c.vocab_size, h, false)?) };
    let norm = fetch("output_norm.weight", &[h])?;
    let mut model = Llama::new(config, embed, blocks, norm, head);
    model.kv_precision = opts.kv_cache;
    Ok(model)
}

/// Reads and resolves `config.json` of a Hugging Face folder.
///
/// # Errors
/// Missing or malformed file, unsupported architecture, invalid values.
pub fn read_hf_config(dir: &Path) -> Result<(HfConfigRaw, LlamaConfig)> {
    let path = dir.join("config.json");
    let raw: HfConfigRaw = vptq_format::hf::read_json(&path)?;
    let config = LlamaConfig::from_hf(&raw, &path)?;
    Ok((raw, config))
}

/// Loads weights from a Hugging Face folder (the tokenizer is loaded separately).
///
/// # Errors
/// Missing tensors, wrong shapes, unsupported dtypes, invalid config.
pub fn load_hf_weights(dir: &Path, opts: &LoadOptions) -> Result<Llama> {
    let (raw, config) = read_hf_config(dir)?;
    let config_path = dir.join("config.json");
    let vptq = VptqConfig::from_hf_values(raw.quantization_config.as_ref(), raw.quant_config.as_ref(), &config_path)?;
    let dense_layers = DenseLayers::parse(raw.quantization_config.as_ref(), &config_path)?;
    let store = TensorStore::open(dir)?;
    let c = &config;
    // A dense weight: 8-bit when config.json records it so, else `<name>.weight` as stored.
    let dense_weight = |name: &str, out_f: usize, in_f: usize| -> Result<DenseWeight> {
        if let Some(q) = dense_layers.read(&store, name, out_f, in_f)? {
            return Ok(DenseWeight::Q8(q));
        }
        Ok(convert(store.read_float(&format!("{name}.weight"), &[out_f, in_f])?, opts.dtype))
    };
    let dense = |name: String, out_f: usize, in_f: usize, bias: bool| -> Result<Linear> {
        let weight_name = format!("{name}.weight");
        if vptq.is_some() && !store.contains(&weight_name) && store.contains(&format!("{name}.indices")) {
            return Err(FormatError::vptq(
                &config_path,
                &name,
                "has VPTQ tensors but no entry in config_for_layers or shared_layer_config",
            )
            .into());
        }
        let w = dense_weight(&name, out_f, in_f)?;
        let b = if bias { Some(store.read_f32(&format!("{name}.bias"), &[out_f])?) } else { None };
        Ok(Linear::Dense(DenseLinear::new(w, b, in_f, out_f)))
    };
    // Decoder projections: VPTQ when the quantization config lists them, dense otherwise.
    let linear = |name: String, out_f: usize, in_f: usize, bias: bool| -> Result<Linear> {
        let layout = match &vptq {
            Some(q) => q.layout_for(&name, out_f, in_f, bias)?,
            None => None,
        };
        match layout {
            Some(layout) => {
                tracing::debug!(layer = %name, kind = %layout.describe(), "VPTQ linear");
                let tensors = read_vq_tensors(&store, &name, &layout)?;
                Ok(Linear::Vq(VqLinear::new(tensors, opts.codebooks)?))
            }
            None => dense(name, out_f, in_f, bias),
        }
    };
    let (h, q, kv, ff) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
    let blocks = (0..c.n_layers)
        .into_par_iter()
        .map(|i| -> Result<Block> {
            let p = |s: &str| format!("model.layers.{i}.{s}");
            Ok(Block {
                attn_norm: store.read_f32(&p("input_layernorm.weight"), &[h])?,
                q_proj: linear(p("self_attn.q_proj"), q, h, c.qkv_bias)?,
                k_proj: linear(p("self_attn.k_proj"), kv, h, c.qkv_bias)?,
                v_proj: linear(p("self_attn.v_proj"), kv, h, c.qkv_bias)?,
                o_proj: linear(p("self_attn.o_proj"), h, q, false)?,
                ffn_norm: store.read_f32(&p("post_attention_layernorm.weight"), &[h])?,
                gate_proj: linear(p("mlp.gate_proj"), ff, h, false)?,
                up_proj: linear(p("mlp.up_proj"), ff, h, false)?,
                down_proj: linear(p("mlp.down_proj"), h, ff, false)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let embed = DenseLinear::new(dense_weight(EMBED_MODULE, c.vocab_size, h)?, None, h, c.vocab_size);
    // Tied models sometimes also save lm_head; the embedding is the source of truth for them.
    let head = if c.tie_embeddings {
        if dense_layers.contains(HEAD_MODULE) {
            tracing::debug!("lm_head is recorded as 8-bit but the embeddings are tied; using the embedding");
        }
        None
    } else {
        Some(dense(HEAD_MODULE.into(), c.vocab_size, h, false)?)
    };
    let norm = store.read_f32("model.norm.weight", &[h])?;
    if blocks.len() != c.n_layers {
        return Err(ModelError::config(dir, "layer count mismatch"));
    }
    let mut model = Llama::new(config, embed, blocks, norm, head);
    model.kv_precision = opts.kv_cache;
    Ok(model)
}
