//! The tensors of one VPTQ-quantized linear (vptq-spec.md §2.2), read from a [`TensorStore`] under the module
//! path prefix and checked against its [`VqLayout`]: codebooks kept in their stored precision, indices kept
//! bit-packed (`Vec<u32>`), `perm` reinterpreted as uint16.
//!
//! Every shape, dtype and value that a kernel later indexes with is checked here, so decoding can never read out
//! of bounds: with k and kr powers of two, a b-bit index is always < k once the codebook holds k vectors.
//! Depends on the safetensors store of this crate only.

use super::int8_codebook;
use super::layout::VqLayout;
use crate::error::{FormatError, Result};
use crate::hf::{HalfOrFloat, TensorRef, TensorStore};
use safetensors::Dtype;

/// The tensors of one VPTQ linear, owned, in the shapes of §2.2 (flattened row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct VqTensors {
    /// Shape of the layer.
    pub layout: VqLayout,
    /// Main codebooks `[G, k·v]`: row c is codebook c, centroid i is elements `[i·v, i·v + v)`.
    pub centroids: HalfOrFloat,
    /// Residual codebooks `[G, kr·v]` when kr > 0.
    pub res_centroids: Option<HalfOrFloat>,
    /// Packed indices `[G, num_indices, P]` (§2.3).
    pub indices: Vec<u32>,
    /// `perm[q]` = original input column of permuted column q, `[N]`, when `enable_perm`.
    pub perm: Option<Vec<u16>>,
    /// Per-input-column scale `[N]` (original column order) when `enable_norm`.
    pub weight_scale: Option<Vec<f32>>,
    /// Per-input-column offset `[N]` when `enable_norm`.
    pub weight_bias: Option<Vec<f32>>,
    /// Layer bias `[M]`, added to the matmul output.
    pub bias: Option<Vec<f32>>,
    /// Outlier codebook `[1, k0·v0]` when outliers are present.
    pub outlier_centroids: Option<HalfOrFloat>,
    /// Unpacked outlier indices `[ceil(M/v0), outlier_size]` when outliers are present.
    pub outlier_indices: Option<Vec<u16>>,
}

