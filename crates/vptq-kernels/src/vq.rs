//! VPTQ weights on the CPU (vptq-spec.md §2.4): the reference dequantization written step by step
//! ([`dequantize_ref`]), the fused GEMV formulation as a second, independent oracle ([`gemv_vq_ref`]), and a
//! simple banded path ([`matmul_vq`]: dequantize a band of output rows into a small f32 buffer, then a dense f32
//! matmul on it), so a layer never holds its full dense weight.
//!
//! Sees slices and the validated [`VqLayout`] only (from `vptq-format`, with its bit reader); never a config
//! file or a model. The view's lengths are checked by the loader ([`VqTensors::validate`]); here they are
//! internal invariants (`assert!`). Accumulation is in f32 (f64 in the `_ref` oracles). The model runs the fast
//! kernels of [`crate::vq_fast`], tested against these.

use crate::dense::{gemm_f32, WeightView};
use crate::simd;
use rayon::prelude::*;
use vptq_format::hf::HalfOrFloat;
use vptq_format::vptq::{read_index, unpack_indices, VqLayout, VqTensors};

/// Target output rows per band of [`matmul_vq`] (rounded up to whole vectors): the band buffer is
/// `rows × in_features` f32, a few MiB at most for 8B-class layers.
const BAND_ROWS: usize = 64;
/// Up to this many tokens the band is applied with per-row dot products instead of a GEMM.
const DOT_MAX_TOKENS: usize = 4;

/// Borrowed tensors of one VPTQ linear (shapes as in [`VqTensors`]); the layer bias is not part of it.
#[derive(Debug, Clone, Copy)]
pub struct VqView<'a> {
    /// Shape of the layer.
    pub layout: &'a VqLayout,
    /// Main codebooks `[G, k·v]`.
    pub centroids: WeightView<'a>,
    /// Residual codebooks `[G, kr·v]`.
    pub res_centroids: Option<WeightView<'a>>,
    /// Packed indices `[G, num_indices, P]`.
    pub indices: &'a [u32],
    /// `perm[q]` = original column of permuted column q, `[N]`; identity when absent (absorbed).
    pub perm: Option<&'a [u16]>,
    /// Per-original-column scale `[N]`; 1 when absent.
    pub weight_scale: Option<&'a [f32]>,
    /// Per-original-column offset `[N]`; 0 when absent.
    pub weight_bias: Option<&'a [f32]>,
    /// Outlier codebook `[1, k0·v0]`.
    pub outlier_centroids: Option<WeightView<'a>>,
    /// Outlier indices `[ceil(M/v0), outlier_size]`.
    pub outlier_indices: Option<&'a [u16]>,
}

/// Borrows float data in its stored precision as a kernel weight view.
pub fn half_or_float_view(h: &HalfOrFloat) -> WeightView<'_> {
    match h {
        HalfOrFloat::F32(v) => WeightView::F32(v),
        HalfOrFloat::F16(v) => WeightView::F16(v),
        HalfOrFloat::Bf16(v) => WeightView::Bf16(v),
    }
}

impl<'a> VqView<'a> {
    /// Borrows validated tensors.
    pub fn new(t: &'a VqTensors) -> Self {
        VqView {
            layout: &t.layout,
            centroids: half_or_float_view(&t.centroids),
            res_centroids: t.res_centroids.as_ref().map(half_or_float_view),
            indices: &t.indices,
            perm: t.perm.as_deref(),
            weight_scale: t.weight_scale.as_deref(),
            weight_bias: t.weight_bias.as_deref(),
            outlier_centroids: t.outlier_centroids.as_ref().map(half_or_float_view),
            outlier_indices: t.outlier_indices.as_deref(),
        }
    }

