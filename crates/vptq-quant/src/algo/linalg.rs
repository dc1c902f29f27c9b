//! Dense f64 linear algebra on row-major square matrices (vptq-spec.md §1.3): Cholesky `A = L Lᵀ`, the inverse
//! `A⁻¹`, and the upper Cholesky factor `U` of `H⁻¹` (`Uᵀ U = H⁻¹`) that the GPTQ/VPTQ error feedback uses; plus
//! the Gram product `Xᵀ X` behind the Hessian accumulation.
//!
//! Cholesky and triangular inverse are hand-written (blocked, rayon over rows, f64; no faer): the layers of the
//! models this project targets have `N ≤ a few thousand`, where an O(N³/3) loop with vectorized dot products
//! takes well under a second, and a hand-written loop keeps every element's summation order fixed, so results
//! are bit-identical whatever the thread count. `Xᵀ X` uses the `gemm` crate single-threaded on tiles the
//! caller fixes. This is the only file of the crate that imports `gemm`.
//! Dependencies: `gemm`, `rayon`.

use rayon::prelude::*;

use crate::error::{check_len, QuantError, Result};

/// Columns per panel of the blocked Cholesky: a panel row (64 f64 = 512 B) stays in L1 during the update.
const CHOL_BLOCK: usize = 64;

/// `Σ a[i]·b[i]` over the shorter length, 8 independent accumulators combined in a fixed order.
#[inline(always)]
fn dot_f64_body<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; LANES];
    let chunks = n / LANES;
    for c in 0..chunks {
        let xa = &a[c * LANES..c * LANES + LANES];
        let xb = &b[c * LANES..c * LANES + LANES];
        for l in 0..LANES {
            acc[l] = if FMA { xa[l].mul_add(xb[l], acc[l]) } else { acc[l] + xa[l] * xb[l] };
        }
    }
    let mut tail = 0f64;
    for i in chunks * LANES..n {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

fma_dispatch! {
    /// Dot product in f64 (over the shorter length); same inputs give the same bits on a given machine.
    pub fn dot_f64(a: &[f64], b: &[f64]) -> f64 => dot_f64_body
}

/// Lower Cholesky factor `L` of a symmetric positive definite `a [n, n]` (`L Lᵀ = a`), row-major, zeros above
/// the diagonal. Only the lower triangle of `a` is read.
///
/// Right-looking blocked algorithm: factor a 64-column diagonal block, solve the panel below it (rows in
/// parallel), subtract the panel's outer product from the trailing lower triangle (rows in parallel). Every
/// element is written by one task with a fixed summation order.
///
/// # Errors
/// `ShapeMismatch` if `a.len() != n²`; `NotPositiveDefinite` at the first pivot that is not > 0 (or not finite).
pub fn cholesky_lower(a: &[f64], n: usize) -> Result<Vec<f64>> {
    check_len("cholesky input [n, n]", a.len(), n * n)?;
    // l [n, n]: the lower triangle of a, factored in place.
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        l[i * n..i * n + i + 1].copy_from_slice(&a[i * n..i * n + i + 1]);
    }
    let mut kb = 0;
    while kb < n {
        let ke = (kb + CHOL_BLOCK).min(n);
        // 1. diagonal block [kb, ke)²: unblocked Cholesky–Crout (earlier panels already subtracted).
        for j in kb..ke {
            let d = l[j * n + j] - dot_f64(&l[j * n + kb..j * n + j], &l[j * n + kb..j * n + j]);
            if !(d > 0.0 && d.is_finite()) {
                return Err(QuantError::NotPositiveDefinite { column: j, pivot: d });
            }
            let ljj = d.sqrt();
            l[j * n + j] = ljj;
            for i in j + 1..ke {
                let s = dot_f64(&l[i * n + kb..i * n + j], &l[j * n + kb..j * n + j]);
                l[i * n + j] = (l[i * n + j] - s) / ljj;
            }
        }
        if ke == n {
            break;
        }
        // 2. panel L21 [n − ke, ke − kb] = A21 · L11⁻ᵀ: one forward substitution per row.
        let (top, bottom) = l.split_at_mut(ke * n);
        let top: &[f64] = top;
        bottom.par_chunks_mut(n).for_each(|row| {
            for j in kb..ke {
                let s = dot_f64(&row[kb..j], &top[j * n + kb..j * n + j]);
                row[j] = (row[j] - s) / top[j * n + j];
            }
        });
        // 3. trailing lower triangle A22 −= L21 L21ᵀ; panel [n − ke, nb] copied out so rows update in parallel.
        let nb = ke - kb;
        let panel: Vec<f64> = (ke..n).flat_map(|r| l[r * n + kb..r * n + ke].iter().copied()).collect();
        l[ke * n..].par_chunks_mut(n).enumerate().for_each(|(r, row)| {
            let pr = &panel[r * nb..(r + 1) * nb];
            for c in 0..=r {
                row[ke + c] -= dot_f64(pr, &panel[c * nb..(c + 1) * nb]);
            }
        });
        kb = ke;
    }
    Ok(l)
}