impl VqTensors {
    /// Bytes held: packed indices, codebooks, perm, scale/bias and layer bias.
    pub fn n_bytes(&self) -> usize {
        let floats = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, |v| v.len() * 4);
        let half = |v: &Option<HalfOrFloat>| v.as_ref().map_or(0, HalfOrFloat::n_bytes);
        self.indices.len() * 4
            + self.centroids.n_bytes()
            + half(&self.res_centroids)
            + half(&self.outlier_centroids)
            + self.perm.as_ref().map_or(0, |p| p.len() * 2)
            + self.outlier_indices.as_ref().map_or(0, |p| p.len() * 2)
            + floats(&self.weight_scale)
            + floats(&self.weight_bias)
            + floats(&self.bias)
    }

    /// Checks that every buffer has the length the layout implies, that `perm` is a permutation of `0..N` and
    /// that outlier indices are below k0: what kernels rely on. Tensors built in memory (by a quantizer) should
    /// pass this before use; [`read_vq_tensors`] guarantees it.
    ///
    /// # Errors
    /// A sentence naming the tensor (by its short name, e.g. `indices`) and the problem.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let l = &self.layout;
        l.validate()?;
        let len_is = |name: &str, got: Option<usize>, want: Option<usize>| -> std::result::Result<(), String> {
            match (got, want) {
                (Some(g), Some(w)) if g != w => Err(format!("`{name}` has {g} elements, expected {w}")),
                (Some(_), None) => Err(format!("`{name}` is present but the layout does not use it")),
                (None, Some(_)) => Err(format!("`{name}` is missing")),
                _ => Ok(()),
            }
        };
        let (g, n, m) = (l.group_num, l.in_features, l.out_features);
        len_is("centroids.weight", Some(self.centroids.len()), Some(g * l.num_centroids * l.vector_len))?;
        let res_len = l.has_residual().then(|| g * l.num_res_centroids * l.vector_len);
        len_is("res_centroids.weight", self.res_centroids.as_ref().map(HalfOrFloat::len), res_len)?;
        len_is("indices", Some(self.indices.len()), Some(g * l.num_indices() * l.words_per_row()))?;
        len_is("perm", self.perm.as_ref().map(Vec::len), l.enable_perm.then_some(n))?;
        len_is("weight_scale", self.weight_scale.as_ref().map(Vec::len), l.enable_norm.then_some(n))?;
        len_is("weight_bias", self.weight_bias.as_ref().map(Vec::len), l.enable_norm.then_some(n))?;
        len_is("bias", self.bias.as_ref().map(Vec::len), l.bias.then_some(m))?;
        let outlier_cb = l.has_outliers().then(|| l.outlier_num_centroids * l.outlier_vector_len);
        len_is("outlier_centroids.weight", self.outlier_centroids.as_ref().map(HalfOrFloat::len), outlier_cb)?;
        let outlier_idx = l.has_outliers().then(|| l.outlier_num_indices() * l.outlier_size);
        len_is("outlier_indices", self.outlier_indices.as_ref().map(Vec::len), outlier_idx)?;
        if let Some(perm) = &self.perm {
            check_permutation(perm.iter().map(|&p| p as i64), n)?;
        }
        if let Some(idx) = &self.outlier_indices {
            if let Some((pos, &bad)) = idx.iter().enumerate().find(|&(_, &x)| x as usize >= l.outlier_num_centroids) {
                return Err(format!(
                    "`outlier_indices` element {pos} is {bad}, outside the outlier codebook of {}",
                    l.outlier_num_centroids
                ));
            }
        }
        Ok(())
    }
}

/// Checks that `values` (of length `n`) is a permutation of `0..n`.
fn check_permutation(values: impl Iterator<Item = i64>, n: usize) -> std::result::Result<(), String> {
    let mut seen = vec![false; n];
    for (q, p) in values.enumerate() {
        let Some(slot) = usize::try_from(p).ok().and_then(|p| seen.get_mut(p)) else {
            return Err(format!("`perm` is not a permutation: element {q} is {p}, outside 0..{n}"));
        };
        if std::mem::replace(slot, true) {
            return Err(format!("`perm` is not a permutation: value {p} appears twice"));
        }
    }
    Ok(())
}

/// Reader context: the store, the module path and its layout.
struct Reader<'a> {
    store: &'a TensorStore,
    prefix: &'a str,
    layout: &'a VqLayout,
}

