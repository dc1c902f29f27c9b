//! GGUF parsing: header, metadata and tensor table, with every count, length, offset and size checked against
//! the bytes actually present before anything is allocated or sliced, so that no file content can cause a panic,
//! an overflow or an outsized allocation.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the metadata
//! (key string, u32 value type, value), the tensor table (name string, u32 n_dims, u64 dims, u32 type, u64
//! offset), padding to `general.alignment`, then the data section. Strings are a u64 length and that many bytes.

use super::types::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::{GgmlType, GgufError, MetaValue, TensorInfo};
use std::collections::HashSet;

/// Deepest nesting of metadata arrays accepted (an array of arrays is depth 2). Real files use depth 1.
pub const MAX_ARRAY_DEPTH: u32 = 8;

/// Most elements accepted in one metadata array, whatever the file size. Each parsed element takes 32 bytes of
/// memory however small its encoding, so this bounds memory for hostile files; the largest real vocabularies
/// hold about 260k tokens.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;

/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Smallest possible encoding of one metadata entry: key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// Smallest possible encoding of one tensor-table entry: name length, n_dims, one dim, type id, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Upper bound on capacities reserved from counts before the entries are read, so that a large (but still
/// possible) count does not reserve memory for entries the file turns out not to have.
const MAX_PREALLOC: usize = 4096;

/// The content of a GGUF file, parsed and validated; tensor data stays in the caller's buffer.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: usize,
    pub alignment: usize,
}

/// Parses and validates a whole GGUF file held in `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    check_magic(buf)?;
    c.pos = GGUF_MAGIC.len();
    let version = c.u32("header version")?;
    if !matches!(version, 2 | 3) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let tensor_count = c.u64("header tensor count")?;
    let kv_count = c.u64("header metadata count")?;
    let rem = c.remaining() as u64;
    check_count("metadata entries", kv_count, rem / MIN_KV_BYTES)?;
    check_count("tensors", tensor_count, rem / MIN_TENSOR_INFO_BYTES)?;

    let metadata = read_metadata(&mut c, kv_count)?;
    let alignment = alignment_of(&metadata)?;
    let mut tensors = Vec::with_capacity(prealloc(tensor_count));
    for _ in 0..tensor_count {
        tensors.push(read_tensor_info(&mut c)?);
    }
    let mut names = HashSet::with_capacity(tensors.len());
    for (t, _) in &tensors {
        if !names.insert(t.name.as_str()) {
            return Err(GgufError::DuplicateTensor { name: t.name.clone() });
        }
    }

    // The data section starts at the first multiple of the alignment after the table. A file without tensors
    // may end before it; with tensors, the bounds check below catches a data section past the end.
    let data_offset = c.pos.div_ceil(alignment).saturating_mul(alignment);
    let data_len = buf.len().saturating_sub(data_offset) as u64;
    let tensors = tensors
        .into_iter()
        .map(|(t, offset)| place_tensor(t, offset, alignment, data_len))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parsed { version, metadata, tensors, data_offset, alignment })
}

/// `BadMagic` for wrong bytes; `Truncated` when the file is a strict prefix of the magic (empty included).
fn check_magic(buf: &[u8]) -> Result<(), GgufError> {
    match buf.get(..GGUF_MAGIC.len()) {
        Some(m) if m == GGUF_MAGIC => Ok(()),
        Some(m) => Err(GgufError::BadMagic { found: m.to_vec() }),
        None if GGUF_MAGIC.starts_with(buf) => Err(GgufError::Truncated {
            section: "header magic".into(),
            offset: 0,
            need: GGUF_MAGIC.len(),
            have: buf.len(),
        }),
        None => Err(GgufError::BadMagic { found: buf.to_vec() }),
    }
}

fn check_count(what: &str, count: u64, limit: u64) -> Result<(), GgufError> {
    if count > limit {
        return Err(GgufError::TooMany { what: what.into(), count, limit });
    }
    Ok(())
}

/// Capacity to reserve for `count` entries already checked against the file size.
fn prealloc(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX).min(MAX_PREALLOC)
}