    /// Internal invariant: buffer lengths match the layout (the loader checked them).
    pub(crate) fn check(&self) {
        let l = self.layout;
        let (g, n) = (l.group_num, l.in_features);
        assert_eq!(self.centroids.len(), g * l.num_centroids * l.vector_len, "vq: centroids");
        assert_eq!(self.res_centroids.map_or(0, |r| r.len()), g * l.num_res_centroids * l.vector_len, "vq: res");
        assert_eq!(self.indices.len(), g * l.num_indices() * l.words_per_row(), "vq: indices");
        assert!(self.perm.is_none_or(|p| p.len() == n), "vq: perm");
        assert!(self.weight_scale.is_none_or(|s| s.len() == n) && self.weight_bias.is_none_or(|s| s.len() == n));
        let outliers = l.outlier_num_indices() * l.outlier_size;
        assert_eq!(self.outlier_indices.map_or(0, |o| o.len()), outliers, "vq: outlier indices");
        assert_eq!(
            self.outlier_centroids.map_or(0, |o| o.len()),
            l.outlier_num_centroids * l.outlier_vector_len,
            "vq: outlier centroids"
        );
    }

    /// Original input column of permuted column `q`.
    #[inline]
    pub(crate) fn column(&self, q: usize) -> usize {
        self.perm.map_or(q, |p| p[q] as usize)
    }

    /// (scale, offset) of original column `j`.
    #[inline]
    fn norm(&self, j: usize) -> (f32, f32) {
        (self.weight_scale.map_or(1.0, |s| s[j]), self.weight_bias.map_or(0.0, |b| b[j]))
    }

    /// The packed index row of codebook `c`, vector row `i`: `[P]` words.
    #[inline]
    fn index_row(&self, c: usize, i: usize) -> &'a [u32] {
        let p = self.layout.words_per_row();
        let start = (c * self.layout.num_indices() + i) * p;
        &self.indices[start..start + p]
    }

    /// Writes `C_c[main] + R_c[res]` (length v) into `out` for the merged index `merged`.
    #[inline]
    fn main_vector(&self, c: usize, merged: u32, out: &mut [f32]) {
        let l = self.layout;
        let v = l.vector_len;
        let main = (merged & ((1u32 << l.index_bits()) - 1)) as usize;
        self.centroids.to_f32_range((c * l.num_centroids + main) * v, out);
        if let Some(rc) = self.res_centroids {
            let res = (merged >> l.index_bits()) as usize; // T-bit value: the bits above b are exactly r bits
            for (t, o) in out.iter_mut().enumerate() {
                *o += at(rc, (c * l.num_res_centroids + res) * v + t);
            }
        }
    }
}

/// Element `i` of a weight view, widened to f32.
#[inline]
fn at(w: WeightView<'_>, i: usize) -> f32 {
    match w {
        WeightView::F32(v) => v[i],
        WeightView::F16(v) => v[i].to_f32(),
        WeightView::Bf16(v) => v[i].to_f32(),
        WeightView::Q8(v) => v.get(i),
    }
}

