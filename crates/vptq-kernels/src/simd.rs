//! Dot products with run-time CPU feature dispatch.
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

/// Converts a run of half-precision weights to f32 in a fixed-size stack block, then dots.
macro_rules! dot_half_body {
    ($name:ident, $t:ty) => {
        #[inline(always)]
        fn $name<const FMA: bool>(x: &[f32], w: &[$t]) -> f32 {
            const BLOCK: usize = 256;
            let n = x.len().min(w.len());
            let mut buf = [0f32; BLOCK];
            let mut sum = 0f32;
            let mut start = 0;
            while start < n {
                let len = BLOCK.min(n - start);
                for (d, s) in buf[..len].iter_mut().zip(&w[start..start + len]) {
                    *d = s.to_f32();
                }
                sum += dot_f32_body::<FMA>(&x[start..start + len], &buf[..len]);
                start += len;
            }
            sum
        }
    };
}
dot_half_body!(dot_f16_body, f16);
dot_half_body!(dot_bf16_body, bf16);

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
dispatch!(dot_f16, dot_f16_body, f16);
dispatch!(dot_bf16, dot_bf16_body, bf16);

/// Converts half-precision values to f32 (`half` uses F16C when present).
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}

/// Converts bfloat16 values to f32.
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}
