//! Decode attention over a grouped-query cache: the scores of a kv head's query heads against its keys, and
//! their weighted sum of its values, each key or value read once for the whole group.
//!
//! Keys are stored in tiles of [`KEY_TILE`] positions, each tile transposed (`[tiles, head_dim, KEY_TILE]`):
//! the scores of a tile are then `head_dim` broadcast FMAs over `KEY_TILE` lanes, with no lane sums, where
//! row-major keys need one horizontal sum per position and head. Values stay row-major (`[positions, head_dim]`):
//! the weighted sum is an FMA of a whole row per position. Both are stored as [`KvElem`]: f16 (half the bytes
//! of f32 to stream at long contexts) or f32, and widened in registers (`vcvtph2ps`) by the VQ kernels' lane types
//! (`vq_fast::lanes`): written as plain arrays, the widening kept LLVM from vectorizing the loops.

use crate::vq_fast::lanes::{Centroid, F16s, Lanes, Portable};
use half::f16;

/// Positions per key tile: four 8-lane registers per feature, so each query head has four independent FMA chains.
pub const KEY_TILE: usize = 32;

/// Lanes per register in these kernels (AVX2's width; with AVX-512VL enabled the same code gets 32 registers).
const W: usize = 8;

/// Query heads served per sweep: up to 16 accumulator registers, which fit in 32 without spills.
const MAX_GROUP: usize = 4;

/// Registers of output features per sweep over the values.
const VALUE_REGS: usize = 4;

/// Evaluates `$call` with the const `$g` equal to `$take` (1 to [`MAX_GROUP`]), so each group size gets its own
/// register-resident accumulators.
macro_rules! with_group {
    ($take:expr, $g:ident => $call:expr) => {
        match $take {
            4 => {
                const $g: usize = 4;
                $call
            }
            3 => {
                const $g: usize = 3;
                $call
            }
            2 => {
                const $g: usize = 2;
                $call
            }
            _ => {
                const $g: usize = 1;
                $call
            }
        }
    };
}

/// Eight cache entries viewed as a codebook-style entry `E` (`F16s<8>` or `[f32; 8]`), which widens into lanes.
#[inline(always)]
fn eight<T, E>(s: &[T]) -> &E {
    const { assert!(size_of::<E>() == W * size_of::<T>() && align_of::<E>() <= align_of::<T>()) };
    let s = &s[..W];
    // SAFETY: `E` is 8 `T`s in layout (`F16s<8>` is `repr(transparent)` over `[u16; 8]`, `f16` over `u16`), no
    // more aligned than `T` (checked above), and the slice holds 8 elements.
    unsafe { &*s.as_ptr().cast::<E>() }
}

/// `acc[h] += s[h] · x` for each of `G` heads, where `x` is the first `R·W` entries of `src` widened into lanes:
/// one load of a key-tile row or a value row serves the whole group.
///
/// # Safety
/// `L`'s CPU features must be present.
#[inline(always)]
unsafe fn accumulate<L: Lanes, T, E: Centroid<L>, const G: usize, const R: usize>(
    acc: &mut [[L; R]; G],
    src: &[T],
    s: [f32; G],
) {
    // SAFETY (this block): the caller's contract; loads are of whole entries.
    unsafe {
        let x: [L; R] = std::array::from_fn(|r| eight::<T, E>(&src[r * W..]).load());
        for (a, &s) in acc.iter_mut().zip(&s) {
            let s = L::splat(s);
            for (a, x) in a.iter_mut().zip(x) {
                *a = s.mul_add(x, *a);
            }
        }
    }
}

/// `out[g][j] = q[g] · key_j` for the positions of `tiles` (`[t, d, KEY_TILE]`); `q` is `[g, d]` and `out`
/// `[g, t·KEY_TILE]` (positions past the cache's length come out of whatever the tile holds there).
///
/// # Safety
/// `L`'s CPU features must be present.
#[inline(always)]
unsafe fn scores_body<L: Lanes, T: KvElem, E: Centroid<L>>(q: &[f32], d: usize, tiles: &[T], out: &mut [f32]) {
    let g = q.len() / d;
    let w = tiles.len() / d;
    let mut h0 = 0;
    while h0 < g {
        let take = (g - h0).min(MAX_GROUP);
        let (q, out) = (&q[h0 * d..(h0 + take) * d], &mut out[h0 * w..(h0 + take) * w]);
        // SAFETY: forwarded.
        unsafe { with_group!(take, G => scores_group::<L, T, E, G>(q, d, tiles, out)) }
        h0 += take;
    }
}

