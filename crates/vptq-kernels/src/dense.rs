//! Dense linear layers: `y[n, out] = x[n, in] · Wᵀ` with W `[out, in]` row-major in f32, f16 or bf16.
//!
//! Decode (few tokens) is a GEMV, memory-bound: threads over bands of output rows, each row one SIMD dot per
//! token. Prefill uses the `gemm` crate; half-precision weights are widened to f32 one band of rows at a time
//! so the GEMM always runs in f32 and the band stays in cache. 8-bit weights ([`Q8Weight`], for the embedding
//! table and the head) take the same two paths: their own SIMD dot in the GEMV, widened bands in prefill.

use crate::q8::{Q8View, Q8Weight};
use crate::q8_gemv::Q8Act;
use crate::simd;
use half::{bf16, f16};
use rayon::prelude::*;

/// Below this many tokens the GEMV path is used: it reads each weight once per token but avoids GEMM packing.
const GEMV_MAX_TOKENS: usize = 4;
/// Output rows per parallel task in the GEMV: large enough to amortize scheduling, small enough to balance.
const GEMV_ROWS_PER_TASK: usize = 64;
/// Output rows widened to f32 at a time for half-precision prefill.
const HALF_BAND_ROWS: usize = 128;

/// Owned dense weight storage.
#[derive(Debug, Clone)]
pub enum DenseWeight {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// IEEE half precision.
    F16(Vec<f16>),
    /// bfloat16.
    Bf16(Vec<bf16>),
    /// int8 with one f32 scale per group of elements (symmetric absmax, see [`crate::q8`]).
    Q8(Q8Weight),
}

/// Borrowed view of dense weight storage.
#[derive(Debug, Clone, Copy)]
pub enum WeightView<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// IEEE half precision.
    F16(&'a [f16]),
    /// bfloat16.
    Bf16(&'a [bf16]),
    /// int8 with per-group scales.
    Q8(Q8View<'a>),
}

impl DenseWeight {
    /// Borrows the storage.
    pub fn view(&self) -> WeightView<'_> {
        match self {
            DenseWeight::F32(w) => WeightView::F32(w),
            DenseWeight::F16(w) => WeightView::F16(w),
            DenseWeight::Bf16(w) => WeightView::Bf16(w),
            DenseWeight::Q8(w) => WeightView::Q8(w.view()),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage (for int8: values and scales).
    pub fn n_bytes(&self) -> usize {
        self.view().n_bytes()
    }

    /// Short name of the storage for reports: "f32", "f16", "bf16" or "q8".
    pub fn kind(&self) -> &'static str {
        match self {
            DenseWeight::F32(_) => "f32",
            DenseWeight::F16(_) => "f16",
            DenseWeight::Bf16(_) => "bf16",
            DenseWeight::Q8(_) => "q8",
        }
    }
}

impl<'a> WeightView<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            WeightView::F32(w) => w.len(),
            WeightView::F16(w) => w.len(),
            WeightView::Bf16(w) => w.len(),
            WeightView::Q8(w) => w.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage.
    pub fn n_bytes(&self) -> usize {
        match self {
            WeightView::F32(w) => w.len() * 4,
            WeightView::F16(w) => w.len() * 2,
            WeightView::Bf16(w) => w.len() * 2,
            WeightView::Q8(w) => w.n_bytes(),
        }
    }

    /// Widens (dequantizes) elements `[start, start + out.len())` to f32.
    pub fn to_f32_range(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        match self {
            WeightView::F32(w) => out.copy_from_slice(&w[start..end]),
            WeightView::F16(w) => simd::f16_to_f32(&w[start..end], out),
            WeightView::Bf16(w) => simd::bf16_to_f32(&w[start..end], out),
            WeightView::Q8(w) => w.to_f32_range(start, out),
        }
    }

    /// Dot product of `x` with elements `[start, start + x.len())`.
    fn dot(&self, x: &[f32], start: usize) -> f32 {
        let end = start + x.len();
        match self {
            WeightView::F32(w) => simd::dot_f32(x, &w[start..end]),
            WeightView::F16(w) => simd::dot_f16(x, &w[start..end]),
            WeightView::Bf16(w) => simd::dot_bf16(x, &w[start..end]),
            WeightView::Q8(w) => w.dot(x, start),
        }
    }
}

/// `y[n, out] = x[n, in] · Wᵀ` with W `[out, in]`, using the rayon thread pool the caller runs in.
///
/// # Panics
/// If the slice lengths disagree with `n`, `in_features`, `out_features` (an internal invariant).
pub fn matmul(x: &[f32], w: WeightView<'_>, y: &mut [f32], n: usize, in_features: usize, out_features: usize) {
    assert_eq!(x.len(), n * in_features, "matmul: x");
    assert_eq!(y.len(), n * out_features, "matmul: y");
    assert_eq!(w.len(), in_features * out_features, "matmul: w");
    if n == 0 || out_features == 0 {
        return;
    }
    if n <= GEMV_MAX_TOKENS {
        gemv(x, w, y, n, in_features, out_features);
        return;
    }
    match w {
        WeightView::F32(w) => gemm_f32(x, w, y, n, in_features, out_features, true),
        _ => {
            // y is [n, out]: bands of rows of W write disjoint column ranges of y, so each band computes into
            // its own [n, band] buffer which is then scattered.
            let bands: Vec<(usize, Vec<f32>)> = (0..out_features)
                .step_by(HALF_BAND_ROWS)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|row0| {
                    let rows = HALF_BAND_ROWS.min(out_features - row0);
                    let mut wf = vec![0f32; rows * in_features]; // [rows, in]
                    w.to_f32_range(row0 * in_features, &mut wf);
                    let mut yb = vec![0f32; n * rows]; // [n, rows]
                    gemm_f32(x, &wf, &mut yb, n, in_features, rows, false);
                    (row0, yb)
                })
                .collect();
            for (row0, yb) in bands {
                let rows = yb.len() / n;
                for t in 0..n {
                    y[t * out_features + row0..t * out_features + row0 + rows]
                        .copy_from_slice(&yb[t * rows..(t + 1) * rows]);
                }
            }
        }
    }
}

