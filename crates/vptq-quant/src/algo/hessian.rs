//! Hessian proxy `H = E[x xᵀ]` of one linear layer's input (vptq-spec.md §1.2) and the preprocessing of `H`
//! before the inverse factor is taken (§1.3–1.4): normalization to unit mean diagonal plus a small ridge, dead
//! columns, damping, act-order permutation.
//!
//! Accumulation is in f64 on a fixed grid of 128×128 tiles of the upper triangle; each tile's product over a
//! fixed chunk of rows is one single-threaded f32 GEMM (`linalg::gram_accumulate_f32`) added to the f64 sum,
//! tiles run in parallel. Every
//! element of `H` is therefore summed in an order fixed by the batches alone: bit-identical whatever the thread
//! count (the same batches in the same order give the same bits).
//! Never does IO, never sees a model. Dependencies: `rayon`.

use rayon::prelude::*;

use crate::algo::linalg::gram_accumulate_f32;
use crate::error::{check_finite_f32, check_len, QuantError, Result};

/// Side of the square tiles of `H` (128² f64 = 128 KiB, one tile of work per task).
const TILE: usize = 128;
/// Rows multiplied in one f32 GEMM before the products join the f64 sum.
const ROW_CHUNK: usize = 2048;

/// One tile `[i0, i0+ni) × [j0, j0+nj)` of the upper triangle of `Σ xᵀx`.
#[derive(Debug, Clone)]
struct Tile {
    i0: usize,
    ni: usize,
    j0: usize,
    nj: usize,
    /// sum [ni, nj]: running `Σ_rows x[i0+a]·x[j0+b]`
    sum: Vec<f64>,
}

/// Running `S = Σ xᵀx` over rows `x [n]` of one layer input, in f64; [`HessianAccumulator::finish`] gives
/// `H = S / rows = E[x xᵀ]` (the raw second moment the quantizer uses, spec §1.2).
#[derive(Debug, Clone)]
pub struct HessianAccumulator {
    /// n: input width (in_features of the layers reading this input)
    n: usize,
    /// upper-triangular tile grid (tile row ≤ tile column)
    tiles: Vec<Tile>,
    /// rows accumulated so far (tokens)
    rows: u64,
}

impl HessianAccumulator {
    /// An empty accumulator for inputs of width `n`.
    pub fn new(n: usize) -> Self {
        let mut tiles = Vec::new();
        for i0 in (0..n).step_by(TILE) {
            for j0 in (i0..n).step_by(TILE) {
                let (ni, nj) = (TILE.min(n - i0), TILE.min(n - j0));
                tiles.push(Tile { i0, ni, j0, nj, sum: vec![0f64; ni * nj] });
            }
        }
        Self { n, tiles, rows: 0 }
    }

    /// Input width `n`.
    pub fn in_features(&self) -> usize {
        self.n
    }

    /// Rows (tokens) accumulated so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds `Xᵀ X` for a batch `x [rows, n]` (row-major f32; products in f32 per chunk, summed in f64).
    ///
    /// # Errors
    /// `ShapeMismatch` if `x.len()` is not a multiple of `n`; `NonFinite` on NaN/inf (which would poison `H`).
    pub fn add_batch(&mut self, x: &[f32]) -> Result<()> {
        let n = self.n;
        if n == 0 {
            return check_len("hessian batch [rows, 0]", x.len(), 0);
        }
        if !x.len().is_multiple_of(n) {
            return Err(QuantError::ShapeMismatch {
                what: "hessian batch [rows, n]",
                expected: x.len() / n * n,
                got: x.len(),
            });
        }
        check_finite_f32("hessian batch", x)?;
        for chunk in x.chunks(ROW_CHUNK * n) {
            let rows = chunk.len() / n;
            self.tiles.par_iter_mut().for_each(|t| {
                gram_accumulate_f32(&mut t.sum, chunk, rows, n, t.i0, t.ni, t.j0, t.nj);
            });
            self.rows += rows as u64;
        }
        Ok(())
    }

    /// Adds another accumulator's sums (e.g. one filled on another shard of the data): `S += S_other`.
    ///
    /// # Errors
    /// `ShapeMismatch` if the widths differ.
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<()> {
        check_len("merged hessian width", other.n, self.n)?;
        for (t, o) in self.tiles.iter_mut().zip(&other.tiles) {
            for (s, v) in t.sum.iter_mut().zip(&o.sum) {
                *s += v;
            }
        }
        self.rows += other.rows;
        Ok(())
    }

