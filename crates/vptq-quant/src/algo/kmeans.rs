//! Hessian-weighted k-means (vptq-spec.md §1.7, paper §3.2.1): minimize `Σ_i w_i ‖x_i − C[a_i]‖²` over
//! centroids `C [k, v]` and assignments `a [n]`, where `x_i` is a length-`v` vector cut from one weight column
//! and `w_i = H[j][j]` of that column. Plus [`Codebook`], the fast nearest-centroid search that k-means and the
//! VPTQ column loop share.
//!
//! Lloyd iterations: assign every vector to its nearest centroid (plain Euclidean distance — the weight is the
//! same for all candidates of one vector, so it does not change the argmin), then move each centroid to the
//! weighted mean of its members. Empty clusters are re-seeded at the vectors of highest weighted error.
//! Nearest search uses `‖x − c‖² = ‖x‖² + 2(½‖c‖² − x·c)` with centroids stored transposed `[v, k]`, so the inner
//! loop is a register-blocked multiply-add over contiguous centroid lanes — AVX-512F (8 vectors × 16 centroids)
//! or AVX2+FMA (4 × 8) intrinsics where the CPU has them (run-time detection), a portable loop elsewhere, all
//! computing every distance with the same chain of fused multiply-adds, so they return the same indices —
//! cache-blocked over chunks of 2048 centroids, with threads over blocks of 64 vectors.
//! Determinism: each vector's argmin is computed by one task in a fixed order; centroid sums run per cluster
//! over its members in index order; objective sums use fixed chunks. Results are bit-identical whatever the
//! thread count. Every random choice draws from [`SplitMix64`] seeded by `KMeansConfig::seed`.
//! Never does IO. Dependencies: `rayon`.

use rayon::prelude::*;

use crate::algo::rng::SplitMix64;
use crate::algo::vptq::gather_column_vectors;
use crate::error::{check_finite_f32, check_len, QuantError, Result};

/// Longest supported vector.
pub const MAX_VECTOR_LEN: usize = 16;
/// Most centroids per codebook (16-bit indices).
pub const MAX_CENTROIDS: usize = 65536;
/// Centroids per SIMD lane group of the portable and AVX2 scans (one AVX2 register of f32).
const LANES: usize = 8;
/// `k` is padded to a multiple of this (one AVX-512 register of f32; a multiple of `LANES`).
const K_PAD_MULTIPLE: usize = 16;
/// Vectors per register block: 4 vectors × 8 lanes of partial distances stay in registers.
const QV: usize = 4;
/// Vectors per register block of the AVX-512 scan: 8 partials + 8 lane minima + 8 lane indices fit in its 32
/// registers.
#[cfg(target_arch = "x86_64")]
const QV512: usize = 8;
/// Vectors per task of the nearest search (and per stack buffer).
const VECTOR_BLOCK: usize = 64;
/// Centroids per cache block: `2048 · v · 4` bytes (≤ 128 KiB) of transposed centroids reused by a vector block.
const CENTROID_CHUNK: usize = 2048;
/// Vectors per chunk of the fixed-order parallel sums.
const SUM_CHUNK: usize = 4096;

/// How the initial centroids are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansInit {
    /// `k` distinct vectors drawn uniformly (the reference's cuML `init='random'`).
    Random,
    /// k-means++ with weighted `D²` sampling: next centroid drawn with probability `∝ w_i·D(x_i)²`. Costs
    /// O(n·k·v) — about one Lloyd iteration per centroid batch; slow for k = 65536 on millions of vectors.
    KMeansPlusPlus,
}

/// Settings of one k-means run.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    /// `k`, number of centroids (1 ..= 65536).
    pub num_centroids: usize,
    /// Maximum Lloyd iterations (the reference's `kiter`, 100).
    pub max_iters: usize,
    /// Stop when the objective decreases by at most `tol` relative to the previous iteration (`ktol`, 1e-5).
    pub tol: f64,
    /// Initialization method.
    pub init: KMeansInit,
    /// Seed of every random choice (init, sub-sample).
    pub seed: u64,
    /// Fit on at most this many vectors (uniform sample, at least `k`); `None` fits on all. The final assignment
    /// always covers every vector.
    pub max_fit_vectors: Option<usize>,
}

impl Default for KMeansConfig {
    /// The reference's settings: random init, 100 iterations, tol 1e-5, seed 0, no sub-sampling (k = 256).
    fn default() -> Self {
        Self { num_centroids: 256, max_iters: 100, tol: 1e-5, init: KMeansInit::Random, seed: 0, max_fit_vectors: None }
    }
}

/// Output of [`weighted_kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// centroids [k, v]
    pub centroids: Vec<f32>,
    /// assignments [n]: nearest centroid of every input vector under the final centroids
    pub assignments: Vec<u32>,
    /// objective `Σ w·‖x − C[a]‖²` (on the fit set) after each assignment step, one entry per iteration
    pub objective_history: Vec<f64>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

/// A codebook `C [k, v]` prepared for nearest-centroid search.
#[derive(Debug, Clone)]
pub struct Codebook {
    /// v: vector length
    vector_len: usize,
    /// k: centroids
    num_centroids: usize,
    /// k rounded up to a multiple of 16 (`K_PAD_MULTIPLE`)
    k_pad: usize,
    /// centroids [k, v] row-major
    centroids: Vec<f32>,
    /// centroids_t [v, k_pad]: transposed, padding columns 0
    centroids_t: Vec<f32>,
    /// half_norms [k_pad]: ½‖C[c]‖², +∞ on padding so it never wins
    half_norms: Vec<f32>,
}

