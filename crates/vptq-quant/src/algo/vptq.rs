//! The channel-independent second-order update, the "VPTQ" loop (vptq-spec.md §1.8, paper §3.2, Alg. 1):
//! GPTQ's column walk with "round to grid" replaced by "nearest codeword of each length-v vector of the column".
//!
//! Vectors run down a column (along the output dimension, §1.5): column j of `W' [M, N]` is zero-padded to
//! `M_pad = ceil(M/v)·v` rows and cut into `M_pad/v` vectors. With `U` the upper Cholesky factor of the damped,
//! permuted `H⁻¹`, for each block `[s, e)` of `block_size` columns:
//!
//! ```text
//! for k in s..e:   q_k = Q(W'[:,k]);  e_k = (W'[:,k] − q_k) / U[k,k];  W'[:, k+1..e] −= e_k ⊗ U[k, k+1..e]
//! W'[:, e..] −= E[:, s..e] · U[s..e, e..]          (lazy batched update of all later columns)
//! ```
//!
//! `H⁻¹_kk` is the same for every vector of a column, so the nearest codeword needs no Hessian weighting.
//! The walk keeps `W'` transposed (`[N, M]`, one column contiguous); later columns of the lazy update run in
//! parallel, each summed over the block in a fixed order, so results do not depend on the thread count.
//! Never does IO. Dependencies: `rayon`.

use rayon::prelude::*;

use crate::algo::kmeans::Codebook;
use crate::algo::linalg::{dot_f64, matmul_f64_strided};
use crate::algo::residual::quantize_column_two_stage;
use crate::error::{check_finite_f32, check_finite_f64, check_len, QuantError, Result};

/// A vector quantizer of one weight column: which codebook(s) serve column `col` is its own business (outlier
/// block, groups, residual stage).
pub trait VectorQuantizer {
    /// Vector length `v` of the codebook owning column `col`.
    fn vector_len(&self, col: usize) -> usize;

    /// Whether column `col` is coded with a residual stage (fills `res_idx`).
    fn has_residual(&self, col: usize) -> bool;

    /// Quantizes column `col`: `x [M]` (unpadded; the quantizer pads to its own `v`) → `out [M]`, main indices
    /// `idx [ceil(M/v)]` (vector `i` covers rows `i·v .. i·v+v`), residual indices `res_idx [ceil(M/v)]`
    /// (left untouched when [`Self::has_residual`] is false).
    fn quantize_column(&self, col: usize, x: &[f32], out: &mut [f32], idx: &mut [u32], res_idx: &mut [u32]);
}

/// One codebook for every column, single stage: plain nearest-centroid coding.
#[derive(Debug, Clone, Copy)]
pub struct NearestQuantizer<'a> {
    /// The codebook.
    pub codebook: &'a Codebook,
}

impl VectorQuantizer for NearestQuantizer<'_> {
    fn vector_len(&self, _col: usize) -> usize {
        self.codebook.vector_len()
    }

    fn has_residual(&self, _col: usize) -> bool {
        false
    }

    fn quantize_column(&self, _col: usize, x: &[f32], out: &mut [f32], idx: &mut [u32], res_idx: &mut [u32]) {
        quantize_column_two_stage(self.codebook, None, x, out, idx, res_idx);
    }
}

/// Result of [`vptq_quantize`].
#[derive(Debug, Clone, PartialEq)]
pub struct VptqOutput {
    /// quantized [M, N]: `Q`, in the column order of the input
    pub quantized: Vec<f32>,
    /// qerror [M, N]: updated weight at quantization time minus `Q` (what a residual codebook is trained on)
    pub qerror: Vec<f32>,
    /// indices [N][ceil(M / v_j)]: main index of vector `i` of column `j`
    pub indices: Vec<Vec<u32>>,
    /// res_indices [N][ceil(M / v_j)]: residual indices (empty for columns without residual)
    pub res_indices: Vec<Vec<u32>>,
    /// `tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)` with `ΔW = W − Q` and the `hessian` given (NaN from
    /// `vptq_quantize_unscored`)
    pub proxy_err: f64,
}

