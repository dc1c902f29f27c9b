//! 8-bit dense weights for the embedding table and the LM head.
//!
//! Symmetric absmax quantization: the elements are cut into consecutive groups of `group` elements (a whole row
//! when `group == in_features`, the default the model crate uses), each group stores one f32 scale
//! `s = max|w| / 127` and the int8 values `q = round(w / s)`, and `w ≈ q · s`. Symmetric because the rows of an
//! embedding table are centred near zero, so an offset would cost a second number per group for little gain;
//! 127 rather than 128 so that −absmax is representable and the code range is symmetric.
//!
//! The GEMV reads 1 byte per weight instead of 2 (f16) or 4 (f32): on SmolLM2-135M (vocab 49152 × 576) the
//! tied head is 28 MB in int8, the largest single read of a decode step once the projections are 2-bit. The
//! dot product widens int8 to f32 in registers (AVX-512 or AVX2, detected at run time; a portable loop
//! elsewhere), accumulates each group in f32 and multiplies by the group's scale once. The decode GEMV uses
//! integer dots against 15-bit activations instead when each row lies in one group ([`crate::q8_gemv`]): the
//! f32 widening made the head compute bound. Prefill widens row tiles to f32 and uses the f32 GEMM
//! (`dense::matmul`).

use std::fmt;

/// Largest magnitude of a quantized value (symmetric range −127…127).
pub const Q8_MAX: f32 = 127.0;

/// Why a set of int8 values and scales does not form a valid [`Q8Weight`].
#[derive(Debug, Clone, PartialEq)]
pub enum Q8Error {
    /// `group` is zero.
    ZeroGroup,
    /// The number of scales is not `ceil(values / group)`.
    ScaleCount {
        /// Scales expected.
        expected: usize,
        /// Scales given.
        got: usize,
    },
    /// A scale is NaN, infinite or negative.
    BadScale {
        /// Index of the scale.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// A weight to quantize is NaN or infinite.
    NonFiniteWeight {
        /// Index of the element.
        index: usize,
    },
}

impl fmt::Display for Q8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Q8Error::ZeroGroup => write!(f, "int8 group size must be at least 1"),
            Q8Error::ScaleCount { expected, got } => {
                write!(f, "expected {expected} int8 scales (one per group), got {got}")
            }
            Q8Error::BadScale { index, value } => {
                write!(f, "int8 scale {index} is {value} (scales must be finite and non-negative)")
            }
            Q8Error::NonFiniteWeight { index } => write!(f, "weight element {index} is not finite"),
        }
    }
}

impl std::error::Error for Q8Error {}

/// Owned int8 weight with one f32 scale per group of `group` consecutive elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Q8Weight {
    values: Vec<i8>,
    scales: Vec<f32>,
    group: usize,
}

impl Q8Weight {
    /// Wraps stored values and scales: element `i` is `values[i] · scales[i / group]`.
    ///
    /// # Errors
    /// `group == 0`, a scale count other than `ceil(values.len() / group)`, or a scale that is not finite and
    /// non-negative (absmax scales never are; a negative one would only come from a damaged file).
    pub fn new(values: Vec<i8>, scales: Vec<f32>, group: usize) -> Result<Self, Q8Error> {
        if group == 0 {
            return Err(Q8Error::ZeroGroup);
        }
        let expected = values.len().div_ceil(group);
        if scales.len() != expected {
            return Err(Q8Error::ScaleCount { expected, got: scales.len() });
        }
        if let Some((index, &value)) = scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s >= 0.0)) {
            return Err(Q8Error::BadScale { index, value });
        }
        Ok(Q8Weight { values, scales, group })
    }

    /// Quantizes `w` with symmetric absmax scaling per group of `group` elements (an all-zero group gets scale
    /// 0 and zero values).
    ///
    /// # Errors
    /// `group == 0`, or a non-finite element (which no scale can represent).
    pub fn quantize(w: &[f32], group: usize) -> Result<Self, Q8Error> {
        if group == 0 {
            return Err(Q8Error::ZeroGroup);
        }
        if let Some(index) = w.iter().position(|x| !x.is_finite()) {
            return Err(Q8Error::NonFiniteWeight { index });
        }
        let mut values = vec![0i8; w.len()];
        let mut scales = Vec::with_capacity(w.len().div_ceil(group));
        for (src, dst) in w.chunks(group).zip(values.chunks_mut(group)) {
            let absmax = src.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = absmax / Q8_MAX;
            if scale > 0.0 {
                // Divide (not multiply by 1/scale) so the element equal to ±absmax lands exactly on ±127.
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = (s / scale).round().clamp(-Q8_MAX, Q8_MAX) as i8;
                }
            }
            scales.push(scale);
        }
        Ok(Q8Weight { values, scales, group })
    }

    /// Borrows the storage.
    pub fn view(&self) -> Q8View<'_> {
        Q8View { values: &self.values, scales: &self.scales, group: self.group }
    }

    /// The int8 values.
    pub fn values(&self) -> &[i8] {
        &self.values
    }

    /// One scale per group.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Elements per scale.
    pub fn group(&self) -> usize {
        self.group
    }
}

