//! Fast VPTQ linear layers (vptq-spec.md §2.4, §3): a load-time prepared form ([`PreparedVq`]) and the two
//! kernels that run on it, checked against [`crate::vq::dequantize_ref`] / [`crate::vq::gemv_vq_ref`].
//!
//! Prepared form, built once per layer:
//! - indices unpacked to `u16` (main) and `u8`/`u16` (residual), `[G, ni_pad, gs]`, `ni_pad` rounded up to a
//!   whole block of [`BLOCK`] vectors so the kernel has no row tail;
//! - codebooks padded to a SIMD stride W ∈ {4, 8, 16} (the next of those ≥ v): in int8 with a power-of-two
//!   scale per group and lane when the stored codebook lies on that grid ([`int8_grid_step`]; exact, and a
//!   k = 4096 codebook then fits in L1, which the gathers need more than anything), else in f32 when that fits
//!   in L1 (no conversion in the inner loop), else in their stored f16/bf16 (k = 65536: every decode step touches nearly
//!   every entry, so bytes matter more than the widening);
//! - `perm` and the per-column scale folded into the input: `x'[q] = x[perm[q]] · scale[perm[q]]`; the
//!   per-column offset becomes one `Σ_j x_j · offset_j` added to every output row.
//!
//! Decode (≤ [`GEMV_MAX_TOKENS`] tokens): for a block of 4 vectors (4·v output rows), walk the group's columns
//! accumulating `acc[r] += x'_q · (C[I[r,q]] + R[R[r,q]])` in registers, 4 independent gathers in flight, while
//! the next block's indices are prefetched (and, with [`PreparedVq::prefetch_next`], the next layer's codebook
//! into L2); tasks over blocks of output rows on the caller's rayon pool. Prefill: dequantize a band of rows
//! transposed (`[N, rows]`, raw centroid sums) with the same kernels' loads, then an f32 GEMM with `x'`.

mod kernel;
pub(crate) mod lanes;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

use crate::dense::{gemm_f32_kn, WeightView};
use crate::simd;
use kernel::{dispatch, DequantJob, GemvJob};
use lanes::{Bf16s, F16s, I8s};
use rayon::prelude::*;
/// The grid on which a codebook is held in int8 losslessly (defined with the format's int8 codebook storage):
/// the quantizer snaps codebooks to it so that models it writes get the int8 kernels by default.
pub use vptq_format::vptq::int8_grid_step;
use vptq_format::vptq::{read_index, VqLayout};

use crate::vq::VqView;

/// Vectors (rows of the index matrix) handled together by the decode kernel.
pub(crate) const BLOCK: usize = 4;
/// Up to this many tokens the fused GEMV runs; above, dequantized bands and a GEMM.
pub const GEMV_MAX_TOKENS: usize = 4;
/// [`BookPrecision::Auto`] keeps codebooks in f32 up to this many bytes (padded, main + residual, all groups):
/// the smallest L1d among the hosts measured, so they are gathered from L1 and skip the widening. A larger f32
/// codebook misses L1 at nearly every lookup and ran slower than its stored f16 form (v6-k4096, 128 KiB: 417
/// against 352 µs per SmolLM2 block on a Xeon with 48 KiB L1d, BENCHMARKS.md).
const AUTO_F32_MAX_BYTES: usize = 32 << 10;
/// Most output rows per prefill band: wide enough for the GEMM to run near its dense speed, while the `[N, rows]`
/// f32 band (1.2 MiB at N = 576) stays in L2.
const PREFILL_BAND_ROWS: usize = 512;

/// Precision of the prepared codebooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BookPrecision {
    /// Int8 when that is lossless (the codebook is on its [`int8_grid_step`] grid), else f32 when the padded
    /// codebooks fit [`AUTO_F32_MAX_BYTES`], else as stored.
    #[default]
    Auto,
    /// Always widened to f32.
    F32,
    /// As stored (f16/bf16 stay half; f32 stays f32, as do mixed main/residual precisions).
    Stored,
    /// Main codebook in int8 with one f32 scale per group and lane, residual kept in f32 divided by the same
    /// scales: a quarter of the f32 bytes, so a k = 4096 codebook stays in L1. Lossless for codebooks on the
    /// [`int8_grid_step`] grid (what [`BookPrecision::Auto`] then picks); others are rounded with the scale
    /// max |c| / 127, each entry moving by at most half a step.
    Int8,
}

