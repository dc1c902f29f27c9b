//! Writer → reader round trips (v2 and v3, alignments 32 and 64, every metadata type, nested arrays, float and
//! quantized tensors), and the typed metadata getters with their errors.

mod gguf_common;

use gguf_common::{into_gguf, parse, PATH};
use vptq_format::gguf::{
    quantize_q4_1, quantize_q8_0, GgmlType, GgufError, GgufFile, GgufWriter, MetaValue, TensorInfo, ALIGNMENT_KEY,
};
use vptq_format::FormatError;

fn s(v: &str) -> MetaValue {
    MetaValue::String(v.into())
}

/// One value of every metadata type, plus arrays of several element types, nested arrays and an empty array.
fn all_metadata() -> Vec<(String, MetaValue)> {
    use MetaValue::*;
    let entries = vec![
        ("general.architecture", s("llama")),
        ("t.u8", U8(200)),
        ("t.i8", I8(-100)),
        ("t.u16", U16(60000)),
        ("t.i16", I16(-30000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.u64", U64(u64::MAX)),
        ("t.i64", I64(i64::MIN)),
        ("t.f32", F32(-1.5e-3)),
        ("t.f64", F64(std::f64::consts::PI)),
        ("t.true", Bool(true)),
        ("t.false", Bool(false)),
        ("t.string", s("héllo ▁wörld 🚀")),
        ("t.empty_string", s("")),
        ("t.arr_u8", Array(vec![U8(0), U8(255)])),
        ("t.arr_i32", Array(vec![I32(-1), I32(0), I32(7)])),
        ("t.arr_f32", Array(vec![F32(0.5), F32(-2.0)])),
        ("t.arr_f64", Array(vec![F64(1e300)])),
        ("t.arr_bool", Array(vec![Bool(true), Bool(false)])),
        ("t.arr_str", Array(vec![s("<s>"), s(""), s("Ġthe")])),
        ("t.arr_empty", Array(vec![])),
        ("t.nested", Array(vec![Array(vec![U32(1), U32(2)]), Array(vec![]), Array(vec![U32(3)])])),
        ("t.nested_str", Array(vec![Array(vec![s("a")]), Array(vec![s("b"), s("c")])])),
        ("t.deep", Array(vec![Array(vec![Array(vec![I64(-5)])])])),
    ];
    entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * 0.37).sin() * scale).collect()
}

/// A writer holding every metadata type and tensors of four types.
fn build(version: u32, alignment: usize) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.version(version).alignment(alignment);
    for (k, v) in all_metadata() {
        w.add_meta(k, v);
    }
    w.add_tensor_f32("norm.weight", &[3], &[1.0, -2.0, 0.25])
        .add_tensor_f32("w.f32", &[2, 3, 4], &ramp(24, 1.0))
        .add_tensor_f16("w.f16", &[5, 2], &[0.5, -1.0, 2.0, 0.0, 1024.0, -0.125, 3.0, 7.5, -6.0, 0.0625])
        .add_tensor_raw("w.q8_0", &[64, 3], GgmlType::Q8_0, quantize_q8_0(&ramp(192, 2.0)))
        .add_tensor_raw("w.q4_1", &[32, 2], GgmlType::Q4_1, quantize_q4_1(&ramp(64, 0.5)));
    w
}

