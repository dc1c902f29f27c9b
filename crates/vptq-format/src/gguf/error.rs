//! What can be wrong with a GGUF file.

/// A problem with the content of a GGUF file (the file path is added by [`crate::FormatError::Gguf`]).
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file ends before a section is complete.
    #[error("truncated while reading {section}: need {need} bytes at offset {offset}, file has {have}")]
    Truncated {
        /// What was being read.
        section: String,
        /// Byte offset of the read.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// File size.
        have: usize,
    },
}
