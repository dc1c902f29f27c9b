//! The algorithm, one file per step of vptq-spec.md §1. Nothing here does IO or sees a model: inputs are flat
//! row-major slices with their shapes said in the signature.
//!
//! | file | spec | what |
//! |---|---|---|
//! | `hessian.rs` | §1.2–1.4 | `H += XᵀX` accumulation, dead columns, damping, act-order permutation |
//! | `linalg.rs` | §1.3 | Cholesky, `H⁻¹`, upper Cholesky factor `U` of `H⁻¹` (the only file importing `gemm`) |
//! | `kmeans.rs` | §1.7 | Hessian-weighted k-means, the nearest-centroid search ([`kmeans::Codebook`]) |
//! | `vptq.rs` | §1.5, §1.8 | column-by-column error-feedback loop over a [`vptq::VectorQuantizer`] |
//! | `residual.rs` | §1.9 | two-stage greedy (main + residual) coding |
//! | `outlier.rs` | §1.6 | outlier block and groups: which codebook owns which column |
//! | `rng.rs` | | the seeded PRNG every random choice uses |
//! | `scalar.rs` | issue 3 (7) | baselines: round-to-nearest and GPTQ scalar quantization, per-group min/max grid |

/// Defines `$vis fn $name($args) -> $ret` that runs `$body::<true>` compiled for AVX-512 or AVX2+FMA where the
/// CPU has them (checked at run time), else the portable `$body::<false>`. The bodies are plain loops written
/// so LLVM vectorizes them; `true` selects `mul_add` (only fast where hardware FMA exists).
macro_rules! fma_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $body::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body::<true>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features the function is compiled for were detected at run time.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body::<false>($($arg),*)
        }
    };
}

pub mod hessian;
pub mod kmeans;
pub mod linalg;
pub mod outlier;
pub mod residual;
pub mod rng;
pub mod scalar;
pub mod vptq;