/// Runs the error-feedback loop on `w [M, N]` (row-major) with `hessian [N, N]` (for the proxy error) and
/// `hessian_inv_chol [N, N]` = `U`, upper, `Uᵀ U = H⁻¹` of the damped `H` (see `linalg::inverse_upper_cholesky`).
///
/// # Errors
/// `ShapeMismatch` for inconsistent lengths; `NonFinite` in `w` or `U`; `InvalidConfig` if `block_size == 0`
/// or a diagonal entry of `U` is not positive.
pub fn vptq_quantize<Q: VectorQuantizer>(
    w: &[f32],
    m: usize,
    n: usize,
    hessian: &[f64],
    hessian_inv_chol: &[f64],
    quantizer: &Q,
    block_size: usize,
) -> Result<VptqOutput> {
    check_len("hessian [N, N]", hessian.len(), n * n)?;
    let mut out = vptq_quantize_unscored(w, m, n, hessian_inv_chol, quantizer, block_size)?;
    out.proxy_err = proxy_error(w, &out.quantized, m, n, hessian)?;
    Ok(out)
}

/// [`vptq_quantize`] without the proxy error (`proxy_err` is NaN): for callers that score the result in
/// another space anyway (the layer reports it on the original, unnormalized weight), so the two `O(M·N²)`
/// traces are not computed for nothing.
///
/// # Errors
/// As [`vptq_quantize`].
pub(crate) fn vptq_quantize_unscored<Q: VectorQuantizer>(
    w: &[f32],
    m: usize,
    n: usize,
    hessian_inv_chol: &[f64],
    quantizer: &Q,
    block_size: usize,
) -> Result<VptqOutput> {
    check_len("weight [M, N]", w.len(), m * n)?;
    check_len("hessian_inv_chol [N, N]", hessian_inv_chol.len(), n * n)?;
    check_finite_f32("weight", w)?;
    check_finite_f64("hessian_inv_chol", hessian_inv_chol)?;
    if block_size == 0 {
        return Err(QuantError::InvalidConfig { field: "block_size", value: "0".into(), reason: "must be >= 1" });
    }
    if let Some(j) = (0..n).find(|&j| hessian_inv_chol[j * n + j] <= 0.0) {
        return Err(QuantError::InvalidConfig {
            field: "hessian_inv_chol",
            value: format!("U[{j}][{j}] = {}", hessian_inv_chol[j * n + j]),
            reason: "diagonal must be positive",
        });
    }
    let u = hessian_inv_chol;
    // wt [N, M]: W' transposed, updated in place by the error feedback
    let mut wt = transpose(w, m, n);
    // qt, et [N, M]: quantized columns and their quantization errors
    let mut qt = vec![0f32; n * m];
    let mut et = vec![0f32; n * m];
    let mut indices: Vec<Vec<u32>> = (0..n).map(|j| vec![0u32; m.div_ceil(quantizer.vector_len(j))]).collect();
    let mut res_indices: Vec<Vec<u32>> = (0..n)
        .map(|j| if quantizer.has_residual(j) { vec![0u32; m.div_ceil(quantizer.vector_len(j))] } else { Vec::new() })
        .collect();
    // eb [block_size, M]: scaled errors e_k = (w_k − q_k) / U[k,k] of the current block
    let mut eb = vec![0f32; block_size * m];
    let mut res_scratch: Vec<u32> = Vec::new();

    for s in (0..n).step_by(block_size) {
        let e = (s + block_size).min(n);
        for k in s..e {
            let (cur, later) = wt[k * m..e * m].split_at_mut(m);
            let q = &mut qt[k * m..(k + 1) * m];
            let res = if res_indices[k].is_empty() {
                res_scratch.resize(indices[k].len(), 0);
                &mut res_scratch[..]
            } else {
                &mut res_indices[k][..]
            };
            quantizer.quantize_column(k, cur, q, &mut indices[k], res);
            let inv_ukk = (1.0 / u[k * n + k]) as f32;
            let err = &mut eb[(k - s) * m..(k - s + 1) * m];
            for (((ek, qe), &x), &qv) in err.iter_mut().zip(&mut et[k * m..(k + 1) * m]).zip(&*cur).zip(&*q) {
                *qe = x - qv;
                *ek = (x - qv) * inv_ukk;
            }
            // W'[:, k+1..e] −= e_k ⊗ U[k, k+1..e]
            for (off, col) in later.chunks_exact_mut(m).enumerate() {
                let ukj = u[k * n + k + 1 + off] as f32;
                if ukj != 0.0 {
                    for (x, &ek) in col.iter_mut().zip(&*err) {
                        *x -= ukj * ek;
                    }
                }
            }
        }
        // W'[:, e..] −= E_b · U[s..e, e..]: every later column independently, block rows in order.
        let eb = &eb;
        wt[e * m..].par_chunks_mut(m).enumerate().for_each(|(off, col)| {
            let j = e + off;
            for k in s..e {
                let ukj = u[k * n + j] as f32;
                if ukj != 0.0 {
                    for (x, &ek) in col.iter_mut().zip(&eb[(k - s) * m..(k - s + 1) * m]) {
                        *x -= ukj * ek;
                    }
                }
            }
        });
    }

    let quantized = transpose(&qt, n, m);
    let qerror = transpose(&et, n, m);
    Ok(VptqOutput { quantized, qerror, indices, res_indices, proxy_err: f64::NAN })
}