/// Borrowed int8 weight (see [`Q8Weight`]); only built from a validated [`Q8Weight`].
#[derive(Debug, Clone, Copy)]
pub struct Q8View<'a> {
    values: &'a [i8],
    scales: &'a [f32],
    group: usize,
}

impl<'a> Q8View<'a> {
    /// The int8 values.
    pub fn values(&self) -> &'a [i8] {
        self.values
    }

    /// One scale per group.
    pub fn scales(&self) -> &'a [f32] {
        self.scales
    }

    /// Elements per scale.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Bytes held: one per value plus four per scale.
    pub fn n_bytes(&self) -> usize {
        self.values.len() + self.scales.len() * 4
    }

    /// Element `i`, dequantized.
    ///
    /// # Panics
    /// If `i` is out of range.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        self.values[i] as f32 * self.scales[i / self.group]
    }

    /// Dequantizes elements `[start, start + out.len())` into `out`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn to_f32_range(&self, start: usize, out: &mut [f32]) {
        let vals = &self.values[start..start + out.len()];
        let mut done = 0;
        while done < out.len() {
            let pos = start + done;
            let len = (self.group - pos % self.group).min(out.len() - done);
            let s = self.scales[pos / self.group];
            for (o, &q) in out[done..done + len].iter_mut().zip(&vals[done..done + len]) {
                *o = q as f32 * s;
            }
            done += len;
        }
    }

    /// Dot product of `x` with elements `[start, start + x.len())`, accumulated in f32.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn dot(&self, x: &[f32], start: usize) -> f32 {
        let q = &self.values[start..start + x.len()];
        if x.is_empty() {
            return 0.0;
        }
        let g0 = start / self.group;
        let g1 = (start + x.len() - 1) / self.group;
        dot_q8(x, q, &self.scales[g0..=g1], self.group, start % self.group)
    }
}

/// `Σ x[i]·q[i]·s(i)` where element 0 sits at offset `phase` inside the group of `scales[0]`: the first group
/// covers `group − phase` elements, every later one `group`.
fn dot_q8(x: &[f32], q: &[i8], scales: &[f32], group: usize, phase: usize) -> f32 {
    debug_assert!(x.len() == q.len() && phase < group);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature the function is compiled for was detected at run time.
            return unsafe { dot_q8_avx512(x, q, scales, group, phase) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { dot_q8_avx2(x, q, scales, group, phase) };
        }
    }
    dot_q8_portable(x, q, scales, group, phase)
}

/// Calls `seg(start, len, scale)` for each group segment of a `n`-element run starting at `phase`.
#[inline(always)]
fn for_each_group(n: usize, scales: &[f32], group: usize, phase: usize, mut seg: impl FnMut(usize, usize, f32)) {
    let mut start = 0;
    let mut len = group - phase;
    for &s in scales {
        if start >= n {
            break;
        }
        let l = len.min(n - start);
        seg(start, l, s);
        start += l;
        len = group;
    }
}

/// Portable version, written so LLVM vectorizes the widening and the 16 independent lanes (NEON on aarch64).
fn dot_q8_portable(x: &[f32], q: &[i8], scales: &[f32], group: usize, phase: usize) -> f32 {
    const L: usize = 16;
    let n = x.len().min(q.len());
    let mut acc = [0f32; L];
    let mut tail = 0f32;
    for_each_group(n, scales, group, phase, |start, len, s| {
        let (xs, qs) = (&x[start..start + len], &q[start..start + len]);
        let mut part = [0f32; L];
        let mut xc = xs.chunks_exact(L);
        let mut qc = qs.chunks_exact(L);
        for (xa, qa) in (&mut xc).zip(&mut qc) {
            for l in 0..L {
                part[l] += xa[l] * qa[l] as f32;
            }
        }
        for l in 0..L {
            acc[l] += part[l] * s;
        }
        let t: f32 = xc.remainder().iter().zip(qc.remainder()).map(|(a, &b)| a * b as f32).sum();
        tail += t * s;
    });
    acc.iter().sum::<f32>() + tail
}

