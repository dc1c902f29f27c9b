//! Export to a standard Hugging Face folder (config.json, model.safetensors, tokenizer files,
//! generation_config.json) that transformers can load.
//!
//! llama.cpp permutes q/k rows of `llama` models so adjacent-pair RoPE applies; the export undoes that
//! permutation (per head, GGUF row `2i + j` ↔ HF row `j·d/2 + i`) so the folder uses HF's rotate-half.
//! The folder is built under a temporary name beside the destination and renamed into place at the end.

use crate::config::{LlamaConfig, RopeLayout, RopeScaling};
use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::llama::Llama;
use crate::load::WeightDtype;
use half::{bf16, f16};
use std::path::{Path, PathBuf};
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_kernels::dense::DenseWeight;
use vptq_tokenizer::Tokenizer;

/// Output precision of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    /// f32.
    F32,
    /// f16.
    F16,
    /// bf16.
    Bf16,
}

impl ExportDtype {
    fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "float32",
            ExportDtype::F16 => "float16",
            ExportDtype::Bf16 => "bfloat16",
        }
    }

    fn encode(self, v: Vec<f32>) -> HalfOrFloat {
        match self {
            ExportDtype::F32 => HalfOrFloat::F32(v),
            ExportDtype::F16 => HalfOrFloat::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            ExportDtype::Bf16 => HalfOrFloat::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    /// The matching load dtype.
    pub fn as_weight_dtype(self) -> WeightDtype {
        match self {
            ExportDtype::F32 => WeightDtype::F32,
            ExportDtype::F16 => WeightDtype::F16,
            ExportDtype::Bf16 => WeightDtype::Bf16,
        }
    }
}

/// Which way [`permute_rows`] maps q/k rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Hugging Face's order to llama.cpp's (what llama.cpp's converter does).
    HfToGguf,
    /// llama.cpp's order back to Hugging Face's.
    GgufToHf,
}

/// Reorders the rows of a q or k projection `[n_heads · head_dim, in_features]`; per head, GGUF row `2i + j`
/// is HF row `j·d/2 + i`.
pub fn permute_rows(w: &[f32], n_heads: usize, head_dim: usize, in_features: usize, order: RowOrder) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    let half = head_dim / 2;
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let hf = (h * head_dim + j * half + i) * in_features;
                let gguf = (h * head_dim + 2 * i + j) * in_features;
                let (src, dst) = match order {
                    RowOrder::HfToGguf => (hf, gguf),
                    RowOrder::GgufToHf => (gguf, hf),
                };
                out[dst..dst + in_features].copy_from_slice(&w[src..src + in_features]);
            }
        }
    }
    out
}

fn dense_f32(w: &DenseWeight) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    w.view().to_f32_range(0, &mut out);
    out
}

/// The `config.json` of a model, as transformers writes it.
pub fn hf_config_json(c: &LlamaConfig, tokenizer: Option<&Tokenizer>, dtype: ExportDtype) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": [c.arch.hf_class()],
        "model_type": c.arch.name(),
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "rms_norm_eps": format!("{:e}", c.rms_eps).parse::<f64>().unwrap_or(c.rms_eps as f64),
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_seq_len,
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": c.qkv_bias,
        "mlp_bias": false,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "use_cache": true,
        "torch_dtype": dtype.torch_name(),
    });
    if let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } =
        &c.rope_scaling
    {
        v["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_max_position_embeddings,
        });
    }
    if let Some(t) = tokenizer {
        if let Some(b) = t.bos_id() {
            v["bos_token_id"] = b.into();
        }
        if let Some(e) = t.eos_id() {
            v["eos_token_id"] = e.into();
        }
    }
    v
}

/// Fails unless `out` is absent or an empty folder, or `force` is set.
///
/// # Errors
/// [`ModelError::OutputExists`].
pub fn check_output_dir(out: &Path, force: bool) -> Result<()> {
    if force || !out.exists() {
        return Ok(());
    }
    let empty = out.is_dir() && std::fs::read_dir(out).map_err(|e| ModelError::io(out, e))?.next().is_none();
    if empty {
        Ok(())
    } else {
        Err(ModelError::OutputExists { path: out.to_path_buf() })
    }
}