impl Codebook {
    /// Prepares `centroids [k, v]` for search.
    ///
    /// # Errors
    /// `InvalidConfig` if `v` is outside 1..=16 or `k` outside 1..=65536; `ShapeMismatch` if the length is not a
    /// multiple of `v`; `NonFinite` on NaN/inf.
    pub fn new(centroids: Vec<f32>, vector_len: usize) -> Result<Self> {
        check_vector_len(vector_len)?;
        let k = centroids.len() / vector_len;
        check_len("centroids [k, v]", centroids.len(), k * vector_len)?;
        if k == 0 || k > MAX_CENTROIDS {
            return Err(QuantError::InvalidConfig {
                field: "num_centroids",
                value: k.to_string(),
                reason: "must be 1..=65536",
            });
        }
        check_finite_f32("centroids", &centroids)?;
        let v = vector_len;
        let k_pad = k.div_ceil(K_PAD_MULTIPLE) * K_PAD_MULTIPLE;
        let mut centroids_t = vec![0f32; v * k_pad];
        let mut half_norms = vec![f32::INFINITY; k_pad];
        for c in 0..k {
            let row = &centroids[c * v..(c + 1) * v];
            for t in 0..v {
                centroids_t[t * k_pad + c] = row[t];
            }
            half_norms[c] = 0.5 * row.iter().map(|x| x * x).sum::<f32>();
        }
        Ok(Self { vector_len: v, num_centroids: k, k_pad, centroids, centroids_t, half_norms })
    }

    /// Vector length `v`.
    pub fn vector_len(&self) -> usize {
        self.vector_len
    }

    /// Number of centroids `k`.
    pub fn num_centroids(&self) -> usize {
        self.num_centroids
    }

    /// All centroids `[k, v]`.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Centroid `i` `[v]`.
    ///
    /// # Panics
    /// If `i >= k`.
    pub fn centroid(&self, i: usize) -> &[f32] {
        &self.centroids[i * self.vector_len..(i + 1) * self.vector_len]
    }

    /// Index of the nearest centroid (Euclidean; ties → lowest index, up to the rounding of the expanded
    /// distance) of every vector of `vectors [n, v]`, into `out [n]`. Threads over blocks of 64 vectors.
    ///
    /// # Panics
    /// If `vectors.len() != out.len() · v`.
    pub fn nearest(&self, vectors: &[f32], out: &mut [u32]) {
        self.nearest_with(ScanKernel::detect(), vectors, out);
    }

    /// [`Self::nearest`] with a given kernel.
    fn nearest_with(&self, kernel: ScanKernel, vectors: &[f32], out: &mut [u32]) {
        let v = self.vector_len;
        assert_eq!(vectors.len(), out.len() * v, "Codebook::nearest: vectors is not [out.len(), v]");
        let (ct, hn, k_pad) = (&self.centroids_t[..], &self.half_norms[..], self.k_pad);
        if out.len() <= VECTOR_BLOCK {
            kernel.nearest_block(ct, hn, k_pad, v, vectors, out);
        } else {
            out.par_chunks_mut(VECTOR_BLOCK).zip(vectors.par_chunks(VECTOR_BLOCK * v)).for_each(|(o, x)| {
                kernel.nearest_block(ct, hn, k_pad, v, x, o);
            });
        }
    }

    /// Reference nearest search: direct `‖x − c‖²` in f64, first minimum wins. The oracle for [`Self::nearest`].
    ///
    /// # Panics
    /// If `vectors.len() != out.len() · v`.
    pub fn nearest_ref(&self, vectors: &[f32], out: &mut [u32]) {
        let v = self.vector_len;
        assert_eq!(vectors.len(), out.len() * v, "Codebook::nearest_ref: vectors is not [out.len(), v]");
        for (x, o) in vectors.chunks_exact(v).zip(out.iter_mut()) {
            let mut best = (f64::INFINITY, 0u32);
            for c in 0..self.num_centroids {
                let d = sq_dist_f64(x, self.centroid(c));
                if d < best.0 {
                    best = (d, c as u32);
                }
            }
            *o = best.1;
        }
    }
}

/// `‖a − b‖²` accumulated in f64.
pub fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x - y) * f64::from(x - y)).sum()
}

fn check_vector_len(v: usize) -> Result<()> {
    if (1..=MAX_VECTOR_LEN).contains(&v) {
        Ok(())
    } else {
        Err(QuantError::InvalidConfig { field: "vector_len", value: v.to_string(), reason: "must be 1..=16" })
    }
}

/// Best `(½‖c‖² − x·c, c)` of each of the `G` vectors `xq [G][v]` over centroids `[c0, c1)` (a multiple of 8
/// long): lane-wise running minimum over 8 centroids at a time, then a lane reduction (smallest value, then
/// smallest index). Portable reference of [`scan_group_avx2`] and [`scan_group_avx512`].
///
/// Every partial distance is the same chain of fused multiply-adds as in the SIMD scans (`mul_add` of `−x`
/// equals `fnmadd` bit for bit), so all variants pick the same indices, ties included.
#[inline(always)]
fn scan_group_portable<const G: usize>(
    centroids_t: &[f32],
    half_norms: &[f32],
    k_pad: usize,
    v: usize,
    xq: &[[f32; MAX_VECTOR_LEN]; G],
    centroid_range: std::ops::Range<usize>,
) -> ([f32; G], [u32; G]) {
    // lane_best/lane_idx [G][LANES]: lane-wise minimum over the range
    let mut lane_best = [[f32::INFINITY; LANES]; G];
    let mut lane_idx = [[0u32; LANES]; G];
    for c in centroid_range.step_by(LANES) {
        // s [G][LANES] = ½‖c‖² − x·c for centroids c .. c+8
        let mut s = [[0f32; LANES]; G];
        for sq in s.iter_mut() {
            sq.copy_from_slice(&half_norms[c..c + LANES]);
        }
        for t in 0..v {
            let row = &centroids_t[t * k_pad + c..t * k_pad + c + LANES];
            for (sq, xrow) in s.iter_mut().zip(xq) {
                for (sl, &r) in sq.iter_mut().zip(row) {
                    *sl = (-xrow[t]).mul_add(r, *sl);
                }
            }
        }
        for q in 0..G {
            for l in 0..LANES {
                if s[q][l] < lane_best[q][l] {
                    lane_best[q][l] = s[q][l];
                    lane_idx[q][l] = (c + l) as u32;
                }
            }
        }
    }
    reduce_lanes(&lane_best, &lane_idx)
}

