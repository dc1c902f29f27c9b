//! Dot products and the softmax with run-time CPU feature dispatch.
//!
//! The loops are plain Rust written so LLVM vectorizes them; compiling the same body under
//! `#[target_feature]` gives AVX-512 / AVX2+FMA+F16C code on machines that have it while the binary still runs
//! on any x86-64 (and on aarch64, where NEON is baseline).

use half::{bf16, f16};

/// Lanes of the independent accumulators: enough to hide FMA latency on AVX-512.
const LANES: usize = 32;

/// `FMA` selects fused multiply-add: only compiled in where the CPU has it, since without hardware FMA
/// `mul_add` becomes a slow library call.
#[inline(always)]
fn dot_f32_body<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for c in 0..chunks {
        let xa = &a[c * LANES..c * LANES + LANES];
        let xb = &b[c * LANES..c * LANES + LANES];
        for l in 0..LANES {
            acc[l] = if FMA { xa[l].mul_add(xb[l], acc[l]) } else { acc[l] + xa[l] * xb[l] };
        }
    }
    let mut tail = 0f32;
    for i in chunks * LANES..n {
        tail += a[i] * b[i];
    }
    acc.iter().sum::<f32>() + tail
}

/// Widens a run of f16 weights (`half` uses F16C, detected once per call, for the whole slice).
#[inline(always)]
fn widen_f16(src: &[f16], dst: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}

/// Widens bf16 weights: a bf16 is the top half of an f32, so a shift that LLVM vectorizes.
#[inline(always)]
fn widen_bf16(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
}

/// Widens a block of half-precision weights to f32 on the stack, then dots: the block stays in L1, and the
/// conversion runs as whole-slice SIMD instead of per element.
macro_rules! dot_half_body {
    ($name:ident, $t:ty, $widen:ident) => {
        #[inline(always)]
        fn $name<const FMA: bool>(x: &[f32], w: &[$t]) -> f32 {
            const BLOCK: usize = 256;
            let n = x.len().min(w.len());
            let mut buf = [0f32; BLOCK];
            let mut sum = 0f32;
            let mut start = 0;
            while start < n {
                let len = BLOCK.min(n - start);
                $widen(&w[start..start + len], &mut buf[..len]);
                sum += dot_f32_body::<FMA>(&x[start..start + len], &buf[..len]);
                start += len;
            }
            sum
        }
    };
}
dot_half_body!(dot_f16_body, f16, widen_f16);
dot_half_body!(dot_bf16_body, bf16, widen_bf16);

/// f16 dot with explicit F16C conversion: `half`'s per-call conversion costs too much at GEMV row lengths.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_f16c(x: &[f32], w: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(w.len());
    let (xp, wp) = (x.as_ptr(), w.as_ptr() as *const u16);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 ≤ n, so 8 f16 (16 bytes) and 8 f32 are in bounds; unaligned loads.
            let (wv, xv) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(wp.add(i + 8 * j) as *const __m128i)),
                    _mm256_loadu_ps(xp.add(i + 8 * j)),
                )
            };
            *a = _mm256_fmadd_ps(xv, wv, *a);
        }
        i += 32;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds exactly 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let mut total: f32 = lanes.iter().sum();
    for k in i..n {
        total += x[k] * w[k].to_f32();
    }
    total
}

macro_rules! dispatch_f16 {
    () => {
        /// Dot product `Σ x[i]·w[i]` over f16 weights, accumulated in f32 (over the shorter length).
        pub fn dot_f16(x: &[f32], w: &[f16]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
                {
                    // SAFETY: the features the function is compiled for were detected at run time.
                    return unsafe { dot_f16_f16c(x, w) };
                }
            }
            dot_f16_body::<false>(x, w)
        }
    };
}

macro_rules! dispatch {
    ($pub_name:ident, $body:ident, $wt:ty) => {
        /// Dot product `Σ x[i]·w[i]` accumulated in f32 (over the shorter length).
        pub fn $pub_name(x: &[f32], w: &[$wt]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn avx512(x: &[f32], w: &[$wt]) -> f32 {
                    $body::<true>(x, w)
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn avx2(x: &[f32], w: &[$wt]) -> f32 {
                    $body::<true>(x, w)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("f16c")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features the function is compiled for were detected at run time.
                    return unsafe { avx512(x, w) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
                {
                    // SAFETY: as above.
                    return unsafe { avx2(x, w) };
                }
            }
            $body::<false>(x, w)
        }
    };
}
dispatch!(dot_f32, dot_f32_body, f32);
dispatch_f16!();
dispatch!(dot_bf16, dot_bf16_body, bf16);

/// Converts half-precision values to f32 (`half` uses F16C when present).
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}

/// Converts bfloat16 values to f32.
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    widen_bf16(src, dst);
}

/// `e^x` from f32 and integer arithmetic only, so that loops over it vectorize (libm's `expf` is one call per
/// element). `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2` (`ln 2` split in two parts so that `n·ln 2` is exact enough),
/// `e^r` by the Cephes degree-6 polynomial, and `2^n` written into the exponent bits. Within a few ulp of `exp`
/// from about −87.3 to 88.3; exactly 0 below −87.3 (a masked −∞ included), and `x` is clamped at 88.3 above
/// (the softmax only passes `x ≤ 0`).
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.min(88.3);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    // t's bits are those of 1.5·2^23 plus n; n + 127 is the biased exponent of 2^n (1…254 here).
    let pow2n = f32::from_bits(((t.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else {
        e_r * pow2n
    }
}

/// Lanes of the softmax's running maximum and sum.
const SOFTMAX_LANES: usize = 16;

#[inline(always)]
fn softmax_body(x: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; SOFTMAX_LANES];
    let mut chunks = x.chunks_exact(SOFTMAX_LANES);
    for c in &mut chunks {
        for l in 0..SOFTMAX_LANES {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let max = chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return f32::NEG_INFINITY;
    }
    let mut sums = [0f32; SOFTMAX_LANES];
    let mut chunks = x.chunks_exact_mut(SOFTMAX_LANES);
    for c in &mut chunks {
        for l in 0..SOFTMAX_LANES {
            c[l] = exp_approx(c[l] - max);
            sums[l] += c[l];
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_approx(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
    max + sum.ln()
}

/// In-place softmax of one row; entries equal to −∞ become 0, and a row of only −∞ becomes all 0. Returns the
/// row's log-sum-exp `ln Σ e^x` (−∞ for a row of only −∞), which merges softmaxes of parts of a row.
pub fn softmax_f32(x: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn avx512(x: &mut [f32]) -> f32 {
            softmax_body(x)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(x: &mut [f32]) -> f32 {
            softmax_body(x)
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features the function is compiled for were detected at run time.
            return unsafe { avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(x) };
        }
    }
    softmax_body(x)
}