fn gemv(x: &[f32], w: WeightView<'_>, y: &mut [f32], n: usize, in_features: usize, out_features: usize) {
    if let WeightView::Q8(q) = w {
        // Integer dots need each row inside one scale group; a non-finite activation keeps the f32 path.
        if q.group() % in_features == 0 {
            if let Some(acts) = x.chunks_exact(in_features).map(Q8Act::new).collect::<Option<Vec<_>>>() {
                gemv_bands(y, n, out_features, |t, row0, out| q.gemv_act(&acts[t], row0, out));
                return;
            }
        }
    }
    gemv_bands(y, n, out_features, |t, row0, out| {
        let xt = &x[t * in_features..(t + 1) * in_features];
        for (r, o) in out.iter_mut().enumerate() {
            *o = w.dot(xt, (row0 + r) * in_features);
        }
    });
}

/// `y[t, row0..row0 + out.len()]` = `band(t, row0, out)` for `n` tokens, threads over bands of output rows.
fn gemv_bands(y: &mut [f32], n: usize, out_features: usize, band: impl Fn(usize, usize, &mut [f32]) + Sync) {
    if n == 1 {
        y.par_chunks_mut(GEMV_ROWS_PER_TASK).enumerate().for_each(|(task, ys)| band(0, task * GEMV_ROWS_PER_TASK, ys));
        return;
    }
    // Several tokens: each task computes its band for every token while the band's weights are in cache.
    let parts: Vec<Vec<f32>> = (0..out_features.div_ceil(GEMV_ROWS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let row0 = task * GEMV_ROWS_PER_TASK;
            let rows = GEMV_ROWS_PER_TASK.min(out_features - row0);
            let mut part = vec![0f32; n * rows]; // [n, rows]
            for (t, pt) in part.chunks_exact_mut(rows).enumerate() {
                band(t, row0, pt);
            }
            part
        })
        .collect();
    for (task, part) in parts.iter().enumerate() {
        let row0 = task * GEMV_ROWS_PER_TASK;
        let rows = part.len() / n;
        for (t, chunk) in part.chunks_exact(rows).enumerate() {
            y[t * out_features + row0..][..rows].copy_from_slice(chunk);
        }
    }
}