#[test]
fn round_trip_all_versions_and_alignments() {
    for version in [2, 3] {
        for alignment in [32, 64] {
            let bytes = build(version, alignment).to_bytes();
            let f = parse(bytes.clone()).unwrap();
            assert_eq!(f.version, version);
            assert_eq!(f.alignment, alignment);
            assert_eq!(f.file_size(), bytes.len());
            assert_eq!(f.data_offset % alignment, 0);

            let mut expected = all_metadata();
            if alignment != 32 {
                expected.push((ALIGNMENT_KEY.into(), MetaValue::U32(alignment as u32)));
            }
            assert_eq!(f.metadata, expected);

            let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["norm.weight", "w.f32", "w.f16", "w.q8_0", "w.q4_1"]);
            for t in &f.tensors {
                assert_eq!(t.offset % alignment, 0, "{}", t.name);
                assert_eq!(f.tensor_bytes(t).len(), t.n_bytes);
            }
            let t = f.tensor("w.f32").unwrap();
            assert_eq!((t.dims.as_slice(), t.shape(), t.ggml_type), (&[4, 3, 2][..], vec![2, 3, 4], GgmlType::F32));
            assert_eq!((t.row_len(), t.n_rows(), t.row_n_bytes()), (4, 6, 16));

            assert_eq!(f.dequantize("norm.weight").unwrap(), [1.0, -2.0, 0.25]);
            assert_eq!(f.dequantize("w.f32").unwrap(), ramp(24, 1.0));
            let f16 = f.dequantize("w.f16").unwrap();
            assert_eq!(f16, [0.5, -1.0, 2.0, 0.0, 1024.0, -0.125, 3.0, 7.5, -6.0, 0.0625]);
            assert_eq!(f.tensor("w.f16").unwrap().dims, [2, 5]);

            // Quantized tensors come back within one quantization step of the originals.
            for (name, orig, tol) in [("w.q8_0", ramp(192, 2.0), 2.0 / 127.0), ("w.q4_1", ramp(64, 0.5), 1.0 / 15.0)] {
                let got = f.dequantize(name).unwrap();
                assert_eq!(got.len(), orig.len());
                for (a, b) in got.iter().zip(&orig) {
                    assert!((a - b).abs() <= tol, "{name}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn write_then_open_memory_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let w = build(3, 32);
    w.write(&path).unwrap();
    let mapped = GgufFile::open(&path).unwrap();
    let owned = parse(w.to_bytes()).unwrap();
    assert_eq!(mapped.metadata, owned.metadata);
    assert_eq!(mapped.tensors, owned.tensors);
    assert_eq!(mapped.dequantize("w.q8_0").unwrap(), owned.dequantize("w.q8_0").unwrap());
    assert_eq!(mapped.path, path);
}

#[test]
fn open_missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.gguf");
    match GgufFile::open(&path) {
        Err(FormatError::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn empty_file_without_tensors_or_metadata() {
    let f = parse(GgufWriter::new().to_bytes()).unwrap();
    assert!(f.metadata.is_empty() && f.tensors.is_empty());
    assert_eq!(f.version, 3);
    assert!(
        matches!(into_gguf(f.architecture().unwrap_err()), GgufError::MissingKey { key } if key == "general.architecture")
    );
}

#[test]
fn typed_getters_accept_compatible_types() {
    let f = parse(build(3, 32).to_bytes()).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_str("t.string").unwrap(), "héllo ▁wörld 🚀");
    assert_eq!(f.get_u64("t.u8").unwrap(), 200);
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u32("t.u16").unwrap(), 60000);
    assert_eq!(f.get_f32("t.f32").unwrap(), -1.5e-3);
    assert_eq!(f.get_f32("t.i16").unwrap(), -30000.0);
    assert_eq!(f.get_f32("t.f64").unwrap(), std::f32::consts::PI);
    assert!(f.get_bool("t.true").unwrap());
    assert!(!f.get_bool("t.false").unwrap());
    assert_eq!(f.get_str_array("t.arr_str").unwrap(), ["<s>", "", "Ġthe"]);
    assert_eq!(f.get_str_array("t.arr_empty").unwrap(), Vec::<&str>::new());
    assert_eq!(f.get_f32_array("t.arr_f32").unwrap(), [0.5, -2.0]);
    assert_eq!(f.get_f32_array("t.arr_i32").unwrap(), [-1.0, 0.0, 7.0]);
    assert_eq!(f.get_i32_array("t.arr_i32").unwrap(), [-1, 0, 7]);
    assert_eq!(f.get_i32_array("t.arr_u8").unwrap(), [0, 255]);
    assert_eq!(f.opt_u64("t.u16").unwrap(), Some(60000));
    assert_eq!(f.opt_u64("absent").unwrap(), None);
    assert_eq!(f.opt_u32("t.u8").unwrap(), Some(200));
    assert_eq!(f.opt_f32("t.i8").unwrap(), Some(-100.0));
    assert_eq!(f.opt_f32("absent").unwrap(), None);
    assert_eq!(f.opt_str("t.string").unwrap(), Some("héllo ▁wörld 🚀"));
    assert_eq!(f.opt_str("absent").unwrap(), None);
    assert_eq!(f.opt_bool("t.true").unwrap(), Some(true));
    assert_eq!(f.opt_bool("absent").unwrap(), None);
    assert!(f.get("absent").is_none());
    assert_eq!(f.get("t.nested").unwrap().type_name(), "array[array[u32]]");
}

#[test]
fn typed_getters_name_the_key_on_error() {
    let f = parse(build(3, 32).to_bytes()).unwrap();
    let err = |r: Result<(), FormatError>| into_gguf(r.unwrap_err());

    let e = err(f.get_u32("llama.block_count").map(drop));
    assert_eq!(e, GgufError::MissingKey { key: "llama.block_count".into() });
    match err(f.get_u64("t.string").map(drop)) {
        GgufError::WrongKeyType { key, expected, found } => {
            assert_eq!((key.as_str(), expected.as_str(), found.as_str()), ("t.string", "unsigned integer", "string"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(err(f.get_u64("t.i8").map(drop)), GgufError::ValueOutOfRange { key, .. } if key == "t.i8"));
    assert!(
        matches!(err(f.get_u32("t.u64").map(drop)), GgufError::ValueOutOfRange { key, target, .. } if key == "t.u64" && target == "u32")
    );
    assert!(matches!(err(f.get_str("t.u8").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.get_f32("t.string").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.get_bool("t.u8").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(
        matches!(err(f.get_str_array("t.arr_i32").map(drop)), GgufError::WrongKeyType { found, .. } if found == "i32")
    );
    assert!(matches!(err(f.get_str_array("t.string").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.get_f32_array("t.arr_str").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.get_i32_array("t.arr_f32").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.get_i32_array("t.nested").map(drop)), GgufError::WrongKeyType { .. }));
    // Present but of the wrong type: the optional getters fail too.
    assert!(matches!(err(f.opt_u64("t.string").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.opt_str("t.u8").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.opt_bool("t.u8").map(drop)), GgufError::WrongKeyType { .. }));
    assert!(matches!(err(f.opt_f32("t.true").map(drop)), GgufError::WrongKeyType { .. }));

    let msg = f.get_u64("t.string").unwrap_err().to_string();
    assert!(msg.contains(PATH) && msg.contains("t.string"), "{msg}");
}

#[test]
fn i32_array_rejects_values_out_of_range() {
    let mut w = GgufWriter::new();
    w.add_meta("big", MetaValue::Array(vec![MetaValue::U32(1), MetaValue::U32(3_000_000_000)]));
    let f = parse(w.to_bytes()).unwrap();
    let e = into_gguf(f.get_i32_array("big").unwrap_err());
    assert!(matches!(e, GgufError::ValueOutOfRange { ref value, .. } if value == "3000000000"), "{e:?}");
}

#[test]
fn tensor_lookup_and_missing_tensor() {
    let f = parse(build(3, 32).to_bytes()).unwrap();
    assert!(f.tensor("nope").is_none());
    match f.dequantize("nope") {
        Err(FormatError::MissingTensor { path, name }) => {
            assert_eq!(path.to_str(), Some(PATH));
            assert_eq!(name, "nope");
        }
        other => panic!("{other:?}"),
    }
    // An entry that does not belong to this file yields no bytes rather than a panic.
    let foreign =
        TensorInfo { name: "x".into(), dims: vec![32], ggml_type: GgmlType::F32, offset: 1 << 40, n_bytes: 128 };
    assert!(f.tensor_bytes(&foreign).is_empty());
    assert!(f.dequantize_tensor(&foreign).is_err());
}

#[test]
fn user_alignment_key_is_written_verbatim() {
    // A general.alignment given as metadata is written as given (here u64), not duplicated.
    let mut w = GgufWriter::new();
    w.alignment(64).add_meta(ALIGNMENT_KEY, MetaValue::U64(64)).add_tensor_f32("a", &[3], &[1.0, 2.0, 3.0]);
    let f = parse(w.to_bytes()).unwrap();
    assert_eq!(f.metadata, vec![(ALIGNMENT_KEY.to_string(), MetaValue::U64(64))]);
    assert_eq!(f.alignment, 64);
    assert_eq!(f.dequantize("a").unwrap(), [1.0, 2.0, 3.0]);
}

#[test]
fn invalid_utf8_in_string_values_is_read_lossily() {
    // Keys and names must be UTF-8; values are decoded lossily so one odd vocabulary entry cannot block a model.
    let bytes =
        gguf_common::Raw::header(3, 0, 1).str("tokens").u32(9).u32(8).u64(2).str("ok").str_bytes(b"a\xffb").bytes;
    let f = parse(bytes).unwrap();
    assert_eq!(f.get_str_array("tokens").unwrap(), ["ok", "a\u{fffd}b"]);
}

#[test]
#[should_panic(expected = "data length")]
fn writer_rejects_mismatched_data() {
    GgufWriter::new().add_tensor_f32("a", &[2, 2], &[1.0, 2.0, 3.0]);
}

#[test]
#[should_panic(expected = "mixes element types")]
fn writer_rejects_mixed_arrays() {
    GgufWriter::new().add_meta("a", MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I8(1)]));
}
