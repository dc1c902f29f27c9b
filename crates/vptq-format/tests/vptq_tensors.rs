//! Reading one VPTQ linear's tensors (vptq-spec.md §2.2) from a safetensors file: accepted dtype variants (int16
//! perm as uint16, int64 perm of unpacked-era files, f16/bf16/f32 codebooks kept as stored) and rejected
//! contents, each named with tensor, layer and file.

use half::bf16;
use safetensors::Dtype;
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor, TensorStore};
use vptq_format::vptq::{pack_indices, read_vq_tensors, VqLayout};

const P: &str = "model.layers.3.mlp.down_proj";

/// M = 10, N = 12: 4 outlier columns (v0 = 4, k0 = 3), 2 groups of 4 columns, v = 4 (2 padding rows), k = 4,
/// kr = 8.
fn layout() -> VqLayout {
    VqLayout {
        in_features: 12,
        out_features: 10,
        vector_len: 4,
        num_centroids: 4,
        num_res_centroids: 8,
        group_num: 2,
        group_size: 4,
        outlier_size: 4,
        outlier_vector_len: 4,
        outlier_num_centroids: 3,
        enable_norm: true,
        enable_perm: true,
        bias: true,
    }
}

fn int_tensor(name: &str, dtype: Dtype, shape: Vec<usize>, values: &[i64]) -> OwnedTensor {
    let data = match dtype {
        Dtype::I16 => values.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
        Dtype::I32 => values.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
        Dtype::I64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        _ => unreachable!(),
    };
    OwnedTensor { name: format!("{P}.{name}"), dtype, shape, data }
}

fn float(name: &str, shape: Vec<usize>) -> OwnedTensor {
    let n: usize = shape.iter().product();
    let v: Vec<bf16> = (0..n).map(|i| bf16::from_f32(i as f32 * 0.01)).collect();
    OwnedTensor::from_float(format!("{P}.{name}"), shape, &HalfOrFloat::Bf16(v))
}

fn good_tensors() -> Vec<OwnedTensor> {
    let l = layout();
    let mut words = Vec::new();
    for row in 0..2 * l.num_indices() {
        let main: Vec<u32> = (0..4).map(|g| ((row + g) % 4) as u32).collect();
        let res: Vec<u32> = (0..4).map(|g| ((row * 3 + g) % 8) as u32).collect();
        words.extend(pack_indices(&main, Some(&res), 2, 3));
    }
    let words: Vec<i64> = words.iter().map(|&w| w as i32 as i64).collect();
    vec![
        float("centroids.weight", vec![2, 16]),
        float("res_centroids.weight", vec![2, 32]),
        int_tensor("indices", Dtype::I32, vec![2, 3, 1], &words),
        int_tensor("perm", Dtype::I16, vec![12], &[11, 0, 10, 1, 9, 2, 8, 3, 7, 4, 6, 5]),
        float("weight_scale", vec![12]),
        float("weight_bias", vec![12]),
        float("bias", vec![10]),
        float("outlier_centroids.weight", vec![1, 12]),
        int_tensor("outlier_indices", Dtype::I16, vec![1, 3, 4], &[0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2, 2]),
    ]
}

fn read(tensors: &[OwnedTensor]) -> vptq_format::Result<vptq_format::vptq::VqTensors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, tensors, None).unwrap();
    let store = TensorStore::open(dir.path()).unwrap();
    read_vq_tensors(&store, P, &layout())
}

fn replace(mut ts: Vec<OwnedTensor>, t: OwnedTensor) -> Vec<OwnedTensor> {
    ts.retain(|x| x.name != t.name);
    ts.push(t);
    ts
}

#[test]
fn reads_a_valid_layer() {
    let t = read(&good_tensors()).unwrap();
    assert!(matches!(t.centroids, HalfOrFloat::Bf16(ref v) if v.len() == 32));
    assert_eq!(t.indices.len(), 6);
    assert_eq!(t.perm.as_deref().unwrap()[..3], [11, 0, 10]);
    assert_eq!(t.outlier_indices.as_ref().unwrap().len(), 12);
    assert_eq!(t.bias.as_ref().unwrap().len(), 10);
    // indices 6·4 + codebooks (32 + 64 + 12)·2 + perm 24 + outlier indices 24 + scale/offset/bias (12+12+10)·4.
    assert_eq!(t.n_bytes(), 24 + 216 + 24 + 24 + 136);
}

#[test]
fn int64_and_large_uint16_perm_values() {
    let perm = [11, 0, 10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
    let t = read(&replace(good_tensors(), int_tensor("perm", Dtype::I64, vec![12], &perm))).unwrap();
    assert_eq!(t.perm.as_deref().unwrap()[0], 11);
    // An int16 −1 is uint16 65535: outside 0..12, reported, never wrapped into range.
    let bad = [-1, 0, 10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
    let e = read(&replace(good_tensors(), int_tensor("perm", Dtype::I16, vec![12], &bad))).unwrap_err().to_string();
    assert!(e.contains("65535, outside 0..12") && e.contains("model.safetensors") && e.contains(P), "{e}");
}

#[test]
fn rejects_bad_contents() {
    let err = |t: OwnedTensor| read(&replace(good_tensors(), t)).unwrap_err().to_string();
    let e = err(int_tensor("outlier_indices", Dtype::I16, vec![1, 3, 4], &[3; 12]));
    assert!(e.contains("outlier_indices") && e.contains("outside the outlier codebook of 3"), "{e}");
    let e = err(int_tensor("outlier_indices", Dtype::I16, vec![1, 2, 4], &[0; 8]));
    assert!(e.contains("expected [1, ceil(M/v0), outlier_size] = [1, 3, 4]"), "{e}");
    let e = err(float("centroids.weight", vec![1, 16]));
    assert!(e.contains("centroids.weight") && e.contains("expected [2, 4·4]"), "{e}");
    let e = err(float("centroids.weight", vec![2, 32]));
    assert!(e.contains("holds 8 vectors") && e.contains("disagrees with the config"), "{e}");
    let e = err(float("weight_scale", vec![11]));
    assert!(e.contains("weight_scale") && e.contains("[11]"), "{e}");
    let e = err(int_tensor("indices", Dtype::I64, vec![2, 3, 1], &[0; 6]));
    assert!(e.contains("dtype I64, expected int32"), "{e}");
    let e = err(int_tensor("centroids.weight", Dtype::I32, vec![2, 16], &[0; 32]));
    assert!(e.contains("unsupported dtype"), "{e}");
}

#[test]
fn optional_tensors_follow_the_layout() {
    let mut l = layout();
    l.enable_perm = false;
    l.enable_norm = false;
    // Present but unused tensors (perm after absorption) are ignored; absent required ones are named.
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &good_tensors(), None).unwrap();
    let store = TensorStore::open(dir.path()).unwrap();
    let t = read_vq_tensors(&store, P, &l).unwrap();
    assert!(t.perm.is_none() && t.weight_scale.is_none());
    let mut ts = good_tensors();
    ts.retain(|t| !t.name.ends_with("res_centroids.weight"));
    let e = read(&ts).unwrap_err().to_string();
    assert!(e.contains("res_centroids.weight` not found"), "{e}");
}

#[test]
fn invalid_layout_is_rejected_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &good_tensors(), None).unwrap();
    let store = TensorStore::open(dir.path()).unwrap();
    let mut l = layout();
    l.group_size = 5;
    let e = read_vq_tensors(&store, P, &l).unwrap_err().to_string();
    assert!(e.contains(P) && e.contains("≠ in_features 12"), "{e}");
}
