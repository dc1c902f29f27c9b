//! Dequantization of every ggml type on hand-made blocks. Each test chooses the logical content (scales, mins,
//! quants per element), packs it into the block layout the way ggml's quantizers do, and checks every output
//! against the formula applied per element index, so the bit layout and the element order are both checked
//! independently of the kernels. Plus quantize → dequantize round trips and the error cases.

use half::{bf16, f16};
use vptq_format::gguf::{
    dequantize, dequantize_into, quantize_q4_0, quantize_q4_1, quantize_q8_0, GgmlType, GgufError,
};

/// Deterministic pseudo-random integers in `0..n` (a 64-bit LCG; tests need variety, not quality).
fn ints(seed: u64, len: usize, n: u32) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % n as u64) as u32
        })
        .collect()
}

fn h(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

#[track_caller]
fn check(ty: GgmlType, bytes: &[u8], expected: &[f32]) {
    assert_eq!(bytes.len(), ty.n_bytes(expected.len()).unwrap(), "{ty}: test block has the wrong size");
    let got = dequantize(ty, bytes, expected.len()).unwrap();
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "{ty}: element {i}: got {g}, expected {e}");
    }
}

#[test]
fn plain_floats() {
    let values = [0.0f32, -1.5, 3.25, 65504.0, -0.000061035156, 1e-3];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    check(GgmlType::F32, &f32_bytes, &values);

    let f16_exact = [0.0f32, -1.5, 3.25, 65504.0, -0.000061035156, 0.0009765625];
    let f16_bytes: Vec<u8> = f16_exact.iter().flat_map(|&x| h(x)).collect();
    check(GgmlType::F16, &f16_bytes, &f16_exact);
    // Longer than the kernel's internal chunk, with a tail.
    let long: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 8.0).collect();
    check(GgmlType::F16, &long.iter().flat_map(|&x| h(x)).collect::<Vec<_>>(), &long);

    let bf16_exact = [0.0f32, -1.5, 3.25, 1.0e30, -2.0e-30];
    let bf16_values: Vec<f32> = bf16_exact.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    let bf16_bytes: Vec<u8> = bf16_exact.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
    check(GgmlType::BF16, &bf16_bytes, &bf16_values);
}

/// Two 32-element blocks of a simple type: per block, header bytes then the packing of the 32 quants `q`.
/// Nibble types put element j (j < 16) in the low nibble of byte j and element j + 16 in the high nibble.
fn nibbles(q: &[u32]) -> Vec<u8> {
    (0..16).map(|j| (q[j] & 0xF) as u8 | (((q[j + 16] & 0xF) as u8) << 4)).collect()
}

/// The fifth bits of 32 quants as the u32 `qh` of Q5_0/Q5_1: bit i is element i's.
fn fifth_bits(q: &[u32]) -> [u8; 4] {
    q.iter().enumerate().fold(0u32, |acc, (i, &v)| acc | (((v >> 4) & 1) << i)).to_le_bytes()
}

#[test]
fn q4_0_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, d) in [0.5f32, -0.125].into_iter().enumerate() {
        let q = ints(b as u64, 32, 16);
        bytes.extend(h(d));
        bytes.extend(nibbles(&q));
        expected.extend(q.iter().map(|&v| (v as f32 - 8.0) * d));
    }
    check(GgmlType::Q4_0, &bytes, &expected);
}

#[test]
fn q4_1_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, (d, m)) in [(0.25f32, -1.5f32), (2.0, 3.0)].into_iter().enumerate() {
        let q = ints(10 + b as u64, 32, 16);
        bytes.extend(h(d));
        bytes.extend(h(m));
        bytes.extend(nibbles(&q));
        expected.extend(q.iter().map(|&v| v as f32 * d + m));
    }
    check(GgmlType::Q4_1, &bytes, &expected);
}

#[test]
fn q5_0_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, d) in [0.5f32, 0.0625].into_iter().enumerate() {
        let q = ints(20 + b as u64, 32, 32);
        bytes.extend(h(d));
        bytes.extend(fifth_bits(&q));
        bytes.extend(nibbles(&q));
        expected.extend(q.iter().map(|&v| (v as f32 - 16.0) * d));
    }
    check(GgmlType::Q5_0, &bytes, &expected);
}