/// AVX-512: 16 int8 → 16 f32 per step, four independent accumulators per group. Written without closures so
/// every step is compiled with the function's target features and inlined.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_q8_avx512(x: &[f32], q: &[i8], scales: &[f32], group: usize, phase: usize) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(q.len());
    let (xp, qp) = (x.as_ptr(), q.as_ptr());
    let mut acc = _mm512_setzero_ps();
    let mut tail = 0f32;
    let (mut start, mut gi, mut seg) = (0, 0, group - phase);
    while start < n && gi < scales.len() {
        let len = seg.min(n - start);
        let mut p = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 16 <= len {
            let lanes = if i + 64 <= len { 4 } else { 1 };
            for (j, pj) in p.iter_mut().enumerate().take(lanes) {
                let o = start + i + 16 * j;
                // SAFETY: o + 16 ≤ start + len ≤ n, so 16 i8 (16 bytes) and 16 f32 lie inside `q` and `x`;
                // the loads are unaligned.
                let (xv, qv) = unsafe { (_mm512_loadu_ps(xp.add(o)), _mm_loadu_si128(qp.add(o) as *const __m128i)) };
                *pj = _mm512_fmadd_ps(xv, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(qv)), *pj);
            }
            i += 16 * lanes;
        }
        let s = scales[gi];
        let part = _mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3]));
        acc = _mm512_fmadd_ps(part, _mm512_set1_ps(s), acc);
        let mut t = 0f32;
        for k in start + i..start + len {
            t += x[k] * q[k] as f32;
        }
        tail += t * s;
        start += len;
        gi += 1;
        seg = group;
    }
    _mm512_reduce_add_ps(acc) + tail
}

/// AVX2 + FMA: 8 int8 → 8 f32 per step, four independent accumulators per group.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_avx2(x: &[f32], q: &[i8], scales: &[f32], group: usize, phase: usize) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(q.len());
    let (xp, qp) = (x.as_ptr(), q.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut tail = 0f32;
    let (mut start, mut gi, mut seg) = (0, 0, group - phase);
    while start < n && gi < scales.len() {
        let len = seg.min(n - start);
        let mut p = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= len {
            let lanes = if i + 32 <= len { 4 } else { 1 };
            for (j, pj) in p.iter_mut().enumerate().take(lanes) {
                let o = start + i + 8 * j;
                // SAFETY: o + 8 ≤ start + len ≤ n, so 8 i8 (8 bytes) and 8 f32 lie inside `q` and `x`; the loads
                // are unaligned.
                let (xv, qv) = unsafe { (_mm256_loadu_ps(xp.add(o)), _mm_loadl_epi64(qp.add(o) as *const __m128i)) };
                *pj = _mm256_fmadd_ps(xv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qv)), *pj);
            }
            i += 8 * lanes;
        }
        let s = scales[gi];
        let part = _mm256_add_ps(_mm256_add_ps(p[0], p[1]), _mm256_add_ps(p[2], p[3]));
        acc = _mm256_fmadd_ps(part, _mm256_set1_ps(s), acc);
        let mut t = 0f32;
        for k in start + i..start + len {
            t += x[k] * q[k] as f32;
        }
        tail += t * s;
        start += len;
        gi += 1;
        seg = group;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds exactly 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    lanes.iter().sum::<f32>() + tail
}

/// Which implementation [`Q8View::dot`] uses on this CPU (for benchmarks and tests).
pub fn q8_dot_impl() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "portable"
}

/// A dot implementation: `(x, q, scales, group, phase)`, element 0 at offset `phase` inside the group of
/// `scales[0]`.
pub type Q8DotFn = fn(&[f32], &[i8], &[f32], usize, usize) -> f32;

/// Each implementation the CPU supports, by name, for parity tests.
#[doc(hidden)]
pub fn q8_dot_impls() -> Vec<(&'static str, Q8DotFn)> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut v: Vec<(&'static str, Q8DotFn)> = vec![("portable", dot_q8_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            v.push(("avx2", |x, q, s, g, p| {
                // SAFETY: the features were detected above.
                unsafe { dot_q8_avx2(x, q, s, g, p) }
            }));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            v.push(("avx512", |x, q, s, g, p| {
                // SAFETY: the feature was detected above.
                unsafe { dot_q8_avx512(x, q, s, g, p) }
            }));
        }
    }
    v
}
