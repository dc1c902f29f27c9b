//! How the token embedding (`model.embed_tokens`) and an untied LM head (`lm_head`) are stored in a written
//! folder and in memory: f16, or 8-bit ([`EmbedStorage::Q8`]).
//!
//! # The 8-bit scheme in a folder
//!
//! Symmetric absmax int8 with one scale per group of `group_size` consecutive elements of a row (the writer uses
//! one group per row): element `(r, c)` is `qweight[r, c] · scales[r, c / group_size]`
//! (`vptq_kernels::q8`). A module `<m>` stored this way has
//!
//! | tensor | dtype | shape |
//! |---|---|---|
//! | `<m>.qweight` | I8 | `[rows, cols]` |
//! | `<m>.scales` | F32 (F16/BF16 also read) | `[rows, cols / group_size]` |
//!
//! and **no** `<m>.weight`; `config.json` records it under
//! `quantization_config.dense_layers = { "<m>": { "format": "int8_absmax", "group_size": G } }`.
//!
//! Why these names: a loader that does not know the scheme must not compute with wrong values.
//! - The int8 data is deliberately *not* called `<m>.weight`: transformers and `torch.load_state_dict` cast a
//!   stored tensor to the parameter's dtype on copy, so int8 codes under `.weight` would load silently as
//!   weights about 100× too large. With the name absent, transformers reports `model.embed_tokens.weight` as a
//!   missing key (and `*.qweight`/`*.scales` as unexpected) and vLLM/sglang, which look every checkpoint name up
//!   in the model's parameters, fail on the unknown name.
//! - `qweight`/`scales` follow the naming of other int-quantized checkpoints (GPTQ/AWQ) so a reader recognises
//!   the pair, while the exact layout is stated in the config rather than guessed from names.
//! - The record lives inside `quantization_config` (beside `config_for_layers`, whose per-layer dicts it
//!   mirrors) because that object is what every VPTQ loader already reads; unknown keys there are ignored by
//!   the reference loaders, so the linears of such a folder stay readable by them.
//! - This loader is strict the other way: a recorded module whose tensors are missing or malformed, an unknown
//!   format, a module other than the embedding or head, or `*.qweight` tensors that the config does not record
//!   are errors naming the tensor or key, never a fallback.

use crate::error::{ModelError, Result};
use crate::linear::{DenseLinear, Linear};
use crate::llama::Llama;
use half::f16;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vptq_format::hf::{HalfOrFloat, OwnedTensor, TensorStore};
use vptq_format::vptq::QUANT_METHOD_VPTQ;
use vptq_kernels::dense::DenseWeight;
use vptq_kernels::q8::Q8Weight;

/// Key of `quantization_config` that records 8-bit dense modules.
pub const DENSE_LAYERS_KEY: &str = "dense_layers";
/// `format` value of the symmetric absmax int8 scheme.
pub const INT8_ABSMAX: &str = "int8_absmax";
/// Module path of the token embedding.
pub const EMBED_MODULE: &str = "model.embed_tokens";
/// Module path of the LM head.
pub const HEAD_MODULE: &str = "lm_head";

/// Storage of the embedding table and an untied head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedStorage {
    /// IEEE half precision under the standard `*.weight` names (readable by every loader).
    #[default]
    F16,
    /// int8 with one f32 scale per row (`*.qweight` + `*.scales`, recorded in `quantization_config`).
    Q8,
}

impl EmbedStorage {
    /// Name for reports and command lines: "f16" or "q8".
    pub fn name(self) -> &'static str {
        match self {
            EmbedStorage::F16 => "f16",
            EmbedStorage::Q8 => "q8",
        }
    }
}

/// What [`export_embeddings`] produces for a folder writer.
#[derive(Debug, Clone)]
pub struct EmbedExport {
    /// Tensors of the embedding and (untied models) the head, to write in place of
    /// `model.embed_tokens.weight` / `lm_head.weight`.
    pub tensors: Vec<OwnedTensor>,
    /// Keys to add to `quantization_config` (empty for [`EmbedStorage::F16`]).
    pub quantization_config: serde_json::Map<String, serde_json::Value>,
}