#[test]
fn q5_1_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, (d, m)) in [(0.5f32, -4.0f32), (0.125, 1.0)].into_iter().enumerate() {
        let q = ints(30 + b as u64, 32, 32);
        bytes.extend(h(d));
        bytes.extend(h(m));
        bytes.extend(fifth_bits(&q));
        bytes.extend(nibbles(&q));
        expected.extend(q.iter().map(|&v| v as f32 * d + m));
    }
    check(GgmlType::Q5_1, &bytes, &expected);
}

#[test]
fn q8_0_and_q8_1_blocks() {
    for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
        let (mut bytes, mut expected) = (Vec::new(), Vec::new());
        for (b, d) in [0.125f32, -3.0].into_iter().enumerate() {
            let q: Vec<i8> = ints(40 + b as u64, 32, 256).iter().map(|&v| (v as i32 - 128) as i8).collect();
            bytes.extend(h(d));
            if ty == GgmlType::Q8_1 {
                bytes.extend(h(1234.0)); // the sum field, unused by dequantization
            }
            bytes.extend(q.iter().map(|&v| v as u8));
            expected.extend(q.iter().map(|&v| v as f32 * d));
        }
        check(ty, &bytes, &expected);
    }
}

/// The 12 scale bytes of Q4_K/Q5_K from eight 6-bit scales and mins, packed as ggml's quantizer does.
fn pack_k4_scales(sc: &[u32], m: &[u32]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (sc[j] as u8, m[j] as u8);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    s
}

#[test]
fn q2_k_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, (d, dmin)) in [(0.5f32, 0.25f32), (0.125, 1.0)].into_iter().enumerate() {
        let l = ints(50 + b as u64, 256, 4);
        let scales: Vec<u8> = ints(60 + b as u64, 16, 256).iter().map(|&v| v as u8).collect();
        let mut qs = [0u8; 64];
        for (half, base) in [0usize, 128].into_iter().enumerate() {
            for i in 0..32 {
                let v = |k: usize| l[base + i + 32 * k] as u8;
                qs[32 * half + i] = v(0) | (v(1) << 2) | (v(2) << 4) | (v(3) << 6);
            }
        }
        bytes.extend(&scales);
        bytes.extend(qs);
        bytes.extend(h(d));
        bytes.extend(h(dmin));
        expected.extend((0..256).map(|i| {
            let sc = scales[i / 16];
            d * (sc & 0xF) as f32 * l[i] as f32 - dmin * (sc >> 4) as f32
        }));
    }
    check(GgmlType::Q2_K, &bytes, &expected);
}

#[test]
fn q3_k_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, d) in [0.5f32, -0.25].into_iter().enumerate() {
        let l = ints(70 + b as u64, 256, 8); // stored quant; value = l − 4
        let sc = ints(80 + b as u64, 16, 64); // stored scale; value = sc − 32
        let mut scales = [0u8; 12];
        for (j, &s) in sc.iter().enumerate() {
            let s = s as u8;
            if j < 8 {
                scales[j] |= s & 0xF;
            } else {
                scales[j - 8] |= (s & 0xF) << 4;
            }
            scales[8 + j % 4] |= (s >> 4) << (2 * (j / 4));
        }
        let mut hmask = [0u8; 32];
        for (i, &v) in l.iter().enumerate() {
            if v > 3 {
                hmask[i % 32] |= 1 << (i / 32);
            }
        }
        let mut qs = [0u8; 64];
        for (half, base) in [0usize, 128].into_iter().enumerate() {
            for i in 0..32 {
                let v = |k: usize| (l[base + i + 32 * k] & 3) as u8;
                qs[32 * half + i] = v(0) | (v(1) << 2) | (v(2) << 4) | (v(3) << 6);
            }
        }
        bytes.extend(hmask);
        bytes.extend(qs);
        bytes.extend(scales);
        bytes.extend(h(d));
        expected.extend((0..256).map(|i| d * (sc[i / 16] as f32 - 32.0) * (l[i] as f32 - 4.0)));
    }
    check(GgmlType::Q3_K, &bytes, &expected);
}