/// Instruction sets the kernels may use (for tests and benchmarks; the default picks the best available).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isa {
    /// AVX-512VL, else AVX2+FMA+F16C, else portable; NEON on aarch64.
    #[default]
    Best,
    /// AVX2+FMA+F16C if present, else portable; NEON on aarch64 (the same as [`Isa::Best`] there).
    Avx2,
    /// Plain Rust (vectorized by the compiler for the build's baseline).
    Portable,
}

/// Codebooks of one lane width, main and residual in the same precision (int8 main: f32 residual).
#[derive(Debug, Clone)]
pub(crate) struct BooksW<const W: usize> {
    main: BookW<W>,
    res: Option<BookW<W>>,
    /// `[G·W]` per-group, per-lane scales of an int8 main codebook (the residual is stored divided by them);
    /// empty otherwise.
    lane_scale: Vec<f32>,
}

/// One codebook (all groups, `[G·k]` entries), each entry padded with zeros to W elements.
#[derive(Debug, Clone)]
pub(crate) enum BookW<const W: usize> {
    F32(Vec<[f32; W]>),
    F16(Vec<F16s<W>>),
    Bf16(Vec<Bf16s<W>>),
    I8(Vec<I8s<W>>),
}

impl<const W: usize> BookW<W> {
    fn n_bytes(&self) -> usize {
        match self {
            BookW::F32(b) => b.len() * W * 4,
            BookW::F16(b) => b.len() * W * 2,
            BookW::Bf16(b) => b.len() * W * 2,
            BookW::I8(b) => b.len() * W,
        }
    }

    /// Address and length in bytes of the entries.
    fn span(&self) -> (usize, usize) {
        let addr = match self {
            BookW::F32(b) => b.as_ptr() as usize,
            BookW::F16(b) => b.as_ptr() as usize,
            BookW::Bf16(b) => b.as_ptr() as usize,
            BookW::I8(b) => b.as_ptr() as usize,
        };
        (addr, self.n_bytes())
    }

    fn build(src: WeightView<'_>, v: usize, half: bool) -> Self {
        let pad = |bits: &mut dyn Iterator<Item = u16>| {
            let bits: Vec<u16> = bits.collect();
            bits.chunks_exact(v).map(|e| std::array::from_fn(|l| e.get(l).copied().unwrap_or(0))).collect::<Vec<_>>()
        };
        match (half, src) {
            (true, WeightView::F16(s)) => {
                BookW::F16(pad(&mut s.iter().map(|h| h.to_bits())).into_iter().map(F16s).collect())
            }
            (true, WeightView::Bf16(s)) => {
                BookW::Bf16(pad(&mut s.iter().map(|h| h.to_bits())).into_iter().map(Bf16s).collect())
            }
            _ => BookW::F32(
                widen(src).chunks_exact(v).map(|e| std::array::from_fn(|l| e.get(l).copied().unwrap_or(0.0))).collect(),
            ),
        }
    }
}

/// The codebook `[entries·v]` widened to f32.
fn widen(src: WeightView<'_>) -> Vec<f32> {
    let mut wide = vec![0f32; src.len()];
    src.to_f32_range(0, &mut wide);
    wide
}

impl<const W: usize> BooksW<W> {
    fn build(view: &VqView<'_>, v: usize, half: bool) -> Self {
        BooksW {
            main: BookW::build(view.centroids, v, half),
            res: view.res_centroids.map(|r| BookW::build(r, v, half)),
            lane_scale: Vec::new(),
        }
    }