/// Columns of `M = L⁻¹` for a lower-triangular `l [n, n]` with nonzero diagonal: `cols[j][i − j] = M[i][j]`
/// for `i ≥ j` (each column solves `L m = e_j` by forward substitution; columns in parallel).
fn lower_inverse_columns(l: &[f64], n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .into_par_iter()
        .map(|j| {
            // m [n − j]: rows j.. of column j of L⁻¹.
            let mut m = vec![0f64; n - j];
            m[0] = 1.0 / l[j * n + j];
            for i in j + 1..n {
                let s = dot_f64(&l[i * n + j..i * n + i], &m[..i - j]);
                m[i - j] = -s / l[i * n + i];
            }
            m
        })
        .collect()
}

/// Inverse `L⁻¹ [n, n]` of a lower-triangular `l [n, n]` (row-major, zeros above the diagonal).
///
/// # Errors
/// `ShapeMismatch` if `l.len() != n²`.
pub fn lower_triangular_inverse(l: &[f64], n: usize) -> Result<Vec<f64>> {
    check_len("triangular input [n, n]", l.len(), n * n)?;
    let cols = lower_inverse_columns(l, n);
    let mut inv = vec![0f64; n * n];
    for (j, col) in cols.iter().enumerate() {
        for (off, &v) in col.iter().enumerate() {
            inv[(j + off) * n + j] = v;
        }
    }
    Ok(inv)
}

/// Inverse of a symmetric positive definite `a [n, n]`: `A⁻¹ = L⁻ᵀ L⁻¹` with `L = chol(A)`.
///
/// # Errors
/// As [`cholesky_lower`].
pub fn spd_inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let l = cholesky_lower(a, n)?;
    // cols[a][t − a] = M[t][a], M = L⁻¹ lower, so (A⁻¹)[a][b] = Σ_{t ≥ max(a,b)} M[t][a]·M[t][b].
    let cols = lower_inverse_columns(&l, n);
    let rows: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|a| (0..n).map(|b| if b >= a { dot_f64(&cols[a][b - a..], &cols[b]) } else { 0.0 }).collect())
        .collect();
    let mut inv = vec![0f64; n * n];
    for (a, row) in rows.iter().enumerate() {
        for b in a..n {
            inv[a * n + b] = row[b];
            inv[b * n + a] = row[b];
        }
    }
    Ok(inv)
}