/// `a [rows, cols]` → `aᵀ [cols, rows]`.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// `tr(A H Aᵀ) = Σ_i a_i H a_iᵀ` for `a [M, N]` and a symmetric `h [N, N]` (only its upper triangle is read),
/// in f64. Symmetry halves the work: with `H` cut into panels `P` of 128 rows,
/// `a H aᵀ = Σ_P (a_P H_PP a_Pᵀ + 2·a_P H_P,>P a_>Pᵀ)`, so each panel needs only `Y = A_P · H[P, p0..]` (one GEMM
/// over the panel's upper block row) and row dots of `Y` with `A[:, p0..]`. Fixed blocks of 32 rows run in
/// parallel and are summed in order, so the result does not depend on the thread count.
///
/// # Errors
/// `ShapeMismatch`.
pub fn quadratic_trace(a: &[f32], m: usize, n: usize, h: &[f64]) -> Result<f64> {
    const ROWS: usize = 32;
    const PANEL: usize = 128;
    check_len("matrix [M, N]", a.len(), m * n)?;
    check_len("hessian [N, N]", h.len(), n * n)?;
    if n == 0 {
        return Ok(0.0);
    }
    let per_block: Vec<f64> = a
        .par_chunks(ROWS * n)
        .map(|block| {
            let rows = block.len() / n;
            // ab [rows, N]: the block in f64; y [rows, N − p0] = ab[:, P] · H[P, p0..] for the current panel
            let ab: Vec<f64> = block.iter().map(|&x| f64::from(x)).collect();
            let mut y = vec![0f64; rows * n];
            let mut sum = 0f64;
            for p0 in (0..n).step_by(PANEL) {
                let (p1, width) = ((p0 + PANEL).min(n), n - p0);
                let y = &mut y[..rows * width];
                matmul_f64_strided(&ab[p0..], n, &h[p0 * n + p0..], n, y, rows, p1 - p0, width);
                for r in 0..rows {
                    let (ar, yr) = (&ab[r * n + p0..(r + 1) * n], &y[r * width..(r + 1) * width]);
                    let (diag_a, off_a) = ar.split_at(p1 - p0);
                    let (diag_y, off_y) = yr.split_at(p1 - p0);
                    sum += dot_f64(diag_a, diag_y) + 2.0 * dot_f64(off_a, off_y);
                }
            }
            sum
        })
        .collect();
    Ok(per_block.iter().sum())
}

/// Proxy error `tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)` with `ΔW = w − q` (both `[M, N]`), a symmetric `h [N, N]`; 0 when
/// `ΔW = 0`.
///
/// # Errors
/// `ShapeMismatch`.
pub fn proxy_error(w: &[f32], q: &[f32], m: usize, n: usize, h: &[f64]) -> Result<f64> {
    check_len("quantized [M, N]", q.len(), w.len())?;
    let delta: Vec<f32> = w.iter().zip(q).map(|(a, b)| a - b).collect();
    let num = quadratic_trace(&delta, m, n, h)?;
    if num == 0.0 {
        return Ok(0.0);
    }
    Ok(num / quadratic_trace(w, m, n, h)?)
}