/// Per vector: the smallest lane value, ties to the smallest index. Each lane holds the first minimum of its
/// own centroids, so this is the first minimum of the whole range whatever the lane count.
#[inline(always)]
fn reduce_lanes<const L: usize, const G: usize>(
    lane_best: &[[f32; L]; G],
    lane_idx: &[[u32; L]; G],
) -> ([f32; G], [u32; G]) {
    let (mut best, mut best_idx) = ([f32::INFINITY; G], [0u32; G]);
    for q in 0..G {
        let (mut bv, mut bi) = (lane_best[q][0], lane_idx[q][0]);
        for l in 1..L {
            let (lv, li) = (lane_best[q][l], lane_idx[q][l]);
            if lv < bv || (lv == bv && li < bi) {
                (bv, bi) = (lv, li);
            }
        }
        (best[q], best_idx[q]) = (bv, bi);
    }
    (best, best_idx)
}

/// [`scan_group_portable`] with AVX2+FMA intrinsics: 4 vectors × 8 centroids of partial distances in 4 ymm
/// registers, `v` fused multiply-adds per centroid row, compare + blend into the lane minimum and its index.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scan_group_avx2(
    centroids_t: &[f32],
    half_norms: &[f32],
    k_pad: usize,
    v: usize,
    xq: &[[f32; MAX_VECTOR_LEN]; QV],
    centroid_range: std::ops::Range<usize>,
) -> ([f32; QV], [u32; QV]) {
    use std::arch::x86_64::*;
    let mut lane_best = [_mm256_set1_ps(f32::INFINITY); QV];
    let mut lane_idx = [_mm256_setzero_si256(); QV];
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for c in centroid_range.step_by(LANES) {
        let hn = &half_norms[c..c + LANES];
        // SAFETY: `hn` is a slice of exactly 8 f32 (bounds-checked above); unaligned load.
        let h = unsafe { _mm256_loadu_ps(hn.as_ptr()) };
        let mut s = [h; QV];
        for t in 0..v {
            let row = &centroids_t[t * k_pad + c..t * k_pad + c + LANES];
            // SAFETY: `row` is a slice of exactly 8 f32; unaligned load.
            let r = unsafe { _mm256_loadu_ps(row.as_ptr()) };
            for (sq, xrow) in s.iter_mut().zip(xq) {
                *sq = _mm256_fnmadd_ps(_mm256_set1_ps(xrow[t]), r, *sq);
            }
        }
        let idx = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_set1_epi32(c as i32), lane));
        for ((sq, lb), li) in s.iter().zip(&mut lane_best).zip(&mut lane_idx) {
            let better = _mm256_cmp_ps::<_CMP_LT_OQ>(*sq, *lb);
            *lb = _mm256_blendv_ps(*lb, *sq, better);
            *li = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*li), idx, better));
        }
    }
    let mut best = [[0f32; LANES]; QV];
    let mut best_idx = [[0u32; LANES]; QV];
    for q in 0..QV {
        // SAFETY: each destination is an array of exactly 8 f32 / 8 u32; unaligned stores.
        unsafe {
            _mm256_storeu_ps(best[q].as_mut_ptr(), lane_best[q]);
            _mm256_storeu_si256(best_idx[q].as_mut_ptr().cast(), lane_idx[q]);
        }
    }
    reduce_lanes(&best, &best_idx)
}

/// [`scan_group_portable`] with AVX-512F intrinsics: `G` vectors × 16 centroids of partial distances in `G` zmm
/// registers (AVX-512 has 32, so `G = 8` keeps partials, lane minima and lane indices all in registers), the
/// same `v` fused multiply-adds per centroid as the other scans, a mask compare and two masked moves into the
/// lane minimum and its index. The range must be a multiple of 16 long (`Codebook` pads `k` to 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scan_group_avx512<const G: usize>(
    centroids_t: &[f32],
    half_norms: &[f32],
    k_pad: usize,
    v: usize,
    xq: &[[f32; MAX_VECTOR_LEN]; G],
    centroid_range: std::ops::Range<usize>,
) -> ([f32; G], [u32; G]) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    debug_assert!(centroid_range.len().is_multiple_of(L) && centroid_range.start.is_multiple_of(L));
    let mut lane_best = [_mm512_set1_ps(f32::INFINITY); G];
    let mut lane_idx = [_mm512_setzero_si512(); G];
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for c in centroid_range.step_by(L) {
        let hn = &half_norms[c..c + L];
        // SAFETY: `hn` is a slice of exactly 16 f32 (bounds-checked above); unaligned load.
        let h = unsafe { _mm512_loadu_ps(hn.as_ptr()) };
        let mut s = [h; G];
        for t in 0..v {
            let row = &centroids_t[t * k_pad + c..t * k_pad + c + L];
            // SAFETY: `row` is a slice of exactly 16 f32; unaligned load.
            let r = unsafe { _mm512_loadu_ps(row.as_ptr()) };
            for (sq, xrow) in s.iter_mut().zip(xq) {
                *sq = _mm512_fnmadd_ps(_mm512_set1_ps(xrow[t]), r, *sq);
            }
        }
        let idx = _mm512_add_epi32(_mm512_set1_epi32(c as i32), lane);
        for ((sq, lb), li) in s.iter().zip(&mut lane_best).zip(&mut lane_idx) {
            let better = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(*sq, *lb);
            *lb = _mm512_mask_mov_ps(*lb, better, *sq);
            *li = _mm512_mask_mov_epi32(*li, better, idx);
        }
    }
    let mut best = [[0f32; L]; G];
    let mut best_idx = [[0u32; L]; G];
    for q in 0..G {
        // SAFETY: each destination is an array of exactly 16 f32 / 16 u32; unaligned stores.
        unsafe {
            _mm512_storeu_ps(best[q].as_mut_ptr(), lane_best[q]);
            _mm512_storeu_si512(best_idx[q].as_mut_ptr().cast(), lane_idx[q]);
        }
    }
    reduce_lanes(&best, &best_idx)
}

