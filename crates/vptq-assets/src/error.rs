//! Error type of the asset fetcher: one structured variant per failure kind, each naming the file,
//! command or archive member concerned.
//!
//! Allowed dependencies: std, thiserror.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, downloading, extracting or verifying an asset.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("creating", "renaming", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A registry client or system tool is not installed (or not on `PATH`).
    #[error("{tool} is not installed or not on PATH (needed to {purpose}); install it and retry")]
    ToolMissing {
        /// The program that could not be started, e.g. `npm`.
        tool: String,
        /// What it was needed for.
        purpose: String,
    },
    /// A child process ran but failed.
    #[error("command `{command}` failed with {status}; last lines of its stderr:\n{stderr_tail}")]
    CommandFailed {
        /// The command line, as run.
        command: String,
        /// Its exit status, in words.
        status: String,
        /// The last lines of what it wrote to stderr.
        stderr_tail: String,
    },
    /// A downloaded file or archive did not contain what was expected.
    #[error("{archive}: {problem}")]
    Archive {
        /// The archive (or download folder) that was being read.
        archive: PathBuf,
        /// What was wrong with it.
        problem: String,
    },
    /// A produced or cached file does not have the expected size or sha256.
    #[error(
        "{path}: expected {expected_size} bytes with sha256 {expected_sha256}, \
         got {actual_size} bytes with sha256 {actual_sha256}"
    )]
    Mismatch {
        /// The file that failed verification (it is not left in place).
        path: PathBuf,
        /// The size from the asset table.
        expected_size: u64,
        /// The digest from the asset table (lowercase hex).
        expected_sha256: String,
        /// The size actually produced.
        actual_size: u64,
        /// The digest actually produced (lowercase hex).
        actual_sha256: String,
    },
    /// An R serialization stream (from the Jane Austen lazy-load database) is malformed.
    #[error("R serialization, {context}: {problem} at byte {offset}")]
    RData {
        /// Which stream was being read, e.g. `Rdata.rdx`.
        context: String,
        /// Byte offset in the (decompressed) stream where the problem was found.
        offset: usize,
        /// What was wrong.
        problem: String,
    },
    /// The Brown corpus text has an unexpected shape.
    #[error("Brown corpus member {member}: {problem}")]
    Brown {
        /// The member of the npm tarball, e.g. `package/ca01`.
        member: String,
        /// What was wrong.
        problem: String,
    },
}

impl AssetError {
    /// Shorthand for [`AssetError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AssetError::Io { op, path: path.into(), source }
    }

    /// Shorthand for [`AssetError::Archive`].
    pub fn archive(archive: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        AssetError::Archive { archive: archive.into(), problem: problem.into() }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, AssetError>;
