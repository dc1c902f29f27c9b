//! Residual vector quantization (vptq-spec.md §1.9): a second codebook trained by Hessian-weighted k-means on
//! the first pass's quantization error, then the column loop redone from the original weight with two-stage
//! greedy coding — main index `= argmin_i ‖x − C[i]‖`, residual index `= argmin_r ‖(x − C[main]) − R[r]‖`,
//! `q = C[main] + R[r]`. Main centroids are not retrained.
//! Never does IO. Dependencies: none beyond this crate.

use crate::algo::kmeans::{train_column_codebook, Codebook, KMeansConfig};
use crate::algo::vptq::VectorQuantizer;
use crate::error::Result;

/// Codes one column `x [M]` with `main` and optionally `residual` (same `v`): pads to `ceil(M/v)·v` rows with
/// zeros, writes `out [M]`, `idx [ceil(M/v)]` and, with a residual codebook, `res_idx [ceil(M/v)]`.
///
/// # Panics
/// If the buffers do not have these lengths or the two codebooks differ in `v`.
pub fn quantize_column_two_stage(
    main: &Codebook,
    residual: Option<&Codebook>,
    x: &[f32],
    out: &mut [f32],
    idx: &mut [u32],
    res_idx: &mut [u32],
) {
    let (m, v) = (x.len(), main.vector_len());
    let nv = m.div_ceil(v);
    assert_eq!(out.len(), m, "quantize_column: out is not [M]");
    assert_eq!(idx.len(), nv, "quantize_column: idx is not [ceil(M/v)]");
    // xp [nv, v]: the column, zero-padded
    let mut xp = vec![0f32; nv * v];
    xp[..m].copy_from_slice(x);
    main.nearest(&xp, idx);
    // q [nv, v]: C[idx] (+ R[res_idx])
    let mut q: Vec<f32> = idx.iter().flat_map(|&i| main.centroid(i as usize).iter().copied()).collect();
    if let Some(res) = residual {
        assert_eq!(res.vector_len(), v, "quantize_column: residual codebook has another vector length");
        assert_eq!(res_idx.len(), nv, "quantize_column: res_idx is not [ceil(M/v)]");
        // r [nv, v]: what the main stage left
        let r: Vec<f32> = xp.iter().zip(&q).map(|(a, b)| a - b).collect();
        res.nearest(&r, res_idx);
        for (qv, &ri) in q.chunks_exact_mut(v).zip(&*res_idx) {
            for (a, b) in qv.iter_mut().zip(res.centroid(ri as usize)) {
                *a += b;
            }
        }
    }
    out.copy_from_slice(&q[..m]);
}

/// One main and one residual codebook for every column (the single-group case).
#[derive(Debug, Clone, Copy)]
pub struct ResidualQuantizer<'a> {
    /// Main codebook.
    pub main: &'a Codebook,
    /// Residual codebook (same `v`).
    pub residual: &'a Codebook,
}

impl VectorQuantizer for ResidualQuantizer<'_> {
    fn vector_len(&self, _col: usize) -> usize {
        self.main.vector_len()
    }

    fn has_residual(&self, _col: usize) -> bool {
        true
    }

    fn quantize_column(&self, _col: usize, x: &[f32], out: &mut [f32], idx: &mut [u32], res_idx: &mut [u32]) {
        quantize_column_two_stage(self.main, Some(self.residual), x, out, idx, res_idx);
    }
}

/// Trains a residual codebook on the vectors of columns `cols` of `qerror [M, N]` (the first pass's error), each
/// vector weighted by its column's `column_weights [N]` (`H[j][j]`, the intended weighting of spec §1.9).
///
/// # Errors
/// As [`train_column_codebook`].
pub fn train_residual_codebook(
    qerror: &[f32],
    m: usize,
    n: usize,
    cols: std::ops::Range<usize>,
    vector_len: usize,
    column_weights: &[f32],
    cfg: &KMeansConfig,
) -> Result<Codebook> {
    Ok(train_column_codebook(qerror, m, n, cols, vector_len, column_weights, cfg)?.codebook)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::linalg::inverse_upper_cholesky;
    use crate::algo::vptq::{vptq_quantize, NearestQuantizer};
    use crate::testutil::{correlated_hessian, normal_f32};

    #[test]
    fn two_stage_coding_is_greedy() {
        let v = 2;
        let main = Codebook::new(vec![0.0, 0.0, 10.0, 10.0], v).unwrap();
        let res = Codebook::new(vec![0.0, 0.0, 1.0, -1.0, -1.0, 1.0], v).unwrap();
        // column of 3 values (padded to 4): vectors (9, 11) and (0.9, pad 0)
        let x = [9.0, 11.0, 0.9];
        let (mut out, mut idx, mut ridx) = ([0f32; 3], [0u32; 2], [0u32; 2]);
        quantize_column_two_stage(&main, Some(&res), &x, &mut out, &mut idx, &mut ridx);
        assert_eq!(idx, [1, 0]);
        // (9, 11) − (10, 10) = (−1, 1) → R[2]; (0.9, 0) → R[1] = (1, −1) is at distance 1.01 vs R[0] at 0.81
        assert_eq!(ridx, [2, 0]);
        assert_eq!(out, [9.0, 11.0, 0.0]);
    }

    #[test]
    fn residual_reduces_the_proxy_error() {
        let (m, n, v) = (48, 64, 4);
        let w = normal_f32(m * n, 21);
        let h = correlated_hessian(n, 22);
        let mut hd = h.clone();
        let mean = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
        (0..n).for_each(|j| hd[j * n + j] += 0.01 * mean);
        let u = inverse_upper_cholesky(&hd, n).unwrap();
        let weights: Vec<f32> = (0..n).map(|j| h[j * n + j] as f32).collect();
        let kcfg = KMeansConfig { num_centroids: 16, max_iters: 20, ..KMeansConfig::default() };
        let main = train_residual_codebook(&w, m, n, 0..n, v, &weights, &kcfg).unwrap();
        let first = vptq_quantize(&w, m, n, &h, &u, &NearestQuantizer { codebook: &main }, 128).unwrap();
        let res = train_residual_codebook(&first.qerror, m, n, 0..n, v, &weights, &kcfg).unwrap();
        let second = vptq_quantize(&w, m, n, &h, &u, &ResidualQuantizer { main: &main, residual: &res }, 128).unwrap();
        assert!(second.res_indices.iter().all(|c| c.len() == m / v && c.iter().all(|&r| r < 16)));
        assert!(second.proxy_err < 0.8 * first.proxy_err, "{} vs {}", second.proxy_err, first.proxy_err);
    }
}