/// Nearest centroid of `nb ≤ 64` vectors `xs [nb, v]` → `out [nb]`: for each chunk of 2048 centroids and each
/// group of `G` vectors, `scan` gives the group's best over the chunk, merged into the per-vector best with a
/// strict `<` so the earlier chunk wins ties.
#[inline(always)]
fn nearest_block_with<const G: usize>(
    k_pad: usize,
    v: usize,
    xs: &[f32],
    out: &mut [u32],
    mut scan: impl FnMut(&[[f32; MAX_VECTOR_LEN]; G], std::ops::Range<usize>) -> ([f32; G], [u32; G]),
) {
    let nb = out.len();
    // best/best_idx [nb]: running minimum of ½‖c‖² − x·c per vector over the chunks seen so far
    let mut best = [f32::INFINITY; VECTOR_BLOCK];
    let mut best_idx = [0u32; VECTOR_BLOCK];
    for c0 in (0..k_pad).step_by(CENTROID_CHUNK) {
        let c1 = (c0 + CENTROID_CHUNK).min(k_pad);
        for g in (0..nb).step_by(G) {
            // xq [G][v]: the group's vectors, zero past nb
            let mut xq = [[0f32; MAX_VECTOR_LEN]; G];
            for (q, xrow) in xq.iter_mut().enumerate().take(nb - g) {
                xrow[..v].copy_from_slice(&xs[(g + q) * v..(g + q + 1) * v]);
            }
            let (bv, bi) = scan(&xq, c0..c1);
            for q in 0..G.min(nb - g) {
                if bv[q] < best[g + q] {
                    best[g + q] = bv[q];
                    best_idx[g + q] = bi[q];
                }
            }
        }
    }
    out.copy_from_slice(&best_idx[..nb]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn nearest_block_avx2(centroids_t: &[f32], half_norms: &[f32], k_pad: usize, v: usize, xs: &[f32], out: &mut [u32]) {
    // The closure inherits this function's target features, so the AVX2 scan inlines into it.
    nearest_block_with(k_pad, v, xs, out, |xq, range| scan_group_avx2(centroids_t, half_norms, k_pad, v, xq, range));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn nearest_block_avx512(centroids_t: &[f32], half_norms: &[f32], k_pad: usize, v: usize, xs: &[f32], out: &mut [u32]) {
    nearest_block_with::<QV512>(k_pad, v, xs, out, |xq, range| {
        scan_group_avx512(centroids_t, half_norms, k_pad, v, xq, range)
    });
}

fn nearest_block_portable(
    centroids_t: &[f32],
    half_norms: &[f32],
    k_pad: usize,
    v: usize,
    xs: &[f32],
    out: &mut [u32],
) {
    nearest_block_with::<QV>(k_pad, v, xs, out, |xq, range| {
        scan_group_portable(centroids_t, half_norms, k_pad, v, xq, range)
    });
}

/// Which nearest-search kernel this CPU runs (detected once per call; the checks are cached by std).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl ScanKernel {
    /// The fastest kernel the CPU supports.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return ScanKernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return ScanKernel::Avx2;
            }
        }
        ScanKernel::Portable
    }

    /// Every kernel this CPU can run (for parity tests and timings).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut all = vec![ScanKernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(ScanKernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(ScanKernel::Avx512);
            }
        }
        all
    }

    /// Nearest centroid of `nb ≤ 64` vectors `xs [nb, v]` → `out [nb]` with this kernel.
    fn nearest_block(self, ct: &[f32], hn: &[f32], k_pad: usize, v: usize, xs: &[f32], out: &mut [u32]) {
        match self {
            ScanKernel::Portable => nearest_block_portable(ct, hn, k_pad, v, xs, out),
            // SAFETY: `available`/`detect` only return these variants after detecting their features at run time.
            #[cfg(target_arch = "x86_64")]
            ScanKernel::Avx2 => unsafe { nearest_block_avx2(ct, hn, k_pad, v, xs, out) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            ScanKernel::Avx512 => unsafe { nearest_block_avx512(ct, hn, k_pad, v, xs, out) },
        }
    }
}