    /// `H = E[x xᵀ] = S / rows`, `[n, n]` row-major, exactly symmetric.
    ///
    /// # Errors
    /// `Empty` if no row was added.
    pub fn finish(&self) -> Result<Vec<f64>> {
        if self.rows == 0 {
            return Err(QuantError::Empty { what: "hessian accumulator (no rows added)" });
        }
        let n = self.n;
        let inv_rows = 1.0 / self.rows as f64;
        let mut h = vec![0f64; n * n];
        for t in &self.tiles {
            for a in 0..t.ni {
                for b in 0..t.nj {
                    let (gi, gj) = (t.i0 + a, t.j0 + b);
                    // Diagonal tiles hold both (a, b) and (b, a): take the upper one so H is exactly symmetric.
                    if gi <= gj {
                        let v = t.sum[a * t.nj + b] * inv_rows;
                        h[gi * n + gj] = v;
                        h[gj * n + gi] = v;
                    }
                }
            }
        }
        Ok(h)
    }
}

/// Mean of the diagonal of `h [n, n]` (0 for `n = 0`).
pub fn mean_diag(h: &[f64], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64
}

/// The Hessian loader's regularization (spec §1.2, `load_hessian`): `H ← H / mean(diag H) + λ·I`. The division is
/// skipped when the mean diagonal is not positive (an all-zero input). Returns the mean diagonal divided by.
///
/// The proxy loss and the error-feedback loop are invariant to scaling `H`; λ acts as extra damping relative to
/// the mean diagonal (0.01 in the reference, on top of `percdamp`).
///
/// # Errors
/// `ShapeMismatch` if `h.len() != n²`.
pub fn normalize_and_regularize(h: &mut [f64], n: usize, lambda: f64) -> Result<f64> {
    check_len("hessian [n, n]", h.len(), n * n)?;
    let mean = mean_diag(h, n);
    if mean > 0.0 {
        let inv = 1.0 / mean;
        h.iter_mut().for_each(|v| *v *= inv);
    }
    for j in 0..n {
        h[j * n + j] += lambda;
    }
    Ok(mean)
}

/// Dead input columns (spec §1.3): where `H[j][j] == 0` the input is always zero; sets that diagonal to 1 (so
/// `H` stays invertible) and returns the columns, ascending. The caller zeroes `W[:, j]` for them.
///
/// # Errors
/// `ShapeMismatch` if `h.len() != n²`.
pub fn fix_dead_columns(h: &mut [f64], n: usize) -> Result<Vec<usize>> {
    check_len("hessian [n, n]", h.len(), n * n)?;
    let dead: Vec<usize> = (0..n).filter(|&j| h[j * n + j] == 0.0).collect();
    for &j in &dead {
        h[j * n + j] = 1.0;
    }
    Ok(dead)
}

/// GPTQ damping (spec §1.3): `H ← H + percdamp·mean(diag H)·I`. Returns the amount added to each diagonal entry.
///
/// # Errors
/// `ShapeMismatch` if `h.len() != n²`.
pub fn damp(h: &mut [f64], n: usize, percdamp: f64) -> Result<f64> {
    check_len("hessian [n, n]", h.len(), n * n)?;
    let add = percdamp * mean_diag(h, n);
    for j in 0..n {
        h[j * n + j] += add;
    }
    Ok(add)
}

/// Act-order permutation (spec §1.4): column indices sorted by descending `H[j][j]`, ties in ascending index
/// order (a stable sort, so the result is fully determined). `perm[q]` = original column of permuted column `q`.
///
/// # Errors
/// `ShapeMismatch` if `h.len() != n²`.
pub fn act_order_perm(h: &[f64], n: usize) -> Result<Vec<usize>> {
    check_len("hessian [n, n]", h.len(), n * n)?;
    let mut perm: Vec<usize> = (0..n).collect();
    perm.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]));
    Ok(perm)
}

