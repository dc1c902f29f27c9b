//! The VPTQ part of a Hugging Face `config.json` (vptq-spec.md §2.1): `quantization_config` with
//! `quant_method: "vptq"`, `config_for_layers` (full module path → per-layer dict) and `shared_layer_config`
//! (short module name → per-layer dict), or the legacy top-level `quant_config` flat map.
//!
//! Raw serde mirrors with unknown keys ignored; [`VptqConfig::layout_for`] resolves one layer into a validated
//! [`VqLayout`]. Per-layer dicts are kept as JSON until looked up, so a malformed entry is reported with the
//! layer it belongs to. Depends on serde only.

use super::layout::VqLayout;
use crate::error::{FormatError, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `quant_method` value of VPTQ models.
pub const QUANT_METHOD_VPTQ: &str = "vptq";

/// One per-layer dict, as written (§2.1 table). Every field is optional so that files of every VPTQ version
/// parse; sentinels (−1 or 0 for "none") are kept as written and interpreted by [`VqLayout::from_raw`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VqLayerConfigRaw {
    /// N, input features.
    #[serde(default)]
    pub in_features: Option<i64>,
    /// M, output features.
    #[serde(default)]
    pub out_features: Option<i64>,
    /// `[outlier v, main v]`; −1 = no outlier part.
    #[serde(default)]
    pub vector_lens: Vec<i64>,
    /// `[outlier k, main k]`.
    #[serde(default)]
    pub num_centroids: Vec<i64>,
    /// `[outlier kr, main kr]`; residual codebook iff main kr > 0.
    #[serde(default)]
    pub num_res_centroids: Vec<i64>,
    /// Number of main codebooks G.
    #[serde(default)]
    pub group_num: Option<i64>,
    /// Columns per main codebook.
    #[serde(default)]
    pub group_size: Option<i64>,
    /// Leading permuted columns quantized with the outlier codebook.
    #[serde(default)]
    pub outlier_size: Option<i64>,
    /// `weight_scale` / `weight_bias` present.
    #[serde(default)]
    pub enable_norm: Option<bool>,
    /// Normalisation axis (newer algorithm-branch output); only 0 (per input column) is a valid layout.
    #[serde(default)]
    pub norm_dim: Option<i64>,
    /// `perm` present and applied.
    #[serde(default)]
    pub enable_perm: Option<bool>,
    /// Indices bit-packed into int32 words (true for every published model).
    #[serde(default)]
    pub is_indice_packed: Option<bool>,
    /// Legacy: unpacked indices stored as float16 bit patterns.
    #[serde(default)]
    pub indices_as_float: Option<bool>,
    /// The linear has a bias tensor.
    #[serde(default)]
    pub bias: Option<bool>,
}

/// `quantization_config` as written (unknown keys ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VptqConfigRaw {
    /// `"vptq"` for VPTQ models.
    #[serde(default)]
    pub quant_method: Option<String>,
    /// Full module path → per-layer dict (kept as JSON until looked up).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub config_for_layers: BTreeMap<String, serde_json::Value>,
    /// Short module name (`q_proj`) → per-layer dict, used when the full path is not listed.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub shared_layer_config: BTreeMap<String, serde_json::Value>,
    /// Module-path substrings that stay dense.
    #[serde(default)]
    pub modules_to_not_convert: Option<Vec<String>>,
}

/// Reads an absent or `null` map as empty (writers emit `"shared_layer_config": null`).
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    Ok(Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?.unwrap_or_default())
}

/// The VPTQ quantization map of a model, with the file it came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct VptqConfig {
    /// `config.json` it was read from.
    pub path: PathBuf,
    /// The raw map.
    pub raw: VptqConfigRaw,
}

