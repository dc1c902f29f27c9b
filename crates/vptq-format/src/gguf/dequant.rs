//! Dequantization of ggml tensor types to f32: plain floats (F32, F16, BF16), the 32-element block types
//! (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) and the 256-element k-quant super-blocks (Q2_K … Q6_K, Q8_K).
//!
//! Block layouts follow ggml (`ggml-common.h`, little-endian). Each kernel walks whole blocks with
//! `chunks_exact`, so the per-element loops have fixed trip counts and no bounds checks to speak of; this runs
//! single-threaded over up to billions of values at model load, and callers parallelize over tensors or rows
//! (rows are always whole blocks). No dependency but `half`.

use super::{GgmlType, GgufError};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Elements per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

/// Whether [`dequantize`] handles `ty` (all types this crate knows do).
pub fn is_supported(ty: GgmlType) -> bool {
    GgmlType::ALL.contains(&ty)
}

/// Dequantizes `n_elements` values of type `ty` from `bytes` into a new vector.
///
/// # Errors
/// [`GgufError::NotBlockMultiple`] when `n_elements` is not a whole number of blocks,
/// [`GgufError::DataTooShort`] when `bytes` holds fewer than the blocks needed (extra bytes are ignored),
/// [`GgufError::UnsupportedTensorType`] for a type without a dequantizer.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    // Validate before allocating: `n_elements` may come from an untrusted caller-side computation.
    let need = needed_bytes(ty, n_elements)?;
    if bytes.len() < need {
        return Err(GgufError::DataTooShort { ty, need, have: bytes.len() });
    }
    let mut out = vec![0f32; n_elements];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dequantizes `out.len()` values of type `ty` from the start of `bytes` into `out`.
///
/// # Errors
/// As [`dequantize`], with `out.len()` as the element count.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    let need = needed_bytes(ty, out.len())?;
    let bytes = bytes.get(..need).ok_or(GgufError::DataTooShort { ty, need, have: bytes.len() })?;
    match ty {
        GgmlType::F32 => f32_le(bytes, out),
        GgmlType::F16 => f16_le(bytes, out),
        GgmlType::BF16 => bf16_le(bytes, out),
        GgmlType::Q4_0 => q4_0(bytes, out),
        GgmlType::Q4_1 => q4_1(bytes, out),
        GgmlType::Q5_0 => q5_0(bytes, out),
        GgmlType::Q5_1 => q5_1(bytes, out),
        GgmlType::Q8_0 => q8_0(bytes, out),
        GgmlType::Q8_1 => q8_1(bytes, out),
        GgmlType::Q2_K => q2_k(bytes, out),
        GgmlType::Q3_K => q3_k(bytes, out),
        GgmlType::Q4_K => q4_k(bytes, out),
        GgmlType::Q5_K => q5_k(bytes, out),
        GgmlType::Q6_K => q6_k(bytes, out),
        GgmlType::Q8_K => q8_k(bytes, out),
    }
    Ok(())
}

/// Bytes needed for `n_elements` values of `ty`, or the reason there is no such size.
fn needed_bytes(ty: GgmlType, n_elements: usize) -> Result<usize, GgufError> {
    if !is_supported(ty) {
        return Err(GgufError::UnsupportedTensorType { ty });
    }
    if !n_elements.is_multiple_of(ty.block_len()) {
        return Err(GgufError::NotBlockMultiple { ty, n_elements, block_len: ty.block_len() });
    }
    // A size beyond usize cannot be present either.
    ty.n_bytes(n_elements).ok_or(GgufError::DataTooShort { ty, need: usize::MAX, have: 0 })
}

/// An f16 stored little-endian at `b[i..i+2]`, as f32.
#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn f32_le(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

fn f16_le(bytes: &[u8], out: &mut [f32]) {
    // Decode through a small aligned stack buffer so that half's vectorized slice conversion (F16C where
    // available) can be used even though `bytes` has no alignment guarantee.
    const CHUNK: usize = 256;
    let mut buf = [f16::ZERO; CHUNK];
    for (ys, bs) in out.chunks_mut(CHUNK).zip(bytes.chunks(2 * CHUNK)) {
        let halves = &mut buf[..ys.len()];
        for (h, b) in halves.iter_mut().zip(bs.chunks_exact(2)) {
            *h = f16::from_le_bytes([b[0], b[1]]);
        }
        halves.convert_to_f32_slice(ys);
    }
}

