//! Malformed GGUF files, each built in memory: every one must be rejected with the right `GgufError` variant,
//! wrapped in `FormatError::Gguf` with the file path, and nothing may panic or allocate from untrusted counts.

mod gguf_common;

use gguf_common::{gguf_err, parse, Raw};
use proptest::prelude::*;
use vptq_format::gguf::{GgmlType, GgufError, GgufWriter, MetaValue, MAX_ARRAY_DEPTH};

const F32: u32 = 0;
const Q4_1: u32 = 3;

/// A small valid file whose last tensor ends exactly at the end of the file (no trailing padding), so that
/// every strict prefix is malformed.
fn small_valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::String("llama".into()))
        .add_meta("llama.block_count", MetaValue::U32(2))
        .add_meta("tok", MetaValue::Array(vec![MetaValue::String("a".into()), MetaValue::String("bc".into())]))
        .add_meta("nested", MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::I16(-3)])]))
        .add_tensor_f32("a", &[2, 4], &[1.0; 8])
        .add_tensor_raw("b", &[32, 1], GgmlType::Q4_1, vec![0; 20])
        .add_tensor_f32("c", &[8], &[2.0; 8]);
    w.to_bytes()
}

/// Header with one tensor entry (given fields) and `data_len` bytes of data after aligned padding.
fn one_tensor(dims: &[u64], type_id: u32, offset: u64, data_len: usize) -> Vec<u8> {
    Raw::header(3, 1, 0).tensor("w", dims, type_id, offset).pad_to(32).zeros(data_len).bytes
}

#[test]
fn small_valid_file_parses() {
    let f = parse(small_valid_file()).unwrap();
    let last = f.tensors.iter().map(|t| f.data_offset + t.offset + t.n_bytes).max().unwrap();
    assert_eq!(last, f.file_size(), "the fixture must have no trailing padding");
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_valid_file();
    for len in 0..bytes.len() {
        let e = gguf_err(bytes[..len].to_vec());
        assert!(
            // Counts are checked against the bytes left before the entries are read, so a cut can also show
            // up as a count that the remaining bytes cannot hold.
            matches!(e, GgufError::Truncated { .. } | GgufError::TooMany { .. } | GgufError::TensorOutOfBounds { .. }),
            "prefix of {len} bytes: unexpected {e:?}"
        );
    }
}