impl VptqConfig {
    /// Extracts the VPTQ config from the `quantization_config` and legacy `quant_config` values of a
    /// `config.json` read from `path`. `Ok(None)` when neither is present (a dense model).
    ///
    /// The legacy `quant_config` is accepted either in the current shape (with `config_for_layers`) or as the
    /// old flat map of full module path → per-layer dict; its `quant_method`, when absent, is taken as VPTQ.
    ///
    /// # Errors
    /// [`FormatError::Vptq`] (layer `*`) for a `quant_method` other than `"vptq"` (this engine loads no other
    /// quantized format) or a malformed object.
    pub fn from_hf_values(
        quantization_config: Option<&serde_json::Value>,
        quant_config: Option<&serde_json::Value>,
        path: &Path,
    ) -> Result<Option<Self>> {
        let bad = |reason: String| FormatError::vptq(path, "*", reason);
        let raw = match (quantization_config, quant_config) {
            (Some(v), _) if !v.is_null() => {
                let raw: VptqConfigRaw = serde_json::from_value(v.clone())
                    .map_err(|e| bad(format!("quantization_config does not parse: {e}")))?;
                match raw.quant_method.as_deref() {
                    Some(QUANT_METHOD_VPTQ) => raw,
                    Some(other) => {
                        return Err(bad(format!(
                            "quantization_config.quant_method `{other}` is not supported (only `vptq`)"
                        )))
                    }
                    None => return Err(bad("quantization_config has no quant_method".into())),
                }
            }
            (_, Some(v)) if !v.is_null() => Self::legacy(v).map_err(|e| bad(format!("quant_config: {e}")))?,
            _ => return Ok(None),
        };
        if let Some(other) = raw.quant_method.as_deref().filter(|m| *m != QUANT_METHOD_VPTQ) {
            return Err(bad(format!("quant_config.quant_method `{other}` is not supported (only `vptq`)")));
        }
        Ok(Some(VptqConfig { path: path.to_path_buf(), raw }))
    }

    /// Parses the legacy top-level `quant_config`.
    fn legacy(v: &serde_json::Value) -> std::result::Result<VptqConfigRaw, String> {
        let obj = v.as_object().ok_or("is not an object")?;
        if obj.contains_key("config_for_layers") || obj.contains_key("shared_layer_config") {
            return serde_json::from_value(v.clone()).map_err(|e| e.to_string());
        }
        // The old flat map: every object-valued entry is a layer; scalar entries (if any) are metadata.
        let config_for_layers =
            obj.iter().filter(|(_, val)| val.is_object()).map(|(k, val)| (k.clone(), val.clone())).collect();
        let quant_method = obj.get("quant_method").and_then(|m| m.as_str()).map(str::to_string);
        Ok(VptqConfigRaw { quant_method, config_for_layers, ..Default::default() })
    }

    /// True when `full_name` matches an entry of `modules_to_not_convert` (substring match, as transformers
    /// does).
    pub fn is_excluded(&self, full_name: &str) -> bool {
        self.raw.modules_to_not_convert.iter().flatten().any(|m| !m.is_empty() && full_name.contains(m.as_str()))
    }

    /// The raw per-layer dict of `full_name`: `config_for_layers[full_name]`, else
    /// `shared_layer_config[short name]` (the last path component), as VPTQ's own loader looks them up.
    /// `None` when the layer is not listed or is excluded by `modules_to_not_convert`.
    pub fn raw_layer(&self, full_name: &str) -> Option<&serde_json::Value> {
        if self.is_excluded(full_name) {
            return None;
        }
        let short = full_name.rsplit('.').next().unwrap_or(full_name);
        self.raw.config_for_layers.get(full_name).or_else(|| self.raw.shared_layer_config.get(short))
    }