/// Dequantizes the whole weight `Ŵ` `[M, N]` following §2.4 step by step: unpack, build the permuted padded
/// main matrix, drop padding rows, prepend outlier columns, un-permute columns, apply scale/offset. The oracle
/// for every other VPTQ path.
///
/// # Panics
/// If the view's buffers disagree with its layout (checked at load).
pub fn dequantize_ref(view: &VqView<'_>) -> Vec<f32> {
    view.check();
    let l = view.layout;
    let (m, n, v) = (l.out_features, l.in_features, l.vector_len);
    let (ni, gs, os) = (l.num_indices(), l.group_size, l.outlier_size);
    let (b, r) = (l.index_bits(), l.res_index_bits());
    // Steps 1–2: Wp [ni·v, N], columns in permuted order (outlier columns [0, os) filled in step 4).
    let mut wp = vec![0f32; ni * v * n];
    for c in 0..l.group_num {
        for i in 0..ni {
            let (main, res) = unpack_indices(view.index_row(c, i), gs, b, r); // [gs], [gs] or empty
            for (g, &mi) in main.iter().enumerate() {
                let q = os + c * gs + g;
                let ri = res.get(g).copied().unwrap_or(0) as usize;
                for t in 0..v {
                    let mut val = at(view.centroids, (c * l.num_centroids + mi as usize) * v + t);
                    if let Some(rc) = view.res_centroids {
                        val += at(rc, (c * l.num_res_centroids + ri) * v + t);
                    }
                    wp[(i * v + t) * n + q] = val;
                }
            }
        }
    }
    // Step 3: keep rows 0 … M−1.
    wp.truncate(m * n);
    // Step 4: outlier block Wo [ceil(M/v0)·v0, os], its own padding dropped, as the first os columns.
    if let (Some(cb), Some(idx)) = (view.outlier_centroids, view.outlier_indices) {
        let v0 = l.outlier_vector_len;
        for i in 0..l.outlier_num_indices() {
            for g in 0..os {
                let code = idx[i * os + g] as usize;
                for t in 0..v0 {
                    let row = i * v0 + t;
                    if row < m {
                        wp[row * n + g] = at(cb, code * v0 + t);
                    }
                }
            }
        }
    }
    // Step 5: Ŵ[:, perm[q]] = Wp[:, q].
    let mut w = vec![0f32; m * n]; // [M, N]
    for row in 0..m {
        for q in 0..n {
            w[row * n + view.column(q)] = wp[row * n + q];
        }
    }
    // Step 6: per original column j, Ŵ[:, j] · scale_j + offset_j.
    for row in w.chunks_exact_mut(n) {
        for (j, x) in row.iter_mut().enumerate() {
            let (s, o) = view.norm(j);
            *x = *x * s + o;
        }
    }
    w
}

/// `y[M] = x[N] · Ŵᵀ` (no layer bias) by the fused formula of §2.4: for every permuted column q with original
/// column j = perm[q], each row of vector i gets `(C[I] + R[R]) · (x_j · scale_j)`; every row gets
/// `Σ_j x_j · offset_j`. Accumulates in f64; independent of [`dequantize_ref`]'s steps.
///
/// # Panics
/// If `x.len() != N` or the view's buffers disagree with its layout.
pub fn gemv_vq_ref(view: &VqView<'_>, x: &[f32]) -> Vec<f32> {
    view.check();
    let l = view.layout;
    let (m, n, v, ni, os) = (l.out_features, l.in_features, l.vector_len, l.num_indices(), l.outlier_size);
    assert_eq!(x.len(), n, "gemv_vq_ref: x");
    let mut y_main = vec![0f64; ni * v]; // [ni·v] padded output of the main columns
    let mut y_out = vec![0f64; l.outlier_num_indices() * l.outlier_vector_len]; // [ceil(M/v0)·v0]
    let mut offset = 0f64; // Σ_j x_j · offset_j, shared by every row
    let mut vec_buf = vec![0f32; v]; // [v] one decoded vector
    for q in 0..n {
        let j = view.column(q);
        let (s, o) = view.norm(j);
        let xs = x[j] as f64 * s as f64;
        offset += x[j] as f64 * o as f64;
        if q < os {
            let cb = view.outlier_centroids.expect("invariant: outlier columns have a codebook");
            let idx = view.outlier_indices.expect("invariant: outlier columns have indices");
            let v0 = l.outlier_vector_len;
            for i in 0..l.outlier_num_indices() {
                let code = idx[i * os + q] as usize;
                for t in 0..v0 {
                    y_out[i * v0 + t] += at(cb, code * v0 + t) as f64 * xs;
                }
            }
        } else {
            let (c, g) = ((q - os) / l.group_size, (q - os) % l.group_size);
            for i in 0..ni {
                view.main_vector(c, read_index(view.index_row(c, i), g, l.total_bits()), &mut vec_buf);
                for (yv, &cv) in y_main[i * v..(i + 1) * v].iter_mut().zip(&vec_buf) {
                    *yv += cv as f64 * xs;
                }
            }
        }
    }
    (0..m).map(|row| (y_main[row] + y_out.get(row).copied().unwrap_or(0.0) + offset) as f32).collect()
}