fn read_metadata(c: &mut Cursor<'_>, kv_count: u64) -> Result<Vec<(String, MetaValue)>, GgufError> {
    let mut metadata = Vec::with_capacity(prealloc(kv_count));
    let mut seen = HashSet::with_capacity(prealloc(kv_count));
    for _ in 0..kv_count {
        let key = c.utf8_string("metadata key")?;
        let ty = c.u32("metadata value type").map_err(|e| in_key(e, &key))?;
        let value = read_value(c, ty, &key, 0).map_err(|e| in_key(e, &key))?;
        if !seen.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { key });
        }
        metadata.push((key, value));
    }
    Ok(metadata)
}

/// Names the key in a truncation error met while reading its value.
fn in_key(e: GgufError, key: &str) -> GgufError {
    match e {
        GgufError::Truncated { section, offset, need, have } => {
            GgufError::Truncated { section: format!("{section} of `{key}`"), offset, need, have }
        }
        other => other,
    }
}

/// Metadata value type ids of the GGUF specification.
mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Encoded size of a fixed-size value type; `None` for strings, arrays and unknown ids.
fn fixed_size(ty: u32) -> Option<usize> {
    use value_type::*;
    match ty {
        U8 | I8 | BOOL => Some(1),
        U16 | I16 => Some(2),
        U32 | I32 | F32 => Some(4),
        U64 | I64 | F64 => Some(8),
        _ => None,
    }
}

/// Smallest encoding of one value of type `ty` (a string or array is at least its u64 length, an array also
/// its element type); `None` for unknown ids.
fn min_encoded_size(ty: u32) -> Option<u64> {
    match ty {
        value_type::STRING => Some(8),
        value_type::ARRAY => Some(4 + 8),
        _ => fixed_size(ty).map(|n| n as u64),
    }
}

fn read_value(c: &mut Cursor<'_>, ty: u32, key: &str, depth: u32) -> Result<MetaValue, GgufError> {
    use value_type::*;
    const S: &str = "metadata value";
    Ok(match ty {
        U8 => MetaValue::U8(c.u8(S)?),
        I8 => MetaValue::I8(c.u8(S)? as i8),
        U16 => MetaValue::U16(u16::from_le_bytes(c.bytes(S)?)),
        I16 => MetaValue::I16(i16::from_le_bytes(c.bytes(S)?)),
        U32 => MetaValue::U32(c.u32(S)?),
        I32 => MetaValue::I32(i32::from_le_bytes(c.bytes(S)?)),
        F32 => MetaValue::F32(f32::from_le_bytes(c.bytes(S)?)),
        // The spec allows only 0 and 1; any nonzero byte is read as true, as llama.cpp does.
        BOOL => MetaValue::Bool(c.u8(S)? != 0),
        // Values (unlike keys and tensor names) are read lossily: a tokenizer vocabulary with one odd byte
        // sequence should not make the whole model unreadable.
        STRING => MetaValue::String(String::from_utf8_lossy(c.string_bytes(S)?.1).into_owned()),
        ARRAY => MetaValue::Array(read_array(c, key, depth + 1)?),
        U64 => MetaValue::U64(c.u64(S)?),
        I64 => MetaValue::I64(i64::from_le_bytes(c.bytes(S)?)),
        F64 => MetaValue::F64(f64::from_le_bytes(c.bytes(S)?)),
        id => return Err(GgufError::UnknownValueType { key: key.into(), id }),
    })
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: u32) -> Result<Vec<MetaValue>, GgufError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep { key: key.into(), limit: MAX_ARRAY_DEPTH });
    }
    let elem_ty = c.u32("array element type")?;
    let count = c.u64("array length")?;
    let min_size = min_encoded_size(elem_ty).ok_or(GgufError::UnknownValueType { key: key.into(), id: elem_ty })?;
    let limit = (c.remaining() as u64 / min_size).min(MAX_ARRAY_LEN);
    check_count(&format!("elements of array `{key}`"), count, limit)?;
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    let Some(size) = fixed_size(elem_ty) else {
        let mut values = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            values.push(read_value(c, elem_ty, key, depth)?);
        }
        return Ok(values);
    };
    // Fixed-size elements: one bounds check for the whole array, then a tight decode loop.
    let need = n.saturating_mul(size);
    let raw = c.take(need, "array elements")?;
    use value_type::*;
    Ok(match elem_ty {
        U8 => raw.iter().map(|&b| MetaValue::U8(b)).collect(),
        I8 => raw.iter().map(|&b| MetaValue::I8(b as i8)).collect(),
        BOOL => raw.iter().map(|&b| MetaValue::Bool(b != 0)).collect(),
        U16 => le_chunks(raw).map(|b| MetaValue::U16(u16::from_le_bytes(b))).collect(),
        I16 => le_chunks(raw).map(|b| MetaValue::I16(i16::from_le_bytes(b))).collect(),
        U32 => le_chunks(raw).map(|b| MetaValue::U32(u32::from_le_bytes(b))).collect(),
        I32 => le_chunks(raw).map(|b| MetaValue::I32(i32::from_le_bytes(b))).collect(),
        F32 => le_chunks(raw).map(|b| MetaValue::F32(f32::from_le_bytes(b))).collect(),
        U64 => le_chunks(raw).map(|b| MetaValue::U64(u64::from_le_bytes(b))).collect(),
        I64 => le_chunks(raw).map(|b| MetaValue::I64(i64::from_le_bytes(b))).collect(),
        F64 => le_chunks(raw).map(|b| MetaValue::F64(f64::from_le_bytes(b))).collect(),
        id => return Err(GgufError::UnknownValueType { key: key.into(), id }),
    })
}

