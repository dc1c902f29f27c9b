//! Atomic file output: write to a temporary sibling, fsync, then rename over the destination, so that a crash or
//! an error never leaves a half-written file where a good one was.

use crate::error::{FormatError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling path used while `dest` is being written.
pub fn temp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    dest.with_file_name(name)
}

/// Writes a file atomically: `fill` writes the content into a temporary sibling which is renamed over `dest`
/// only when `fill` succeeded.
///
/// # Errors
/// IO errors (with the path), or whatever `fill` returns; the temporary file is removed on error.
pub fn write_atomic<F>(dest: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
{
    let tmp = temp_path(dest);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| FormatError::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        w.flush().map_err(|e| FormatError::io(&tmp, e))?;
        let file = w.into_inner().map_err(|e| FormatError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| FormatError::io(&tmp, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| FormatError::io(dest, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes to `dest` atomically.
///
/// # Errors
/// IO errors, with the path.
pub fn write_bytes_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(dest, |w| w.write_all(bytes).map_err(|e| FormatError::io(dest, e)))
}