/// Hessian-weighted k-means of `data [n, v]` with per-vector `weights [n]` (`None` = all 1).
///
/// # Errors
/// `InvalidConfig` (v outside 1..=16, k outside 1..=65536, negative weight); `ShapeMismatch`; `NonFinite`;
/// `Empty` (no vectors); `TooManyCentroids` if `k > n`.
pub fn weighted_kmeans(
    data: &[f32],
    vector_len: usize,
    weights: Option<&[f32]>,
    cfg: &KMeansConfig,
) -> Result<KMeansResult> {
    let v = vector_len;
    check_vector_len(v)?;
    let k = cfg.num_centroids;
    if k == 0 || k > MAX_CENTROIDS {
        return Err(QuantError::InvalidConfig {
            field: "num_centroids",
            value: k.to_string(),
            reason: "must be 1..=65536",
        });
    }
    let n = data.len() / v;
    check_len("k-means data [n, v]", data.len(), n * v)?;
    if n == 0 {
        return Err(QuantError::Empty { what: "k-means data" });
    }
    if k > n {
        return Err(QuantError::TooManyCentroids { part: "k-means".into(), centroids: k, vectors: n });
    }
    check_finite_f32("k-means data", data)?;
    // w [n]: per-vector weights
    let ones;
    let w: &[f32] = match weights {
        Some(w) => {
            check_len("k-means weights [n]", w.len(), n)?;
            check_finite_f32("k-means weights", w)?;
            if let Some(i) = w.iter().position(|&x| x < 0.0) {
                return Err(QuantError::InvalidConfig {
                    field: "k-means weight",
                    value: format!("{} at vector {i}", w[i]),
                    reason: "weights must be >= 0",
                });
            }
            w
        }
        None => {
            ones = vec![1f32; n];
            &ones
        }
    };

    let mut rng = SplitMix64::new(cfg.seed);
    // fit_x [nf, v], fit_w [nf]: the vectors the iterations run on (all, or a seeded uniform sample ≥ k)
    let sample;
    let (fit_x, fit_w): (&[f32], &[f32]) = match cfg.max_fit_vectors {
        Some(m) if m.max(k) < n => {
            let mut idx = sample_distinct(n, m.max(k), &mut rng);
            idx.sort_unstable();
            sample = (
                idx.iter().flat_map(|&i| data[i * v..(i + 1) * v].iter().copied()).collect::<Vec<f32>>(),
                idx.iter().map(|&i| w[i]).collect::<Vec<f32>>(),
            );
            (&sample.0[..], &sample.1[..])
        }
        _ => (data, w),
    };
    let nf = fit_w.len();

    // centroids [k, v]
    let mut centroids = match cfg.init {
        KMeansInit::Random => {
            sample_distinct(nf, k, &mut rng).iter().flat_map(|&i| fit_x[i * v..(i + 1) * v].iter().copied()).collect()
        }
        KMeansInit::KMeansPlusPlus => kmeans_pp_init(fit_x, fit_w, v, k, &mut rng),
    };

    // assign [nf], dist [nf]: current assignment and its exact squared distance
    let mut assign = vec![0u32; nf];
    let mut dist = vec![0f32; nf];
    let mut history: Vec<f64> = Vec::new();
    let mut iterations = 0;
    for _ in 0..cfg.max_iters {
        let codebook = Codebook::new(centroids.clone(), v)?;
        codebook.nearest(fit_x, &mut assign);
        let objective = exact_objective(fit_x, fit_w, &codebook, &assign, &mut dist);
        iterations += 1;
        let converged = objective == 0.0 || history.last().is_some_and(|&prev| prev - objective <= cfg.tol * prev);
        history.push(objective);
        if converged {
            break;
        }
        update_centroids(fit_x, fit_w, v, &assign, &dist, &mut centroids);
    }

    let codebook = Codebook::new(centroids, v)?;
    let mut assignments = vec![0u32; n];
    codebook.nearest(data, &mut assignments);
    Ok(KMeansResult { centroids: codebook.centroids, assignments, objective_history: history, iterations })
}

/// A codebook from [`train_column_codebook`] with the fit's weighted distortion and per-centroid mass.
#[derive(Debug, Clone)]
pub struct ColumnCodebook {
    /// The codebook.
    pub codebook: Codebook,
    /// `D = Σ w·‖x − C[a]‖²` over every vector of the columns.
    pub distortion: f64,
    /// `[k]`: `Σ w` of the vectors assigned to each centroid.
    pub mass: Vec<f64>,
}

/// Trains a codebook on the vectors (length `vector_len`, along the output dimension, zero-padded) of columns
/// `cols` of `w [M, N]`, every vector weighted by its column's `column_weights [N]` (`H[j][j]`, spec §1.7); also
/// returns the fit's distortion and the mass of every centroid.
///
/// # Errors
/// As [`weighted_kmeans`]; `ShapeMismatch` for `w` or `column_weights`.
pub fn train_column_codebook(
    w: &[f32],
    m: usize,
    n: usize,
    cols: std::ops::Range<usize>,
    vector_len: usize,
    column_weights: &[f32],
    cfg: &KMeansConfig,
) -> Result<ColumnCodebook> {
    check_vector_len(vector_len)?;
    check_len("weight [M, N]", w.len(), m * n)?;
    check_len("column_weights [N]", column_weights.len(), n)?;
    let nv = m.div_ceil(vector_len);
    // vectors [cols.len()·nv, v], weights [cols.len()·nv]
    let vectors = gather_column_vectors(w, m, n, cols.clone(), vector_len);
    let weights: Vec<f32> = cols.flat_map(|j| std::iter::repeat_n(column_weights[j], nv)).collect();
    let result = weighted_kmeans(&vectors, vector_len, Some(&weights), cfg)?;
    let v = vector_len;
    let mut mass = vec![0f64; result.centroids.len() / v];
    let mut distortion = 0f64;
    for ((x, &wt), &a) in vectors.chunks_exact(v).zip(&weights).zip(&result.assignments) {
        let c = &result.centroids[a as usize * v..][..v];
        let d: f64 = x.iter().zip(c).map(|(&x, &c)| f64::from(x - c).powi(2)).sum();
        distortion += f64::from(wt) * d;
        mass[a as usize] += f64::from(wt);
    }
    Ok(ColumnCodebook { codebook: Codebook::new(result.centroids, v)?, distortion, mass })
}

/// `m ≤ n` distinct indices of `0..n`, uniformly (partial Fisher–Yates), in draw order.
fn sample_distinct(n: usize, m: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(m);
    idx
}

/// `Σ_i w_i ‖x_i − C[a_i]‖²` in f64 (fixed chunks summed in order); writes each `‖x_i − C[a_i]‖²` to `dist [n]`.
fn exact_objective(x: &[f32], w: &[f32], codebook: &Codebook, assign: &[u32], dist: &mut [f32]) -> f64 {
    let v = codebook.vector_len;
    let partial: Vec<f64> = dist
        .par_chunks_mut(SUM_CHUNK)
        .enumerate()
        .map(|(chunk, d)| {
            let base = chunk * SUM_CHUNK;
            let mut sum = 0f64;
            for (o, dv) in d.iter_mut().enumerate() {
                let i = base + o;
                let e = sq_dist_f64(&x[i * v..(i + 1) * v], codebook.centroid(assign[i] as usize));
                *dv = e as f32;
                sum += f64::from(w[i]) * e;
            }
            sum
        })
        .collect();
    partial.iter().sum()
}

