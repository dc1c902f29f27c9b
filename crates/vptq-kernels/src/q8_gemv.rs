//! Decode GEMV of int8 weights ([`crate::q8`]) against activations quantized to 15-bit integers.
//!
//! The f32 dot of `q8` widens every weight to f32 and spends three vector operations per 16 weights; on
//! SmolLM2's 28 MB head that ran at about 11 GB/s, a third of the host's read bandwidth, so it was compute
//! bound. Here the activation vector of a token is quantized once, `x ≈ s_x · x_q` with
//! `s_x = max|x| / 16383` and `x_q` integer in ±16383, and each row is an exact integer dot `Σ w_q · x_q`
//! scaled by `s_w · s_x` at the end. 15 bits keep the activation rounding error below 3·10⁻⁵ of `max|x|`,
//! far under the int8 weights' own error.
//!
//! AVX-512 VNNI multiplies unsigned by signed bytes (`vpdpbusd`), so the weights enter as `u = w_q + 128`
//! (one `vpxor` with 0x80) and `x_q = 128·h + l` is split into a signed high byte `h` and a low byte
//! `l ∈ [0, 127]`:  `Σ w_q·x_q = 128·Σ u·h + Σ u·l − 128·Σ x_q`, the last term one number per token. AVX2 widens
//! the weights to i16 and uses `vpmaddwd`; elsewhere a portable loop that LLVM vectorizes. Every path sums the
//! same integers exactly, so all of them return bit-identical results.

use crate::q8::Q8View;

/// Largest magnitude of a quantized activation: `128·127 + 127`, so the split into `h`, `l` fits bytes.
pub const ACT_MAX: f32 = 16383.0;

/// One token's activations, quantized for [`Q8View::gemv_act`]; `hi`, `lo` and `sum` serve the x86-64 VNNI path only.
#[derive(Debug, Clone)]
pub struct Q8Act {
    /// `x_q`, `|x_q| ≤ 16383`.
    q: Vec<i16>,
    /// High bytes `h = ⌊x_q / 128⌋` (floor), for the VNNI path.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    hi: Vec<i8>,
    /// Low bytes `l = x_q − 128·h ∈ [0, 127]`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    lo: Vec<i8>,
    /// `Σ x_q`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    sum: i64,
    /// `s_x`.
    scale: f32,
}

impl Q8Act {
    /// Quantizes `x`; `None` when an element is not finite (the caller keeps the f32 path, which propagates it).
    pub fn new(x: &[f32]) -> Option<Self> {
        if !x.iter().all(|v| v.is_finite()) {
            return None;
        }
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let inv = if amax > 0.0 { ACT_MAX / amax } else { 0.0 };
        let q: Vec<i16> = x.iter().map(|v| (v * inv).round().clamp(-ACT_MAX, ACT_MAX) as i16).collect();
        Some(Q8Act {
            hi: q.iter().map(|&v| (v >> 7) as i8).collect(),
            lo: q.iter().map(|&v| (v & 0x7f) as i8).collect(),
            sum: q.iter().map(|&v| v as i64).sum(),
            scale: amax / ACT_MAX,
            q,
        })
    }

    /// Number of activations.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// The quantized values `x_q`.
    pub fn values(&self) -> &[i16] {
        &self.q
    }

    /// `s_x`: `x ≈ s_x · x_q`.
    pub fn scale(&self) -> f32 {
        self.scale
    }
}

/// An exact integer dot implementation: `(act, w_q) → Σ w_q·x_q` (equal lengths).
pub type DotIntFn = fn(&Q8Act, &[i8]) -> i64;