    /// Resolves the layout of layer `full_name`, an `[out_features, in_features]` linear of the model;
    /// `model_bias` says whether the model expects a bias for it (the layer then carries one even if the dict
    /// says otherwise, as transformers keeps the module's bias). `Ok(None)` when the layer stays dense.
    ///
    /// # Errors
    /// [`FormatError::Vptq`] naming the layer and `config.json` for a malformed or unsupported dict.
    pub fn layout_for(
        &self,
        full_name: &str,
        out_features: usize,
        in_features: usize,
        model_bias: bool,
    ) -> Result<Option<VqLayout>> {
        let Some(value) = self.raw_layer(full_name) else { return Ok(None) };
        let raw: VqLayerConfigRaw = serde_json::from_value(value.clone()).map_err(|e| {
            FormatError::vptq(&self.path, full_name, format!("per-layer quantization config does not parse: {e}"))
        })?;
        VqLayout::from_raw(&raw, out_features, in_features, model_bias)
            .map(Some)
            .map_err(|reason| FormatError::vptq(&self.path, full_name, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kr: i64) -> serde_json::Value {
        json!({"in_features": 64, "out_features": 32, "vector_lens": [-1, 8], "num_centroids": [-1, 256],
               "num_res_centroids": [-1, kr], "group_num": 1, "group_size": 64, "outlier_size": 0,
               "enable_norm": true, "enable_perm": true, "is_indice_packed": true, "indices_as_float": null,
               "bias": false, "enable_proxy_error": false, "some_future_key": [1, 2]})
    }

    fn cfg(v: serde_json::Value) -> VptqConfig {
        VptqConfig::from_hf_values(Some(&v), None, Path::new("config.json")).unwrap().unwrap()
    }

    #[test]
    fn full_name_first_then_short_name() {
        let c = cfg(json!({"quant_method": "vptq",
            "config_for_layers": {"model.layers.0.self_attn.q_proj": entry(16)},
            "shared_layer_config": {"q_proj": entry(-1), "k_proj": entry(0)}}));
        let l0 = c.layout_for("model.layers.0.self_attn.q_proj", 32, 64, false).unwrap().unwrap();
        assert_eq!(l0.num_res_centroids, 16);
        let l1 = c.layout_for("model.layers.1.self_attn.q_proj", 32, 64, false).unwrap().unwrap();
        assert_eq!(l1.num_res_centroids, 0);
        let k = c.layout_for("model.layers.1.self_attn.k_proj", 32, 64, false).unwrap().unwrap();
        assert_eq!((k.num_res_centroids, k.res_index_bits()), (0, 0));
        assert!(c.layout_for("model.layers.1.mlp.up_proj", 32, 64, false).unwrap().is_none());
    }

    #[test]
    fn modules_to_not_convert_keeps_layers_dense() {
        let c = cfg(json!({"quant_method": "vptq", "shared_layer_config": {"q_proj": entry(0)},
            "modules_to_not_convert": ["layers.1."]}));
        assert!(c.layout_for("model.layers.0.self_attn.q_proj", 32, 64, false).unwrap().is_some());
        assert!(c.layout_for("model.layers.1.self_attn.q_proj", 32, 64, false).unwrap().is_none());
    }

    #[test]
    fn legacy_flat_quant_config() {
        let v = json!({"model.layers.0.mlp.up_proj": entry(256)});
        let c = VptqConfig::from_hf_values(None, Some(&v), Path::new("c.json")).unwrap().unwrap();
        assert!(c.layout_for("model.layers.0.mlp.up_proj", 32, 64, false).unwrap().is_some());
        let v = json!({"quant_method": "vptq", "config_for_layers": {"model.layers.0.mlp.up_proj": entry(256)}});
        let c = VptqConfig::from_hf_values(None, Some(&v), Path::new("c.json")).unwrap().unwrap();
        assert!(c.layout_for("model.layers.0.mlp.up_proj", 32, 64, false).unwrap().is_some());
    }

    #[test]
    fn null_maps_are_empty() {
        let c = cfg(json!({"quant_method": "vptq", "shared_layer_config": null,
            "config_for_layers": {"model.layers.0.mlp.up_proj": entry(-1)}, "modules_to_not_convert": null}));
        assert!(c.layout_for("model.layers.0.mlp.up_proj", 32, 64, false).unwrap().is_some());
    }

    #[test]
    fn absent_or_other_method() {
        assert!(VptqConfig::from_hf_values(None, None, Path::new("c.json")).unwrap().is_none());
        let v = json!({"quant_method": "gptq", "bits": 4});
        let e = VptqConfig::from_hf_values(Some(&v), None, Path::new("c.json")).unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("`gptq` is not supported"), "{e}");
    }

    #[test]
    fn malformed_layer_names_layer_and_file() {
        let c = cfg(json!({"quant_method": "vptq",
            "config_for_layers": {"model.layers.0.self_attn.q_proj": {"vector_lens": "eight"}}}));
        let e = c.layout_for("model.layers.0.self_attn.q_proj", 32, 64, false).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("model.layers.0.self_attn.q_proj"), "{e}");
    }
}
