//! The SIMD vocabulary of the VQ kernels: a register of `W` f32 lanes ([`Lanes`]) and a codebook entry padded to
//! `W` elements that loads into one ([`Centroid`]), in f32, f16, bf16 or int8 (scaled per lane by the caller).
//!
//! One generic kernel body is compiled per instruction set: plain arrays (portable; LLVM vectorizes them for the
//! build's baseline), on x86-64 `__m128` / `__m256` / two `__m256` for W = 4 / 8 / 16 under AVX2+FMA+F16C (also
//! compiled with AVX-512VL enabled, which gives it 32 registers), and on aarch64 one, two or four NEON registers
//! (`super::neon`).

use half::{bf16, f16};

/// A codebook entry of `N` f16 values (bit patterns), padded with zeros past the vector length.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub(crate) struct F16s<const N: usize>(pub [u16; N]);

/// A codebook entry of `N` bf16 values (bit patterns), padded with zeros past the vector length.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub(crate) struct Bf16s<const N: usize>(pub [u16; N]);

/// A codebook entry of `N` int8 values, padded with zeros past the vector length; the per-lane scale is applied
/// to the accumulated sums, not to each entry.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(transparent)]
pub(crate) struct I8s<const N: usize>(pub [i8; N]);

/// `W` f32 lanes in registers.
///
/// Every method is `unsafe`: an implementation may use instructions of a CPU extension, and callers must only
/// use it in code running where that extension was detected (the portable one has no such requirement).
pub(crate) trait Lanes: Copy {
    /// Lanes per register.
    const W: usize;
    /// All zeros.
    unsafe fn zero() -> Self;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self;
    /// `self · x + acc`, lane-wise.
    unsafe fn mul_add(self, x: Self, acc: Self) -> Self;
    /// `self + o`, lane-wise.
    unsafe fn add(self, o: Self) -> Self;
    /// `self · o`, lane-wise.
    unsafe fn mul(self, o: Self) -> Self;
    /// Reads `s[..W]`.
    unsafe fn load_f32(s: &[f32]) -> Self;
    /// Writes the `W` lanes to `out[..W]`.
    unsafe fn store(self, out: &mut [f32]);
}

/// A padded codebook entry that widens into lanes `L`.
pub(crate) trait Centroid<L: Lanes>: Copy {
    /// Loads and widens the entry; same CPU requirement as `L`'s methods.
    unsafe fn load(&self) -> L;
}

/// An index element of the unpacked residual index arrays.
pub(crate) trait Idx: Copy + Send + Sync {
    /// The index as a position in the codebook.
    fn get(self) -> usize;
}

impl Idx for u8 {
    #[inline(always)]
    fn get(self) -> usize {
        self as usize
    }
}

impl Idx for u16 {
    #[inline(always)]
    fn get(self) -> usize {
        self as usize
    }
}

/// Hints the CPU to bring `r`'s cache line into L1: large codebooks are read at random, and the indices are
/// known ahead, so the gather latency can be overlapped.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    prefetch_ptr((r as *const T).cast());
}

/// Prefetches the cache line at `p` into L1 (any address: a prefetch never faults).
#[inline(always)]
pub(crate) fn prefetch_ptr(p: *const i8) {
    prefetch_hint::<3>(p);
}

/// Prefetches the cache line at `p` into L2 only (any address), leaving L1 to the data in use.
#[inline(always)]
pub(crate) fn prefetch_ptr_l2(p: *const i8) {
    prefetch_hint::<2>(p);
}

/// A prefetch with hint `H` (3: into L1; 2: into L2): `_mm_prefetch` T0/T1 on x86-64, `PRFM PLDL1KEEP/PLDL2KEEP`
/// on aarch64, nothing elsewhere.
#[inline(always)]
fn prefetch_hint<const H: i32>(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults; SSE is baseline on x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<H>(p);
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM never faults and writes nothing.
    unsafe {
        if H == 3 {
            std::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(nostack, readonly, preserves_flags));
        } else {
            std::arch::asm!("prfm pldl2keep, [{p}]", p = in(reg) p, options(nostack, readonly, preserves_flags));
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}

/// Portable lanes: a plain array that LLVM keeps in vector registers when the loops are unrolled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable<const N: usize>([f32; N]);

impl<const N: usize> Lanes for Portable<N> {
    const W: usize = N;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; N])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Portable([x; N])
    }
    #[inline(always)]
    unsafe fn mul_add(self, x: Self, acc: Self) -> Self {
        // Separate multiply and add: `mul_add` is a library call where the target has no FMA.
        Portable(std::array::from_fn(|l| acc.0[l] + self.0[l] * x.0[l]))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] + o.0[l]))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] * o.0[l]))
    }
    #[inline(always)]
    unsafe fn load_f32(s: &[f32]) -> Self {
        Portable(s[..N].try_into().expect("invariant: N lanes"))
    }
    #[inline(always)]
    unsafe fn store(self, out: &mut [f32]) {
        out[..N].copy_from_slice(&self.0);
    }
}

