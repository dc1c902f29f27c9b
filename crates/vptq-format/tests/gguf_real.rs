//! The real SmolLM2-135M-Instruct Q4_1 GGUF (an external asset): header facts, tensor table and dequantized
//! values. Skipped with a message when the asset is absent, unless `VPTQ_REQUIRE_ASSETS=1`.

use std::path::PathBuf;
use std::time::Instant;
use vptq_format::gguf::{GgmlType, GgufFile};

const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The asset path, or `None` (after saying so) when it is absent and not required.
fn asset() -> Option<PathBuf> {
    let cache = std::env::var_os("VPTQ_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("vptq")))?;
    let path = cache.join("models").join(FILE_NAME);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("VPTQ_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("required asset missing: {}", path.display());
    }
    eprintln!("skipped: asset missing ({})", path.display());
    None
}

/// Mean absolute value, and whether every value is finite.
fn stats(values: &[f32]) -> (f64, bool) {
    let finite = values.iter().all(|x| x.is_finite());
    let mean_abs = values.iter().map(|&x| x.abs() as f64).sum::<f64>() / values.len() as f64;
    (mean_abs, finite)
}

#[test]
fn smollm2_header_and_tensor_table() {
    let Some(path) = asset() else { return };
    let t0 = Instant::now();
    let f = GgufFile::open(&path).unwrap();
    eprintln!("open (mmap + parse): {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);

    assert_eq!(f.file_size(), 98_362_432);
    assert_eq!(f.version, 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.tensors.len(), 272);
    assert_eq!(f.data_offset % f.alignment, 0);
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(f.get_str_array("tokenizer.ggml.merges").unwrap().len(), 48900);

    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.ggml_type, GgmlType::Q8_0);
    assert_eq!(emb.dims, vec![576, 49152]);
    assert_eq!(emb.shape(), vec![49152, 576]);
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ggml_type, GgmlType::Q4_1);
    assert_eq!(q.dims, vec![576, 576]);

    // Every linear weight of every block is Q4_1, every norm F32 (the facts the model loader relies on).
    for t in &f.tensors {
        if t.name.starts_with("blk.") && t.name.ends_with("_norm.weight") {
            assert_eq!(t.ggml_type, GgmlType::F32, "{}", t.name);
        } else if t.name.starts_with("blk.") {
            assert_eq!(t.ggml_type, GgmlType::Q4_1, "{}", t.name);
        }
        assert_eq!(f.tensor_bytes(t).len(), t.n_bytes);
    }
    // The last tensor's data ends within one alignment unit of the end of the file.
    let end = f.tensors.iter().map(|t| f.data_offset + t.offset + t.n_bytes).max().unwrap();
    assert!(end <= f.file_size() && f.file_size() - end < f.alignment);
}

#[test]
fn smollm2_dequantized_values_are_plausible() {
    let Some(path) = asset() else { return };
    let f = GgufFile::open(&path).unwrap();
    for (name, lo, hi) in [
        ("token_embd.weight", 1e-3, 0.5),
        ("blk.0.attn_q.weight", 1e-3, 0.5),
        ("blk.29.ffn_down.weight", 1e-3, 0.5),
        ("blk.0.attn_norm.weight", 1e-3, 10.0),
        ("output_norm.weight", 1e-3, 10.0),
    ] {
        let t = f.tensor(name).unwrap();
        let t0 = Instant::now();
        let values = f.dequantize(name).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(values.len(), t.n_elements());
        let (mean_abs, finite) = stats(&values);
        eprintln!(
            "{name}: {} {:?}, mean|x| = {mean_abs:.5}, {:.1} Mvalues/s",
            t.ggml_type,
            t.shape(),
            values.len() as f64 / secs / 1e6
        );
        assert!(finite, "{name} has non-finite values");
        assert!((lo..hi).contains(&mean_abs), "{name}: mean|x| = {mean_abs}");
    }
}

#[test]
fn smollm2_rows_dequantize_independently() {
    // Callers parallelize over rows: dequantizing a row range must equal the same range of the whole tensor.
    let Some(path) = asset() else { return };
    let f = GgufFile::open(&path).unwrap();
    let t = f.tensor("blk.3.ffn_gate.weight").unwrap();
    let whole = f.dequantize_tensor(t).unwrap();
    let bytes = f.tensor_bytes(t);
    let (row_len, row_bytes) = (t.row_len(), t.row_n_bytes());
    for row in [0, 1, t.n_rows() / 2, t.n_rows() - 1] {
        let mut out = vec![0f32; row_len];
        vptq_format::gguf::dequantize_into(t.ggml_type, &bytes[row * row_bytes..], &mut out).unwrap();
        assert_eq!(out, whole[row * row_len..(row + 1) * row_len]);
    }
}