/// `bytes` as consecutive `N`-byte arrays (a trailing partial chunk is ignored; callers pass whole multiples).
pub(crate) fn le_chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|chunk| {
        let mut a = [0u8; N];
        // Cannot fail: `chunks_exact(N)` yields slices of exactly N bytes.
        a.copy_from_slice(chunk);
        a
    })
}

/// `general.alignment` if present (any unsigned integer type), else the default; must be a power of two.
fn alignment_of(metadata: &[(String, MetaValue)]) -> Result<usize, GgufError> {
    let Some((_, v)) = metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let value = v.as_u64().ok_or_else(|| GgufError::WrongKeyType {
        key: ALIGNMENT_KEY.into(),
        expected: "unsigned integer".into(),
        found: v.type_name(),
    })?;
    match usize::try_from(value) {
        Ok(a) if a.is_power_of_two() => Ok(a),
        _ => Err(GgufError::BadAlignment { value }),
    }
}

/// Reads one tensor-table entry and validates everything that does not depend on the data section: dims, type,
/// size. Returns the entry (offset not yet set) and the raw offset.
fn read_tensor_info(c: &mut Cursor<'_>) -> Result<(TensorInfo, u64), GgufError> {
    const S: &str = "tensor info";
    let name = c.utf8_string("tensor name")?;
    let n_dims = c.u32(S)?;
    let bad_dims =
        |dims: &[u64], reason: String| GgufError::BadDims { name: name.clone(), dims: dims.to_vec(), reason };
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(bad_dims(&[], format!("{n_dims} dimensions, must be 1..={MAX_DIMS}")));
    }
    let mut raw_dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        raw_dims.push(c.u64(S)?);
    }
    let type_id = c.u32(S)?;
    let offset = c.u64(S)?;

    let mut dims = Vec::with_capacity(raw_dims.len());
    let mut n_elements: usize = 1;
    for &d in &raw_dims {
        let d = match usize::try_from(d) {
            Ok(0) => return Err(bad_dims(&raw_dims, "a dimension is zero".into())),
            Ok(d) => d,
            Err(_) => return Err(bad_dims(&raw_dims, "a dimension does not fit in memory".into())),
        };
        n_elements =
            n_elements.checked_mul(d).ok_or_else(|| bad_dims(&raw_dims, "the element count overflows".into()))?;
        dims.push(d);
    }
    let ggml_type =
        GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType { name: name.clone(), id: type_id })?;
    let row_len = dims.first().copied().unwrap_or(1);
    if !row_len.is_multiple_of(ggml_type.block_len()) {
        let reason =
            format!("row length {row_len} is not a multiple of the {ggml_type} block length {}", ggml_type.block_len());
        return Err(bad_dims(&raw_dims, reason));
    }
    let n_bytes = ggml_type.n_bytes(n_elements).ok_or_else(|| bad_dims(&raw_dims, "the byte size overflows".into()))?;
    Ok((TensorInfo { name, dims, ggml_type, offset: 0, n_bytes }, offset))
}

