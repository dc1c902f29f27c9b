//! Round-to-nearest quantizers for the simple 32-element ggml block types (Q8_0, Q4_0, Q4_1), used to build
//! small quantized GGUF fixtures and to test the dequantizers by round trip. Not tuned for quality: llama.cpp's
//! own quantizers search scales; these take the block's range as is.
//!
//! Each block's scale is rounded to f16 first and the quants are computed against the rounded scale, so that
//! dequantization reproduces every value to within one quantization step of its block.

use half::f16;

/// Elements per block of the types below.
const BLOCK: usize = 32;

fn to_f16(x: f32) -> (f16, f32) {
    let h = f16::from_f32(x);
    (h, h.to_f32())
}

fn check_len(values: &[f32], ty: &str) {
    assert!(
        values.len().is_multiple_of(BLOCK),
        "quantize_{ty}: {} values are not a whole number of {BLOCK}-value blocks",
        values.len()
    );
}

/// Quantizes to Q8_0 (per block: f16 scale `d = max|x| / 127`, 32 × i8 `round(x / d)`).
///
/// # Panics
/// If `values.len()` is not a multiple of 32.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    check_len(values, "q8_0");
    let mut out = Vec::with_capacity(values.len() / BLOCK * 34);
    for block in values.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let (d16, d) = to_f16(amax / 127.0);
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&d16.to_le_bytes());
        // `as i8` saturates (and maps NaN to 0), so out-of-range products cannot wrap.
        out.extend(block.iter().map(|&x| ((x * inv).round().clamp(-127.0, 127.0) as i8) as u8));
    }
    out
}

/// Quantizes to Q4_0 (per block: f16 scale `d = −x_max / 8` where `x_max` is the value of largest magnitude,
/// nibbles `round(x / d) + 8` clamped to 0..=15; value j in the low nibble of byte j, value j+16 in the high).
///
/// # Panics
/// If `values.len()` is not a multiple of 32.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    check_len(values, "q4_0");
    let mut out = Vec::with_capacity(values.len() / BLOCK * 18);
    for block in values.chunks_exact(BLOCK) {
        // Mapping the extreme value to q = 0 (−8·d) uses the asymmetric end of the signed 4-bit range.
        let x_max = block.iter().fold(0f32, |m, &x| if x.abs() > m.abs() { x } else { m });
        let (d16, d) = to_f16(x_max / -8.0);
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |x: f32| ((x * inv).round() + 8.0).clamp(0.0, 15.0) as u8;
        out.extend_from_slice(&d16.to_le_bytes());
        out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
    }
    out
}

/// Quantizes to Q4_1 (per block: f16 scale `d = (max − min) / 15`, f16 offset `m = min`, nibbles
/// `round((x − m) / d)` clamped to 0..=15, ordered as Q4_0).
///
/// # Panics
/// If `values.len()` is not a multiple of 32.
pub fn quantize_q4_1(values: &[f32]) -> Vec<u8> {
    check_len(values, "q4_1");
    let mut out = Vec::with_capacity(values.len() / BLOCK * 20);
    for block in values.chunks_exact(BLOCK) {
        let (min, max) = block.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let (m16, m) = to_f16(min);
        let (d16, d) = to_f16((max - min) / 15.0);
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |x: f32| ((x - m) * inv).round().clamp(0.0, 15.0) as u8;
        out.extend_from_slice(&d16.to_le_bytes());
        out.extend_from_slice(&m16.to_le_bytes());
        out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
    }
    out
}
