//! The two inner loops over a [`PreparedVq`] (decode GEMV and band dequantization), written once over
//! [`Lanes`]/[`Centroid`] and compiled per instruction set; [`dispatch`] picks the instruction set at run time
//! and the concrete codebook/index types from the prepared form.

use super::lanes::{prefetch, prefetch_ptr, prefetch_ptr_l2, Centroid, Idx, Lanes, Portable};
use super::{BookW, Books, Isa, PreparedVq, ResIdx, BLOCK};

/// Work on a block range of a prepared layer, generic over the lane and storage types.
pub(super) trait Job {
    /// Runs the job with codebooks `cb` `[G·k]`, `rcb` `[G·kr]` (empty without residual), residual indices
    /// `ridx` `[G, ni_pad, gs]` (empty without residual) and per-group lane scales `ls` `[G·W]` that multiply
    /// every entry sum (empty: none).
    ///
    /// # Safety
    /// The CPU must support the extensions `L`'s methods use.
    unsafe fn run<L: Lanes, C: Centroid<L>, RC: Centroid<L>, RI: Idx, const RES: bool>(
        self,
        p: &PreparedVq,
        cb: &[C],
        rcb: &[RC],
        ridx: &[RI],
        ls: &[f32],
    );
}

/// How many columns ahead the decode kernel prefetches codebook entries: about one memory latency of work.
const PREFETCH_COLUMNS: usize = 32;
/// Columns per prefetched line of the next block's indices: a block's main indices take `BLOCK · 2` bytes per
/// column, so 8 columns are one 64-byte line. Without this prefetch the decode GEMV ran about 1.4× slower on
/// indices from memory than from L2: the hardware prefetchers do not follow four interleaved row streams far
/// enough ahead (`vq_bench --decode`, v6-k4096 int8, 1 thread: 352–386 → 247–254 µs per decoder block).
const NEXT_EVERY: usize = 8;
/// Bytes of the next layer's codebook prefetched into L2 per [`NEXT_EVERY`] columns. A layer's first lookups
/// would otherwise fetch its codebook from memory one random line at a time (v6-k4096 int8: 512 lines, about
/// 28 µs per decoder block once the model no longer fits L3).
const THEN_BYTES: usize = 128;
/// Codebooks larger than this (bytes, one group) are prefetched: about what stays in L2 next to the indices.
const PREFETCH_MIN_BYTES: usize = 256 << 10;

/// `acc[r][t] = Σ_q x_t[q] · (C[idx_r[q]] + R[ridx_r[q]])` for `RS` index rows and `T` tokens, in registers;
/// `PF`: prefetch main entries [`PREFETCH_COLUMNS`] ahead (worth its instructions only for codebooks that miss L2);
/// `next`: where the next block's main and residual indices start (prefetched; any address, never read);
/// `then`: a byte range of the next layer's codebook to prefetch into L2, [`THEN_BYTES`] per [`NEXT_EVERY`]
/// columns (any address, never read).
///
/// # Safety
/// The CPU must support the extensions `L`'s methods use, and every `idx` entry must be below `cb.len()` (every
/// `ridx` entry below `rcb.len()`): `PreparedVq::new` masks indices to log2(k) bits and k is a power of two, so
/// per-group slices of exactly k entries satisfy it. The hot loop then skips the per-lookup bounds checks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows<
    L: Lanes,
    C: Centroid<L>,
    RC: Centroid<L>,
    RI: Idx,
    const RES: bool,
    const PF: bool,
    const T: usize,
    const RS: usize,