#[test]
fn truncation_message_says_where() {
    let bytes = small_valid_file();
    // Cut inside the value of `tok`, the third metadata entry.
    let at = bytes.windows(2).position(|w| w == b"bc").unwrap() + 1;
    match gguf_err(bytes[..at].to_vec()) {
        GgufError::Truncated { section, offset, need, have } => {
            assert!(section.contains("`tok`"), "{section}");
            assert_eq!((offset, need, have), (at - 1, 2, at));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn wrong_magic() {
    let mut bytes = small_valid_file();
    bytes[..4].copy_from_slice(b"GGML");
    assert_eq!(gguf_err(bytes), GgufError::BadMagic { found: b"GGML".to_vec() });
    assert_eq!(gguf_err(b"PK\x03\x04rest".to_vec()), GgufError::BadMagic { found: b"PK\x03\x04".to_vec() });
    assert_eq!(gguf_err(b"XY".to_vec()), GgufError::BadMagic { found: b"XY".to_vec() });
    // A strict prefix of the magic (the empty file included) is a truncation, not a wrong magic.
    assert!(matches!(gguf_err(b"GG".to_vec()), GgufError::Truncated { .. }));
    assert!(matches!(gguf_err(Vec::new()), GgufError::Truncated { .. }));
}

#[test]
fn version_1_is_rejected_with_a_hint() {
    let bytes = Raw::header(1, 0, 0).bytes;
    let msg = parse(bytes.clone()).unwrap_err().to_string();
    assert_eq!(gguf_err(bytes), GgufError::UnsupportedVersion { version: 1 });
    assert!(msg.contains("version 1"), "{msg}");
}

#[test]
fn version_99_and_big_endian_are_rejected() {
    assert_eq!(gguf_err(Raw::header(99, 0, 0).bytes), GgufError::UnsupportedVersion { version: 99 });
    assert_eq!(gguf_err(Raw::header(0, 0, 0).bytes), GgufError::UnsupportedVersion { version: 0 });
    let big_endian = Raw::header(3u32.swap_bytes(), 0, 0).bytes;
    let msg = parse(big_endian.clone()).unwrap_err().to_string();
    assert!(matches!(gguf_err(big_endian), GgufError::UnsupportedVersion { .. }));
    assert!(msg.contains("big-endian"), "{msg}");
}

#[test]
fn absurd_tensor_count() {
    match gguf_err(Raw::header(3, u64::MAX, 0).zeros(64).bytes) {
        GgufError::TooMany { what, count, limit } => {
            assert_eq!((what.as_str(), count), ("tensors", u64::MAX));
            assert_eq!(limit, 64 / 32);
        }
        e => panic!("{e:?}"),
    }
    // Just above what the remaining bytes could hold.
    assert!(matches!(gguf_err(Raw::header(3, 3, 0).zeros(64).bytes), GgufError::TooMany { .. }));
}

#[test]
fn absurd_metadata_count() {
    match gguf_err(Raw::header(3, 0, u64::MAX).zeros(26).bytes) {
        GgufError::TooMany { what, count, limit } => {
            assert_eq!((what.as_str(), count, limit), ("metadata entries", u64::MAX, 2));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn absurd_array_length() {
    for elem_type in [0u32, 8, 9, 12] {
        let bytes = Raw::header(3, 0, 1).str("arr").u32(9).u32(elem_type).u64(u64::MAX).zeros(100).bytes;
        match gguf_err(bytes) {
            GgufError::TooMany { what, count, .. } => {
                assert!(what.contains("`arr`"), "{what}");
                assert_eq!(count, u64::MAX);
            }
            e => panic!("element type {elem_type}: {e:?}"),
        }
    }
    // One element more than the remaining bytes could hold.
    let bytes = Raw::header(3, 0, 1).str("arr").u32(9).u32(4).u64(3).zeros(8).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::TooMany { count: 3, limit: 2, .. }));
}

#[test]
fn absurd_string_length() {
    // In a key.
    let bytes = Raw::header(3, 0, 1).u64(u64::MAX).zeros(40).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::Truncated { need: usize::MAX, .. }));
    // In a value.
    let bytes = Raw::header(3, 0, 1).str("k").u32(8).u64(u64::MAX).zeros(40).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::Truncated { section, .. } if section.contains("`k`")));
    // In a tensor name.
    let bytes = Raw::header(3, 1, 0).u64(1 << 40).zeros(40).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::Truncated { .. }));
}

#[test]
fn unknown_value_types() {
    let bytes = Raw::header(3, 0, 1).str("k").u32(13).zeros(16).bytes;
    assert_eq!(gguf_err(bytes), GgufError::UnknownValueType { key: "k".into(), id: 13 });
    let bytes = Raw::header(3, 0, 1).str("k").u32(9).u32(u32::MAX).u64(1).zeros(16).bytes;
    assert_eq!(gguf_err(bytes), GgufError::UnknownValueType { key: "k".into(), id: u32::MAX });
}

#[test]
fn arrays_nested_too_deep() {
    // The value is an array of arrays … MAX_ARRAY_DEPTH + 1 levels deep.
    let mut r = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..MAX_ARRAY_DEPTH {
        r = r.u32(9).u64(1);
    }
    let bytes = r.u32(0).u64(0).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::NestingTooDeep { key, .. } if key == "deep"));
    // The limit itself is fine.
    let mut r = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..MAX_ARRAY_DEPTH - 1 {
        r = r.u32(9).u64(1);
    }
    assert!(parse(r.u32(0).u64(0).bytes).is_ok());
}

#[test]
fn non_utf8_key_and_tensor_name() {
    let bytes = Raw::header(3, 0, 1).str_bytes(b"bad\xc3").u32(4).u32(1).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::BadString { what, offset: 32 } if what == "metadata key"));
    let bytes = Raw::header(3, 1, 0).str_bytes(b"\xff").u32(1).u64(8).u32(F32).u64(0).pad_to(32).zeros(32).bytes;
    assert!(matches!(gguf_err(bytes), GgufError::BadString { what, .. } if what == "tensor name"));
}

#[test]
fn duplicate_key_and_tensor() {
    let bytes = Raw::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).bytes;
    assert_eq!(gguf_err(bytes), GgufError::DuplicateKey { key: "k".into() });
    let bytes = Raw::header(3, 2, 0).tensor("w", &[8], F32, 0).tensor("w", &[8], F32, 32).pad_to(32).zeros(64).bytes;
    assert_eq!(gguf_err(bytes), GgufError::DuplicateTensor { name: "w".into() });
}