    /// Int8 main codebook (see [`BookPrecision::Int8`]) for `g` groups of `k` main / `kr` residual entries, or
    /// `None` when `lossless_only` and the codebook is not on its [`int8_grid_step`] grid.
    fn build_i8(view: &VqView<'_>, v: usize, (g, k, kr): (usize, usize, usize), lossless_only: bool) -> Option<Self> {
        let main = widen(view.centroids); // [G·k·v]
        let max_abs = |c: usize, l: usize| (0..k).map(|e| main[(c * k + e) * v + l].abs()).fold(0f32, f32::max);
        let grid: Vec<f32> =
            (0..g * W).map(|i| if i % W < v { int8_grid_step(max_abs(i / W, i % W)) } else { 1.0 }).collect();
        let on_grid = main.chunks_exact(v).enumerate().all(|(e, entry)| {
            entry.iter().zip(&grid[(e / k) * W..]).all(|(&c, &s)| {
                let q = c / s;
                q == q.round() && q.abs() <= 127.0
            })
        });
        if lossless_only && !on_grid {
            return None;
        }
        // Off the grid: the finest scale that still holds the largest entry (no longer a power of two).
        let lane_scale = if on_grid {
            grid
        } else {
            (0..g * W)
                .map(|i| if i % W < v { (max_abs(i / W, i % W) / 127.0).max(f32::MIN_POSITIVE) } else { 1.0 })
                .collect()
        };
        let q = main
            .chunks_exact(v)
            .enumerate()
            .map(|(e, entry)| {
                let s = &lane_scale[(e / k) * W..];
                I8s(std::array::from_fn(
                    |l| if l < v { (entry[l] / s[l]).round().clamp(-127.0, 127.0) as i8 } else { 0 },
                ))
            })
            .collect();
        let res = view.res_centroids.map(|r| {
            let r = widen(r); // [G·kr·v]
            BookW::F32(
                r.chunks_exact(v)
                    .enumerate()
                    .map(|(e, entry)| {
                        let s = &lane_scale[(e / kr) * W..];
                        std::array::from_fn(|l| if l < v { entry[l] / s[l] } else { 0.0 })
                    })
                    .collect(),
            )
        });
        Some(BooksW { main: BookW::I8(q), res, lane_scale })
    }
}

/// Codebooks at the lane width chosen for the vector length.
#[derive(Debug, Clone)]
pub(crate) enum Books {
    W4(BooksW<4>),
    W8(BooksW<8>),
    W16(BooksW<16>),
}

/// Unpacked residual indices `[G, ni_pad, gs]`.
#[derive(Debug, Clone)]
pub(crate) enum ResIdx {
    None,
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// Outlier columns (rare: handled by scalar code).
#[derive(Debug, Clone)]
struct Outliers {
    /// v0.
    v0: usize,
    /// Codebook `[k0·v0]` in f32.
    book: Vec<f32>,
    /// Indices `[ceil(M/v0), outlier_size]`.
    idx: Vec<u16>,
}

/// A VPTQ linear prepared for the fast kernels (see the module docs). Holds its own copies; the layer bias is
/// not part of it.
#[derive(Debug, Clone)]
pub struct PreparedVq {
    layout: VqLayout,
    books: Books,
    /// Vectors per column rounded up to [`BLOCK`].
    ni_pad: usize,
    /// Main indices `[G, ni_pad, gs]` (padding rows 0).
    idx: Vec<u16>,
    ridx: ResIdx,
    perm: Option<Vec<u16>>,
    /// `scale[perm[q]]`, permuted order.
    scale: Option<Vec<f32>>,
    /// Per-column offset, original order.
    offset: Option<Vec<f32>>,
    outliers: Option<Outliers>,
    isa: Isa,
    /// The main codebook of the layer that runs after this one, prefetched into L2 during this layer's decode
    /// GEMV ([`PreparedVq::prefetch_next`]).
    then_books: Option<BookSpan>,
}

/// Where a prepared layer's main codebook lies in memory: a prefetch hint for the layer that runs before it. Only
/// ever prefetched, never read, so a stale span (its layer dropped) is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookSpan {
    addr: usize,
    len: usize,
}

/// Lane width for vector length `v`.
fn lane_width(v: usize) -> usize {
    match v {
        0..=4 => 4,
        5..=8 => 8,
        _ => 16,
    }
}