impl Q8View<'_> {
    /// `out[r] = s_w · s_x · Σ w_q·x_q` over rows `row0 + r` of length `act.len()`; each row must lie in one
    /// group (the caller checks [`Q8View::group`]).
    ///
    /// # Panics
    /// If the rows are out of bounds.
    pub fn gemv_act(&self, act: &Q8Act, row0: usize, out: &mut [f32]) {
        let n = act.len();
        let w = &self.values()[row0 * n..(row0 + out.len()) * n];
        let mut ints = [0i64; 64];
        for (b, ob) in out.chunks_mut(ints.len()).enumerate() {
            let r0 = b * ints.len();
            let ib = &mut ints[..ob.len()];
            dot_int_rows(act, &w[r0 * n..(r0 + ob.len()) * n], ib);
            for (r, (o, &v)) in ob.iter_mut().zip(ib.iter()).enumerate() {
                let s = if n == 0 { 0.0 } else { self.scales()[(row0 + r0 + r) * n / self.group()] };
                *o = v as f32 * act.scale * s;
            }
        }
    }
}

/// `out[r] = Σ w_q·x_q` for the rows of `w` (`[out.len(), act.len()]`), with the best implementation here.
///
/// # Panics
/// If `w.len() != out.len() · act.len()`.
pub fn dot_int_rows(act: &Q8Act, w: &[i8], out: &mut [i64]) {
    assert_eq!(w.len(), out.len() * act.len(), "q8 dot_int_rows: lengths");
    #[cfg(target_arch = "x86_64")]
    {
        if vnni_detected() {
            // SAFETY: the features the function is compiled for were detected at run time.
            return unsafe { rows_vnni(act, w, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return each_row(act, w, out, |a, r| unsafe { dot_int_avx2(a, r) });
        }
    }
    each_row(act, w, out, dot_int_portable)
}

fn each_row(act: &Q8Act, w: &[i8], out: &mut [i64], dot: impl Fn(&Q8Act, &[i8]) -> i64) {
    if act.is_empty() {
        out.fill(0);
        return;
    }
    for (o, row) in out.iter_mut().zip(w.chunks_exact(act.len())) {
        *o = dot(act, row);
    }
}

#[cfg(target_arch = "x86_64")]
fn vnni_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Elements per i32 partial sum in the portable and AVX2 loops: `|w_q·x_q| ≤ 127·16383 < 2²¹`, and each i32
/// lane takes at most 2⁹ of them (2⁹ steps of one lane pair in AVX2, 2⁸ per lane of 16 lanes here).
const CHUNK: usize = 4096;

/// Portable: 16 i32 lanes per chunk, written so LLVM vectorizes the widening multiply (NEON on aarch64).
fn dot_int_portable(act: &Q8Act, w: &[i8]) -> i64 {
    const L: usize = 16;
    let mut total = 0i64;
    for (xs, ws) in act.q.chunks(CHUNK).zip(w.chunks(CHUNK)) {
        let mut lanes = [0i32; L];
        let mut xc = xs.chunks_exact(L);
        let mut wc = ws.chunks_exact(L);
        for (xa, wa) in (&mut xc).zip(&mut wc) {
            for l in 0..L {
                lanes[l] += xa[l] as i32 * wa[l] as i32;
            }
        }
        let tail: i32 = xc.remainder().iter().zip(wc.remainder()).map(|(&a, &b)| a as i32 * b as i32).sum();
        total += lanes.iter().map(|&v| v as i64).sum::<i64>() + tail as i64;
    }
    total
}

/// AVX2: 16 weights widened to i16 per step, `vpmaddwd` against `x_q`, two accumulators.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_int_avx2(act: &Q8Act, w: &[i8]) -> i64 {
    use std::arch::x86_64::*;
    let n = act.q.len().min(w.len());
    let (xp, wp) = (act.q.as_ptr(), w.as_ptr());
    let mut total = 0i64;
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let mut acc = [_mm256_setzero_si256(); 2];
        let mut i = start;
        while i + 32 <= end {
            for (j, a) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                // SAFETY: o + 16 ≤ end ≤ n: 16 i8 and 16 i16 lie inside `w` and `act.q`; the loads are unaligned.
                let (wv, xv) = unsafe {
                    (_mm_loadu_si128(wp.add(o) as *const __m128i), _mm256_loadu_si256(xp.add(o) as *const __m256i))
                };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_cvtepi8_epi16(wv), xv));
            }
            i += 32;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds exactly 8 i32.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, _mm256_add_epi32(acc[0], acc[1])) };
        total += lanes.iter().map(|&v| v as i64).sum::<i64>();
        total += (i..end).map(|k| act.q[k] as i64 * w[k] as i64).sum::<i64>();
        start = end;
    }
    total
}