/// Builds a folder under a temporary sibling name with `fill`, then moves it to `out` (replacing an existing
/// folder only after the new one is complete).
///
/// # Errors
/// Whatever `fill` returns, or IO errors; the temporary folder is removed on error.
pub fn write_dir_atomic(out: &Path, force: bool, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_output_dir(out, force)?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| ModelError::io(out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
    }
    Ok(())
}

/// Writes `model` (dense) and `tokenizer` as a Hugging Face folder at `out`.
///
/// # Errors
/// Output exists (without `force`), IO and serialization errors. VPTQ layers are written dequantized (dense).
pub fn export_hf(model: &Llama, tokenizer: &Tokenizer, out: &Path, dtype: ExportDtype, force: bool) -> Result<()> {
    let c = &model.config;
    let mut tensors: Vec<OwnedTensor> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, v: Vec<f32>, keep_f32: bool| {
        let data = if keep_f32 { HalfOrFloat::F32(v) } else { dtype.encode(v) };
        tensors.push(OwnedTensor::from_float(name, shape, &data));
    };
    let weight = |l: &Linear| -> (Vec<f32>, Option<Vec<f32>>) {
        match l {
            Linear::Dense(d) => (dense_f32(&d.weight), d.bias.clone()),
            // Exported dense: the dequantized weight is exactly what the VPTQ layer computes with.
            Linear::Vq(q) => (q.dequantize(), q.bias().map(<[f32]>::to_vec)),
        }
    };
    push("model.embed_tokens.weight".into(), vec![c.vocab_size, c.hidden_size], dense_f32(&model.embed.weight), false);
    for (i, b) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        push(format!("{p}.input_layernorm.weight"), vec![c.hidden_size], b.attn_norm.clone(), false);
        push(format!("{p}.post_attention_layernorm.weight"), vec![c.hidden_size], b.ffn_norm.clone(), false);
        for (short, l) in b.linears() {
            let group = if matches!(short, "q_proj" | "k_proj" | "v_proj" | "o_proj") { "self_attn" } else { "mlp" };
            let (mut w, bias) = weight(l);
            let mut bias = bias;
            if c.rope_layout == RopeLayout::Interleaved && matches!(short, "q_proj" | "k_proj") {
                let heads = if short == "q_proj" { c.n_heads } else { c.n_kv_heads };
                w = permute_rows(&w, heads, c.head_dim, l.in_features(), RowOrder::GgufToHf);
                bias = bias.map(|b| permute_rows(&b, heads, c.head_dim, 1, RowOrder::GgufToHf));
            }
            push(format!("{p}.{group}.{short}.weight"), vec![l.out_features(), l.in_features()], w, false);
            if let Some(b) = bias {
                push(format!("{p}.{group}.{short}.bias"), vec![l.out_features()], b, false);
            }
        }
    }
    push("model.norm.weight".into(), vec![c.hidden_size], model.norm.clone(), false);
    if let Some(h) = &model.head {
        let (w, _) = weight(h);
        push("lm_head.weight".into(), vec![c.vocab_size, c.hidden_size], w, false);
    }
    let config = hf_config_json(c, Some(tokenizer), dtype);
    write_dir_atomic(out, force, |dir| {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        write_safetensors(&dir.join("model.safetensors"), &tensors, Some(meta))?;
        let text = serde_json::to_string_pretty(&config).map_err(|e| ModelError::InvalidArgument(e.to_string()))?;
        vptq_format::atomic::write_bytes_atomic(&dir.join("config.json"), text.as_bytes())?;
        tokenizer.save_hf_files(dir)?;
        let generation = serde_json::to_string_pretty(&tokenizer.generation_config_json())
            .map_err(|e| ModelError::InvalidArgument(e.to_string()))?;
        vptq_format::atomic::write_bytes_atomic(&dir.join("generation_config.json"), generation.as_bytes())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_and_unpermute_are_inverse() {
        let (heads, d, inf) = (3, 8, 5);
        let w: Vec<f32> = (0..heads * d * inf).map(|i| i as f32).collect();
        let gguf = permute_rows(&w, heads, d, inf, RowOrder::HfToGguf);
        assert_ne!(gguf, w);
        assert_eq!(permute_rows(&gguf, heads, d, inf, RowOrder::GgufToHf), w);
    }
}
