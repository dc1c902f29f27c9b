//! Resolving what the user named (`--model`) to something loadable: a GGUF file, a Hugging Face folder, or an
//! `org/name` entry of a local Hugging Face hub cache (offline; no download).

use crate::error::{ModelError, Result};
use std::path::{Path, PathBuf};

/// A resolved model location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face model folder (config.json + safetensors).
    HfDir(PathBuf),
}

impl ModelSource {
    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p,
        }
    }
}

fn is_gguf_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == b"GGUF"
}

/// Resolves `spec`: an existing GGUF file, a folder holding `config.json`, or `org/name` looked up in
/// `hf_cache` (the hub cache root, `…/huggingface/hub`, with `models--org--name/snapshots/<rev>/`).
///
/// # Errors
/// [`ModelError::NotFound`] saying where it looked.
pub fn resolve_model(spec: &str, hf_cache: Option<&Path>) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_file() {
        if is_gguf_file(path) {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        return Err(ModelError::NotFound {
            spec: spec.into(),
            reason: "the file is not a GGUF file (no GGUF magic); pass a GGUF file or a model folder".into(),
        });
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelSource::HfDir(path.to_path_buf()));
        }
        return Err(ModelError::NotFound { spec: spec.into(), reason: "the folder has no config.json".into() });
    }
    let parts: Vec<&str> = spec.split('/').collect();
    if parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != "..") {
        if let Some(cache) = hf_cache {
            let repo = cache.join(format!("models--{}--{}", parts[0], parts[1]));
            if let Some(dir) = hf_snapshot(&repo) {
                return Ok(ModelSource::HfDir(dir));
            }
            return Err(ModelError::NotFound {
                spec: spec.into(),
                reason: format!("no local path of that name and no snapshot with config.json under {}", repo.display()),
            });
        }
    }
    Err(ModelError::NotFound { spec: spec.into(), reason: "no such file or folder".into() })
}

/// The snapshot folder of a hub-cache repo: the revision `refs/main` points to, else the newest snapshot.
fn hf_snapshot(repo: &Path) -> Option<PathBuf> {
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").is_file() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .map(|p| (p.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_files_folders_and_hub_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let gguf = tmp.path().join("m.gguf");
        std::fs::write(&gguf, b"GGUF\x03\0\0\0").unwrap();
        assert_eq!(resolve_model(gguf.to_str().unwrap(), None).unwrap(), ModelSource::Gguf(gguf.clone()));
        let not_gguf = tmp.path().join("x.bin");
        std::fs::write(&not_gguf, b"nope").unwrap();
        assert!(resolve_model(not_gguf.to_str().unwrap(), None).is_err());

        let hub = tmp.path().join("hub");
        let snap = hub.join("models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(hub.join("models--org--tiny/refs")).unwrap();
        std::fs::write(hub.join("models--org--tiny/refs/main"), "abc123\n").unwrap();
        assert_eq!(resolve_model("org/tiny", Some(&hub)).unwrap(), ModelSource::HfDir(snap));
        let err = resolve_model("org/absent", Some(&hub)).unwrap_err().to_string();
        assert!(err.contains("models--org--absent"), "{err}");
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(resolve_model(empty.to_str().unwrap(), None).unwrap_err().to_string().contains("config.json"));
    }
}