/// # Safety
/// As [`scores_body`].
#[inline(always)]
unsafe fn scores_group<L: Lanes, T: KvElem, E: Centroid<L>, const G: usize>(
    q: &[f32],
    d: usize,
    tiles: &[T],
    out: &mut [f32],
) {
    const R: usize = KEY_TILE / W;
    let w = out.len() / G;
    for (ti, tile) in tiles.chunks_exact(d * KEY_TILE).enumerate() {
        // SAFETY (this block): `L`'s features are present (the caller's contract); loads are of whole entries.
        unsafe {
            let mut acc = [[L::zero(); R]; G];
            for (c, keys) in tile.chunks_exact(KEY_TILE).enumerate() {
                accumulate::<L, T, E, G, R>(&mut acc, keys, std::array::from_fn(|hi| q[hi * d + c]));
            }
            for (hi, a) in acc.iter().enumerate() {
                for (r, a) in a.iter().enumerate() {
                    a.store(&mut out[hi * w + ti * KEY_TILE + r * W..]);
                }
            }
        }
    }
}

/// `out[g] += Σ_{j<m} p[g·ps + j] · v[j]` over rows of `v` (`[m, d]`); `out` is `[g, d]`.
///
/// # Safety
/// `L`'s CPU features must be present.
#[inline(always)]
unsafe fn values_body<L: Lanes, T: KvElem, E: Centroid<L>>(
    p: &[f32],
    ps: usize,
    m: usize,
    v: &[T],
    d: usize,
    out: &mut [f32],
) {
    let g = out.len().checked_div(d).unwrap_or(0);
    let mut h0 = 0;
    while h0 < g {
        let take = (g - h0).min(MAX_GROUP);
        let (p, out) = (&p[h0 * ps..], &mut out[h0 * d..(h0 + take) * d]);
        // SAFETY: forwarded.
        unsafe { with_group!(take, G => values_group::<L, T, E, G>(p, ps, m, d, v, out)) }
        h0 += take;
    }
}

/// # Safety
/// As [`values_body`].
#[inline(always)]
unsafe fn values_group<L: Lanes, T: KvElem, E: Centroid<L>, const G: usize>(
    p: &[f32],
    ps: usize,
    m: usize,
    d: usize,
    v: &[T],
    out: &mut [f32],
) {
    let mut c0 = 0;
    // SAFETY (these calls): forwarded.
    while d - c0 >= VALUE_REGS * W {
        unsafe { values_chunk::<L, T, E, G, VALUE_REGS>(p, ps, m, d, v, out, c0) };
        c0 += VALUE_REGS * W;
    }
    while d - c0 >= W {
        unsafe { values_chunk::<L, T, E, G, 1>(p, ps, m, d, v, out, c0) };
        c0 += W;
    }
    for j in 0..m {
        for (hi, o) in out.chunks_exact_mut(d).enumerate() {
            let pj = p[hi * ps + j];
            for (o, x) in o[c0..].iter_mut().zip(&v[j * d + c0..(j + 1) * d]) {
                *o += pj * x.to_f32();
            }
        }
    }
}

/// Features `c0..c0 + R·W` of `out[g] += Σ_j p[g][j] · v[j]`.
///
/// # Safety
/// As [`values_body`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn values_chunk<L: Lanes, T: KvElem, E: Centroid<L>, const G: usize, const R: usize>(
    p: &[f32],
    ps: usize,
    m: usize,
    d: usize,
    v: &[T],
    out: &mut [f32],
    c0: usize,
) {
    // SAFETY (this block): `L`'s features are present (the caller's contract); loads are of whole entries.
    unsafe {
        let mut acc = [[L::zero(); R]; G];
        for j in 0..m {
            accumulate::<L, T, E, G, R>(&mut acc, &v[j * d + c0..], std::array::from_fn(|hi| p[hi * ps + j]));
        }
        for (hi, a) in acc.iter().enumerate() {
            for (r, a) in a.iter().enumerate() {
                let o = &mut out[hi * d + c0 + r * W..];
                a.add(L::load_f32(o)).store(o);
            }
        }
    }
}

/// Compiles a kernel body for each instruction set and dispatches at run time: `$name` runs `$body` for cache
/// elements `$t` loaded as entries `$e`.
macro_rules! multiversion {
    ($name:ident, $body:ident, $t:ty, $e:ty, ($($a:ident: $at:ty),*)) => {
        fn $name($($a: $at),*) {
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::x86_64::__m256;
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn avx512($($a: $at),*) {
                    // SAFETY: the x86 lanes need exactly the features this function is compiled for.
                    unsafe { $body::<__m256, $t, $e>($($a),*) }
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn avx2($($a: $at),*) {
                    // SAFETY: as above.
                    unsafe { $body::<__m256, $t, $e>($($a),*) }
                }
                let base = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c");
                if base && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features the function is compiled for were detected at run time.
                    return unsafe { avx512($($a),*) };
                }
                if base {
                    // SAFETY: as above.
                    return unsafe { avx2($($a),*) };
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                // SAFETY: NEON is baseline on aarch64.
                return unsafe { $body::<crate::vq_fast::neon::Neon<2>, $t, $e>($($a),*) };
            }
            #[allow(unreachable_code)]
            // SAFETY: portable lanes need no CPU extension.
            unsafe { $body::<Portable<W>, $t, $e>($($a),*) }
        }
    };
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for f32 {}
}