fn bf16_le(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *y = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// Q4_0, 18 bytes per 32 values: f16 d, 16 bytes of nibbles. Byte j holds value j (low nibble) and value j+16
/// (high nibble), both offset by 8: x = (q - 8)·d.
fn q4_0(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let (lo, hi) = y.split_at_mut(16);
        for ((&q, a), c) in b[2..18].iter().zip(lo).zip(hi) {
            *a = ((q & 0xF) as i32 - 8) as f32 * d;
            *c = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1, 20 bytes per 32 values: f16 d, f16 m, nibbles as Q4_0 but unsigned: x = q·d + m.
fn q4_1(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let (lo, hi) = y.split_at_mut(16);
        for ((&q, a), c) in b[4..20].iter().zip(lo).zip(hi) {
            *a = (q & 0xF) as f32 * d + m;
            *c = (q >> 4) as f32 * d + m;
        }
    }
}

/// Q5_0, 22 bytes per 32 values: f16 d, u32 qh (bit i = fifth bit of value i), nibbles as Q4_0;
/// x = (q - 16)·d.
fn q5_0(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, ((&q, a), c)) in b[6..22].iter().zip(lo).zip(hi).enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            *a = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
            *c = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// Q5_1, 24 bytes per 32 values: f16 d, f16 m, u32 qh, nibbles; x = q·d + m with 5-bit q as in Q5_0.
fn q5_1(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(24).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, ((&q, a), c)) in b[8..24].iter().zip(lo).zip(hi).enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            *a = ((q & 0xF) as u32 | h0) as f32 * d + m;
            *c = ((q >> 4) as u32 | h1) as f32 * d + m;
        }
    }
}

/// Q8_0, 34 bytes per 32 values: f16 d, 32 × i8; x = q·d.
fn q8_0(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        for (&q, a) in b[2..34].iter().zip(y) {
            *a = (q as i8) as f32 * d;
        }
    }
}

/// Q8_1, 36 bytes per 32 values: f16 d, f16 s (= d·Σq, used only by dot products), 32 × i8; x = q·d.
fn q8_1(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(36).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        for (&q, a) in b[4..36].iter().zip(y) {
            *a = (q as i8) as f32 * d;
        }
    }
}

/// Q2_K, 84 bytes per 256 values: 16 scale bytes (low nibble scale, high nibble min, one per 16 values),
/// 64 bytes of 2-bit quants, f16 d, f16 dmin. Each half of 128 values uses 32 quant bytes four times (shifts
/// 0, 2, 4, 6); each shift covers 32 values, 16 from bytes 0..16 then 16 from bytes 16..32.
/// x = d·sc·q − dmin·m.
fn q2_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(84).zip(out.chunks_exact_mut(QK_K)) {
        let (scales, rest) = b.split_at(16);
        let (qs, dd) = rest.split_at(64);
        let (d, dmin) = (f16_at(dd, 0), f16_at(dd, 2));
        // 16 groups of 16 values, in output order; group g uses scale byte g.
        for (g, (ys, &sc)) in y.chunks_exact_mut(16).zip(scales).enumerate() {
            let (half, shift_i, part) = (g / 8, (g % 8) / 2, g % 2);
            let q = &qs[32 * half + 16 * part..][..16];
            let shift = 2 * shift_i;
            let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
            for (a, &q) in ys.iter_mut().zip(q) {
                *a = dl * ((q >> shift) & 3) as f32 - ml;
            }
        }
    }
}

/// Q3_K, 110 bytes per 256 values: 32 bytes hmask (third bit), 64 bytes of 2-bit quants, 12 bytes of 6-bit
/// signed scales (offset 32, one per 16 values), f16 d. Quants are ordered as in Q2_K; the high bit of value
/// group (half h, shift s) is bit 4h+s of hmask[l]; a clear bit subtracts 4. x = d·(sc−32)·q.
fn q3_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(110).zip(out.chunks_exact_mut(QK_K)) {
        let (hmask, rest) = b.split_at(32);
        let (qs, rest) = rest.split_at(64);
        let (packed, dd) = rest.split_at(12);
        let d = f16_at(dd, 0);
        for (g, ys) in y.chunks_exact_mut(16).enumerate() {
            let (half, shift_i, part) = (g / 8, (g % 8) / 2, g % 2);
            let q = &qs[32 * half + 16 * part..][..16];
            let hm = &hmask[16 * part..][..16];
            let (shift, bit) = (2 * shift_i, 1u8 << (4 * half + shift_i));
            let dl = d * q3_k_scale(packed, g) as f32;
            for ((a, &q), &h) in ys.iter_mut().zip(q).zip(hm) {
                let v = ((q >> shift) & 3) as i32 - if h & bit != 0 { 0 } else { 4 };
                *a = dl * v as f32;
            }
        }
    }
}

