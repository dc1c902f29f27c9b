//! Size + sha256 verification of cached files, verification stamps, and atomic installation.
//!
//! Stamps: after a file is verified (hashed in full or written by [`VerifiedWriter`]), a small
//! JSON file `<file>.verified` records its sha256, size and modification time (ns since the
//! epoch). A later check trusts the stamp when the stamp's sha256 and size equal the expected
//! ones and the file's current size and mtime equal the stamped ones: one `stat` and one tiny
//! read instead of hashing (SmolLM2: 98 MB, Qwen: 1.1 GB). Anything else rehashes the file.
//!
//! Installation: output goes to a temporary file in the destination's folder while being hashed;
//! it is fsynced, compared with the expected size and sha256, and only then renamed over the
//! destination (then the folder is fsynced). A mismatch deletes the temporary file, so a bad
//! file is never left in place.
//!
//! Allowed dependencies: std, sha2, serde, serde_json, tracing, this crate's `error`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AssetError, Result};

/// What a finished file must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFile {
    /// Path relative to the cache root, `/`-separated.
    pub rel_path: String,
    /// Size in bytes.
    pub n_bytes: u64,
    /// sha256 as 64 lowercase hex digits.
    pub sha256: String,
}

/// Result of checking a file against its [`ExpectedFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present and correct; `via_stamp` says whether the stamp spared the hashing.
    Valid {
        /// True when a matching stamp was trusted instead of rehashing.
        via_stamp: bool,
    },
    /// Not there.
    Missing,
    /// There, but with the wrong size or digest.
    Invalid {
        /// Its size in bytes.
        n_bytes: u64,
        /// Its sha256 (empty when the size was already wrong and it was not hashed).
        sha256: String,
    },
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    sha256: String,
    n_bytes: u64,
    mtime_ns: u128,
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and sha256 of a file, streamed.
///
/// # Errors
/// [`AssetError::Io`] when it cannot be read.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| AssetError::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| AssetError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        n_bytes += n as u64;
    }
    Ok((n_bytes, hex(&hasher.finalize())))
}

/// Where the stamp of `path` lives: `path` with `.verified` appended.
pub fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".verified");
    PathBuf::from(name)
}

fn mtime_ns(meta: &fs::Metadata) -> Option<u128> {
    meta.modified().ok()?.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos())
}