/// An element type of the KV cache: `f16` (half the memory and the bytes decode streams) or `f32` (no rounding,
/// for comparing two computations of the same keys and values).
pub trait KvElem: sealed::Sealed + Copy + Send + Sync + std::fmt::Debug + 'static {
    /// Zero.
    const ZERO: Self;
    /// Rounds a value into the cache.
    fn from_f32(x: f32) -> Self;
    /// Reads a value back.
    fn to_f32(self) -> f32;
    /// [`scores_tiled`] for this element type.
    #[doc(hidden)]
    fn scores(q: &[f32], d: usize, tiles: &[Self], out: &mut [f32]);
    /// [`values_weighted`] for this element type.
    #[doc(hidden)]
    fn values(p: &[f32], p_stride: usize, m: usize, v: &[Self], d: usize, out: &mut [f32]);
}

macro_rules! kv_elem {
    ($t:ty, $e:ty, $zero:expr, $from:expr, $to:expr) => {
        impl KvElem for $t {
            const ZERO: Self = $zero;
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                $from(x)
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                $to(self)
            }
            fn scores(q: &[f32], d: usize, tiles: &[Self], out: &mut [f32]) {
                multiversion!(run, scores_body, $t, $e, (q: &[f32], d: usize, tiles: &[$t], out: &mut [f32]));
                run(q, d, tiles, out)
            }
            fn values(p: &[f32], p_stride: usize, m: usize, v: &[Self], d: usize, out: &mut [f32]) {
                multiversion!(run, values_body, $t, $e,
                    (p: &[f32], p_stride: usize, m: usize, v: &[$t], d: usize, out: &mut [f32]));
                run(p, p_stride, m, v, d, out)
            }
        }
    };
}

kv_elem!(f16, F16s<W>, f16::ZERO, f16::from_f32, f16::to_f32);
kv_elem!(f32, [f32; W], 0.0, std::convert::identity, std::convert::identity);

/// `out[g][j] = q[g] · key_j` for every position of the key tiles `tiles` (`[t, d, KEY_TILE]`, each tile
/// transposed); `q` is `[g, d]`, `out` `[g, t·KEY_TILE]`.
///
/// # Panics
/// If `out` is shorter than `[g, t·KEY_TILE]`.
pub fn scores_tiled<T: KvElem>(q: &[f32], d: usize, tiles: &[T], out: &mut [f32]) {
    T::scores(q, d, tiles, out)
}

/// `out[g] += Σ_{j<m} p[g·p_stride + j] · v[j]` over the first `m` rows of `v` (`[m, d]`); `out` is `[g, d]`: a
/// group's attention-weighted sums of one kv head's values.
///
/// # Panics
/// If `p` or `v` is too short for `g = out.len() / d` heads of `m` positions.
pub fn values_weighted<T: KvElem>(p: &[f32], p_stride: usize, m: usize, v: &[T], d: usize, out: &mut [f32]) {
    T::values(p, p_stride, m, v, d, out)
}

/// Writes `n` keys (row `i` at `k[i·stride..][..d]`, position `pos0 + i`) into key tiles (`[t, d, KEY_TILE]`),
/// which must already cover those positions.
pub fn store_keys<T: KvElem>(tiles: &mut [T], d: usize, pos0: usize, k: &[f32], stride: usize, n: usize) {
    for i in 0..n {
        let row = &k[i * stride..i * stride + d];
        let pos = pos0 + i;
        let base = pos / KEY_TILE * d * KEY_TILE + pos % KEY_TILE;
        for (c, &x) in row.iter().enumerate() {
            tiles[base + c * KEY_TILE] = T::from_f32(x);
        }
    }
}

/// Reads positions `0..len` of key tiles back as rows (`[len, d]`), for the prefill GEMMs.
pub fn load_keys<T: KvElem>(tiles: &[T], d: usize, len: usize, out: &mut [f32]) {
    for (pos, row) in out[..len * d].chunks_exact_mut(d).enumerate() {
        let base = pos / KEY_TILE * d * KEY_TILE + pos % KEY_TILE;
        for (c, x) in row.iter_mut().enumerate() {
            *x = tiles[base + c * KEY_TILE].to_f32();
        }
    }
}