/// Elements per VNNI partial sum: an i32 lane gains at most `4·255·128 < 2¹⁷` per 64-byte step, and the 16
/// lanes are summed in i32 too, so 2¹⁰ steps stay below 2³¹.
#[cfg(target_arch = "x86_64")]
const VNNI_CHUNK: usize = 64 << 10;

/// AVX-512 VNNI, one row after the other. Interleaving rows (2, 4 or 8 at a time, with or without software
/// prefetch) to break the `vpdpbusd` dependency chains was 1.7–3× slower on the 28 MB SmolLM2 head: the rows
/// then arrive as several streams and the reads fell from 24–27 GB/s to 9–14 (`examples/head_bench.rs`).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VNNI; `w.len() == out.len() · act.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn rows_vnni(act: &Q8Act, w: &[i8], out: &mut [i64]) {
    use std::arch::x86_64::*;
    let n = act.len();
    if n == 0 {
        out.fill(0);
        return;
    }
    let (hp, lp) = (act.hi.as_ptr(), act.lo.as_ptr());
    let flip = _mm512_set1_epi8(-128);
    let main = n / 64 * 64;
    // The correction 128·Σ x_q covers [0, main), like the vector sums; the rest of each row is summed exactly.
    let corr = 128 * (act.sum - act.q[main..].iter().map(|&v| v as i64).sum::<i64>());
    for (o, row) in out.iter_mut().zip(w.chunks_exact(n)) {
        let wp = row.as_ptr();
        let mut tot = 0i64;
        for start in (0..main).step_by(VNNI_CHUNK) {
            let (mut ah, mut al) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for i in (start..(start + VNNI_CHUNK).min(main)).step_by(64) {
                // SAFETY: i + 64 ≤ main ≤ n: 64 bytes lie inside `act.hi`, `act.lo` and `row`; the loads are
                // unaligned.
                let (wv, hv, lv) = unsafe {
                    (
                        _mm512_loadu_si512(wp.add(i) as *const _),
                        _mm512_loadu_si512(hp.add(i) as *const _),
                        _mm512_loadu_si512(lp.add(i) as *const _),
                    )
                };
                let u = _mm512_xor_si512(wv, flip);
                ah = _mm512_dpbusd_epi32(ah, u, hv);
                al = _mm512_dpbusd_epi32(al, u, lv);
            }
            tot += 128 * _mm512_reduce_add_epi32(ah) as i64 + _mm512_reduce_add_epi32(al) as i64;
        }
        let tail: i64 = (main..n).map(|k| act.q[k] as i64 * row[k] as i64).sum();
        *o = tot - corr + tail;
    }
}

/// One row with [`rows_vnni`], for the parity tests.
#[cfg(target_arch = "x86_64")]
fn dot_int_vnni(act: &Q8Act, w: &[i8]) -> i64 {
    let mut out = [0i64];
    // SAFETY: only called after `vnni_detected`; one row of `act.len()` elements.
    unsafe { rows_vnni(act, w, &mut out) };
    out[0]
}

/// Each implementation the CPU supports, by name, for parity tests.
#[doc(hidden)]
pub fn dot_int_impls() -> Vec<(&'static str, DotIntFn)> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut v: Vec<(&'static str, DotIntFn)> = vec![("portable", dot_int_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push(("avx2", |a, w| {
                // SAFETY: the feature was detected above.
                unsafe { dot_int_avx2(a, w) }
            }));
        }
        if vnni_detected() {
            v.push(("avx512vnni", dot_int_vnni));
        }
    }
    v
}