#[test]
fn q4_k_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, (d, dmin)) in [(0.5f32, 0.25f32), (0.0625, 2.0)].into_iter().enumerate() {
        let l = ints(90 + b as u64, 256, 16);
        let (sc, m) = (ints(100 + b as u64, 8, 64), ints(110 + b as u64, 8, 64));
        let mut qs = [0u8; 128];
        for c in 0..4 {
            for i in 0..32 {
                qs[32 * c + i] = l[64 * c + i] as u8 | ((l[64 * c + 32 + i] as u8) << 4);
            }
        }
        bytes.extend(h(d));
        bytes.extend(h(dmin));
        bytes.extend(pack_k4_scales(&sc, &m));
        bytes.extend(qs);
        expected.extend((0..256).map(|i| d * sc[i / 32] as f32 * l[i] as f32 - dmin * m[i / 32] as f32));
    }
    check(GgmlType::Q4_K, &bytes, &expected);
}

#[test]
fn q5_k_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, (d, dmin)) in [(0.25f32, 0.5f32), (1.0, 0.125)].into_iter().enumerate() {
        let l = ints(120 + b as u64, 256, 32);
        let (sc, m) = (ints(130 + b as u64, 8, 64), ints(140 + b as u64, 8, 64));
        let (mut qh, mut qs) = ([0u8; 32], [0u8; 128]);
        for c in 0..4 {
            for i in 0..32 {
                let (lo, hi) = (l[64 * c + i] as u8, l[64 * c + 32 + i] as u8);
                qs[32 * c + i] = (lo & 0xF) | ((hi & 0xF) << 4);
                qh[i] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
            }
        }
        bytes.extend(h(d));
        bytes.extend(h(dmin));
        bytes.extend(pack_k4_scales(&sc, &m));
        bytes.extend(qh);
        bytes.extend(qs);
        expected.extend((0..256).map(|i| d * sc[i / 32] as f32 * l[i] as f32 - dmin * m[i / 32] as f32));
    }
    check(GgmlType::Q5_K, &bytes, &expected);
}

#[test]
fn q6_k_blocks() {
    let (mut bytes, mut expected) = (Vec::new(), Vec::new());
    for (b, d) in [0.5f32, -0.03125].into_iter().enumerate() {
        let l = ints(150 + b as u64, 256, 64); // stored quant; value = l − 32
        let sc: Vec<i8> = ints(160 + b as u64, 16, 256).iter().map(|&v| (v as i32 - 128) as i8).collect();
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for (half, base) in [0usize, 128].into_iter().enumerate() {
            for i in 0..32 {
                let v = |k: usize| l[base + i + 32 * k] as u8;
                ql[64 * half + i] = (v(0) & 0xF) | ((v(2) & 0xF) << 4);
                ql[64 * half + i + 32] = (v(1) & 0xF) | ((v(3) & 0xF) << 4);
                qh[32 * half + i] = (v(0) >> 4) | ((v(1) >> 4) << 2) | ((v(2) >> 4) << 4) | ((v(3) >> 4) << 6);
            }
        }
        bytes.extend(ql);
        bytes.extend(qh);
        bytes.extend(sc.iter().map(|&s| s as u8));
        bytes.extend(h(d));
        expected.extend((0..256).map(|i| d * sc[i / 16] as f32 * (l[i] as f32 - 32.0)));
    }
    check(GgmlType::Q6_K, &bytes, &expected);
}

#[test]
fn q8_k_block() {
    let d = 0.0078125f32;
    let q: Vec<i8> = ints(170, 256, 256).iter().map(|&v| (v as i32 - 128) as i8).collect();
    let mut bytes = d.to_le_bytes().to_vec();
    bytes.extend(q.iter().map(|&v| v as u8));
    bytes.extend([0u8; 32]); // group sums, unused by dequantization
    check(GgmlType::Q8_K, &bytes, &q.iter().map(|&v| v as f32 * d).collect::<Vec<_>>());
}

/// Values with a different range per block, including an all-zero block and a constant block.
fn test_values(n_blocks: usize) -> Vec<f32> {
    let mut v: Vec<f32> = ints(7, n_blocks * 32, 10_000).iter().map(|&x| x as f32 / 10_000.0 - 0.3).collect();
    for (b, block) in v.chunks_mut(32).enumerate() {
        let scale = [1.0f32, 0.01, 100.0, 3.0][b % 4];
        block.iter_mut().for_each(|x| *x *= scale);
    }
    v[..32].fill(0.0);
    v[32..64].fill(-2.5);
    v
}