impl<'a> Reader<'a> {
    /// An error about tensor `t` of this layer, naming the file that holds it.
    fn err(&self, t: &TensorRef<'_>, reason: String) -> FormatError {
        FormatError::vptq(t.path, self.prefix, format!("tensor `{}`: {reason}", t.name))
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    /// The tensor `<prefix>.<suffix>` with exactly `shape` (`what` describes the shape for the message).
    fn shaped<'s>(&'s self, name: &'s str, shape: &[usize], what: &str) -> Result<TensorRef<'s>> {
        let t = self.store.require(name)?;
        if t.shape != shape {
            return Err(self.err(&t, format!("shape {:?}, expected {what} = {shape:?}", t.shape)));
        }
        Ok(t)
    }

    /// A codebook `[rows, count·vlen]` in its stored precision, with a specific message when it holds fewer or
    /// more vectors than the index width addresses.
    fn codebook(&self, name: &str, rows: usize, count: usize, vlen: usize, role: &str) -> Result<HalfOrFloat> {
        let t = self.store.require(name)?;
        let want = [rows, count * vlen];
        if t.shape != want {
            let reason = match t.shape {
                [r, w] if *r == rows && w % vlen == 0 && w / vlen < count => format!(
                    "codebook too short: holds {} vectors of length {vlen}, but {role} indices address {count}",
                    w / vlen
                ),
                [r, w] if *r == rows && w % vlen == 0 => format!(
                    "holds {} vectors of length {vlen}, but the config says {role} k = {count}: the codebook \
                     size disagrees with the config",
                    w / vlen
                ),
                other => format!("shape {other:?}, expected [{rows}, {count}·{vlen}] = {want:?}"),
            };
            return Err(self.err(&t, reason));
        }
        t.to_half_or_float()
    }

    /// The main codebook from its int8 form (`qweight` `[G, k·v]` I8 and `scales` `[G, v]`, finite and > 0).
    fn int8_codebook(&self, qweight_name: &str) -> Result<HalfOrFloat> {
        let l = self.layout;
        let (g, v) = (l.group_num, l.vector_len);
        let t = self.store.require(qweight_name)?;
        let want = [g, l.num_centroids * v];
        if t.shape != want {
            return Err(self.err(&t, format!("shape {:?}, expected [G, k·v] = {want:?}", t.shape)));
        }
        let q = t.to_i8()?;
        let scales_name = self.name(int8_codebook::SCALES_SUFFIX);
        let steps = self.store.read_f32(&scales_name, &[g, v])?;
        if let Some(bad) = steps.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            let t = self.store.require(&scales_name)?;
            return Err(self.err(&t, format!("step {bad} is not finite and positive")));
        }
        Ok(HalfOrFloat::F32(int8_codebook::from_int8(&q, &steps, g, v)))
    }

    /// The packed main/residual indices `[G, num_indices, P]` as u32 words.
    fn indices(&self, name: &str) -> Result<Vec<u32>> {
        let l = self.layout;
        let t = self.store.require(name)?;
        let (g, ni, p) = (l.group_num, l.num_indices(), l.words_per_row());
        if matches!(t.dtype, Dtype::I16 | Dtype::U16) {
            return Err(self.err(
                &t,
                format!(
                    "{:?} indices are the unpacked layout, which is not supported (expected packed int32)",
                    t.dtype
                ),
            ));
        }
        if !matches!(t.dtype, Dtype::I32 | Dtype::U32) {
            return Err(self.err(&t, format!("dtype {:?}, expected int32 (packed bit container)", t.dtype)));
        }
        match t.shape {
            [tg, tn, tp] if *tg == g && *tn == ni && *tp != p => {
                return Err(self.err(
                    &t,
                    format!(
                        "rows hold {tp} words, but group_size {} × {} bits (main {} + residual {}) needs {p}: \
                         the index widths disagree with num_centroids / num_res_centroids",
                        l.group_size,
                        l.total_bits(),
                        l.index_bits(),
                        l.res_index_bits()
                    ),
                ))
            }
            s if s != [g, ni, p] => {
                return Err(self.err(&t, format!("shape {s:?}, expected [group_num, ceil(M/v), P] = {:?}", [g, ni, p])))
            }
            _ => {}
        }
        Ok(t.data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// An integer tensor of the given shape as i64 values (int16 is reinterpreted as uint16, §2.5).
    fn ints(&self, t: &TensorRef<'_>) -> Result<Vec<i64>> {
        let d = t.data;
        Ok(match t.dtype {
            Dtype::I16 | Dtype::U16 => d.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            Dtype::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            Dtype::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("invariant: chunks_exact(8)")))
                .collect(),
            other => return Err(self.err(t, format!("dtype {other:?}, expected int16 (uint16 values) or int64"))),
        })
    }

    /// `perm` `[N]` as u16, checked to be a permutation of `0..N`.
    fn perm(&self, name: &str) -> Result<Vec<u16>> {
        let n = self.layout.in_features;
        let t = self.shaped(name, &[n], "[in_features]")?;
        let values = self.ints(&t)?;
        check_permutation(values.iter().copied(), n).map_err(|e| self.err(&t, e))?;
        // A permutation of 0..N with N ≤ 65536 (checked by the layout) fits u16.
        Ok(values.into_iter().map(|v| v as u16).collect())
    }