/// The vectors of columns `cols` of `w [M, N]` with vector length `v`: `[cols.len() · ceil(M/v), v]`, column by
/// column (vector `i` of column `j` at row `(j − cols.start)·ceil(M/v) + i`), padding rows zero.
pub fn gather_column_vectors(w: &[f32], m: usize, n: usize, cols: std::ops::Range<usize>, v: usize) -> Vec<f32> {
    let nv = m.div_ceil(v);
    let mut out = vec![0f32; cols.len() * nv * v];
    for (jj, j) in cols.enumerate() {
        for r in 0..m {
            out[jj * nv * v + r] = w[r * n + j];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::kmeans::{weighted_kmeans, KMeansConfig};
    use crate::algo::linalg::inverse_upper_cholesky;
    use crate::algo::rng::SplitMix64;
    use crate::testutil::{correlated_hessian, normal_f32};

    fn identity(n: usize) -> Vec<f64> {
        let mut e = vec![0f64; n * n];
        (0..n).for_each(|i| e[i * n + i] = 1.0);
        e
    }

    /// Plain nearest-centroid quantization of every column, no error feedback.
    fn plain_nearest(w: &[f32], m: usize, n: usize, cb: &Codebook) -> (Vec<f32>, Vec<Vec<u32>>) {
        let wt = transpose(w, m, n);
        let mut qt = vec![0f32; n * m];
        let mut idx = vec![vec![0u32; m.div_ceil(cb.vector_len())]; n];
        let q = NearestQuantizer { codebook: cb };
        for j in 0..n {
            q.quantize_column(j, &wt[j * m..(j + 1) * m], &mut qt[j * m..(j + 1) * m], &mut idx[j], &mut []);
        }
        (transpose(&qt, n, m), idx)
    }

    fn damped(mut h: Vec<f64>, n: usize) -> Vec<f64> {
        let mean = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
        (0..n).for_each(|j| h[j * n + j] += 0.01 * mean);
        h
    }

    fn kmeans_codebook(w: &[f32], m: usize, n: usize, v: usize, k: usize) -> Codebook {
        let vecs = gather_column_vectors(w, m, n, 0..n, v);
        let cfg = KMeansConfig { num_centroids: k, max_iters: 20, ..KMeansConfig::default() };
        Codebook::new(weighted_kmeans(&vecs, v, None, &cfg).unwrap().centroids, v).unwrap()
    }

    #[test]
    fn identity_hessian_equals_plain_nearest_centroid() {
        // M = 20 is not a multiple of v = 8: the last vector of each column is padded.
        let (m, n, v) = (20, 40, 8);
        let w = normal_f32(m * n, 1);
        let cb = Codebook::new(normal_f32(16 * v, 2), v).unwrap();
        let h = identity(n);
        let u = inverse_upper_cholesky(&h, n).unwrap();
        let out = vptq_quantize(&w, m, n, &h, &u, &NearestQuantizer { codebook: &cb }, 7).unwrap();
        let (q, idx) = plain_nearest(&w, m, n, &cb);
        assert_eq!(out.quantized, q);
        assert_eq!(out.indices, idx);
        assert!(out.indices.iter().all(|c| c.len() == 3));
        let diff: Vec<f32> = w.iter().zip(&q).map(|(a, b)| a - b).collect();
        assert_eq!(out.qerror, diff);
        let want = diff.iter().map(|&d| f64::from(d).powi(2)).sum::<f64>()
            / w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        assert!((out.proxy_err - want).abs() < 1e-9 * want);
    }

    #[test]
    fn error_feedback_beats_plain_nearest_on_a_correlated_hessian() {
        let (m, n, v) = (64, 96, 4);
        let w = normal_f32(m * n, 3);
        let h = correlated_hessian(n, 4);
        let u = inverse_upper_cholesky(&damped(h.clone(), n), n).unwrap();
        let cb = kmeans_codebook(&w, m, n, v, 32);
        let (q_plain, _) = plain_nearest(&w, m, n, &cb);
        let plain = proxy_error(&w, &q_plain, m, n, &h).unwrap();
        for block in [128, 16] {
            let out = vptq_quantize(&w, m, n, &h, &u, &NearestQuantizer { codebook: &cb }, block).unwrap();
            assert!(out.proxy_err < 0.9 * plain, "block {block}: vptq {} vs plain {plain}", out.proxy_err);
        }
    }

    #[test]
    fn lossless_layer_is_reproduced_exactly() {
        let (m, n, v, k) = (18, 30, 6, 8);
        let codewords = normal_f32(k * v, 5);
        let mut rng = SplitMix64::new(6);
        let mut w = vec![0f32; m * n];
        let mut want_idx = vec![vec![0u32; m / v]; n];
        for j in 0..n {
            for i in 0..m / v {
                let c = rng.below(k);
                want_idx[j][i] = c as u32;
                for t in 0..v {
                    w[(i * v + t) * n + j] = codewords[c * v + t];
                }
            }
        }
        let cb = Codebook::new(codewords, v).unwrap();
        let h = correlated_hessian(n, 7);
        let u = inverse_upper_cholesky(&damped(h.clone(), n), n).unwrap();
        let out = vptq_quantize(&w, m, n, &h, &u, &NearestQuantizer { codebook: &cb }, 128).unwrap();
        assert_eq!(out.quantized, w);
        assert_eq!(out.indices, want_idx);
        assert_eq!(out.proxy_err, 0.0);
        assert!(out.qerror.iter().all(|&e| e == 0.0));
    }

    #[test]
    fn loop_is_bit_identical_across_thread_counts() {
        let (m, n, v) = (40, 300, 8);
        let w = normal_f32(m * n, 8);
        let h = correlated_hessian(n, 9);
        let u = inverse_upper_cholesky(&damped(h.clone(), n), n).unwrap();
        let cb = Codebook::new(normal_f32(64 * v, 10), v).unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| vptq_quantize(&w, m, n, &h, &u, &NearestQuantizer { codebook: &cb }, 32).unwrap())
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(a.quantized, b.quantized);
        assert_eq!(a.indices, b.indices);
        assert_eq!(a.proxy_err.to_bits(), b.proxy_err.to_bits());
    }

    #[test]
    fn quadratic_trace_matches_naive() {
        let (m, n) = (37, 19);
        let a = normal_f32(m * n, 11);
        let h = correlated_hessian(n, 12);
        let mut want = 0f64;
        for i in 0..m {
            for p in 0..n {
                for q in 0..n {
                    want += f64::from(a[i * n + p]) * h[p * n + q] * f64::from(a[i * n + q]);
                }
            }
        }
        let got = quadratic_trace(&a, m, n, &h).unwrap();
        assert!((got - want).abs() < 1e-10 * want.abs(), "{got} vs {want}");
    }

    /// The former dense `tr(A H Aᵀ)`: `Y = A·H` by a full GEMM, then row dots. Accuracy oracle and timing baseline
    /// of the symmetric panel version.
    fn quadratic_trace_dense(a: &[f32], m: usize, n: usize, h: &[f64]) -> f64 {
        use crate::algo::linalg::matmul_f64;
        assert_eq!(a.len(), m * n);
        let per_block: Vec<f64> = a
            .par_chunks(32 * n)
            .map(|block| {
                let rows = block.len() / n;
                let ab: Vec<f64> = block.iter().map(|&x| f64::from(x)).collect();
                let mut y = vec![0f64; rows * n];
                matmul_f64(&ab, h, &mut y, rows, n, n);
                (0..rows).map(|r| dot_f64(&ab[r * n..(r + 1) * n], &y[r * n..(r + 1) * n])).sum::<f64>()
            })
            .collect();
        per_block.iter().sum()
    }

    #[test]
    fn quadratic_trace_matches_the_dense_product_across_panel_boundaries() {
        for (m, n) in [(1, 1), (5, 127), (33, 128), (40, 129), (70, 300)] {
            let a = normal_f32(m * n, n as u64);
            let h = correlated_hessian(n, m as u64);
            let (got, want) = (quadratic_trace(&a, m, n, &h).unwrap(), quadratic_trace_dense(&a, m, n, &h));
            assert!((got - want).abs() <= 1e-12 * want.abs(), "{m}x{n}: {got} vs {want}");
        }
    }

    /// Timing of the proxy error on a SmolLM2 `down_proj` shape; run with
    /// `cargo test --release -p vptq-quant -- --ignored --nocapture proxy_error_speed`.
    #[test]
    #[ignore = "timing print, run in release"]
    fn proxy_error_speed() {
        let (m, n) = (576, 1536);
        let a = normal_f32(m * n, 1);
        // an SPD H without the O(n³) test helper: Gram of random rows, computed with the panel GEMM's sibling
        let x: Vec<f64> = normal_f32(2 * n * n, 2).iter().map(|&v| f64::from(v)).collect();
        let mut h = vec![0f64; n * n];
        crate::algo::linalg::gram_accumulate(&mut h, &x, 2 * n, n, 0, n, 0, n);
        let (mut dense, mut panel, mut dense_secs, mut panel_secs) = (0.0, 0.0, f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let t = std::time::Instant::now();
            dense = quadratic_trace_dense(&a, m, n, &h);
            dense_secs = dense_secs.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            panel = quadratic_trace(&a, m, n, &h).unwrap();
            panel_secs = panel_secs.min(t.elapsed().as_secs_f64());
        }
        println!(
            "tr(A H Aᵀ) {m}x{n} ({} threads): dense {dense_secs:.3} s, symmetric panels {panel_secs:.3} s, \
             rel diff {:.2e}",
            rayon::current_num_threads(),
            (panel - dense).abs() / dense
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cb = Codebook::new(vec![0.0; 4], 2).unwrap();
        let q = NearestQuantizer { codebook: &cb };
        let h = identity(2);
        assert!(matches!(vptq_quantize(&[0.0; 3], 2, 2, &h, &h, &q, 1), Err(QuantError::ShapeMismatch { .. })));
        assert!(matches!(vptq_quantize(&[0.0; 4], 2, 2, &h, &h, &q, 0), Err(QuantError::InvalidConfig { .. })));
        let zero = vec![0f64; 4];
        assert!(matches!(vptq_quantize(&[0.0; 4], 2, 2, &h, &zero, &q, 1), Err(QuantError::InvalidConfig { .. })));
    }
}