impl<const N: usize> Centroid<Portable<N>> for [f32; N] {
    #[inline(always)]
    unsafe fn load(&self) -> Portable<N> {
        Portable(*self)
    }
}

impl<const N: usize> Centroid<Portable<N>> for F16s<N> {
    #[inline(always)]
    unsafe fn load(&self) -> Portable<N> {
        Portable(std::array::from_fn(|l| f16::from_bits(self.0[l]).to_f32()))
    }
}

impl<const N: usize> Centroid<Portable<N>> for I8s<N> {
    #[inline(always)]
    unsafe fn load(&self) -> Portable<N> {
        Portable(std::array::from_fn(|l| f32::from(self.0[l])))
    }
}

impl<const N: usize> Centroid<Portable<N>> for Bf16s<N> {
    #[inline(always)]
    unsafe fn load(&self) -> Portable<N> {
        Portable(std::array::from_fn(|l| bf16::from_bits(self.0[l]).to_f32()))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::Y2;

/// x86-64 lanes. Each method's contract: AVX2, FMA and F16C are available (checked by the dispatcher).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Bf16s, Centroid, F16s, I8s, Lanes};
    use std::arch::x86_64::*;

    impl Lanes for __m128 {
        const W: usize = 4;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: SSE is baseline on x86-64.
            unsafe { _mm_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: SSE is baseline on x86-64.
            unsafe { _mm_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, x: Self, acc: Self) -> Self {
            // SAFETY: FMA is part of the caller's contract.
            unsafe { _mm_fmadd_ps(self, x, acc) }
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            // SAFETY: SSE is baseline on x86-64.
            unsafe { _mm_add_ps(self, o) }
        }
        #[inline(always)]
        unsafe fn mul(self, o: Self) -> Self {
            // SAFETY: SSE is baseline on x86-64.
            unsafe { _mm_mul_ps(self, o) }
        }
        #[inline(always)]
        unsafe fn load_f32(s: &[f32]) -> Self {
            let s = &s[..4];
            // SAFETY: `s` holds 4 f32; unaligned load.
            unsafe { _mm_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        unsafe fn store(self, out: &mut [f32]) {
            let out = &mut out[..4];
            // SAFETY: `out` holds 4 f32; unaligned store.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), self) }
        }
    }

    impl Lanes for __m256 {
        const W: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: AVX is part of the caller's contract.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: as above.
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, x: Self, acc: Self) -> Self {
            // SAFETY: FMA is part of the caller's contract.
            unsafe { _mm256_fmadd_ps(self, x, acc) }
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            // SAFETY: AVX is part of the caller's contract.
            unsafe { _mm256_add_ps(self, o) }
        }
        #[inline(always)]
        unsafe fn mul(self, o: Self) -> Self {
            // SAFETY: AVX is part of the caller's contract.
            unsafe { _mm256_mul_ps(self, o) }
        }
        #[inline(always)]
        unsafe fn load_f32(s: &[f32]) -> Self {
            let s = &s[..8];
            // SAFETY: `s` holds 8 f32; unaligned load; AVX is part of the caller's contract.
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        unsafe fn store(self, out: &mut [f32]) {
            let out = &mut out[..8];
            // SAFETY: `out` holds 8 f32; unaligned store; AVX is part of the caller's contract.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), self) }
        }
    }

    /// 16 lanes as two AVX registers (vector lengths 9–16).
    #[derive(Clone, Copy)]
    pub(crate) struct Y2(__m256, __m256);

    impl Lanes for Y2 {
        const W: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the caller's contract is the same as `__m256`'s.
            unsafe { Y2(__m256::zero(), __m256::zero()) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: as above.
            unsafe { Y2(__m256::splat(x), __m256::splat(x)) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, x: Self, acc: Self) -> Self {
            // SAFETY: as above.
            unsafe { Y2(self.0.mul_add(x.0, acc.0), self.1.mul_add(x.1, acc.1)) }
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            // SAFETY: as above.
            unsafe { Y2(self.0.add(o.0), self.1.add(o.1)) }
        }
        #[inline(always)]
        unsafe fn mul(self, o: Self) -> Self {
            // SAFETY: as above.
            unsafe { Y2(self.0.mul(o.0), self.1.mul(o.1)) }
        }
        #[inline(always)]
        unsafe fn load_f32(s: &[f32]) -> Self {
            let s = &s[..16];
            // SAFETY: as above; each half holds 8 f32.
            unsafe { Y2(__m256::load_f32(&s[..8]), __m256::load_f32(&s[8..])) }
        }
        #[inline(always)]
        unsafe fn store(self, out: &mut [f32]) {
            let (lo, hi) = out[..16].split_at_mut(8);
            // SAFETY: as above; each half holds 8 f32.
            unsafe {
                self.0.store(lo);
                self.1.store(hi);
            }
        }
    }

    impl Centroid<__m128> for [f32; 4] {
        #[inline(always)]
        unsafe fn load(&self) -> __m128 {
            // SAFETY: `self` is 4 f32; unaligned load.
            unsafe { _mm_loadu_ps(self.as_ptr()) }
        }
    }

    impl Centroid<__m128> for F16s<4> {
        #[inline(always)]
        unsafe fn load(&self) -> __m128 {
            // SAFETY: `self` is 8 bytes, exactly what `_mm_loadl_epi64` reads; F16C is part of the contract.
            unsafe { _mm_cvtph_ps(_mm_loadl_epi64(self.0.as_ptr() as *const __m128i)) }
        }
    }

    impl Centroid<__m128> for Bf16s<4> {
        #[inline(always)]
        unsafe fn load(&self) -> __m128 {
            // A bf16 is the upper half of an f32: zero-extend to 32 bits and shift.
            // SAFETY: `self` is 8 bytes, exactly what `_mm_loadl_epi64` reads; SSE4.1 is implied by AVX2.
            unsafe {
                let h = _mm_loadl_epi64(self.0.as_ptr() as *const __m128i);
                _mm_castsi128_ps(_mm_slli_epi32::<16>(_mm_cvtepu16_epi32(h)))
            }
        }
    }

    impl Centroid<__m128> for I8s<4> {
        #[inline(always)]
        unsafe fn load(&self) -> __m128 {
            // SAFETY: `self` is 4 bytes, exactly what `_mm_cvtsi32_si128` takes; SSE4.1 is implied by AVX2.
            unsafe {
                _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(i32::from_ne_bytes(self.0.map(|b| b as u8)))))
            }
        }
    }

    impl Centroid<__m256> for I8s<8> {
        #[inline(always)]
        unsafe fn load(&self) -> __m256 {
            // SAFETY: `self` is 8 bytes, exactly what `_mm_loadl_epi64` reads; AVX2 is part of the contract.
            unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(self.0.as_ptr() as *const __m128i))) }
        }
    }

