//! The Hugging Face VPTQ packed layout, write side (vptq-spec.md §2.1–§2.3): a quantized linear given as plain
//! data ([`VqLayerData`]: codebooks in f32, unpacked indices) becomes the checked in-memory [`VqTensors`] (codebooks
//! rounded to f16, indices bit-packed with [`pack_indices`]), then the named safetensors tensors of §2.2 under
//! the module path ([`vq_owned_tensors`]), plus the per-layer `config_for_layers` dict ([`layer_config_json`]).
//!
//! No IO: writing the file is `hf::write_safetensors`' job. Errors are plain strings, as in [`super::layout`];
//! callers wrap them with the layer.

use super::bits::pack_indices;
use super::int8_codebook;
use super::layout::VqLayout;
use super::tensors::VqTensors;
use crate::hf::{HalfOrFloat, OwnedTensor};
use half::f16;
use safetensors::Dtype;

/// One quantized linear as a quantizer produces it: full-precision codebooks and unpacked indices.
#[derive(Debug, Clone, PartialEq)]
pub struct VqLayerData {
    /// Shape of the layer.
    pub layout: VqLayout,
    /// Main codebooks `[G, k·v]` (row c = codebook c, centroid i = elements `[i·v, i·v + v)`).
    pub centroids: Vec<f32>,
    /// Residual codebooks `[G, kr·v]` iff kr > 0.
    pub res_centroids: Option<Vec<f32>>,
    /// Main indices `[G, num_indices, group_size]`, each < k.
    pub indices: Vec<u32>,
    /// Residual indices `[G, num_indices, group_size]` iff kr > 0, each < kr.
    pub res_indices: Option<Vec<u32>>,
    /// `perm[q]` = original input column of permuted column q, `[N]`, iff `enable_perm`.
    pub perm: Option<Vec<u16>>,
    /// Per-input-column scale `[N]` iff `enable_norm`.
    pub weight_scale: Option<Vec<f32>>,
    /// Per-input-column offset `[N]` iff `enable_norm`.
    pub weight_bias: Option<Vec<f32>>,
    /// Layer bias `[M]` iff `layout.bias`.
    pub bias: Option<Vec<f32>>,
    /// Outlier codebook `[1, k0·v0]` iff outliers.
    pub outlier_centroids: Option<Vec<f32>>,
    /// Outlier indices `[ceil(M/v0), outlier_size]` iff outliers.
    pub outlier_indices: Option<Vec<u16>>,
}

fn to_f16(v: &[f32]) -> HalfOrFloat {
    HalfOrFloat::F16(v.iter().map(|&x| f16::from_f32(x)).collect())
}

/// Rounds f32 values through f16, as they are stored (scale / bias vectors are written in f16).
fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

impl VqLayerData {
    /// Packs the indices and rounds the codebooks to f16: the tensors exactly as a reader of the written file
    /// returns them.
    ///
    /// # Errors
    /// A sentence naming the buffer whose length disagrees with the layout, or an index out of its codebook;
    /// anything [`VqTensors::validate`] rejects.
    pub fn to_vq_tensors(&self) -> Result<VqTensors, String> {
        let l = &self.layout;
        l.validate()?;
        let (g, ni, gs) = (l.group_num, l.num_indices(), l.group_size);
        let want = g * ni * gs;
        if self.indices.len() != want {
            return Err(format!(
                "`indices` has {} elements, expected [G, num_indices, gs] = {want}",
                self.indices.len()
            ));
        }
        if let Some((pos, &bad)) = self.indices.iter().enumerate().find(|&(_, &x)| x as usize >= l.num_centroids) {
            return Err(format!("`indices` element {pos} is {bad}, outside the codebook of {}", l.num_centroids));
        }
        match (&self.res_indices, l.has_residual()) {
            (Some(r), true) => {
                if r.len() != want {
                    return Err(format!("`res_indices` has {} elements, expected {want}", r.len()));
                }
                if let Some((pos, &bad)) = r.iter().enumerate().find(|&(_, &x)| x as usize >= l.num_res_centroids) {
                    return Err(format!(
                        "`res_indices` element {pos} is {bad}, outside the residual codebook of {}",
                        l.num_res_centroids
                    ));
                }
            }
            (None, false) => {}
            (Some(_), false) => return Err("`res_indices` given but the layout has no residual codebook".into()),
            (None, true) => return Err("`res_indices` missing for a residual layout".into()),
        }
        let (b, r) = (l.index_bits(), l.res_index_bits());
        let mut packed = Vec::with_capacity(g * ni * l.words_per_row()); // [G, num_indices, P]
        for (row, main) in self.indices.chunks_exact(gs.max(1)).enumerate() {
            let res = self.res_indices.as_ref().map(|ri| &ri[row * gs..(row + 1) * gs]);
            packed.extend(pack_indices(main, res, b, r));
        }
        let t = VqTensors {
            layout: *l,
            centroids: to_f16(&self.centroids),
            res_centroids: self.res_centroids.as_deref().map(to_f16),
            indices: packed,
            perm: self.perm.clone(),
            weight_scale: self.weight_scale.as_deref().map(round_f16),
            weight_bias: self.weight_bias.as_deref().map(round_f16),
            bias: self.bias.as_deref().map(round_f16),
            outlier_centroids: self.outlier_centroids.as_deref().map(to_f16),
            outlier_indices: self.outlier_indices.clone(),
        };
        t.validate()?;
        Ok(t)
    }
}

