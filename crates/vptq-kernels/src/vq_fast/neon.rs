//! aarch64 lanes: [`Neon<M>`] holds `4·M` f32 lanes in `M` NEON registers (W = 4, 8, 16 for M = 1, 2, 4).
//!
//! NEON is part of the aarch64 baseline, so these need no run-time detection. f16 entries widen with `FCVTL`
//! (base ARMv8 AdvSIMD) through `asm!`: the intrinsic's `float16x4_t` argument type is not stable Rust.

// Which intrinsics count as safe to call depends on the compiler release (target-feature 1.1); the unsafe
// blocks are kept so the code builds warning-free on releases either side of that change.
#![allow(unused_unsafe)]

use super::lanes::{Bf16s, Centroid, F16s, I8s, Lanes};
use std::arch::aarch64::*;
use std::arch::asm;

/// `4·M` f32 lanes as `M` NEON registers.
#[derive(Clone, Copy)]
pub(crate) struct Neon<const M: usize>([float32x4_t; M]);

impl<const M: usize> Lanes for Neon<M> {
    const W: usize = 4 * M;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: NEON is baseline on aarch64.
        Neon([unsafe { vdupq_n_f32(0.0) }; M])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: as above.
        Neon([unsafe { vdupq_n_f32(x) }; M])
    }
    #[inline(always)]
    unsafe fn mul_add(self, x: Self, acc: Self) -> Self {
        // SAFETY: as above.
        Neon(std::array::from_fn(|i| unsafe { vfmaq_f32(acc.0[i], self.0[i], x.0[i]) }))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: as above.
        Neon(std::array::from_fn(|i| unsafe { vaddq_f32(self.0[i], o.0[i]) }))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        // SAFETY: as above.
        Neon(std::array::from_fn(|i| unsafe { vmulq_f32(self.0[i], o.0[i]) }))
    }
    #[inline(always)]
    unsafe fn load_f32(s: &[f32]) -> Self {
        let s = &s[..4 * M];
        // SAFETY: `s` holds 4·M f32, 4 per unaligned load.
        Neon(std::array::from_fn(|i| unsafe { vld1q_f32(s[4 * i..].as_ptr()) }))
    }
    #[inline(always)]
    unsafe fn store(self, out: &mut [f32]) {
        let out = &mut out[..4 * M];
        for (i, r) in self.0.into_iter().enumerate() {
            // SAFETY: `out` holds 4·M f32, 4 per unaligned store.
            unsafe { vst1q_f32(out[4 * i..].as_mut_ptr(), r) };
        }
    }
}

/// Widens four f16 bit patterns to f32.
#[inline(always)]
fn f16x4(h: uint16x4_t) -> float32x4_t {
    let f: float32x4_t;
    // SAFETY: FCVTL reads and writes registers only; AdvSIMD is baseline on aarch64.
    unsafe { asm!("fcvtl {f:v}.4s, {h:v}.4h", f = lateout(vreg) f, h = in(vreg) h, options(pure, nomem, nostack)) };
    f
}

/// Widens four bf16 bit patterns to f32: a bf16 is the upper half of an f32.
#[inline(always)]
fn bf16x4(h: uint16x4_t) -> float32x4_t {
    // SAFETY: register-only intrinsics; NEON is baseline on aarch64.
    unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(h)) }
}

/// Widens eight int8 values to two registers of f32.
#[inline(always)]
fn i8x8(b: int8x8_t) -> [float32x4_t; 2] {
    // SAFETY: register-only intrinsics; NEON is baseline on aarch64.
    unsafe {
        let h = vmovl_s8(b);
        [vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))), vcvtq_f32_s32(vmovl_high_s16(h))]
    }
}

/// Implements [`Centroid`] for the f32, f16 and bf16 entries of `$n = 4·$m` elements, 4 per register.
macro_rules! float_entries {
    ($($n:literal => $m:literal),*) => {$(
        impl Centroid<Neon<$m>> for [f32; $n] {
            #[inline(always)]
            unsafe fn load(&self) -> Neon<$m> {
                // SAFETY: the entry holds 4·M f32, 4 per unaligned load.
                Neon(std::array::from_fn(|i| unsafe { vld1q_f32(self[4 * i..].as_ptr()) }))
            }
        }

        impl Centroid<Neon<$m>> for F16s<$n> {
            #[inline(always)]
            unsafe fn load(&self) -> Neon<$m> {
                // SAFETY: the entry holds 4·M u16, 4 per unaligned load.
                Neon(std::array::from_fn(|i| f16x4(unsafe { vld1_u16(self.0[4 * i..].as_ptr()) })))
            }
        }

        impl Centroid<Neon<$m>> for Bf16s<$n> {
            #[inline(always)]
            unsafe fn load(&self) -> Neon<$m> {
                // SAFETY: as above.
                Neon(std::array::from_fn(|i| bf16x4(unsafe { vld1_u16(self.0[4 * i..].as_ptr()) })))
            }
        }
    )*};
}

float_entries!(4 => 1, 8 => 2, 16 => 4);

impl Centroid<Neon<1>> for I8s<4> {
    #[inline(always)]
    unsafe fn load(&self) -> Neon<1> {
        let bits = u32::from_ne_bytes(self.0.map(|b| b as u8));
        // SAFETY: register-only intrinsic; the upper four bytes are zero and their lanes are dropped.
        Neon([i8x8(unsafe { vcreate_s8(u64::from(bits)) })[0]])
    }
}

impl Centroid<Neon<2>> for I8s<8> {
    #[inline(always)]
    unsafe fn load(&self) -> Neon<2> {
        // SAFETY: the entry holds 8 bytes, what `vld1_s8` reads.
        Neon(i8x8(unsafe { vld1_s8(self.0.as_ptr()) }))
    }
}

impl Centroid<Neon<4>> for I8s<16> {
    #[inline(always)]
    unsafe fn load(&self) -> Neon<4> {
        // SAFETY: the entry holds 16 bytes, what two `vld1_s8` read.
        let [a, b] = i8x8(unsafe { vld1_s8(self.0.as_ptr()) });
        let [c, d] = i8x8(unsafe { vld1_s8(self.0[8..].as_ptr()) });
        Neon([a, b, c, d])
    }
}