/// `H[perm][:, perm]`: `out[a][b] = h[perm[a]][perm[b]]`, `[n, n]`.
///
/// # Errors
/// `ShapeMismatch` if `h.len() != n²` or `perm.len() != n`.
pub fn permute_symmetric(h: &[f64], n: usize, perm: &[usize]) -> Result<Vec<f64>> {
    check_len("hessian [n, n]", h.len(), n * n)?;
    check_len("perm [n]", perm.len(), n)?;
    let mut out = vec![0f64; n * n];
    out.par_chunks_mut(n.max(1)).zip(perm.par_iter()).for_each(|(row, &pa)| {
        for (o, &pb) in row.iter_mut().zip(perm) {
            *o = h[pa * n + pb];
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::normal_f32;

    fn naive_second_moment(x: &[f32], rows: usize, n: usize) -> Vec<f64> {
        let mut h = vec![0f64; n * n];
        for r in 0..rows {
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] += f64::from(x[r * n + i]) * f64::from(x[r * n + j]);
                }
            }
        }
        h.iter_mut().for_each(|v| *v /= rows as f64);
        h
    }

    #[test]
    fn accumulates_second_moment_over_batches() {
        // n = 130 crosses a tile boundary; 3 uneven batches.
        let (n, rows) = (130, 61);
        let x = normal_f32(rows * n, 11);
        let mut acc = HessianAccumulator::new(n);
        acc.add_batch(&x[..20 * n]).unwrap();
        acc.add_batch(&x[20 * n..21 * n]).unwrap();
        acc.add_batch(&x[21 * n..]).unwrap();
        assert_eq!(acc.rows(), rows as u64);
        let h = acc.finish().unwrap();
        let want = naive_second_moment(&x, rows, n);
        // Each batch's products are taken in f32: ~1e-7 relative per element.
        for (a, b) in h.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for i in 0..n {
            for j in 0..n {
                assert_eq!(h[i * n + j].to_bits(), h[j * n + i].to_bits(), "exactly symmetric");
            }
        }
        // merge of two halves equals the sum
        let (mut a, mut b) = (HessianAccumulator::new(n), HessianAccumulator::new(n));
        a.add_batch(&x[..30 * n]).unwrap();
        b.add_batch(&x[30 * n..]).unwrap();
        a.merge(&b).unwrap();
        let hm = a.finish().unwrap();
        for (p, q) in hm.iter().zip(&want) {
            assert!((p - q).abs() < 1e-6 * (1.0 + q.abs()));
        }
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        let (n, rows) = (300, 90);
        let x = normal_f32(rows * n, 12);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                let mut acc = HessianAccumulator::new(n);
                acc.add_batch(&x[..50 * n]).unwrap();
                acc.add_batch(&x[50 * n..]).unwrap();
                acc.finish().unwrap()
            })
        };
        let (h1, h2, h3) = (run(1), run(2), run(3));
        assert!(h1.iter().zip(&h2).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(h1.iter().zip(&h3).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bad_batches_are_errors() {
        let mut acc = HessianAccumulator::new(4);
        assert!(matches!(acc.finish(), Err(QuantError::Empty { .. })));
        assert!(matches!(acc.add_batch(&[0.0; 7]), Err(QuantError::ShapeMismatch { .. })));
        assert!(matches!(acc.add_batch(&[0.0, f32::NAN, 0.0, 0.0]), Err(QuantError::NonFinite { index: 1, .. })));
    }

    #[test]
    fn preprocessing_helpers() {
        let n = 3;
        // diag (4, 0, 2): column 1 is dead.
        let mut h = vec![4.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0];
        assert_eq!(fix_dead_columns(&mut h, n).unwrap(), vec![1]);
        assert_eq!(h[4], 1.0);
        assert_eq!(act_order_perm(&h, n).unwrap(), vec![0, 2, 1]);
        let p = permute_symmetric(&h, n, &[0, 2, 1]).unwrap();
        assert_eq!(p, vec![4.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 1.0]);
        // mean diag 7/3 → damping 0.01·7/3 on each diagonal entry
        let added = damp(&mut h, n, 0.01).unwrap();
        assert!((added - 0.07 / 3.0).abs() < 1e-15);
        assert!((h[0] - (4.0 + added)).abs() < 1e-15);
        // normalize to unit mean diagonal, then + λ
        let mut g = vec![2.0, 0.0, 0.0, 6.0];
        assert_eq!(normalize_and_regularize(&mut g, 2, 0.01).unwrap(), 4.0);
        assert!((g[0] - 0.51).abs() < 1e-15 && (g[3] - 1.51).abs() < 1e-15 && g[1] == 0.0 && g[2] == 0.0);
        // ties in act order keep index order
        assert_eq!(act_order_perm(&[1.0, 0.0, 0.0, 1.0], 2).unwrap(), vec![0, 1]);
    }
}