fn int_bytes16(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The safetensors tensors of §2.2 for the layer at module path `prefix` (e.g.
/// `model.layers.0.self_attn.q_proj`): codebooks, scale/offset and bias in f16 (f32 codebooks are kept f32),
/// packed indices int32, `perm` and outlier indices int16 holding uint16 values.
///
/// `t` must satisfy [`VqTensors::validate`] (as [`VqLayerData::to_vq_tensors`] guarantees).
pub fn vq_owned_tensors(prefix: &str, t: &VqTensors) -> Vec<OwnedTensor> {
    let l = &t.layout;
    let name = |suffix: &str| format!("{prefix}.{suffix}");
    let mut out = Vec::new();
    out.push(OwnedTensor::from_float(
        name("centroids.weight"),
        vec![l.group_num, l.num_centroids * l.vector_len],
        &t.centroids,
    ));
    if let Some(rc) = &t.res_centroids {
        out.push(OwnedTensor::from_float(
            name("res_centroids.weight"),
            vec![l.group_num, l.num_res_centroids * l.vector_len],
            rc,
        ));
    }
    out.push(OwnedTensor {
        name: name("indices"),
        dtype: Dtype::I32,
        shape: vec![l.group_num, l.num_indices(), l.words_per_row()],
        data: t.indices.iter().flat_map(|w| w.to_le_bytes()).collect(),
    });
    if let Some(p) = &t.perm {
        out.push(OwnedTensor { name: name("perm"), dtype: Dtype::I16, shape: vec![p.len()], data: int_bytes16(p) });
    }
    let vec16 = |suffix: &str, v: &Option<Vec<f32>>, out: &mut Vec<OwnedTensor>| {
        if let Some(v) = v {
            out.push(OwnedTensor::from_float(name(suffix), vec![v.len()], &to_f16(v)));
        }
    };
    vec16("weight_scale", &t.weight_scale, &mut out);
    vec16("weight_bias", &t.weight_bias, &mut out);
    vec16("bias", &t.bias, &mut out);
    if let (Some(cb), Some(idx)) = (&t.outlier_centroids, &t.outlier_indices) {
        out.push(OwnedTensor::from_float(
            name("outlier_centroids.weight"),
            vec![1, l.outlier_num_centroids * l.outlier_vector_len],
            cb,
        ));
        out.push(OwnedTensor {
            name: name("outlier_indices"),
            dtype: Dtype::I16,
            shape: vec![1, l.outlier_num_indices(), l.outlier_size],
            data: int_bytes16(idx),
        });
    }
    out
}

/// The per-layer dict of `config_for_layers` (§2.1) for `layout`; "none" is written −1.
pub fn layer_config_json(l: &VqLayout) -> serde_json::Value {
    let or_none = |present: bool, x: usize| if present { x as i64 } else { -1 };
    serde_json::json!({
        "in_features": l.in_features,
        "out_features": l.out_features,
        "vector_lens": [or_none(l.has_outliers(), l.outlier_vector_len), l.vector_len],
        "num_centroids": [or_none(l.has_outliers(), l.outlier_num_centroids), l.num_centroids],
        "num_res_centroids": [-1, or_none(l.has_residual(), l.num_res_centroids)],
        "group_num": l.group_num,
        "group_size": l.group_size,
        "outlier_size": l.outlier_size,
        "enable_norm": l.enable_norm,
        "enable_perm": l.enable_perm,
        "is_indice_packed": true,
        "bias": l.bias,
    })
}

/// [`vq_owned_tensors`] with the main codebook stored as int8 and per-lane steps
/// ([`super::int8_codebook`]) when it lies on its grid; otherwise exactly [`vq_owned_tensors`].
pub fn vq_owned_tensors_int8(prefix: &str, t: &VqTensors) -> Vec<OwnedTensor> {
    let mut out = vq_owned_tensors(prefix, t);
    let l = &t.layout;
    if let Some((q, steps)) = int8_codebook::to_int8(&t.centroids, l.group_num, l.vector_len) {
        let cb = format!("{prefix}.centroids.weight");
        out.retain(|x| x.name != cb);
        out.push(OwnedTensor::from_i8(
            format!("{prefix}.{}", int8_codebook::QWEIGHT_SUFFIX),
            vec![l.group_num, l.num_centroids * l.vector_len],
            &q,
        ));
        out.push(OwnedTensor::from_float(
            format!("{prefix}.{}", int8_codebook::SCALES_SUFFIX),
            vec![l.group_num, l.vector_len],
            &HalfOrFloat::F32(steps),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::{write_safetensors, TensorStore};
    use crate::vptq::{read_vq_tensors, VptqConfig};
    use std::path::Path;

    /// Deterministic small values exactly representable in f16 (multiples of 1/64 in [-2, 2)).
    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % 256) as f32 / 64.0 - 2.0
            })
            .collect()
    }

    fn ints(n: usize, below: usize, seed: u64) -> Vec<u32> {
        vals(n, seed).iter().enumerate().map(|(i, x)| ((x.to_bits() as usize + i * 7) % below) as u32).collect()
    }

    fn layer(residual: bool, groups: usize, outliers: usize, bias: bool) -> VqLayerData {
        let (n, m, v, k, kr) = (24 + outliers, 13, 4, 16, if residual { 8 } else { 0 });
        let gs = 24 / groups;
        let layout = VqLayout {
            in_features: n,
            out_features: m,
            vector_len: v,
            num_centroids: k,
            num_res_centroids: kr,
            group_num: groups,
            group_size: gs,
            outlier_size: outliers,
            outlier_vector_len: if outliers > 0 { 2 } else { 0 },
            outlier_num_centroids: if outliers > 0 { 4 } else { 0 },
            enable_norm: true,
            enable_perm: true,
            bias,
        };
        let ni = layout.num_indices();
        let perm: Vec<u16> = (0..n as u16).map(|q| (q * 5 + 3) % n as u16).collect();
        VqLayerData {
            layout,
            centroids: vals(groups * k * v, 1),
            res_centroids: residual.then(|| vals(groups * kr * v, 2)),
            indices: ints(groups * ni * gs, k, 3),
            res_indices: residual.then(|| ints(groups * ni * gs, kr, 4)),
            perm: Some(perm),
            weight_scale: Some(vals(n, 5)),
            weight_bias: Some(vals(n, 6)),
            bias: bias.then(|| vals(m, 7)),
            outlier_centroids: (outliers > 0).then(|| vals(4 * 2, 8)),
            outlier_indices: (outliers > 0)
                .then(|| ints(m.div_ceil(2) * outliers, 4, 9).iter().map(|&x| x as u16).collect()),
        }
    }

    fn round_trip(data: &VqLayerData) {
        let prefix = "model.layers.0.self_attn.q_proj";
        let written = data.to_vq_tensors().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_safetensors(&path, &vq_owned_tensors(prefix, &written), None).unwrap();
        let qc = serde_json::json!({"quant_method": "vptq",
            "config_for_layers": {prefix: layer_config_json(&data.layout)}});
        let cfg = VptqConfig::from_hf_values(Some(&qc), None, Path::new("config.json")).unwrap().unwrap();
        let l = &data.layout;
        let layout = cfg.layout_for(prefix, l.out_features, l.in_features, false).unwrap().unwrap();
        assert_eq!(layout, data.layout);
        let store = TensorStore::open(&path).unwrap();
        let read = read_vq_tensors(&store, prefix, &layout).unwrap();
        assert_eq!(read, written);
        // Unpacking the read words gives back the quantizer's indices.
        let (b, r, gs) = (l.index_bits(), l.res_index_bits(), l.group_size);
        let p = l.words_per_row();
        let (mut main, mut res) = (Vec::new(), Vec::new());
        for row in read.indices.chunks_exact(p) {
            let (m, rr) = crate::vptq::unpack_indices(row, gs, b, r);
            main.extend(m);
            res.extend(rr);
        }
        assert_eq!(main, data.indices);
        assert_eq!(res, data.res_indices.clone().unwrap_or_default());
        let HalfOrFloat::F16(c) = &read.centroids else { panic!("centroids stored as f16") };
        assert_eq!(c.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), data.centroids);
        assert_eq!(read.weight_scale, data.weight_scale);
        assert_eq!(read.bias, data.bias);
    }

    #[test]
    fn round_trips_through_the_reader() {
        for residual in [false, true] {
            for groups in [1, 2] {
                round_trip(&layer(residual, groups, 0, false));
            }
        }
        round_trip(&layer(true, 2, 4, true));
        round_trip(&layer(false, 1, 3, false));
    }

    #[test]
    fn config_entry_uses_minus_one_for_none() {
        let j = layer_config_json(&layer(false, 1, 0, false).layout);
        assert_eq!(j["num_res_centroids"], serde_json::json!([-1, -1]));
        assert_eq!(j["vector_lens"], serde_json::json!([-1, 4]));
        assert_eq!(j["is_indice_packed"], serde_json::json!(true));
    }

    #[test]
    fn bad_buffers_are_rejected() {
        let mut d = layer(true, 1, 0, false);
        d.indices[0] = 16;
        assert!(d.to_vq_tensors().unwrap_err().contains("outside the codebook"));
        let mut d = layer(true, 1, 0, false);
        d.res_indices = None;
        assert!(d.to_vq_tensors().unwrap_err().contains("res_indices"));
        let mut d = layer(false, 1, 0, false);
        d.perm.as_mut().unwrap()[0] = d.perm.as_ref().unwrap()[1];
        assert!(d.to_vq_tensors().unwrap_err().contains("perm"));
    }
}