#[test]
fn tensor_offset_past_end() {
    // Data section holds 32 bytes; the tensor (8 f32) is placed at 32.
    match gguf_err(one_tensor(&[8], F32, 32, 32)) {
        GgufError::TensorOutOfBounds { name, offset, n_bytes, data_len } => {
            assert_eq!((name.as_str(), offset, n_bytes, data_len), ("w", 32, 32, 32));
        }
        e => panic!("{e:?}"),
    }
    // Offset so large that offset + size overflows u64.
    let offset = u64::MAX - 31;
    assert!(matches!(gguf_err(one_tensor(&[8], F32, offset, 32)), GgufError::TensorOutOfBounds { .. }));
    // Data one byte short.
    assert!(matches!(gguf_err(one_tensor(&[8], F32, 0, 31)), GgufError::TensorOutOfBounds { .. }));
    assert!(parse(one_tensor(&[8], F32, 0, 32)).is_ok());
}

#[test]
fn misaligned_tensor_offset() {
    let e = gguf_err(one_tensor(&[8], F32, 4, 64));
    assert_eq!(e, GgufError::MisalignedTensor { name: "w".into(), offset: 4, alignment: 32 });
}

#[test]
fn unknown_tensor_type() {
    for id in [4u32, 5, 16, 29, 99, u32::MAX] {
        let e = gguf_err(one_tensor(&[32], id, 0, 256));
        assert_eq!(e, GgufError::UnknownTensorType { name: "w".into(), id });
    }
}

#[test]
fn zero_or_too_many_dims() {
    for dims in [&[][..], &[1, 1, 1, 1, 1][..]] {
        let e = gguf_err(one_tensor(dims, F32, 0, 32));
        assert!(matches!(e, GgufError::BadDims { ref name, .. } if name == "w"), "{dims:?}: {e:?}");
    }
    // A zero dimension.
    assert!(matches!(gguf_err(one_tensor(&[8, 0], F32, 0, 32)), GgufError::BadDims { .. }));
}

#[test]
fn dims_overflow() {
    let e = gguf_err(one_tensor(&[1 << 32, 1 << 32], F32, 0, 32));
    assert!(matches!(e, GgufError::BadDims { ref reason, .. } if reason.contains("overflow")), "{e:?}");
    // Element count fits but the byte size does not.
    let e = gguf_err(one_tensor(&[1 << 62, 2], F32, 0, 32));
    assert!(matches!(e, GgufError::BadDims { ref reason, .. } if reason.contains("overflow")), "{e:?}");
    let e = gguf_err(one_tensor(&[u64::MAX], F32, 0, 32));
    assert!(matches!(e, GgufError::BadDims { .. }), "{e:?}");
}

#[test]
fn rows_not_whole_blocks() {
    let e = gguf_err(one_tensor(&[16, 2], Q4_1, 0, 64));
    assert!(matches!(e, GgufError::BadDims { ref reason, .. } if reason.contains("block")), "{e:?}");
}

#[test]
fn bad_alignment_values() {
    for value in [0u32, 3, 48] {
        let bytes = Raw::header(3, 0, 1).kv_u32("general.alignment", value).bytes;
        assert_eq!(gguf_err(bytes), GgufError::BadAlignment { value: value as u64 });
    }
    let bytes = Raw::header(3, 0, 1).kv_str("general.alignment", "32").bytes;
    assert!(matches!(gguf_err(bytes), GgufError::WrongKeyType { key, .. } if key == "general.alignment"));
    // Through the writer: a non-power-of-two alignment is written and then rejected.
    let mut w = GgufWriter::new();
    w.alignment(48).add_tensor_f32("a", &[1], &[1.0]);
    assert_eq!(gguf_err(w.to_bytes()), GgufError::BadAlignment { value: 48 });
}

#[test]
fn good_alignment_128_from_u64_key() {
    let bytes = Raw::header(3, 1, 1)
        .str("general.alignment")
        .u32(10)
        .u64(128)
        .tensor("w", &[8], F32, 0)
        .pad_to(128)
        .zeros(32)
        .bytes;
    let f = parse(bytes).unwrap();
    assert_eq!((f.alignment, f.data_offset % 128), (128, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random byte corruption of a valid file never panics (it may parse or fail).
    #[test]
    fn corrupted_files_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = small_valid_file();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        if let Ok(f) = parse(bytes) {
            for t in &f.tensors {
                let _ = f.dequantize_tensor(t);
            }
        }
    }

    /// Arbitrary bytes after a valid magic and version never panic.
    #[test]
    fn random_headers_never_panic(rest in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"GGUF\x03\0\0\0".to_vec();
        bytes.extend(rest);
        let _ = parse(bytes);
    }
}