/// Dequantizes output rows `[row0, row0 + rows)` of `Ŵ` into `out` `[rows, N]` (f32), decoding each index
/// once per band. Any row range is allowed; bands aligned to `vector_len` decode nothing twice.
///
/// # Panics
/// If the range exceeds M, `out.len() != rows · N`, or the view's buffers disagree with its layout.
pub fn dequantize_rows(view: &VqView<'_>, row0: usize, rows: usize, out: &mut [f32]) {
    view.check();
    let l = view.layout;
    let (m, n, v, os) = (l.out_features, l.in_features, l.vector_len, l.outlier_size);
    assert!(row0 + rows <= m && out.len() == rows * n, "dequantize_rows: range");
    if rows == 0 {
        return;
    }
    let end = row0 + rows;
    let mut vec_buf = vec![0f32; v]; // [v] one decoded vector
                                     // Main columns: vector rows overlapping the band; each decoded vector scatters into up to v rows.
    for q in os..n {
        let j = view.column(q);
        let (s, o) = view.norm(j);
        let (c, g) = ((q - os) / l.group_size, (q - os) % l.group_size);
        for i in row0 / v..=(end - 1) / v {
            view.main_vector(c, read_index(view.index_row(c, i), g, l.total_bits()), &mut vec_buf);
            for (t, &val) in vec_buf.iter().enumerate() {
                let row = i * v + t;
                if (row0..end).contains(&row) {
                    out[(row - row0) * n + j] = val * s + o;
                }
            }
        }
    }
    // Outlier columns (rare, small): element by element.
    if let (Some(cb), Some(idx)) = (view.outlier_centroids, view.outlier_indices) {
        let v0 = l.outlier_vector_len;
        for row in row0..end {
            for q in 0..os {
                let j = view.column(q);
                let (s, o) = view.norm(j);
                let code = idx[(row / v0) * os + q] as usize;
                out[(row - row0) * n + j] = at(cb, code * v0 + row % v0) * s + o;
            }
        }
    }
}

/// `y[n_tokens, M] = x[n_tokens, N] · Ŵᵀ` (no layer bias): bands of output rows are dequantized into a
/// `[band, N]` f32 buffer each, in parallel on the caller's rayon pool, and multiplied densely. Memory is one
/// band buffer per task, never the full dense weight.
///
/// # Panics
/// If `x.len() != n_tokens · N`, `y.len() != n_tokens · M`, or the view's buffers disagree with its layout.
pub fn matmul_vq(view: &VqView<'_>, x: &[f32], y: &mut [f32], n_tokens: usize) {
    let l = view.layout;
    let (m, n) = (l.out_features, l.in_features);
    assert_eq!(x.len(), n_tokens * n, "matmul_vq: x");
    assert_eq!(y.len(), n_tokens * m, "matmul_vq: y");
    if n_tokens == 0 {
        return;
    }
    let band = l.vector_len * BAND_ROWS.div_ceil(l.vector_len);
    let parts: Vec<(usize, Vec<f32>)> = (0..m)
        .step_by(band)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|row0| {
            let rows = band.min(m - row0);
            let mut w = vec![0f32; rows * n]; // [rows, N] dequantized band
            dequantize_rows(view, row0, rows, &mut w);
            let mut yb = vec![0f32; n_tokens * rows]; // [n_tokens, rows]
            if n_tokens <= DOT_MAX_TOKENS {
                for t in 0..n_tokens {
                    let xt = &x[t * n..(t + 1) * n];
                    for (r, wr) in w.chunks_exact(n).enumerate() {
                        yb[t * rows + r] = simd::dot_f32(xt, wr);
                    }
                }
            } else {
                gemm_f32(x, &w, &mut yb, n_tokens, n, rows, false);
            }
            (row0, yb)
        })
        .collect();
    for (row0, yb) in parts {
        let rows = yb.len() / n_tokens;
        for t in 0..n_tokens {
            y[t * m + row0..t * m + row0 + rows].copy_from_slice(&yb[t * rows..(t + 1) * rows]);
        }
    }
}