    impl Centroid<Y2> for I8s<16> {
        #[inline(always)]
        unsafe fn load(&self) -> Y2 {
            // SAFETY: `self` is 16 bytes; unaligned load; AVX2 is part of the contract.
            unsafe {
                let b = _mm_loadu_si128(self.0.as_ptr() as *const __m128i);
                Y2(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)),
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(b, b))),
                )
            }
        }
    }

    impl Centroid<__m256> for [f32; 8] {
        #[inline(always)]
        unsafe fn load(&self) -> __m256 {
            // SAFETY: `self` is 8 f32; unaligned load; AVX is part of the contract.
            unsafe { _mm256_loadu_ps(self.as_ptr()) }
        }
    }

    impl Centroid<__m256> for F16s<8> {
        #[inline(always)]
        unsafe fn load(&self) -> __m256 {
            // SAFETY: `self` is 16 bytes; unaligned load; F16C is part of the contract.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(self.0.as_ptr() as *const __m128i)) }
        }
    }

    impl Centroid<__m256> for Bf16s<8> {
        #[inline(always)]
        unsafe fn load(&self) -> __m256 {
            // SAFETY: `self` is 16 bytes; unaligned load; AVX2 is part of the contract.
            unsafe {
                let h = _mm_loadu_si128(self.0.as_ptr() as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
    }

    /// The two 8-element halves of a 16-element entry.
    #[inline(always)]
    fn halves<T: Copy>(a: &[T; 16]) -> (&[T; 8], &[T; 8]) {
        let (lo, hi) = a.split_at(8);
        (lo.try_into().expect("invariant: 8 of 16"), hi.try_into().expect("invariant: 8 of 16"))
    }

    impl Centroid<Y2> for [f32; 16] {
        #[inline(always)]
        unsafe fn load(&self) -> Y2 {
            let (lo, hi) = halves(self);
            // SAFETY: same contract as the 8-lane loads.
            unsafe { Y2(lo.load(), hi.load()) }
        }
    }

    impl Centroid<Y2> for F16s<16> {
        #[inline(always)]
        unsafe fn load(&self) -> Y2 {
            let (lo, hi) = halves(&self.0);
            // SAFETY: same contract as the 8-lane loads.
            unsafe { Y2(F16s(*lo).load(), F16s(*hi).load()) }
        }
    }

    impl Centroid<Y2> for Bf16s<16> {
        #[inline(always)]
        unsafe fn load(&self) -> Y2 {
            let (lo, hi) = halves(&self.0);
            // SAFETY: same contract as the 8-lane loads.
            unsafe { Y2(Bf16s(*lo).load(), Bf16s(*hi).load()) }
        }
    }
}
