//! GGUF writer, used to build test fixtures and tiny models: collects metadata and tensors in memory, then lays
//! them out as llama.cpp does (header, metadata, tensor table, padding, data with every tensor aligned and
//! padded to the alignment).
//!
//! The builder panics on misuse (mismatched data length, mixed-type arrays): those are bugs in the code building
//! the file, never facts about a file being read.

use super::types::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::{GgmlType, MetaValue};
use crate::error::FormatError;
use half::f16;
use std::path::Path;

/// Builds a GGUF file in memory.
///
/// ```
/// use vptq_format::gguf::{GgufWriter, MetaValue};
/// let mut w = GgufWriter::new();
/// w.add_meta("general.architecture", MetaValue::String("llama".into()))
///     .add_tensor_f32("norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0]);
/// let bytes = w.to_bytes();
/// assert_eq!(&bytes[..4], b"GGUF");
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    alignment: usize,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    /// ggml order, `dims[0]` fastest.
    dims: Vec<usize>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter { version: 3, alignment: DEFAULT_ALIGNMENT, metadata: Vec::new(), tensors: Vec::new() }
    }

    /// Sets the version written in the header (2 and 3 share one layout; other values are written as given, to
    /// build files a reader must reject).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets the alignment of the data section and of each tensor. Unless metadata already holds
    /// `general.alignment`, a value other than 32 is recorded as that key (u32) when the file is built. Values
    /// that are not powers of two are allowed, to build files a reader must reject.
    ///
    /// # Panics
    /// If `alignment` is zero.
    pub fn alignment(&mut self, alignment: usize) -> &mut Self {
        assert!(alignment > 0, "GgufWriter::alignment: alignment must be nonzero");
        self.alignment = alignment;
        self
    }

    /// Appends a metadata entry (entries are written in the order added).
    ///
    /// # Panics
    /// If an array (at any depth) mixes element types, which GGUF cannot encode.
    pub fn add_meta(&mut self, key: impl Into<String>, value: MetaValue) -> &mut Self {
        let key = key.into();
        assert!(is_homogeneous(&value), "GgufWriter::add_meta: array `{key}` mixes element types");
        self.metadata.push((key, value));
        self
    }

    /// Appends an f32 tensor given its row-major shape (slowest dimension first) and data.
    ///
    /// # Panics
    /// If the shape has 0 or more than 4 dimensions, a zero dimension, or `data.len()` differs from its product.
    pub fn add_tensor_f32(&mut self, name: impl Into<String>, shape_row_major: &[usize], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_tensor_raw(name, &reversed(shape_row_major), GgmlType::F32, bytes)
    }

    /// Appends an f16 tensor (values rounded to nearest f16) given its row-major shape and data.
    ///
    /// # Panics
    /// As [`GgufWriter::add_tensor_f32`].
    pub fn add_tensor_f16(&mut self, name: impl Into<String>, shape_row_major: &[usize], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        self.add_tensor_raw(name, &reversed(shape_row_major), GgmlType::F16, bytes)
    }

    /// Appends a tensor of any type from its encoded bytes (e.g. quantized blocks from
    /// [`super::quantize_q4_1`]); `dims` are in ggml order (`dims[0]` is the row length).
    ///
    /// # Panics
    /// If `dims` has 0 or more than 4 entries, a zero entry, a row length that is not a whole number of blocks,
    /// or `bytes.len()` is not the size of that many elements of `ggml_type`.
    pub fn add_tensor_raw(
        &mut self,
        name: impl Into<String>,
        dims: &[usize],
        ggml_type: GgmlType,
        bytes: Vec<u8>,
    ) -> &mut Self {
        let name = name.into();
        assert!((1..=4).contains(&dims.len()), "GgufWriter: tensor `{name}` has {} dims, must be 1..=4", dims.len());
        assert!(!dims.contains(&0), "GgufWriter: tensor `{name}` has a zero dimension");
        assert!(
            dims[0].is_multiple_of(ggml_type.block_len()),
            "GgufWriter: tensor `{name}` rows are not whole {ggml_type} blocks"
        );
        let n_elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected = n_elements.and_then(|n| ggml_type.n_bytes(n));
        assert_eq!(
            expected,
            Some(bytes.len()),
            "GgufWriter: tensor `{name}` data length does not match its dims {dims:?}"
        );
        self.tensors.push(PendingTensor { name, dims: dims.to_vec(), ggml_type, data: bytes });
        self
    }

    /// The complete file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment;
        let add_alignment_key = align != DEFAULT_ALIGNMENT && !self.metadata.iter().any(|(k, _)| k == ALIGNMENT_KEY);
        let alignment_entry = (ALIGNMENT_KEY.to_string(), MetaValue::U32(u32::try_from(align).unwrap_or(u32::MAX)));
        let metadata: Vec<&(String, MetaValue)> =
            self.metadata.iter().chain(add_alignment_key.then_some(&alignment_entry)).collect();

        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata {
            write_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            write_value(&mut out, value);
        }

        let mut offset = 0usize;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + t.data.len()).next_multiple_of(align);
        }

        out.resize(out.len().next_multiple_of(align), 0);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().next_multiple_of(align), 0);
        }
        out
    }

    /// Writes the file atomically (temporary sibling, then rename).
    ///
    /// # Errors
    /// IO errors, with the path.
    pub fn write(&self, path: &Path) -> Result<(), FormatError> {
        crate::atomic::write_bytes_atomic(path, &self.to_bytes())
    }
}

fn reversed(shape: &[usize]) -> Vec<usize> {
    shape.iter().rev().copied().collect()
}

/// Whether every array in `v` has elements of one type (nested arrays may differ from each other).
fn is_homogeneous(v: &MetaValue) -> bool {
    match v {
        MetaValue::Array(a) => {
            let first = a.first().map(MetaValue::type_id);
            a.iter().all(|e| Some(e.type_id()) == first && is_homogeneous(e))
        }
        _ => true,
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Writes a value's payload (the type id is written by the caller, or once per array).
fn write_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => write_str(out, s),
        MetaValue::Array(a) => {
            // An empty array has no element to take a type from; u8 is as good as any, readers see `[]`.
            let elem_type = a.first().map_or(0, MetaValue::type_id);
            out.extend_from_slice(&elem_type.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for e in a {
                write_value(out, e);
            }
        }
    }
}
