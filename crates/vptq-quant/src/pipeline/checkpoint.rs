//! Never lose work: every finished layer is saved in a checkpoint folder beside the output
//! (`<out>.vptq-checkpoint/`); a run restarted with the same command finds its finished layers there and
//! continues. A layer is two files, its tensors (`<module>.safetensors`, exactly the tensors the final folder
//! gets) and then its record (`<module>.json`); both are written atomically and the record last, so a record
//! always names a complete layer. `manifest.json` holds the fingerprint of the command that made the folder:
//! layers of another command are never reused.

use super::result::{LayerResult, LayerStats, LayerWeights};
use super::{PipelineError, Result};
use std::path::{Path, PathBuf};
use vptq_format::atomic::write_bytes_atomic;
use vptq_format::hf::{write_safetensors, TensorStore};
use vptq_format::vptq::{layer_config_json, read_vq_tensors, VqLayerConfigRaw, VqLayout};

/// An open checkpoint folder.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
}

fn ckpt_err(path: &Path, reason: impl std::fmt::Display) -> PipelineError {
    PipelineError::Checkpoint { path: path.to_path_buf(), reason: reason.to_string() }
}

impl Checkpoint {
    /// The checkpoint folder used for output folder `out`.
    pub fn dir_for(out: &Path) -> PathBuf {
        let name = out.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        out.with_file_name(format!("{name}.vptq-checkpoint"))
    }

    /// Opens (or creates) the checkpoint at `dir` for the command identified by `fingerprint`. A folder made by
    /// a different command is an error, unless `discard` is set: then it is emptied and reused.
    ///
    /// # Errors
    /// `Checkpoint` for a foreign or unreadable folder; IO errors.
    pub fn open(dir: &Path, fingerprint: &str, discard: bool) -> Result<Self> {
        let manifest = dir.join("manifest.json");
        if dir.exists() {
            let found = std::fs::read(&manifest)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["fingerprint"].as_str().map(str::to_owned));
            match found {
                Some(f) if f == fingerprint => return Ok(Checkpoint { dir: dir.to_path_buf() }),
                _ if discard => std::fs::remove_dir_all(dir).map_err(|e| ckpt_err(dir, e))?,
                Some(_) => {
                    return Err(ckpt_err(
                        dir,
                        "holds layers of a different command (model, method, calibration or selection differ); \
                         use --force to discard it, or delete the folder",
                    ))
                }
                None => {
                    return Err(ckpt_err(dir, "exists but has no readable manifest.json; delete it or use --force"))
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
        let body = serde_json::json!({ "fingerprint": fingerprint }).to_string();
        write_bytes_atomic(&manifest, body.as_bytes()).map_err(|e| ckpt_err(&manifest, e))?;
        Ok(Checkpoint { dir: dir.to_path_buf() })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, module: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("{module}.safetensors")), self.dir.join(format!("{module}.json")))
    }

    /// Saves a finished layer (`bias`: the dense layer's bias, written with dense results).
    ///
    /// # Errors
    /// IO errors.
    pub fn save(&self, r: &LayerResult, bias: Option<&[f32]>) -> Result<()> {
        let (tensors_path, record_path) = self.paths(&r.module);
        write_safetensors(&tensors_path, &r.tensors(bias), None)?;
        let s = &r.stats;
        let mut record = serde_json::json!({
            "module": r.module, "out_features": r.out_features, "in_features": r.in_features,
            "proxy_err": s.proxy_err, "secs": s.secs, "kmeans_secs": s.kmeans_secs, "loop_secs": s.loop_secs,
            "storage_bits": s.storage_bits, "int8_codebooks": r.int8_codebooks,
        });
        match &r.weights {
            LayerWeights::Vq(t) => {
                record["kind"] = "vq".into();
                record["config"] = layer_config_json(&t.layout);
                record["bias"] = t.bias.is_some().into();
            }
            LayerWeights::Dense(_) => record["kind"] = "dense".into(),
        }
        write_bytes_atomic(&record_path, record.to_string().as_bytes()).map_err(|e| ckpt_err(&record_path, e))?;
        Ok(())
    }

    /// The saved layer `module` `[out_features, in_features]`, if this checkpoint holds it.
    ///
    /// # Errors
    /// `Checkpoint` when the record or its tensors are unreadable or disagree with the layer's shape.
    pub fn load(&self, module: &str, out_features: usize, in_features: usize) -> Result<Option<LayerResult>> {
        let (tensors_path, record_path) = self.paths(module);
        let Ok(bytes) = std::fs::read(&record_path) else { return Ok(None) };
        let rec: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ckpt_err(&record_path, e))?;
        let num = |k: &str| rec[k].as_f64().ok_or_else(|| ckpt_err(&record_path, format!("`{k}` missing")));
        if num("out_features")? as usize != out_features || num("in_features")? as usize != in_features {
            return Err(ckpt_err(&record_path, format!("shape differs from the model's {out_features}×{in_features}")));
        }
        let stats = LayerStats {
            proxy_err: num("proxy_err")?,
            secs: num("secs")?,
            kmeans_secs: num("kmeans_secs")?,
            loop_secs: num("loop_secs")?,
            storage_bits: num("storage_bits")? as u64,
        };
        let store = TensorStore::open(&tensors_path).map_err(|e| ckpt_err(&tensors_path, e))?;
        let weights = match rec["kind"].as_str() {
            Some("vq") => {
                let raw: VqLayerConfigRaw =
                    serde_json::from_value(rec["config"].clone()).map_err(|e| ckpt_err(&record_path, e))?;
                let bias = rec["bias"].as_bool().unwrap_or(false);
                let layout =
                    VqLayout::from_raw(&raw, out_features, in_features, bias).map_err(|e| ckpt_err(&record_path, e))?;
                let t = read_vq_tensors(&store, module, &layout).map_err(|e| ckpt_err(&tensors_path, e))?;
                LayerWeights::Vq(Box::new(t))
            }
            Some("dense") => {
                let name = format!("{module}.weight");
                let t = store.get(&name).ok_or_else(|| ckpt_err(&tensors_path, format!("no tensor {name}")))?;
                t.check_shape(&[out_features, in_features]).map_err(|e| ckpt_err(&tensors_path, e))?;
                LayerWeights::Dense(t.to_f32().map_err(|e| ckpt_err(&tensors_path, e))?)
            }
            other => return Err(ckpt_err(&record_path, format!("unknown layer kind {other:?}"))),
        };
        let int8_codebooks = rec["int8_codebooks"].as_bool().unwrap_or(false);
        Ok(Some(LayerResult { module: module.to_string(), out_features, in_features, weights, stats, int8_codebooks }))
    }

    /// Number of finished layers saved.
    pub fn layer_count(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json") && e.file_name() != "manifest.json")
                .count()
        })
    }

    /// Deletes the folder (after the final output is in place).
    ///
    /// # Errors
    /// IO errors.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(|e| ckpt_err(&self.dir, e))
    }
}