>(
    cb: &[C],
    rcb: &[RC],
    idx: [&[u16]; RS],
    ridx: [&[RI]; RS],
    next: (*const i8, *const i8),
    then: (*const i8, usize),
    xs: [&[f32]; T],
) -> [[L; T]; RS] {
    let n = xs[0].len();
    // Equal lengths up front let the compiler drop the per-column bounds checks of these rows.
    assert!(xs.iter().all(|s| s.len() == n) && idx.iter().all(|s| s.len() == n), "vq rows: lengths");
    assert!(!RES || ridx.iter().all(|s| s.len() == n), "vq rows: residual lengths");
    // SAFETY (all blocks below): the caller guarantees the CPU extensions of `L`.
    let mut acc = [[unsafe { L::zero() }; T]; RS];
    for q in 0..n {
        if PF {
            let ahead = (q + PREFETCH_COLUMNS).min(n - 1);
            for row in idx {
                prefetch(&cb[row[ahead] as usize]);
            }
        }
        if q % NEXT_EVERY == 0 {
            // The next block's indices (BLOCK rows of n, contiguous after this block's), one line per NEXT_EVERY
            // columns: the whole next block arrives while this one runs.
            prefetch_ptr(next.0.wrapping_add(q * BLOCK * 2));
            if RES {
                prefetch_ptr(next.1.wrapping_add(q * BLOCK * std::mem::size_of::<RI>()));
            }
            let off = q / NEXT_EVERY * THEN_BYTES;
            if off < then.1 {
                for line in (0..THEN_BYTES).step_by(64) {
                    prefetch_ptr_l2(then.0.wrapping_add(off + line));
                }
            }
        }
        let xv: [L; T] = std::array::from_fn(|t| unsafe { L::splat(xs[t][q]) });
        for r in 0..RS {
            debug_assert!((idx[r][q] as usize) < cb.len() && (!RES || ridx[r][q].get() < rcb.len()));
            // SAFETY: indices below the codebook lengths (the function's contract).
            let mut c = unsafe { cb.get_unchecked(idx[r][q] as usize).load() };
            if RES {
                c = unsafe { c.add(rcb.get_unchecked(ridx[r][q].get()).load()) };
            }
            for t in 0..T {
                acc[r][t] = unsafe { c.mul_add(xv[t], acc[r][t]) };
            }
        }
    }
    acc
}

/// Decode: the main-column part of `y` for vectors `[vec0, vec0 + nvec)` into `out` `[n_tokens, nvec·v]`
/// (padding rows included; outliers, offset and un-padding are the caller's).
pub(super) struct GemvJob<'a> {
    /// `x'` `[n_tokens, N]`, permuted and scaled.
    pub xp: &'a [f32],
    pub n_tokens: usize,
    pub vec0: usize,
    pub nvec: usize,
    pub out: &'a mut [f32],
}

impl GemvJob<'_> {
    /// Adds `T` tokens × `RS` index rows starting at block row `r0` of block `blk`, all groups.
    ///
    /// # Safety
    /// As [`Job::run`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn part<
        L: Lanes,
        C: Centroid<L>,
        RC: Centroid<L>,
        RI: Idx,
        const RES: bool,
        const T: usize,
        const RS: usize,
    >(
        &mut self,
        p: &PreparedVq,
        cb: &[C],
        rcb: &[RC],
        ridx: &[RI],
        ls: &[f32],
        blk: usize,
        r0: usize,
        t0: usize,
    ) {
        let l = &p.layout;
        let (v, gs, k, kr, n, os) =
            (l.vector_len, l.group_size, l.num_centroids, l.num_res_centroids, l.in_features, l.outlier_size);
        let rows_out = self.nvec * v;
        let mut tmp = [0f32; 16];
        for c in 0..l.group_num {
            let cbc = &cb[c * k..(c + 1) * k];
            let rcbc = if RES { &rcb[c * kr..(c + 1) * kr] } else { &rcb[..0] };
            let base = (c * p.ni_pad + self.vec0 + blk + r0) * gs;
            let irows: [&[u16]; RS] = std::array::from_fn(|r| &p.idx[base + r * gs..][..gs]);
            let rrows: [&[RI]; RS] =
                std::array::from_fn(|r| if RES { &ridx[base + r * gs..][..gs] } else { &ridx[..0] });
            let col0 = os + c * gs;
            let xs: [&[f32]; T] = std::array::from_fn(|t| &self.xp[(t0 + t) * n + col0..][..gs]);
            let next_base = (c * p.ni_pad + self.vec0 + blk + BLOCK) * gs;
            let next = (
                p.idx.as_ptr().wrapping_add(next_base).cast::<i8>(),
                ridx.as_ptr().wrapping_add(next_base).cast::<i8>(),
            );
            // The first task walks the next layer's codebook, block after block, while it runs; one too large to
            // sit in L2 beside this layer's data is left to the in-loop prefetch of its own layer.
            let then = match p.then_books {
                Some(b) if self.vec0 == 0 && c == 0 && b.len <= PREFETCH_MIN_BYTES => {
                    let done = blk / BLOCK * gs.div_ceil(NEXT_EVERY) * THEN_BYTES;
                    (b.addr.wrapping_add(done) as *const i8, b.len.saturating_sub(done))
                }
                _ => (std::ptr::null(), 0),
            };
            // SAFETY: forwarded contract.
            let mut acc = unsafe {
                if std::mem::size_of_val(cbc) > PREFETCH_MIN_BYTES {
                    rows::<L, C, RC, RI, RES, true, T, RS>(cbc, rcbc, irows, rrows, next, then, xs)
                } else {
                    rows::<L, C, RC, RI, RES, false, T, RS>(cbc, rcbc, irows, rrows, next, then, xs)
                }
            };
            if !ls.is_empty() {
                // SAFETY: forwarded contract.
                let s = unsafe { L::load_f32(&ls[c * L::W..]) };
                acc.iter_mut().flatten().for_each(|a| *a = unsafe { a.mul(s) });
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (t, a) in acc_r.iter().enumerate() {
                    // SAFETY: forwarded contract; `tmp` holds 16 ≥ W lanes.
                    unsafe { a.store(&mut tmp) };
                    let dst = &mut self.out[(t0 + t) * rows_out + (blk + r0 + r) * v..][..v];
                    dst.iter_mut().zip(&tmp).for_each(|(d, s)| *d += s);
                }
            }
        }
    }
}