/// Scale `j` (0..16) of a Q3_K block: low 4 bits in nibble j%8 of bytes 0..8 (low nibbles first), high 2 bits
/// in bits 2·(j/4) of byte 8 + j%4; stored with offset 32.
#[inline(always)]
fn q3_k_scale(packed: &[u8], j: usize) -> i32 {
    let low = if j < 8 { packed[j] & 0xF } else { packed[j - 8] >> 4 };
    let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, 6 bits each in 12 bytes: sub-blocks 0..4 use
/// the low 6 bits of bytes j and j+4; sub-blocks 4..8 use the nibbles of byte j+4 plus the top 2 bits of bytes
/// j−4 (scale) and j (min).
#[inline(always)]
fn scale_min_k4(s: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    };
    (sc as f32, m as f32)
}

/// Q4_K, 144 bytes per 256 values: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles. Four chunks of 64
/// values; chunk c reads bytes 32c..32c+32: low nibbles give sub-block 2c, high nibbles sub-block 2c+1.
/// x = d·sc·q − dmin·m.
fn q4_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(144).zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        for (c, (q, ys)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(scales, 2 * c);
            let (sc2, m2) = scale_min_k4(scales, 2 * c + 1);
            let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
            let (lo, hi) = ys.split_at_mut(32);
            for ((&q, a), e) in q.iter().zip(lo).zip(hi) {
                *a = d1 * (q & 0xF) as f32 - m1;
                *e = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K, 176 bytes per 256 values: as Q4_K (d, dmin, 12 scale bytes) then 32 bytes qh and 128 bytes of
/// nibbles; the fifth bit of value l of chunk c is bit 2c (low half) or 2c+1 (high half) of qh[l].
fn q5_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(176).zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let qh = &b[16..48];
        for (c, (q, ys)) in b[48..176].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(scales, 2 * c);
            let (sc2, m2) = scale_min_k4(scales, 2 * c + 1);
            let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let (lo, hi) = ys.split_at_mut(32);
            for (((&q, &h), a), e) in q.iter().zip(qh).zip(lo).zip(hi) {
                let ql = (q & 0xF) + if h & u1 != 0 { 16 } else { 0 };
                let qhi = (q >> 4) + if h & u2 != 0 { 16 } else { 0 };
                *a = d1 * ql as f32 - m1;
                *e = d2 * qhi as f32 - m2;
            }
        }
    }
}

/// Q6_K, 210 bytes per 256 values: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 × i8 scales (one
/// per 16 values), f16 d last. Each half of 128 values uses 64 ql bytes, 32 qh bytes and 8 scales; value
/// l + 32k of a half takes nibble k/2 of ql[l + 32(k%2)] and bits 2k..2k+2 of qh[l]. x = d·sc·(q − 32).
fn q6_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 208);
        for (n, ys) in y.chunks_exact_mut(128).enumerate() {
            let ql = &b[64 * n..][..64];
            let qh = &b[128 + 32 * n..][..32];
            let sc = &b[192 + 8 * n..][..8];
            let (y01, y23) = ys.split_at_mut(64);
            let (y0, y1) = y01.split_at_mut(32);
            let (y2, y3) = y23.split_at_mut(32);
            for l in 0..32 {
                let is = l / 16;
                let h = qh[l];
                let q1 = ((ql[l] & 0xF) | ((h & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                y0[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                y1[l] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                y2[l] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                y3[l] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

/// Q8_K, 292 bytes per 256 values: f32 d, 256 × i8, 16 × i16 group sums (used only by dot products); x = q·d.
fn q8_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(292).zip(out.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (&q, a) in b[4..260].iter().zip(y) {
            *a = (q as i8) as f32 * d;
        }
    }
}