/// A matrix operand for [`gemm_into`]: element (r, c) of a `[rows, cols]` matrix is `data[r·rs + c·cs]`, so
/// transposed and strided views (heads interleaved in the KV cache) need no copy.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl Operand<'_> {
    /// True when every element of a `[rows, cols]` view lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, `dst` row-major with row stride `dst_rs`.
///
/// # Panics
/// If an operand is too short for its shape and strides.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    m: usize,
    n: usize,
    k: usize,
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(lhs.fits(m, k) && rhs.fits(k, n), "gemm_into: operand too short");
    assert!((m - 1) * dst_rs + n <= dst.len(), "gemm_into: dst too short");
    // SAFETY: every element the GEMM reads or writes was bounds-checked above through the same strides it is
    // given; `dst` is a unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// f32 GEMM `y[n, out] = x[n, in] · Wᵀ`; `threaded` lets it use the current rayon pool.
pub(crate) fn gemm_f32(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    n: usize,
    in_features: usize,
    out_features: usize,
    threaded: bool,
) {
    let parallelism = if threaded && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let x = Operand { data: x, rs: in_features, cs: 1 };
    let wt = Operand { data: w, rs: 1, cs: in_features }; // Wᵀ [in, out] read from W [out, in]
    gemm_into(y, out_features, x, wt, n, out_features, in_features, parallelism);
}

/// Single-threaded f32 GEMM `y[n, out] = x[n, in] · w[in, out]` with the weight already transposed (`[in, out]`
/// row-major): the VPTQ prefill dequantizes bands in that order.
pub(crate) fn gemm_f32_kn(x: &[f32], w: &[f32], y: &mut [f32], n: usize, in_features: usize, out_features: usize) {
    let x = Operand { data: x, rs: in_features, cs: 1 };
    let w = Operand { data: w, rs: out_features, cs: 1 };
    gemm_into(y, out_features, x, w, n, out_features, in_features, gemm::Parallelism::None);
}

/// `y[n, m] = a[n, k] · b[m, k]ᵀ` (single-threaded): attention scores `Q·Kᵀ`. `a_rs`/`b_rs` are the row strides
/// of `a` and `b` in elements (heads interleaved in the KV cache).
///
/// # Panics
/// If a slice is too short for the given shape and strides.
#[allow(clippy::too_many_arguments)]
pub fn matmul_abt_strided(a: &[f32], a_rs: usize, b: &[f32], b_rs: usize, y: &mut [f32], n: usize, m: usize, k: usize) {
    let a = Operand { data: a, rs: a_rs, cs: 1 };
    let bt = Operand { data: b, rs: 1, cs: b_rs };
    gemm_into(y, m, a, bt, n, m, k, gemm::Parallelism::None);
}

/// `y[n, k] = p[n, m] · v[m, k]` (single-threaded), `v` with row stride `v_rs`, `y` with row stride `y_rs`:
/// attention output `P·V`.
///
/// # Panics
/// If a slice is too short for the given shape and strides.
#[allow(clippy::too_many_arguments)]
pub fn matmul_ab_strided(p: &[f32], v: &[f32], v_rs: usize, y: &mut [f32], y_rs: usize, n: usize, m: usize, k: usize) {
    let p = Operand { data: p, rs: m, cs: 1 };
    let v = Operand { data: v, rs: v_rs, cs: 1 };
    gemm_into(y, y_rs, p, v, n, k, m, gemm::Parallelism::None);
}