/// Upper Cholesky factor `U [n, n]` of `H⁻¹` (`Uᵀ U = H⁻¹`, positive diagonal, zeros below), for a symmetric
/// positive definite `h [n, n]`: GPTQ's `cholesky(cholesky_inverse(cholesky(H)), upper=True)`.
///
/// Computed without forming `H⁻¹`: with `J` the order-reversing permutation, `J H J = L' L'ᵀ` gives
/// `H = W Wᵀ` with `W = J L' J` upper triangular, hence `H⁻¹ = W⁻ᵀ W⁻¹` and `U = W⁻¹ = J L'⁻¹ J` (the factor
/// with positive diagonal is unique, so this is the same matrix). One Cholesky and one triangular inverse
/// instead of two Cholesky factorizations and a full inverse.
///
/// # Errors
/// `ShapeMismatch`; `NotPositiveDefinite` (its `column` is in `h`'s own order).
pub fn inverse_upper_cholesky(h: &[f64], n: usize) -> Result<Vec<f64>> {
    check_len("hessian [n, n]", h.len(), n * n)?;
    // hr [n, n] = J H J
    let mut hr = vec![0f64; n * n];
    for a in 0..n {
        for b in 0..n {
            hr[a * n + b] = h[(n - 1 - a) * n + (n - 1 - b)];
        }
    }
    let lr = cholesky_lower(&hr, n).map_err(|e| match e {
        QuantError::NotPositiveDefinite { column, pivot } => {
            QuantError::NotPositiveDefinite { column: n - 1 - column, pivot }
        }
        other => other,
    })?;
    // cols[b][a − b] = (L'⁻¹)[a][b]; U[i][j] = (L'⁻¹)[n−1−i][n−1−j] for j ≥ i.
    let cols = lower_inverse_columns(&lr, n);
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = cols[n - 1 - j][j - i];
        }
    }
    Ok(u)
}