/// Lloyd update: every centroid becomes the weighted mean of its members (unweighted mean if all its members
/// weigh 0); empty clusters are re-seeded at the vectors of largest `w·‖x − C[a]‖²` (ties → lower index).
fn update_centroids(x: &[f32], w: &[f32], v: usize, assign: &[u32], dist: &[f32], centroids: &mut [f32]) {
    let k = centroids.len() / v;
    // counting sort by cluster: members of c are order[start[c] .. start[c+1]], ascending vector index
    let mut start = vec![0usize; k + 1];
    for &a in assign {
        start[a as usize + 1] += 1;
    }
    for c in 0..k {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut order = vec![0u32; assign.len()];
    for (i, &a) in assign.iter().enumerate() {
        order[fill[a as usize]] = i as u32;
        fill[a as usize] += 1;
    }
    centroids.par_chunks_mut(v).with_min_len(64).enumerate().for_each(|(c, cent)| {
        let members = &order[start[c]..start[c + 1]];
        if members.is_empty() {
            return;
        }
        // sw, sx [v]: weighted sums in f64 over the members in index order
        let (mut sw, mut sx) = (0f64, [0f64; MAX_VECTOR_LEN]);
        for &i in members {
            let (i, wi) = (i as usize, f64::from(w[i as usize]));
            sw += wi;
            for t in 0..v {
                sx[t] += wi * f64::from(x[i * v + t]);
            }
        }
        if sw > 0.0 {
            for t in 0..v {
                cent[t] = (sx[t] / sw) as f32;
            }
        } else {
            let mut su = [0f64; MAX_VECTOR_LEN];
            for &i in members {
                for t in 0..v {
                    su[t] += f64::from(x[i as usize * v + t]);
                }
            }
            for t in 0..v {
                cent[t] = (su[t] / members.len() as f64) as f32;
            }
        }
    });
    let empty: Vec<usize> = (0..k).filter(|&c| start[c] == start[c + 1]).collect();
    if empty.is_empty() {
        return;
    }
    // Highest weighted error first, then lowest index: a total order, so the chosen set is deterministic.
    let score = |i: usize| f64::from(w[i]) * f64::from(dist[i]);
    let by_error = |a: &usize, b: &usize| score(*b).total_cmp(&score(*a)).then(a.cmp(b));
    let mut cand: Vec<usize> = (0..assign.len()).collect();
    let e = empty.len().min(cand.len());
    if e < cand.len() {
        cand.select_nth_unstable_by(e, by_error);
    }
    cand.truncate(e);
    cand.sort_unstable_by(by_error);
    for (&c, &i) in empty.iter().zip(&cand) {
        centroids[c * v..(c + 1) * v].copy_from_slice(&x[i * v..(i + 1) * v]);
    }
}

/// Weighted k-means++ seeding: first centroid `∝ w`, each next one `∝ w·D²` (D = distance to the nearest chosen
/// centroid); uniform when all those masses are 0. Sums over fixed chunks, so the draw does not depend on threads.
fn kmeans_pp_init(x: &[f32], w: &[f32], v: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let n = w.len();
    // centroids [k, v]; d2 [n]: squared distance to the nearest centroid so far
    let mut centroids = Vec::with_capacity(k * v);
    let mut d2 = vec![1f32; n];
    for _ in 0..k {
        // mass_i = w_i · d2_i, chunk sums in fixed order
        let chunk_sums: Vec<f64> = d2
            .par_chunks(SUM_CHUNK)
            .enumerate()
            .map(|(ci, d)| d.iter().enumerate().map(|(o, &dv)| f64::from(w[ci * SUM_CHUNK + o]) * f64::from(dv)).sum())
            .collect();
        let total: f64 = chunk_sums.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.next_f64() * total;
            let mut chosen = None;
            for (ci, &cs) in chunk_sums.iter().enumerate() {
                if target < cs {
                    let base = ci * SUM_CHUNK;
                    for (o, &dv) in d2[base..(base + SUM_CHUNK).min(n)].iter().enumerate() {
                        let m = f64::from(w[base + o]) * f64::from(dv);
                        if target < m {
                            chosen = Some(base + o);
                            break;
                        }
                        target -= m;
                    }
                    break;
                }
                target -= cs;
            }
            // Rounding can leave the target past the last positive mass: take the last vector that has mass.
            chosen.unwrap_or_else(|| {
                (0..n).rev().find(|&i| f64::from(w[i]) * f64::from(d2[i]) > 0.0).expect("invariant: total > 0")
            })
        } else {
            rng.below(n)
        };
        let c: Vec<f32> = x[pick * v..(pick + 1) * v].to_vec();
        d2.par_chunks_mut(SUM_CHUNK).enumerate().for_each(|(ci, d)| {
            for (o, dv) in d.iter_mut().enumerate() {
                let i = ci * SUM_CHUNK + o;
                let e: f32 = x[i * v..(i + 1) * v].iter().zip(&c).map(|(a, b)| (a - b) * (a - b)).sum();
                *dv = if centroids.is_empty() { e } else { dv.min(e) };
            }
        });
        centroids.extend_from_slice(&c);
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::normal_f32;

    /// `n` vectors of length v around `clusters` random centers.
    fn clustered(n: usize, v: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let centers = normal_f32(clusters * v, seed);
        let noise = normal_f32(n * v, seed + 1);
        let mut rng = SplitMix64::new(seed + 2);
        let mut x = vec![0f32; n * v];
        for i in 0..n {
            let c = rng.below(clusters);
            for t in 0..v {
                x[i * v + t] = 3.0 * centers[c * v + t] + 0.3 * noise[i * v + t];
            }
        }
        x
    }

    fn cfg(k: usize, init: KMeansInit) -> KMeansConfig {
        KMeansConfig { num_centroids: k, max_iters: 25, tol: 0.0, init, seed: 42, max_fit_vectors: None }
    }

    #[test]
    fn nearest_matches_reference() {
        for (v, k) in [(2, 3), (6, 100), (8, 4100), (16, 9), (5, 17)] {
            let codebook = Codebook::new(normal_f32(k * v, v as u64), v).unwrap();
            let n = 333;
            let x = normal_f32(n * v, 99);
            let (mut fast, mut slow) = (vec![0u32; n], vec![0u32; n]);
            codebook.nearest(&x, &mut fast);
            codebook.nearest_ref(&x, &mut slow);
            for i in 0..n {
                let xi = &x[i * v..(i + 1) * v];
                let (df, ds) = (
                    sq_dist_f64(xi, codebook.centroid(fast[i] as usize)),
                    sq_dist_f64(xi, codebook.centroid(slow[i] as usize)),
                );
                assert!(fast[i] == slow[i] || df <= ds + 1e-5 * (1.0 + ds), "v={v} k={k} i={i}: {df} vs {ds}");
            }
            // exact ties go to the lowest index
            let dup = Codebook::new([vec![1.0; v], vec![0.5; v], vec![0.5; v]].concat(), v).unwrap();
            let mut o = [9u32];
            dup.nearest(&vec![0.5; v], &mut o);
            assert_eq!(o[0], 1);
        }
    }

    #[test]
    fn every_scan_kernel_returns_the_same_indices() {
        let kernels = ScanKernel::available();
        for v in 2..=MAX_VECTOR_LEN {
            // k not a multiple of 16 (nor of 8 for most), n not a multiple of any group size or of 64
            for (k, n) in [(3, 7), (37, 61), (300 + v, 333), (2100 + 3 * v, 130)] {
                let mut centroids = normal_f32(k * v, 31 + v as u64);
                // exact duplicates far apart (across lanes and across 2048-chunks) force ties
                let dup = centroids[..v].to_vec();
                centroids[(k - 1) * v..].copy_from_slice(&dup);
                if k > 20 {
                    centroids[17 * v..18 * v].copy_from_slice(&dup);
                }
                let codebook = Codebook::new(centroids, v).unwrap();
                let mut x = normal_f32(n * v, 32 + k as u64);
                // some vectors sit exactly on the duplicated centroid, some are zero (the padding case)
                x[..v].copy_from_slice(&dup);
                x[2 * v..3 * v].fill(0.0);
                let mut slow = vec![0u32; n];
                codebook.nearest_ref(&x, &mut slow);
                let mut first: Option<Vec<u32>> = None;
                for &kernel in &kernels {
                    let mut out = vec![u32::MAX; n];
                    codebook.nearest_with(kernel, &x, &mut out);
                    assert_eq!(out[0], 0, "v={v} k={k} {kernel:?}: a tie goes to the lowest index");
                    for i in 0..n {
                        let xi = &x[i * v..(i + 1) * v];
                        let (df, ds) = (
                            sq_dist_f64(xi, codebook.centroid(out[i] as usize)),
                            sq_dist_f64(xi, codebook.centroid(slow[i] as usize)),
                        );
                        assert!(df <= ds + 1e-5 * (1.0 + ds), "v={v} k={k} i={i} {kernel:?}: {df} vs {ds}");
                    }
                    match &first {
                        None => first = Some(out),
                        Some(want) => assert_eq!(&out, want, "v={v} k={k}: {kernel:?} differs from {:?}", kernels[0]),
                    }
                }
            }
        }
    }

    /// Speed of every scan kernel on the same data, in one run; run with
    /// `cargo test --release -p vptq-quant -- --ignored --nocapture scan_kernel_speed`.
    #[test]
    #[ignore = "timing print, run in release"]
    fn scan_kernel_speed() {
        for (v, k, n) in [(6, 4096, 96_000), (8, 65536, 8_192), (4, 65536, 8_192), (12, 4096, 48_000)] {
            let codebook = Codebook::new(normal_f32(k * v, 1), v).unwrap();
            let x = normal_f32(n * v, 2);
            let mut results = Vec::new();
            // the portable loop (a libm `fmaf` per term on x86 builds without FMA) is far too slow to time here
            let kernels = ScanKernel::available();
            let fast: Vec<ScanKernel> = kernels.iter().rev().copied().filter(|&k| k != ScanKernel::Portable).collect();
            for kernel in if fast.is_empty() { kernels } else { fast } {
                let mut out = vec![0u32; n];
                codebook.nearest_with(kernel, &x, &mut out); // warm-up
                let reps = 3;
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    codebook.nearest_with(kernel, &x, &mut out);
                }
                let secs = t.elapsed().as_secs_f64() / reps as f64;
                results.push((kernel, secs, out));
            }
            let base = results[0].1;
            for (kernel, secs, out) in &results {
                assert_eq!(out, &results[0].2);
                println!(
                    "v={v} k={k} n={n} {kernel:?}: {secs:.3} s = {:.3e} vector·centroid/s, {:.2}x of {:?} ({} threads)",
                    n as f64 * k as f64 / secs,
                    secs / base,
                    results[0].0,
                    rayon::current_num_threads()
                );
            }
        }
    }

    #[test]
    fn indices_in_range_and_objective_never_increases() {
        let (v, n) = (6, 3000);
        let x = clustered(n, v, 40, 1);
        let w: Vec<f32> = normal_f32(n, 3).iter().map(|z| z.abs() + 0.01).collect();
        for init in [KMeansInit::Random, KMeansInit::KMeansPlusPlus] {
            let r = weighted_kmeans(&x, v, Some(&w), &cfg(64, init)).unwrap();
            assert_eq!(r.centroids.len(), 64 * v);
            assert_eq!(r.assignments.len(), n);
            assert!(r.assignments.iter().all(|&a| a < 64));
            assert!(r.objective_history.len() >= 2);
            for pair in r.objective_history.windows(2) {
                // the expanded-distance argmin may differ from the exact one by rounding only
                assert!(pair[1] <= pair[0] * (1.0 + 1e-6), "{init:?}: {:?}", r.objective_history);
            }
            assert!(r.objective_history.last().unwrap() < &r.objective_history[0]);
        }
    }

    #[test]
    fn equal_weights_give_the_unweighted_result() {
        let (v, n) = (4, 2000);
        let x = clustered(n, v, 30, 5);
        for init in [KMeansInit::Random, KMeansInit::KMeansPlusPlus] {
            let plain = weighted_kmeans(&x, v, None, &cfg(32, init)).unwrap();
            // a power of two scales every weighted sum exactly, so the result is bit-identical
            let w = vec![4f32; n];
            let weighted = weighted_kmeans(&x, v, Some(&w), &cfg(32, init)).unwrap();
            assert_eq!(plain.assignments, weighted.assignments);
            assert!(plain.centroids.iter().zip(&weighted.centroids).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn a_heavy_point_is_reproduced() {
        let (v, n) = (4, 1000);
        let mut x = normal_f32(n * v, 8);
        let special = [2.5f32, -1.25, 0.75, 2.0];
        x[..v].copy_from_slice(&special);
        let mut w = vec![1f32; n];
        w[0] = 1e12;
        let r = weighted_kmeans(&x, v, Some(&w), &cfg(8, KMeansInit::Random)).unwrap();
        let c = &r.centroids[r.assignments[0] as usize * v..][..v];
        for t in 0..v {
            assert!((c[t] - special[t]).abs() < 1e-5, "{c:?}");
        }
        // without the weight, its centroid is pulled away from it
        let plain = weighted_kmeans(&x, v, None, &cfg(8, KMeansInit::Random)).unwrap();
        let c = &plain.centroids[plain.assignments[0] as usize * v..][..v];
        assert!(sq_dist_f64(c, &special) > 1e-2);
    }

    #[test]
    fn deterministic_across_thread_counts_with_empty_clusters_and_sampling() {
        let (v, n) = (8, 5000);
        // 20 true clusters, 300 centroids: many empty clusters get re-seeded
        let x = clustered(n, v, 20, 9);
        let w: Vec<f32> = normal_f32(n, 10).iter().map(|z| z * z).collect();
        for (init, sample) in [(KMeansInit::Random, None), (KMeansInit::KMeansPlusPlus, Some(2000))] {
            let c = KMeansConfig { max_fit_vectors: sample, ..cfg(300, init) };
            let run = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| weighted_kmeans(&x, v, Some(&w), &c).unwrap())
            };
            let (a, b) = (run(1), run(2));
            assert_eq!(a.assignments, b.assignments);
            assert!(a.centroids.iter().zip(&b.centroids).all(|(p, q)| p.to_bits() == q.to_bits()));
            assert_eq!(a.objective_history.len(), b.objective_history.len());
            assert!(a.objective_history.iter().zip(&b.objective_history).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = vec![0f32; 12];
        assert!(matches!(
            weighted_kmeans(&x, 4, None, &cfg(4, KMeansInit::Random)),
            Err(QuantError::TooManyCentroids { .. })
        ));
        assert!(matches!(
            weighted_kmeans(&x, 17, None, &cfg(1, KMeansInit::Random)),
            Err(QuantError::InvalidConfig { .. })
        ));
        assert!(matches!(
            weighted_kmeans(&x, 5, None, &cfg(1, KMeansInit::Random)),
            Err(QuantError::ShapeMismatch { .. })
        ));
        let w = [1.0, -1.0, 1.0];
        assert!(matches!(
            weighted_kmeans(&x, 4, Some(&w), &cfg(1, KMeansInit::Random)),
            Err(QuantError::InvalidConfig { .. })
        ));
        // identical points: objective 0, converges at once
        let r = weighted_kmeans(&x, 4, None, &cfg(2, KMeansInit::KMeansPlusPlus)).unwrap();
        assert_eq!(r.objective_history, vec![0.0]);
    }

    /// Timing of the brief's reference size; run with
    /// `cargo test --release -p vptq-quant -- --ignored --nocapture kmeans_speed`.
    #[test]
    #[ignore = "timing print, run in release"]
    fn kmeans_speed_70k_v6_k4096() {
        let (v, n, k) = (6, 70_000, 4096);
        let x = normal_f32(n * v, 1);
        let c = KMeansConfig { num_centroids: k, max_iters: 10, tol: 0.0, ..KMeansConfig::default() };
        let t = std::time::Instant::now();
        let r = weighted_kmeans(&x, v, None, &c).unwrap();
        let secs = t.elapsed().as_secs_f64();
        // iterations + the final full assignment
        let pairs = (r.iterations + 1) as f64 * n as f64 * k as f64;
        println!(
            "k-means n={n} v={v} k={k}: {} iterations in {secs:.3} s = {:.3e} vector·centroid/s ({} threads)",
            r.iterations,
            pairs / secs,
            rayon::current_num_threads()
        );
    }

    #[test]
    fn column_fit_reports_its_distortion_and_masses() {
        let (m, n, v) = (12, 40, 4);
        let w = normal_f32(m * n, 5);
        let cw: Vec<f32> = (0..n).map(|j| 0.5 + j as f32 / n as f32).collect();
        let cfg = KMeansConfig { num_centroids: 16, max_iters: 8, ..KMeansConfig::default() };
        let fit = train_column_codebook(&w, m, n, 0..n, v, &cw, &cfg).unwrap();
        let total: f64 = (0..n).map(|j| f64::from(cw[j]) * 3.0).sum();
        assert!((fit.mass.iter().sum::<f64>() - total).abs() < 1e-6 * total);
        assert_eq!(fit.mass.len(), 16);
        // The distortion is that of nearest-centroid coding under the returned codebook.
        let vecs = gather_column_vectors(&w, m, n, 0..n, v);
        let c = fit.codebook.centroids();
        let mut d = 0f64;
        for (i, x) in vecs.chunks_exact(v).enumerate() {
            let best = c
                .chunks_exact(v)
                .map(|e| x.iter().zip(e).map(|(&a, &b)| f64::from(a - b).powi(2)).sum::<f64>())
                .fold(f64::INFINITY, f64::min);
            d += f64::from(cw[i / 3]) * best;
        }
        assert!((fit.distortion - d).abs() <= 1e-6 * d.max(1e-12), "{} vs {d}", fit.distortion);
    }
}