impl Job for GemvJob<'_> {
    #[inline(always)]
    unsafe fn run<L: Lanes, C: Centroid<L>, RC: Centroid<L>, RI: Idx, const RES: bool>(
        mut self,
        p: &PreparedVq,
        cb: &[C],
        rcb: &[RC],
        ridx: &[RI],
        ls: &[f32],
    ) {
        assert!(self.nvec.is_multiple_of(BLOCK) && self.vec0 + self.nvec <= p.ni_pad, "vq gemv: block range");
        assert_eq!(self.out.len(), self.n_tokens * self.nvec * p.layout.vector_len, "vq gemv: out");
        for blk in (0..self.nvec).step_by(BLOCK) {
            let mut t0 = 0;
            // Token pairs share each centroid load; with 16 lanes a pair of tokens takes half a block at a time
            // so the accumulators stay in 16 registers.
            // SAFETY (all calls): forwarded contract.
            while t0 < self.n_tokens {
                if self.n_tokens - t0 >= 2 {
                    if L::W > 8 {
                        unsafe { self.part::<L, C, RC, RI, RES, 2, 2>(p, cb, rcb, ridx, ls, blk, 0, t0) };
                        unsafe { self.part::<L, C, RC, RI, RES, 2, 2>(p, cb, rcb, ridx, ls, blk, 2, t0) };
                    } else {
                        unsafe { self.part::<L, C, RC, RI, RES, 2, BLOCK>(p, cb, rcb, ridx, ls, blk, 0, t0) };
                    }
                    t0 += 2;
                } else {
                    unsafe { self.part::<L, C, RC, RI, RES, 1, BLOCK>(p, cb, rcb, ridx, ls, blk, 0, t0) };
                    t0 += 1;
                }
            }
        }
    }
}

/// Prefill: raw dequantized centroid sums of vectors `[vec0, vec0 + nvec)` for the main columns, transposed into
/// `out` `[N, nvec·v]` (+ slack of 16 for the padded stores). Outlier columns are the caller's.
pub(super) struct DequantJob<'a> {
    pub vec0: usize,
    pub nvec: usize,
    pub out: &'a mut [f32],
}

impl Job for DequantJob<'_> {
    #[inline(always)]
    unsafe fn run<L: Lanes, C: Centroid<L>, RC: Centroid<L>, RI: Idx, const RES: bool>(
        self,
        p: &PreparedVq,
        cb: &[C],
        rcb: &[RC],
        ridx: &[RI],
        ls: &[f32],
    ) {
        let l = &p.layout;
        let (v, gs, k, kr, n, os) =
            (l.vector_len, l.group_size, l.num_centroids, l.num_res_centroids, l.in_features, l.outlier_size);
        let rows = self.nvec * v;
        assert!(self.vec0 + self.nvec <= p.ni_pad, "vq dequant: vector range");
        assert!(self.out.len() >= n * rows + L::W, "vq dequant: out");
        for c in 0..l.group_num {
            let cbc = &cb[c * k..(c + 1) * k];
            let rcbc = if RES { &rcb[c * kr..(c + 1) * kr] } else { &rcb[..0] };
            let base = (c * p.ni_pad + self.vec0) * gs;
            let irows = &p.idx[base..base + self.nvec * gs];
            let rrows = if RES { &ridx[base..base + self.nvec * gs] } else { &ridx[..0] };
            // SAFETY: forwarded contract.
            let scale = (!ls.is_empty()).then(|| unsafe { L::load_f32(&ls[c * L::W..]) });
            // Column-major order: an entry's padding lanes spill into the next vector's slots of the same column
            // or the first slots of the next column, both written after it, or into the slack after the last.
            for g in 0..gs {
                let col = &mut self.out[(os + c * gs + g) * rows..];
                for i in 0..self.nvec {
                    // SAFETY (both): forwarded contract.
                    let mut e = unsafe { cbc[irows[i * gs + g] as usize].load() };
                    if RES {
                        e = unsafe { e.add(rcbc[rrows[i * gs + g].get()].load()) };
                    }
                    if let Some(s) = scale {
                        // SAFETY: forwarded contract.
                        e = unsafe { e.mul(s) };
                    }
                    // SAFETY: forwarded contract; `store` bounds-checks its W lanes.
                    unsafe { e.store(&mut col[i * v..]) };
                }
            }
        }
    }
}