/// `dst [ni, nj] += X[:, i0..i0+ni]ᵀ · X[:, j0..j0+nj]` for `X [rows, x_rs]` row-major (`dst` row-major,
/// contiguous). Single-threaded GEMM: the caller parallelizes over tiles, so the summation order of every element
/// is fixed by the tile shapes alone.
///
/// # Panics
/// If `dst.len() != ni·nj` or `x` is too short for `rows` rows reaching column `max(i0+ni, j0+nj)`.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gram_accumulate(
    dst: &mut [f64],
    x: &[f64],
    rows: usize,
    x_rs: usize,
    i0: usize,
    ni: usize,
    j0: usize,
    nj: usize,
) {
    assert_eq!(dst.len(), ni * nj, "gram_accumulate: dst is not [ni, nj]");
    if rows == 0 || ni == 0 || nj == 0 {
        return;
    }
    assert!((i0 + ni).max(j0 + nj) <= x_rs, "gram_accumulate: columns beyond the row stride");
    assert!((rows - 1) * x_rs + x_rs <= x.len(), "gram_accumulate: x too short");
    // SAFETY: lhs element (a, r) is x[i0 + a + r·x_rs] and rhs element (r, b) is x[j0 + b + r·x_rs], both inside
    // x by the asserts above; dst is a unique borrow of exactly ni·nj elements written with row stride nj, and
    // aliases neither operand.
    unsafe {
        gemm::gemm(
            ni,
            nj,
            rows,
            dst.as_mut_ptr(),
            1,
            nj as isize,
            true,
            x.as_ptr().add(i0),
            x_rs as isize,
            1,
            x.as_ptr().add(j0),
            1,
            x_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst[a][b] += Σ_r x[r][i0+a] · x[r][j0+b]` for an `[ni, nj]` tile of `xᵀx`, the tile product taken in f32 (one
/// single-threaded GEMM over `rows`, the calibration batch) and added to the f64 running sum: the products of
/// one batch of a few thousand rows lose ~1e-6 relative, far below the Hessian's sampling noise, and the
/// f32 GEMM is several times faster than the f64 one on the calibration's hot path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gram_accumulate_f32(
    dst: &mut [f64],
    x: &[f32],
    rows: usize,
    x_rs: usize,
    i0: usize,
    ni: usize,
    j0: usize,
    nj: usize,
) {
    assert_eq!(dst.len(), ni * nj, "gram_accumulate_f32: dst is not [ni, nj]");
    if rows == 0 || ni == 0 || nj == 0 {
        return;
    }
    assert!((i0 + ni).max(j0 + nj) <= x_rs, "gram_accumulate_f32: columns beyond the row stride");
    assert!((rows - 1) * x_rs + x_rs <= x.len(), "gram_accumulate_f32: x too short");
    let mut tile = vec![0f32; ni * nj]; // [ni, nj] this batch's products
                                        // SAFETY: as in `gram_accumulate`: lhs element (a, r) is x[i0 + a + r·x_rs], rhs element (r, b) is
                                        // x[j0 + b + r·x_rs], both inside x by the asserts; `tile` is a fresh buffer of ni·nj elements, row stride nj.
    unsafe {
        gemm::gemm(
            ni,
            nj,
            rows,
            tile.as_mut_ptr(),
            1,
            nj as isize,
            false,
            x.as_ptr().add(i0),
            x_rs as isize,
            1,
            x.as_ptr().add(j0),
            1,
            x_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for (d, t) in dst.iter_mut().zip(&tile) {
        *d += f64::from(*t);
    }
}

/// `out [rows, ncols] = a [rows, k] · b [k, ncols]`, all row-major f64, single-threaded (callers parallelize over
/// fixed row blocks, which keeps every element's summation order independent of the thread count).
/// (Test-only now: the proxy error uses [`matmul_f64_strided`] on panels of the Hessian.)
///
/// # Panics
/// If a slice does not have the length its shape implies.
#[cfg(test)]
pub(crate) fn matmul_f64(a: &[f64], b: &[f64], out: &mut [f64], rows: usize, k: usize, ncols: usize) {
    assert_eq!(a.len(), rows * k, "matmul_f64: a is not [rows, k]");
    assert_eq!(b.len(), k * ncols, "matmul_f64: b is not [k, ncols]");
    matmul_f64_strided(a, k, b, ncols, out, rows, k, ncols);
}

/// `out [rows, ncols] = a[:, ..k] · b[..k, ..ncols]` for row-major f64 `a` with row stride `a_rs ≥ k` and `b`
/// with row stride `b_rs ≥ ncols` (a sub-block of a larger matrix), `out` contiguous; single-threaded like
/// [`matmul_f64`].
///
/// # Panics
/// If a slice is too short for its shape and stride, or a stride is smaller than the width it covers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_f64_strided(
    a: &[f64],
    a_rs: usize,
    b: &[f64],
    b_rs: usize,
    out: &mut [f64],
    rows: usize,
    k: usize,
    ncols: usize,
) {
    assert_eq!(out.len(), rows * ncols, "matmul_f64: out is not [rows, ncols]");
    if rows == 0 || ncols == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    assert!(a_rs >= k && (rows - 1) * a_rs + k <= a.len(), "matmul_f64: a is not [rows, k] with stride a_rs");
    assert!(b_rs >= ncols && (k - 1) * b_rs + ncols <= b.len(), "matmul_f64: b is not [k, ncols] with stride b_rs");
    // SAFETY: element (r, t) of a is a[r·a_rs + t] and element (t, c) of b is b[t·b_rs + c], inside both slices
    // by the asserts above; out has exactly rows·ncols elements written with row stride ncols, is a unique
    // borrow and aliases neither operand.
    unsafe {
        gemm::gemm(
            rows,
            ncols,
            k,
            out.as_mut_ptr(),
            1,
            ncols as isize,
            false,
            a.as_ptr(),
            1,
            a_rs as isize,
            b.as_ptr(),
            1,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::rng::SplitMix64;
    use crate::testutil::random_spd;

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0f64; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    fn transpose(a: &[f64], n: usize) -> Vec<f64> {
        let mut t = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                t[j * n + i] = a[i * n + j];
            }
        }
        t
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    fn identity(n: usize) -> Vec<f64> {
        let mut e = vec![0f64; n * n];
        for i in 0..n {
            e[i * n + i] = 1.0;
        }
        e
    }

    #[test]
    fn cholesky_reconstructs_across_block_boundaries() {
        for n in [1, 5, 64, 65, 150] {
            let h = random_spd(n, n as u64);
            let l = cholesky_lower(&h, n).unwrap();
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(l[i * n + j], 0.0);
                }
            }
            let llt = matmul(&l, &transpose(&l, n), n);
            assert!(max_abs_diff(&llt, &h) < 1e-9, "n={n}");
        }
    }

    #[test]
    fn inverse_and_upper_factor_of_inverse() {
        let n = 97;
        let h = random_spd(n, 3);
        let inv = spd_inverse(&h, n).unwrap();
        assert!(max_abs_diff(&matmul(&inv, &h, n), &identity(n)) < 1e-6);
        let l = cholesky_lower(&h, n).unwrap();
        let li = lower_triangular_inverse(&l, n).unwrap();
        assert!(max_abs_diff(&matmul(&li, &l, n), &identity(n)) < 1e-8);

        let u = inverse_upper_cholesky(&h, n).unwrap();
        for i in 0..n {
            assert!(u[i * n + i] > 0.0);
            for j in 0..i {
                assert_eq!(u[i * n + j], 0.0, "U is upper triangular");
            }
        }
        // Uᵀ U = H⁻¹, and U equals the GPTQ route: the transposed lower Cholesky factor of H⁻¹.
        let utu = matmul(&transpose(&u, n), &u, n);
        assert!(max_abs_diff(&matmul(&utu, &h, n), &identity(n)) < 1e-6);
        let gptq_route = transpose(&cholesky_lower(&inv, n).unwrap(), n);
        let scale = u.iter().fold(0f64, |m, x| m.max(x.abs()));
        assert!(max_abs_diff(&u, &gptq_route) < 1e-7 * scale);
    }

    #[test]
    fn not_positive_definite_is_an_error() {
        // diag(1, −1, 1): pivot of column 1 is negative.
        let n = 3;
        let mut h = identity(n);
        h[4] = -1.0;
        match cholesky_lower(&h, n) {
            Err(QuantError::NotPositiveDefinite { column: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        match inverse_upper_cholesky(&h, n) {
            Err(QuantError::NotPositiveDefinite { column: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(cholesky_lower(&h, 2), Err(QuantError::ShapeMismatch { .. })));
    }

    #[test]
    fn matmul_matches_naive() {
        let (rows, k, ncols) = (5, 7, 3);
        let mut rng = SplitMix64::new(6);
        let a: Vec<f64> = (0..rows * k).map(|_| rng.normal()).collect();
        let b: Vec<f64> = (0..k * ncols).map(|_| rng.normal()).collect();
        let mut out = vec![9.0; rows * ncols];
        matmul_f64(&a, &b, &mut out, rows, k, ncols);
        for i in 0..rows {
            for j in 0..ncols {
                let want: f64 = (0..k).map(|t| a[i * k + t] * b[t * ncols + j]).sum();
                assert!((out[i * ncols + j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gram_tile_matches_naive() {
        let (rows, n) = (37, 11);
        let mut rng = SplitMix64::new(5);
        let x: Vec<f64> = (0..rows * n).map(|_| rng.normal()).collect();
        let (i0, ni, j0, nj) = (2, 4, 5, 6);
        let mut dst = vec![1.0f64; ni * nj];
        gram_accumulate(&mut dst, &x, rows, n, i0, ni, j0, nj);
        for a in 0..ni {
            for b in 0..nj {
                let want = 1.0 + (0..rows).map(|r| x[r * n + i0 + a] * x[r * n + j0 + b]).sum::<f64>();
                assert!((dst[a * nj + b] - want).abs() < 1e-10);
            }
        }
    }
}
