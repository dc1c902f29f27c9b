//! The Hugging Face VPTQ folder: `config.json` with `quantization_config`, `model.safetensors`, tokenizer
//! files and `quantization_report.json`, written atomically.

use super::result::{LayerResult, LayerWeights};
use super::{hf_bias, hf_weight, module_name, Result};
use std::path::Path;
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_format::vptq::{layer_config_json, QUANT_METHOD_VPTQ};
use vptq_model::export::{hf_config_json, write_dir_atomic, ExportDtype};
use vptq_model::{export_embeddings, EmbedStorage, Llama, ModelError, Tokenizer};

fn f16(v: Vec<f32>) -> HalfOrFloat {
    HalfOrFloat::F16(v.into_iter().map(half::f16::from_f32).collect())
}

/// Writes the quantized model as a Hugging Face VPTQ folder at `out` (atomically): `config.json` with
/// `quantization_config` (a `config_for_layers` entry per VPTQ layer), `model.safetensors` (VPTQ layers packed,
/// baseline layers as their dequantized f16 weight, everything else dense f16, HF row order), the tokenizer
/// files when given (embeddings and an untied head stored as `embed_storage` says, recorded in config.json when
/// not f16), and `quantization_report.json`: `run` (the caller's description of the run), `summary`
/// (honest bits per weight, time) and per layer proxy error, seconds, bits and layout.
///
/// # Errors
/// Output exists (without `force`), a layer that is already VPTQ, IO errors.
pub fn write_vptq_folder(
    model: &Llama,
    tokenizer: Option<&Tokenizer>,
    results: &[LayerResult],
    run: serde_json::Value,
    embed_storage: EmbedStorage,
    out: &Path,
    force: bool,
) -> Result<()> {
    let c = &model.config;
    let mut tensors: Vec<OwnedTensor> = Vec::new();
    let mut layers = serde_json::Map::new();
    let mut report = serde_json::Map::new();
    let method = run["method"].as_str().unwrap_or("").to_string();
    let embeddings = export_embeddings(model, embed_storage)?;
    tensors.extend(embeddings.tensors.iter().cloned());
    let (mut q_weights, mut q_bits, mut dense_weights) = (0u64, 0u64, 0u64);
    for (b, block) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{b}");
        let norms = [("input_layernorm", &block.attn_norm), ("post_attention_layernorm", &block.ffn_norm)];
        for (name, w) in norms {
            tensors.push(OwnedTensor::from_float(format!("{p}.{name}.weight"), vec![c.hidden_size], &f16(w.clone())));
        }
        for (short, lin) in block.linears() {
            let module = module_name(b, short);
            let bias = hf_bias(model, short, lin);
            if let Some(r) = results.iter().find(|r| r.module == module) {
                tensors.extend(r.tensors(bias.as_deref()));
                if let LayerWeights::Vq(t) = &r.weights {
                    layers.insert(module.clone(), layer_config_json(&t.layout));
                }
                report.insert(module, r.report_json(&method));
                q_weights += (r.out_features * r.in_features) as u64;
                q_bits += r.stats.storage_bits;
            } else {
                let w = hf_weight(model, short, lin, &module)?;
                let shape = vec![lin.out_features(), lin.in_features()];
                dense_weights += w.len() as u64;
                tensors.push(OwnedTensor::from_float(format!("{module}.weight"), shape, &f16(w)));
                if let Some(bias) = bias {
                    tensors.push(OwnedTensor::from_float(format!("{module}.bias"), vec![bias.len()], &f16(bias)));
                }
            }
        }
    }
    tensors.push(OwnedTensor::from_float("model.norm.weight", vec![c.hidden_size], &f16(model.norm.clone())));
    let mut config = hf_config_json(c, tokenizer, ExportDtype::F16);
    if !layers.is_empty() {
        config["quantization_config"] = serde_json::json!({
            "quant_method": QUANT_METHOD_VPTQ,
            "config_for_layers": layers,
            "shared_layer_config": {},
        });
    }
    embeddings.record_in(&mut config)?;
    let secs: f64 = results.iter().map(|r| r.stats.secs).sum();
    let summary = serde_json::json!({
        "quantized_layers": results.len(),
        "quantized_weights": q_weights,
        "bits_per_weight_quantized": q_bits as f64 / q_weights.max(1) as f64,
        "bits_per_weight_decoder_linears": (q_bits + 16 * dense_weights) as f64 / (q_weights + dense_weights).max(1) as f64,
        "mean_proxy_err": results.iter().map(|r| r.stats.proxy_err).sum::<f64>() / results.len().max(1) as f64,
        "layer_secs": secs,
    });
    let report = serde_json::json!({ "run": run, "summary": summary, "layers": report });
    let json =
        |v: &serde_json::Value| serde_json::to_string_pretty(v).map_err(|e| ModelError::InvalidArgument(e.to_string()));
    write_dir_atomic(out, force, |dir| {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        write_safetensors(&dir.join("model.safetensors"), &tensors, Some(meta))?;
        vptq_format::atomic::write_bytes_atomic(&dir.join("config.json"), json(&config)?.as_bytes())?;
        vptq_format::atomic::write_bytes_atomic(&dir.join("quantization_report.json"), json(&report)?.as_bytes())?;
        if let Some(t) = tokenizer {
            t.save_hf_files(dir)?;
            let generation = json(&t.generation_config_json())?;
            vptq_format::atomic::write_bytes_atomic(&dir.join("generation_config.json"), generation.as_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}