#[test]
fn q8_0_round_trip_within_half_a_step() {
    let x = test_values(16);
    let bytes = quantize_q8_0(&x);
    let y = dequantize(GgmlType::Q8_0, &bytes, x.len()).unwrap();
    for (b, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
        let d = f16::from_le_bytes([bytes[34 * b], bytes[34 * b + 1]]).to_f32().abs();
        for (a, c) in xs.iter().zip(ys) {
            assert!((a - c).abs() <= 0.5 * d + 1e-6 * a.abs(), "block {b}: {a} vs {c} (d = {d})");
        }
    }
    assert!(y[..32].iter().all(|&v| v == 0.0));
}

#[test]
fn q4_0_round_trip_within_a_step() {
    let x = test_values(16);
    let bytes = quantize_q4_0(&x);
    let y = dequantize(GgmlType::Q4_0, &bytes, x.len()).unwrap();
    for (b, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
        let d = f16::from_le_bytes([bytes[18 * b], bytes[18 * b + 1]]).to_f32().abs();
        // Half a step, except a value opposite the extreme one, which the signed range clamps by one step.
        for (a, c) in xs.iter().zip(ys) {
            assert!((a - c).abs() <= d + 1e-6 * a.abs(), "block {b}: {a} vs {c} (d = {d})");
        }
    }
    assert!(y[..32].iter().all(|&v| v == 0.0));
}

#[test]
fn q4_1_round_trip_within_half_a_step() {
    let x = test_values(16);
    let bytes = quantize_q4_1(&x);
    let y = dequantize(GgmlType::Q4_1, &bytes, x.len()).unwrap();
    for (b, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
        let d = f16::from_le_bytes([bytes[20 * b], bytes[20 * b + 1]]).to_f32();
        let min = xs.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        // Half a step, plus the f16 rounding of the block minimum.
        let tol = 0.5 * d + min.abs() * 1e-3 + 1e-6;
        for (a, c) in xs.iter().zip(ys) {
            assert!((a - c).abs() <= tol, "block {b}: {a} vs {c} (d = {d})");
        }
    }
    assert_eq!(y[32..64], [-2.5; 32]);
}

#[test]
fn element_count_must_be_whole_blocks() {
    let e = dequantize(GgmlType::Q4_0, &[0; 64], 33).unwrap_err();
    assert_eq!(e, GgufError::NotBlockMultiple { ty: GgmlType::Q4_0, n_elements: 33, block_len: 32 });
    let e = dequantize_into(GgmlType::Q6_K, &[0; 420], &mut [0.0; 300]).unwrap_err();
    assert!(matches!(e, GgufError::NotBlockMultiple { .. }));
}

#[test]
fn data_must_cover_every_block() {
    let e = dequantize(GgmlType::Q4_1, &[0; 39], 64).unwrap_err();
    assert_eq!(e, GgufError::DataTooShort { ty: GgmlType::Q4_1, need: 40, have: 39 });
    // A huge element count with little data fails before allocating.
    let e = dequantize(GgmlType::F32, &[0; 8], usize::MAX / 8).unwrap_err();
    assert!(matches!(e, GgufError::DataTooShort { .. }));
    let e = dequantize(GgmlType::F32, &[0; 8], usize::MAX).unwrap_err();
    assert!(matches!(e, GgufError::DataTooShort { .. }));
    // Extra bytes are ignored, and zero elements need no bytes.
    assert_eq!(dequantize(GgmlType::F32, &[0; 9], 2).unwrap(), [0.0, 0.0]);
    assert!(dequantize(GgmlType::Q4_K, &[], 0).unwrap().is_empty());
}

#[test]
fn every_known_type_is_supported() {
    for ty in GgmlType::ALL {
        assert!(vptq_format::gguf::is_supported(ty), "{ty}");
        assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        let bytes = vec![0u8; ty.block_bytes() * 2];
        let y = dequantize(ty, &bytes, ty.block_len() * 2).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{ty}: zero blocks must give zeros");
    }
}