/// Picks concrete lane/codebook/index types for `$l4/$l8/$l16` and runs `$job` on `$p`.
macro_rules! select {
    ($p:expr, $job:expr, $l4:ty, $l8:ty, $l16:ty) => {
        match &$p.books {
            Books::W4(b) => select!(@kind $p, $job, b, $l4),
            Books::W8(b) => select!(@kind $p, $job, b, $l8),
            Books::W16(b) => select!(@kind $p, $job, b, $l16),
        }
    };
    (@kind $p:expr, $job:expr, $b:expr, $l:ty) => {
        match (&$b.main, &$b.res) {
            (BookW::F32(m), None) => $job.run::<$l, _, _, u8, false>($p, m, &m[..0], &[], &[]),
            (BookW::F16(m), None) => $job.run::<$l, _, _, u8, false>($p, m, &m[..0], &[], &[]),
            (BookW::Bf16(m), None) => $job.run::<$l, _, _, u8, false>($p, m, &m[..0], &[], &[]),
            (BookW::I8(m), None) => $job.run::<$l, _, _, u8, false>($p, m, &m[..0], &[], &$b.lane_scale),
            (BookW::F32(m), Some(BookW::F32(r))) => select!(@res $p, $job, m, r, &[], $l),
            (BookW::F16(m), Some(BookW::F16(r))) => select!(@res $p, $job, m, r, &[], $l),
            (BookW::Bf16(m), Some(BookW::Bf16(r))) => select!(@res $p, $job, m, r, &[], $l),
            (BookW::I8(m), Some(BookW::F32(r))) => select!(@res $p, $job, m, r, &$b.lane_scale, $l),
            _ => unreachable!("invariant: main and residual codebooks are prepared in one precision"),
        }
    };
    (@res $p:expr, $job:expr, $m:expr, $r:expr, $ls:expr, $l:ty) => {
        match &$p.ridx {
            ResIdx::U8(ri) => $job.run::<$l, _, _, u8, true>($p, $m, $r, ri, $ls),
            ResIdx::U16(ri) => $job.run::<$l, _, _, u16, true>($p, $m, $r, ri, $ls),
            ResIdx::None => unreachable!("invariant: a residual codebook comes with residual indices"),
        }
    };
}

/// Runs `job` with the best instruction set of this CPU that `p.isa` allows.
pub(super) fn dispatch<J: Job>(p: &PreparedVq, job: J) {
    #[cfg(target_arch = "x86_64")]
    {
        if p.isa == Isa::Best
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the features the function is compiled for were detected at run time.
            return unsafe { avx512(p, job) };
        }
        if p.isa != Isa::Portable
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: as above.
            return unsafe { avx2(p, job) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    if p.isa != Isa::Portable {
        use super::neon::Neon;
        // SAFETY: NEON is baseline on aarch64.
        return unsafe { select!(p, job, Neon<1>, Neon<2>, Neon<4>) };
    }
    // SAFETY: portable lanes need no CPU extension.
    unsafe { select!(p, job, Portable<4>, Portable<8>, Portable<16>) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2<J: Job>(p: &PreparedVq, job: J) {
    use super::lanes::Y2;
    use std::arch::x86_64::{__m128, __m256};
    // SAFETY: the x86 lanes need exactly the features this function is compiled for.
    unsafe { select!(p, job, __m128, __m256, Y2) }
}

/// The AVX2 kernels with AVX-512VL enabled: same instructions, EVEX-encoded, 32 vector registers.
///
/// # Safety
/// The CPU must support AVX-512F/VL, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
unsafe fn avx512<J: Job>(p: &PreparedVq, job: J) {
    use super::lanes::Y2;
    use std::arch::x86_64::{__m128, __m256};
    // SAFETY: as in `avx2`.
    unsafe { select!(p, job, __m128, __m256, Y2) }
}