/// Checks a tensor's offset (aligned, data inside the file) and stores it.
fn place_tensor(mut t: TensorInfo, offset: u64, alignment: usize, data_len: u64) -> Result<TensorInfo, GgufError> {
    if !offset.is_multiple_of(alignment as u64) {
        return Err(GgufError::MisalignedTensor { name: t.name, offset, alignment });
    }
    let n_bytes = t.n_bytes as u64;
    let in_bounds = offset.checked_add(n_bytes).is_some_and(|end| end <= data_len);
    // `offset <= data_len`, itself a byte count of the buffer, so it fits in usize.
    match usize::try_from(offset) {
        Ok(o) if in_bounds => {
            t.offset = o;
            Ok(t)
        }
        _ => Err(GgufError::TensorOutOfBounds { name: t.name, offset, n_bytes, data_len }),
    }
}

/// A read position in the file; every read is bounds-checked and fails with `Truncated`.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, section: &str) -> Result<&'a [u8], GgufError> {
        let slice = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => {
                Err(GgufError::Truncated { section: section.into(), offset: self.pos, need: n, have: self.buf.len() })
            }
        }
    }

    fn bytes<const N: usize>(&mut self, section: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N, section)?;
        let mut a = [0u8; N];
        // Cannot fail: `take(N)` returned exactly N bytes.
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, section: &str) -> Result<u8, GgufError> {
        Ok(self.bytes::<1>(section)?[0])
    }

    fn u32(&mut self, section: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(section)?))
    }

    fn u64(&mut self, section: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(section)?))
    }

    /// A length-prefixed string's bytes and their offset. The length is checked against the bytes left
    /// (through `take`) before anything is allocated.
    fn string_bytes(&mut self, section: &str) -> Result<(usize, &'a [u8]), GgufError> {
        let len = self.u64(section)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let offset = self.pos;
        Ok((offset, self.take(len, section)?))
    }

    /// A length-prefixed string that must be valid UTF-8 (keys and tensor names).
    fn utf8_string(&mut self, what: &str) -> Result<String, GgufError> {
        let (offset, bytes) = self.string_bytes(what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::BadString { what: what.into(), offset }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_little_endian_and_stops_at_the_end() {
        let mut c = Cursor { buf: &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9], pos: 0 };
        assert_eq!(c.u32("a").unwrap(), 1);
        assert_eq!(c.u64("b").unwrap(), 2);
        assert_eq!(c.remaining(), 1);
        let e = c.u32("c").unwrap_err();
        assert_eq!(e, GgufError::Truncated { section: "c".into(), offset: 12, need: 4, have: 13 });
        // A failed read consumes nothing; a length that overflows the position is a truncation too.
        assert_eq!(c.u8("d").unwrap(), 9);
        assert!(matches!(c.take(usize::MAX, "e"), Err(GgufError::Truncated { need: usize::MAX, .. })));
    }

    #[test]
    fn strings_need_their_bytes_and_keys_need_utf8() {
        let mut buf = 3u64.to_le_bytes().to_vec();
        buf.extend_from_slice(b"ab");
        let mut c = Cursor { buf: &buf, pos: 0 };
        assert!(matches!(c.string_bytes("s"), Err(GgufError::Truncated { need: 3, have: 10, .. })));
        let mut buf = 2u64.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0xC3, 0x28]);
        let mut c = Cursor { buf: &buf, pos: 0 };
        assert_eq!(c.utf8_string("key").unwrap_err(), GgufError::BadString { what: "key".into(), offset: 8 });
    }

    #[test]
    fn min_sizes_bound_counts() {
        assert_eq!(min_encoded_size(value_type::U8), Some(1));
        assert_eq!(min_encoded_size(value_type::F64), Some(8));
        assert_eq!(min_encoded_size(value_type::STRING), Some(8));
        assert_eq!(min_encoded_size(value_type::ARRAY), Some(12));
        assert_eq!(min_encoded_size(13), None);
        assert_eq!(le_chunks::<2>(&[1, 0, 2, 0, 3]).map(u16::from_le_bytes).collect::<Vec<_>>(), [1, 2]);
    }
}