impl EmbedExport {
    /// Adds [`EmbedExport::quantization_config`] to `config["quantization_config"]`. When the config has none
    /// yet (a dense model) and there is something to record, creates a VPTQ one with no quantized linears, so
    /// that loaders that read the folder as VPTQ see the record.
    ///
    /// # Errors
    /// [`ModelError::InvalidArgument`] if `config` or its `quantization_config` is not a JSON object.
    pub fn record_in(&self, config: &mut serde_json::Value) -> Result<()> {
        if self.quantization_config.is_empty() {
            return Ok(());
        }
        let obj = config
            .as_object_mut()
            .ok_or_else(|| ModelError::InvalidArgument("config.json is not a JSON object".into()))?;
        let q = obj.entry("quantization_config").or_insert_with(|| {
            serde_json::json!({"quant_method": QUANT_METHOD_VPTQ, "config_for_layers": {}, "shared_layer_config": {}})
        });
        let q = q
            .as_object_mut()
            .ok_or_else(|| ModelError::InvalidArgument("quantization_config is not a JSON object".into()))?;
        for (k, v) in &self.quantization_config {
            q.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

/// The embedding's and (untied models) the head's tensors in `storage`, plus the `quantization_config` keys
/// that record them. q/k row order is irrelevant here: neither module is permuted.
///
/// # Errors
/// [`ModelError::InvalidArgument`] when the untied head is not dense (a VPTQ head has its own tensors), or a
/// non-finite weight that int8 cannot represent.
pub fn export_embeddings(model: &Llama, storage: EmbedStorage) -> Result<EmbedExport> {
    let mut modules: Vec<(&str, &DenseLinear)> = vec![(EMBED_MODULE, &model.embed)];
    if let Some(head) = &model.head {
        match head {
            Linear::Dense(d) => modules.push((HEAD_MODULE, d)),
            Linear::Vq(_) => {
                return Err(ModelError::InvalidArgument(
                    "lm_head is VPTQ-quantized; embedding storage applies to dense modules only".into(),
                ))
            }
        }
    }
    let mut tensors = Vec::new();
    let mut record = serde_json::Map::new();
    for (name, lin) in modules {
        let shape = vec![lin.out_features, lin.in_features];
        match storage {
            EmbedStorage::F16 => {
                let w = HalfOrFloat::F16(dense_f32(&lin.weight).into_iter().map(f16::from_f32).collect());
                tensors.push(OwnedTensor::from_float(format!("{name}.weight"), shape, &w));
            }
            EmbedStorage::Q8 => {
                let q = to_q8(&lin.weight, lin.in_features)
                    .map_err(|e| ModelError::InvalidArgument(format!("{name}: cannot store as int8: {e}")))?;
                let groups = lin.in_features / q.group();
                tensors.push(OwnedTensor::from_i8(format!("{name}.qweight"), shape, q.values()));
                let scales = HalfOrFloat::F32(q.scales().to_vec());
                tensors.push(OwnedTensor::from_float(
                    format!("{name}.scales"),
                    vec![lin.out_features, groups],
                    &scales,
                ));
                record.insert(name.to_string(), serde_json::json!({"format": INT8_ABSMAX, "group_size": q.group()}));
            }
        }
    }
    let mut quantization_config = serde_json::Map::new();
    if !record.is_empty() {
        quantization_config.insert(DENSE_LAYERS_KEY.into(), serde_json::Value::Object(record));
    }
    Ok(EmbedExport { tensors, quantization_config })
}

/// Converts the embedding and a dense untied head of a loaded model to `storage` in memory (the load-time
/// option: a dense model run with an 8-bit head). A VPTQ head is left as it is.
///
/// # Errors
/// A non-finite weight that int8 cannot represent.
pub fn convert_embeddings(model: &mut Llama, storage: EmbedStorage) -> Result<()> {
    let convert = |lin: &mut DenseLinear, name: &str| -> Result<()> {
        lin.weight = match storage {
            EmbedStorage::F16 => DenseWeight::F16(dense_f32(&lin.weight).into_iter().map(f16::from_f32).collect()),
            EmbedStorage::Q8 => DenseWeight::Q8(
                to_q8(&lin.weight, lin.in_features)
                    .map_err(|e| ModelError::InvalidArgument(format!("{name}: cannot store as int8: {e}")))?,
            ),
        };
        Ok(())
    };
    convert(&mut model.embed, EMBED_MODULE)?;
    if let Some(Linear::Dense(head)) = &mut model.head {
        convert(head, HEAD_MODULE)?;
    }
    Ok(())
}

fn dense_f32(w: &DenseWeight) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    w.view().to_f32_range(0, &mut out);
    out
}

/// Per-row int8 of `w` (rows of `cols`); an int8 weight whose groups already are whole rows is reused as is,
/// so a re-export does not quantize twice.
fn to_q8(w: &DenseWeight, cols: usize) -> std::result::Result<Q8Weight, vptq_kernels::Q8Error> {
    match w {
        DenseWeight::Q8(q) if q.group() == cols => Ok(q.clone()),
        _ => Q8Weight::quantize(&dense_f32(w), cols.max(1)),
    }
}

/// One recorded 8-bit module.
#[derive(Debug, Clone, Copy)]
struct Int8Entry {
    group_size: usize,
}

/// The parsed `quantization_config.dense_layers` of a folder.
#[derive(Debug, Clone, Default)]
pub(crate) struct DenseLayers {
    config_path: PathBuf,
    entries: BTreeMap<String, Int8Entry>,
}

impl DenseLayers {
    /// Parses `quantization_config.dense_layers` (absent: nothing recorded).
    ///
    /// # Errors
    /// [`ModelError::Int8Weight`] for a malformed record, an unknown format or module, or a bad group size.
    pub(crate) fn parse(quantization_config: Option<&serde_json::Value>, config_path: &Path) -> Result<Self> {
        let mut out = DenseLayers { config_path: config_path.to_path_buf(), entries: BTreeMap::new() };
        let Some(record) = quantization_config.and_then(|q| q.get(DENSE_LAYERS_KEY)) else {
            return Ok(out);
        };
        let key = format!("quantization_config.{DENSE_LAYERS_KEY}");
        let bad = |module: &str, reason: String| ModelError::Int8Weight {
            path: config_path.to_path_buf(),
            module: module.to_string(),
            reason,
        };
        let record = record.as_object().ok_or_else(|| bad("*", format!("{key} is not an object")))?;
        for (module, entry) in record {
            if module != EMBED_MODULE && module != HEAD_MODULE {
                return Err(bad(
                    module,
                    format!(
                        "{key} lists `{module}`; only `{EMBED_MODULE}` and `{HEAD_MODULE}` can be stored in 8 bits"
                    ),
                ));
            }
            let format = entry.get("format").and_then(|f| f.as_str());
            if format != Some(INT8_ABSMAX) {
                return Err(bad(
                    module,
                    format!(
                        "{key}.{module}.format is {}, this loader knows only `{INT8_ABSMAX}`",
                        json_or_absent(entry.get("format"))
                    ),
                ));
            }
            let group_size = entry.get("group_size").and_then(|g| g.as_u64()).filter(|&g| g > 0).ok_or_else(|| {
                bad(
                    module,
                    format!(
                        "{key}.{module}.group_size must be a positive integer, got {}",
                        json_or_absent(entry.get("group_size"))
                    ),
                )
            })?;
            let group_size = usize::try_from(group_size).map_err(|_| bad(module, "group_size is too large".into()))?;
            out.entries.insert(module.clone(), Int8Entry { group_size });
        }
        Ok(out)
    }

    /// True when `module` is recorded as 8-bit.
    pub(crate) fn contains(&self, module: &str) -> bool {
        self.entries.contains_key(module)
    }

    /// Reads `module` `[rows, cols]` as int8 if recorded; otherwise `None` (the caller reads `<module>.weight`),
    /// after checking that no unrecorded `<module>.qweight` hides there.
    ///
    /// # Errors
    /// [`ModelError::Int8Weight`] naming the tensor: missing, wrong dtype or shape, scale count mismatch,
    /// non-finite or negative scales, both `.weight` and `.qweight` present, or `.qweight` without a record.
    pub(crate) fn read(&self, store: &TensorStore, module: &str, rows: usize, cols: usize) -> Result<Option<Q8Weight>> {
        let qname = format!("{module}.qweight");
        let sname = format!("{module}.scales");
        let wname = format!("{module}.weight");
        let bad_at = |path: &Path, reason: String| ModelError::Int8Weight {
            path: path.to_path_buf(),
            module: module.to_string(),
            reason,
        };
        let Some(entry) = self.entries.get(module) else {
            if store.contains(&qname) && !store.contains(&wname) {
                return Err(bad_at(
                    &self.config_path,
                    format!(
                        "the folder has `{qname}` but no `{wname}`, and quantization_config.{DENSE_LAYERS_KEY} does \
                         not record how `{module}` is stored"
                    ),
                ));
            }
            return Ok(None);
        };
        let recorded = format!("recorded as {INT8_ABSMAX} in quantization_config.{DENSE_LAYERS_KEY}");
        if store.contains(&wname) {
            return Err(bad_at(
                &store.root,
                format!("is {recorded} but the folder also has `{wname}`; refusing to guess which one is meant"),
            ));
        }
        let group = entry.group_size;
        if !cols.is_multiple_of(group) {
            return Err(bad_at(
                &self.config_path,
                format!("group_size {group} does not divide the row length {cols} (groups never span rows)"),
            ));
        }
        let q = store
            .get(&qname)
            .ok_or_else(|| bad_at(&store.root, format!("is {recorded} but tensor `{qname}` is missing")))?;
        q.check_shape(&[rows, cols])?;
        let values = q.to_i8()?; // a float tensor here is an UnsupportedDtype error naming it
        let s = store
            .get(&sname)
            .ok_or_else(|| bad_at(&store.root, format!("is {recorded} but tensor `{sname}` is missing")))?;
        let groups = cols / group;
        if s.shape != [rows, groups] {
            return Err(bad_at(
                s.path,
                format!(
                    "tensor `{sname}` has shape {:?}, expected {:?} (one scale per {group} elements of each of \
                     {rows} rows)",
                    s.shape,
                    [rows, groups]
                ),
            ));
        }
        let scales = s.to_f32()?; // F32, F16 or BF16; anything else is an UnsupportedDtype error naming it
        let path = s.path.to_path_buf();
        Q8Weight::new(values, scales, group).map(Some).map_err(|e| bad_at(&path, format!("tensor `{sname}`: {e}")))
    }
}

fn json_or_absent(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}