impl PreparedVq {
    /// Prepares validated tensors (the view's lengths are asserted).
    ///
    /// # Panics
    /// If the view's buffers disagree with its layout (checked at load).
    pub fn new(view: &VqView<'_>, precision: BookPrecision) -> Self {
        view.check();
        let l = *view.layout;
        let (v, g, gs, ni) = (l.vector_len, l.group_num, l.group_size, l.num_indices());
        let ni_pad = ni.div_ceil(BLOCK) * BLOCK;
        let (b, r, total) = (l.index_bits(), l.res_index_bits(), l.total_bits());
        let mut idx = vec![0u16; g * ni_pad * gs];
        let mut ridx16 = vec![0u16; if r > 0 { g * ni_pad * gs } else { 0 }];
        let p = l.words_per_row();
        for c in 0..g {
            for i in 0..ni {
                let row = &view.indices[(c * ni + i) * p..][..p];
                let dst = (c * ni_pad + i) * gs;
                for q in 0..gs {
                    let m = read_index(row, q, total);
                    // b, r ≤ 16: the masks keep each index inside its codebook (k = 2^b, kr = 2^r entries).
                    idx[dst + q] = (m & ((1 << b) - 1)) as u16;
                    if r > 0 {
                        ridx16[dst + q] = ((m >> b) & ((1 << r) - 1)) as u16;
                    }
                }
            }
        }
        let ridx = match r {
            0 => ResIdx::None,
            1..=8 => ResIdx::U8(ridx16.iter().map(|&x| x as u8).collect()),
            _ => ResIdx::U16(ridx16),
        };
        let w = lane_width(v);
        let same_half = match (view.centroids, view.res_centroids) {
            (WeightView::F32(_), _) => false,
            (_, None) => true,
            (WeightView::F16(_), Some(WeightView::F16(_))) | (WeightView::Bf16(_), Some(WeightView::Bf16(_))) => true,
            _ => false,
        };
        let f32_bytes = g * (l.num_centroids + l.num_res_centroids) * w * 4;
        let half = same_half
            && match precision {
                BookPrecision::Auto => f32_bytes > AUTO_F32_MAX_BYTES,
                BookPrecision::F32 | BookPrecision::Int8 => false,
                BookPrecision::Stored => true,
            };
        fn books<const W: usize>(view: &VqView<'_>, v: usize, half: bool, precision: BookPrecision) -> BooksW<W> {
            let l = view.layout;
            let shape = (l.group_num, l.num_centroids, l.num_res_centroids);
            let int8 = match precision {
                BookPrecision::Auto => BooksW::build_i8(view, v, shape, true),
                BookPrecision::Int8 => BooksW::build_i8(view, v, shape, false),
                BookPrecision::F32 | BookPrecision::Stored => None,
            };
            int8.unwrap_or_else(|| BooksW::build(view, v, half))
        }
        let books = match w {
            4 => Books::W4(books(view, v, half, precision)),
            8 => Books::W8(books(view, v, half, precision)),
            _ => Books::W16(books(view, v, half, precision)),
        };
        let scale = view.weight_scale.map(|s| (0..l.in_features).map(|q| s[view.column(q)]).collect());
        let outliers = view.outlier_centroids.zip(view.outlier_indices).map(|(cb, oi)| {
            let mut book = vec![0f32; cb.len()];
            cb.to_f32_range(0, &mut book);
            Outliers { v0: l.outlier_vector_len, book, idx: oi.to_vec() }
        });
        PreparedVq {
            layout: l,
            books,
            ni_pad,
            idx,
            ridx,
            perm: view.perm.map(<[u16]>::to_vec),
            scale,
            offset: view.weight_bias.map(<[f32]>::to_vec),
            outliers,
            isa: Isa::Best,
            then_books: None,
        }
    }

    /// Where this layer's main codebook lies (for [`PreparedVq::prefetch_next`] on the layer that runs before it).
    pub fn books_span(&self) -> BookSpan {
        let (addr, len) = match &self.books {
            Books::W4(b) => b.main.span(),
            Books::W8(b) => b.main.span(),
            Books::W16(b) => b.main.span(),
        };
        BookSpan { addr, len }
    }

    /// Makes this layer's decode GEMV prefetch `next` (the [`PreparedVq::books_span`] of the layer that runs after
    /// it) into L2, so that the next layer does not start on a cold codebook; `None` stops it.
    pub fn prefetch_next(&mut self, next: Option<BookSpan>) {
        self.then_books = next;
    }

    /// Restricts the instruction sets the kernels may use (an unavailable one falls back to the next).
    pub fn with_isa(mut self, isa: Isa) -> Self {
        self.isa = isa;
        self
    }

    /// The layer's shape.
    pub fn layout(&self) -> &VqLayout {
        &self.layout
    }