fn read_stamp(path: &Path) -> Option<Stamp> {
    let text = fs::read_to_string(stamp_path(path)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records that `path` (already verified against `expected`) is correct as of its current mtime.
/// Failing to write a stamp is not an error: the next check just rehashes.
pub fn write_stamp(path: &Path, expected: &ExpectedFile) {
    let Ok(meta) = fs::metadata(path) else { return };
    let Some(mtime_ns) = mtime_ns(&meta) else {
        return;
    };
    let stamp = Stamp { sha256: expected.sha256.clone(), n_bytes: meta.len(), mtime_ns };
    let Ok(json) = serde_json::to_string(&stamp) else {
        return;
    };
    if let Err(e) = fs::write(stamp_path(path), json + "\n") {
        tracing::debug!(path = %path.display(), error = %e, "could not write verification stamp");
    }
}

/// Checks `path` against `expected`: a cheap stamp check when `trust_stamps` and a stamp
/// matches, otherwise a full hash (which then writes a fresh stamp if the file is correct).
///
/// # Errors
/// [`AssetError::Io`] when the file exists but cannot be read.
pub fn check_file(path: &Path, expected: &ExpectedFile, trust_stamps: bool) -> Result<FileState> {
    let meta = match fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Ok(FileState::Invalid { n_bytes: 0, sha256: String::new() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(AssetError::io("inspecting", path, e)),
    };
    if meta.len() != expected.n_bytes {
        return Ok(FileState::Invalid { n_bytes: meta.len(), sha256: String::new() });
    }
    if trust_stamps {
        if let (Some(stamp), Some(mtime)) = (read_stamp(path), mtime_ns(&meta)) {
            if stamp.sha256 == expected.sha256 && stamp.n_bytes == expected.n_bytes && stamp.mtime_ns == mtime {
                return Ok(FileState::Valid { via_stamp: true });
            }
        }
    }
    let (n_bytes, sha256) = hash_file(path)?;
    if n_bytes == expected.n_bytes && sha256 == expected.sha256 {
        write_stamp(path, expected);
        Ok(FileState::Valid { via_stamp: false })
    } else {
        Ok(FileState::Invalid { n_bytes, sha256 })
    }
}

/// A writer that produces `final_path` atomically: bytes go to a temporary file next to it while
/// being hashed; [`VerifiedWriter::finish`] verifies and renames. Dropping it unfinished removes
/// the temporary file.
pub struct VerifiedWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    n_bytes: u64,
    expected: ExpectedFile,
}

impl VerifiedWriter {
    /// Creates the destination folder and the temporary file `.<name>.partial-<pid>`.
    ///
    /// # Errors
    /// [`AssetError::Io`] when either cannot be created.
    pub fn create(final_path: &Path, expected: &ExpectedFile) -> Result<Self> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| AssetError::io("creating", dir, e))?;
        let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp_path = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file = File::create(&tmp_path).map_err(|e| AssetError::io("creating", &tmp_path, e))?;
        Ok(VerifiedWriter {
            final_path: final_path.to_path_buf(),
            tmp_path,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            n_bytes: 0,
            expected: expected.clone(),
        })
    }

    /// Bytes written so far.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// Flushes and fsyncs the temporary file, checks size and sha256, then renames it into place
    /// and records a stamp.
    ///
    /// # Errors
    /// [`AssetError::Mismatch`] (the temporary file is deleted and the destination untouched) or
    /// [`AssetError::Io`].
    pub fn finish(mut self) -> Result<()> {
        let writer = self.file.take().expect("invariant: file present until finish");
        let file = writer.into_inner().map_err(|e| AssetError::io("writing", &self.tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| AssetError::io("syncing", &self.tmp_path, e))?;
        drop(file);
        let sha256 = hex(&std::mem::take(&mut self.hasher).finalize());
        if self.n_bytes != self.expected.n_bytes || sha256 != self.expected.sha256 {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(AssetError::Mismatch {
                path: self.final_path.clone(),
                expected_size: self.expected.n_bytes,
                expected_sha256: self.expected.sha256.clone(),
                actual_size: self.n_bytes,
                actual_sha256: sha256,
            });
        }
        fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| AssetError::io("renaming into place", &self.final_path, e))?;
        if let Some(dir) = self.final_path.parent() {
            // Make the rename durable; not all platforms can open a folder, so ignore failures.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        write_stamp(&self.final_path, &self.expected);
        Ok(())
    }
}

impl Write for VerifiedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("writer already finished"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for VerifiedWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// Writes `bytes` to `final_path` through a [`VerifiedWriter`].
///
/// # Errors
/// As [`VerifiedWriter::finish`].
pub fn install_bytes(final_path: &Path, expected: &ExpectedFile, bytes: &[u8]) -> Result<()> {
    let mut writer = VerifiedWriter::create(final_path, expected)?;
    writer.write_all(bytes).map_err(|e| AssetError::io("writing", final_path, e))?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected_for(bytes: &[u8]) -> ExpectedFile {
        ExpectedFile { rel_path: "x.bin".to_owned(), n_bytes: bytes.len() as u64, sha256: hex(&Sha256::digest(bytes)) }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn known_digest() {
        assert_eq!(hex(&Sha256::digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn installs_a_correct_file_with_a_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.bin");
        let expected = expected_for(b"hello");
        install_bytes(&path, &expected, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(leftovers(&dir.path().join("sub")), ["x.bin", "x.bin.verified"]);
        assert_eq!(check_file(&path, &expected, true).unwrap(), FileState::Valid { via_stamp: true });
        assert_eq!(check_file(&path, &expected, false).unwrap(), FileState::Valid { via_stamp: false });
    }

    #[test]
    fn rejects_tampered_output_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let expected = expected_for(b"hello");
        let err = install_bytes(&path, &expected, b"hellO").unwrap_err();
        assert!(matches!(err, AssetError::Mismatch { actual_size: 5, .. }), "{err}");
        let err = install_bytes(&path, &expected, b"hello!").unwrap_err();
        assert!(matches!(err, AssetError::Mismatch { actual_size: 6, .. }), "{err}");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_install_keeps_the_previous_good_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let expected = expected_for(b"hello");
        install_bytes(&path, &expected, b"hello").unwrap();
        assert!(install_bytes(&path, &expected, b"jello").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
    }

    #[test]
    fn detects_tampering_despite_a_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let expected = expected_for(b"hello");
        install_bytes(&path, &expected, b"hello").unwrap();
        // Same size, new content and a different mtime: the stamp no longer applies.
        fs::write(&path, b"jello").unwrap();
        let file = File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
        let state = check_file(&path, &expected, true).unwrap();
        assert!(matches!(state, FileState::Invalid { n_bytes: 5, .. }), "{state:?}");
        // Without stamps a same-size tamper is caught by the hash too.
        assert!(matches!(check_file(&path, &expected, false).unwrap(), FileState::Invalid { .. }));
        assert_eq!(check_file(&dir.path().join("absent"), &expected, true).unwrap(), FileState::Missing);
    }

    #[test]
    fn dropping_an_unfinished_writer_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let mut writer = VerifiedWriter::create(&path, &expected_for(b"hello")).unwrap();
        writer.write_all(b"he").unwrap();
        drop(writer);
        assert!(leftovers(dir.path()).is_empty());
    }
}
