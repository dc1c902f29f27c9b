//! What can be wrong with a GGUF file, or with a request made of one (missing key, wrong value type).
//!
//! Every variant carries the facts needed to act on it (offsets, counts, names); the file path is added by
//! [`crate::FormatError::Gguf`], which wraps these.

use super::GgmlType;

/// A problem with the content of a GGUF file (the file path is added by [`crate::FormatError::Gguf`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first bytes of the file (fewer than four when the file is that short).
        found: Vec<u8>,
    },
    /// A GGUF version this reader does not handle (only 2 and 3 are).
    #[error("unsupported GGUF version {version} (supported: 2, 3){hint}", hint = version_hint(*version))]
    UnsupportedVersion {
        /// Version found in the header.
        version: u32,
    },
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
    /// A count read from the file is larger than the rest of the file could possibly hold.
    #[error("{what}: count {count} exceeds the limit {limit} (the file cannot hold that many)")]
    TooMany {
        /// What was being counted.
        what: String,
        /// The count read from the file.
        count: u64,
        /// The largest count the remaining bytes (or a fixed cap) allow.
        limit: u64,
    },
    /// A metadata key or tensor name that is not valid UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    BadString {
        /// What the string is (e.g. "metadata key", "tensor name").
        what: String,
        /// Byte offset of the string's bytes.
        offset: usize,
    },
    /// A metadata value type id outside 0..=12.
    #[error("metadata `{key}`: unknown value type id {id}")]
    UnknownValueType {
        /// Key whose value has the bad type.
        key: String,
        /// The type id found.
        id: u32,
    },
    /// Arrays nested deeper than the reader allows.
    #[error("metadata `{key}`: arrays nested deeper than {limit} levels")]
    NestingTooDeep {
        /// Key whose value is too deep.
        key: String,
        /// The maximum depth allowed.
        limit: u32,
    },
    /// A tensor element type id this crate does not know.
    #[error("tensor `{name}`: unknown ggml type id {id}")]
    UnknownTensorType {
        /// Tensor name.
        name: String,
        /// The type id found.
        id: u32,
    },
    /// A known element type for which dequantization is not implemented.
    #[error("dequantization of ggml type {ty} is not supported")]
    UnsupportedTensorType {
        /// The type.
        ty: GgmlType,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment = {value} is not a nonzero power of two")]
    BadAlignment {
        /// The value found.
        value: u64,
    },
    /// A tensor whose data offset is not a multiple of the file's alignment.
    #[error("tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: usize,
    },
    /// A tensor whose data does not lie inside the file.
    #[error("tensor `{name}`: data [{offset}, {offset}+{n_bytes}) lies outside the data section of {data_len} bytes")]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Size of the tensor's data in bytes.
        n_bytes: u64,
        /// Bytes from the start of the data section to the end of the file.
        data_len: u64,
    },
    /// A tensor whose dimensions are invalid (count, zero, overflow, not whole blocks).
    #[error("tensor `{name}`: bad dimensions {dims:?}: {reason}")]
    BadDims {
        /// Tensor name.
        name: String,
        /// Dimensions as read (ggml order), possibly incomplete.
        dims: Vec<u64>,
        /// What is wrong.
        reason: String,
    },
    /// Two tensors with the same name.
    #[error("tensor `{name}` appears twice in the tensor table")]
    DuplicateTensor {
        /// Tensor name.
        name: String,
    },
    /// Two metadata entries with the same key.
    #[error("metadata key `{key}` appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A metadata key that a caller needs is absent.
    #[error("metadata key `{key}` not found")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value of another type than the caller needs.
    #[error("metadata `{key}`: expected {expected}, found {found}")]
    WrongKeyType {
        /// The key.
        key: String,
        /// The type needed.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A metadata value of the right kind that does not fit the type needed (e.g. a negative count).
    #[error("metadata `{key}`: value {value} does not fit in {target}")]
    ValueOutOfRange {
        /// The key.
        key: String,
        /// The value, printed.
        value: String,
        /// The type needed.
        target: String,
    },
    /// An element count that is not a whole number of blocks of the type.
    #[error("{n_elements} elements of type {ty} are not a whole number of {block_len}-element blocks")]
    NotBlockMultiple {
        /// The type.
        ty: GgmlType,
        /// Elements requested.
        n_elements: usize,
        /// Elements per block of the type.
        block_len: usize,
    },
    /// Fewer data bytes than the element count needs.
    #[error("{ty} data too short: need {need} bytes, have {have}")]
    DataTooShort {
        /// The type.
        ty: GgmlType,
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
}

/// An extra sentence for [`GgufError::UnsupportedVersion`] where the version says more than "unknown".
fn version_hint(version: u32) -> &'static str {
    match version {
        1 => "; version 1 files (before August 2023) use 32-bit counts and must be re-converted",
        // A big-endian file's version reads byte-swapped on a little-endian reader.
        v if matches!(v.swap_bytes(), 2 | 3) => "; this looks like a big-endian GGUF file, which is not supported",
        _ => "",
    }
}