    /// Bytes the decode kernel reads per token: unpacked indices, padded codebooks (with k = 65536 nearly every
    /// entry is touched once per token), perm, scale, offset and outliers.
    pub fn n_bytes(&self) -> usize {
        let books = match &self.books {
            Books::W4(b) => b.main.n_bytes() + b.res.as_ref().map_or(0, BookW::n_bytes),
            Books::W8(b) => b.main.n_bytes() + b.res.as_ref().map_or(0, BookW::n_bytes),
            Books::W16(b) => b.main.n_bytes() + b.res.as_ref().map_or(0, BookW::n_bytes),
        };
        let ridx = match &self.ridx {
            ResIdx::None => 0,
            ResIdx::U8(r) => r.len(),
            ResIdx::U16(r) => r.len() * 2,
        };
        let floats = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, |v| v.len() * 4);
        self.idx.len() * 2
            + ridx
            + books
            + self.perm.as_ref().map_or(0, |p| p.len() * 2)
            + floats(&self.scale)
            + floats(&self.offset)
            + self.outliers.as_ref().map_or(0, |o| o.book.len() * 4 + o.idx.len() * 2)
    }

    /// Precision of the prepared main codebook: `f32`, `f16`, `bf16` or `i8`.
    pub fn codebook_dtype(&self) -> &'static str {
        fn of<const W: usize>(b: &BooksW<W>) -> &'static str {
            match b.main {
                BookW::F32(_) => "f32",
                BookW::F16(_) => "f16",
                BookW::Bf16(_) => "bf16",
                BookW::I8(_) => "i8",
            }
        }
        match &self.books {
            Books::W4(b) => of(b),
            Books::W8(b) => of(b),
            Books::W16(b) => of(b),
        }
    }

    /// Short description of the prepared storage, e.g. `w8 f16 idx u16+u8`.
    pub fn describe(&self) -> String {
        let w = match &self.books {
            Books::W4(_) => 4,
            Books::W8(_) => 8,
            Books::W16(_) => 16,
        };
        let books = format!("w{w} {}", self.codebook_dtype());
        let res = match self.ridx {
            ResIdx::None => "",
            ResIdx::U8(_) => "+u8",
            ResIdx::U16(_) => "+u16",
        };
        format!("{books} idx u16{res}")
    }

    /// `x'[t, q] = x[t, perm[q]] · scale[perm[q]]` `[n_tokens, N]` and `β[t] = Σ_j x[t, j] · offset_j`.
    fn inputs(&self, x: &[f32], n_tokens: usize) -> (Vec<f32>, Vec<f32>) {
        let n = self.layout.in_features;
        let mut xp = vec![0f32; n_tokens * n]; // [n_tokens, N]
        let mut beta = vec![0f32; n_tokens]; // [n_tokens]
        for t in 0..n_tokens {
            let (xt, dst) = (&x[t * n..(t + 1) * n], &mut xp[t * n..(t + 1) * n]);
            match &self.perm {
                Some(p) => dst.iter_mut().zip(p).for_each(|(d, &j)| *d = xt[j as usize]),
                None => dst.copy_from_slice(xt),
            }
            if let Some(s) = &self.scale {
                dst.iter_mut().zip(s).for_each(|(d, s)| *d *= s);
            }
            if let Some(o) = &self.offset {
                beta[t] = simd::dot_f32(xt, o);
            }
        }
        (xp, beta)
    }

    /// Outlier-column contribution to output row `row` for a token's `x'`.
    fn outlier_dot(&self, row: usize, xp: &[f32]) -> f32 {
        let Some(o) = &self.outliers else { return 0.0 };
        let os = self.layout.outlier_size;
        let idx = &o.idx[(row / o.v0) * os..][..os];
        idx.iter().zip(&xp[..os]).map(|(&c, &x)| o.book[c as usize * o.v0 + row % o.v0] * x).sum()
    }

    /// Vectors per parallel task (a multiple of [`BLOCK`]): tasks of up to `target_rows` output rows, at least
    /// `per_thread` per thread, and a whole multiple of the thread count so that no thread is left with a
    /// single extra band (three 512-row prefill bands of a 1536-row layer on two threads ran at 2/3 speed).
    fn task_vectors(&self, target_rows: usize, per_thread: usize) -> usize {
        let threads = rayon::current_num_threads().max(1);
        let by_rows = self.ni_pad.div_ceil(target_rows.div_ceil(self.layout.vector_len).max(1));
        let tasks = by_rows.max(per_thread * threads).div_ceil(threads) * threads;
        self.ni_pad.div_ceil(tasks).div_ceil(BLOCK) * BLOCK
    }

    /// `y[n_tokens, M] = x[n_tokens, N] · Ŵᵀ` (no layer bias), on the caller's rayon pool.
    ///
    /// # Panics
    /// If `x.len() != n_tokens · N` or `y.len() != n_tokens · M`.
    pub fn matmul(&self, x: &[f32], y: &mut [f32], n_tokens: usize) {
        let l = &self.layout;
        let (m, n, v) = (l.out_features, l.in_features, l.vector_len);
        assert_eq!(x.len(), n_tokens * n, "PreparedVq::matmul: x");
        assert_eq!(y.len(), n_tokens * m, "PreparedVq::matmul: y");
        if n_tokens == 0 {
            return;
        }
        let (xp, beta) = self.inputs(x, n_tokens);
        let decode = n_tokens <= GEMV_MAX_TOKENS;
        let tv = if decode { self.task_vectors(256, 4) } else { self.task_vectors(PREFILL_BAND_ROWS, 1) };
        let mut ybuf = vec![0f32; n_tokens * self.ni_pad * v]; // [task][n_tokens][task rows]
        ybuf.par_chunks_mut(n_tokens * tv * v).enumerate().for_each(|(task, out)| {
            let vec0 = task * tv;
            let nvec = out.len() / (n_tokens * v);
            if decode {
                dispatch(self, GemvJob { xp: &xp, n_tokens, vec0, nvec, out });
            } else {
                let rows = nvec * v;
                let mut wt = vec![0f32; n * rows + 16]; // [N, rows] + one entry of slack for padded stores
                dispatch(self, DequantJob { vec0, nvec, out: &mut wt });
                self.outlier_rows(vec0 * v, rows, &mut wt);
                gemm_f32_kn(&xp, &wt[..n * rows], out, n_tokens, n, rows);
            }
        });
        let tasks = ybuf.chunks(n_tokens * tv * v);
        for (task, part) in tasks.enumerate() {
            let row0 = task * tv * v;
            let rows = part.len() / n_tokens;
            for t in 0..n_tokens {
                let xpt = &xp[t * n..(t + 1) * n];
                for (r, &val) in part[t * rows..(t + 1) * rows].iter().enumerate() {
                    let row = row0 + r;
                    if row < m {
                        // Prefill bands already hold the outlier columns in their dequantized weights.
                        let out = if decode { self.outlier_dot(row, xpt) } else { 0.0 };
                        y[t * m + row] = val + out + beta[t];
                    }
                }
            }
        }
    }

    /// Fills the outlier columns `q < outlier_size` of a transposed band `wt` `[N, rows]` for output rows
    /// `[row0, row0 + rows)`; padding rows (≥ M) get 0.
    fn outlier_rows(&self, row0: usize, rows: usize, wt: &mut [f32]) {
        let Some(o) = &self.outliers else { return };
        let (os, m) = (self.layout.outlier_size, self.layout.out_features);
        for q in 0..os {
            for r in 0..rows {
                let row = row0 + r;
                wt[q * rows + r] =
                    if row < m { o.book[o.idx[(row / o.v0) * os + q] as usize * o.v0 + row % o.v0] } else { 0.0 };
            }
        }
    }

    /// The dense weight `Ŵ` `[M, N]` from the prepared form (the prefill path's dequantization, un-permuted and
    /// with scale/offset applied): for tests and export.
    pub fn dequantize(&self) -> Vec<f32> {
        let l = &self.layout;
        let (m, n, v) = (l.out_features, l.in_features, l.vector_len);
        let mut w = vec![0f32; m * n]; // [M, N]
        let nvec = self.ni_pad;
        let rows = nvec * v;
        let mut wt = vec![0f32; n * rows + 16]; // [N, rows]
        dispatch(self, DequantJob { vec0: 0, nvec, out: &mut wt });
        self.outlier_rows(0, rows, &mut wt);
        for q in 0..n {
            let j = self.perm.as_ref().map_or(q, |p| p[q] as usize);
            let s = self.scale.as_ref().map_or(1.0, |s| s[q]);
            let o = self.offset.as_ref().map_or(0.0, |o| o[j]);
            for row in 0..m {
                w[row * n + j] = wt[q * rows + row] * s + o;
            }
        }
        w
    }
}