    /// Outlier indices `[1, ceil(M/v0), outlier_size]` as u16, each below k0.
    fn outlier_indices(&self, name: &str) -> Result<Vec<u16>> {
        let l = self.layout;
        let shape = [1, l.outlier_num_indices(), l.outlier_size];
        let t = self.shaped(name, &shape, "[1, ceil(M/v0), outlier_size]")?;
        let values = self.ints(&t)?;
        if let Some((pos, bad)) =
            values.iter().enumerate().find(|&(_, &x)| !(0..l.outlier_num_centroids as i64).contains(&x))
        {
            return Err(self.err(
                &t,
                format!("element {pos} is {bad}, outside the outlier codebook of {}", l.outlier_num_centroids),
            ));
        }
        Ok(values.into_iter().map(|v| v as u16).collect())
    }
}

/// Reads and checks the tensors of the VPTQ linear at module path `prefix` (e.g.
/// `model.layers.0.self_attn.q_proj`) described by `layout`.
///
/// # Errors
/// [`FormatError::MissingTensor`] for a tensor the layout requires; [`FormatError::Vptq`] naming the tensor, the
/// layer and the file for a wrong dtype or shape, a codebook too short for the index width, index words that
/// disagree with the configured widths, a `perm` that is not a permutation, or outlier indices out of range;
/// [`FormatError::ShapeMismatch`] / [`FormatError::UnsupportedDtype`] for scale, offset and bias vectors.
pub fn read_vq_tensors(store: &TensorStore, prefix: &str, layout: &VqLayout) -> Result<VqTensors> {
    layout.validate().map_err(|e| FormatError::vptq(&store.root, prefix, e))?;
    let r = Reader { store, prefix, layout };
    let l = layout;
    let (g, n, m) = (l.group_num, l.in_features, l.out_features);
    let centroids_name = r.name("centroids.weight");
    let qweight_name = r.name(int8_codebook::QWEIGHT_SUFFIX);
    let centroids = if !store.contains(&centroids_name) && store.contains(&qweight_name) {
        r.int8_codebook(&qweight_name)?
    } else {
        r.codebook(&centroids_name, g, l.num_centroids, l.vector_len, "main")?
    };
    let res_name = r.name("res_centroids.weight");
    let res_centroids = if l.has_residual() {
        Some(r.codebook(&res_name, g, l.num_res_centroids, l.vector_len, "residual")?)
    } else {
        None
    };
    let indices = r.indices(&r.name("indices"))?;
    let perm = if l.enable_perm { Some(r.perm(&r.name("perm"))?) } else { None };
    let read_vec = |suffix: &str, len: usize, present: bool| -> Result<Option<Vec<f32>>> {
        if present {
            Ok(Some(store.read_f32(&r.name(suffix), &[len])?))
        } else {
            Ok(None)
        }
    };
    let weight_scale = read_vec("weight_scale", n, l.enable_norm)?;
    let weight_bias = read_vec("weight_bias", n, l.enable_norm)?;
    let bias = read_vec("bias", m, l.bias)?;
    let (outlier_centroids, outlier_indices) = if l.has_outliers() {
        let cb_name = r.name("outlier_centroids.weight");
        let cb = r.codebook(&cb_name, 1, l.outlier_num_centroids, l.outlier_vector_len, "outlier")?;
        (Some(cb), Some(r.outlier_indices(&r.name("outlier_indices"))?))
    } else {
        (None, None)
    };
    let t = VqTensors {
        layout: *layout,
        centroids,
        res_centroids,
        indices,
        perm,
        weight_scale,
        weight_bias,
        bias,
        outlier_centroids,
        outlier_indices,
    };
    // Everything was checked tensor by tensor above; this re-check guards the invariants kernels rely on.
    t.validate().map_err(|e| FormatError::vptq(&store.root, prefix, e))?;
    Ok(t)
}
