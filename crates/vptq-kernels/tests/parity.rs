//! Every kernel against its scalar reference, over random shapes including odd sizes and tails.

use half::{bf16, f16};
use proptest::prelude::*;
use vptq_kernels::attn::{load_keys, scores_tiled, store_keys, values_weighted, KvElem, KEY_TILE};
use vptq_kernels::dense::{matmul, matmul_ab_strided, matmul_abt_strided, DenseWeight};
use vptq_kernels::ops::{rmsnorm, rope, silu_mul, softmax, RopeLayout};
use vptq_kernels::reference::*;

mod common;

use common::rand_vec;

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "index {i}: got {g}, want {w}");
    }
}

/// Scores of g query heads against m keys written into transposed tiles of `T` (g past 4 takes several sweeps),
/// and their weighted sums of m value rows (d up to 140 covers the 32-feature chunks and their tails). The
/// reference sees the keys and values rounded to `T` as the cache stores them.
fn grouped_kernels_case<T: KvElem>(m: usize, d: usize, g: usize, pad: usize, seed: u64) {
    let rs = d + pad;
    let k = rand_vec(seed, m * rs);
    let keys: Vec<f32> = (0..m).flat_map(|r| k[r * rs..r * rs + d].to_vec()).map(|x| T::from_f32(x).to_f32()).collect();
    let mut tiles = vec![T::from_f32(f32::NAN); m.div_ceil(KEY_TILE) * d * KEY_TILE];
    // Two appends, as a cache receives a prompt and then a token.
    let first = m / 2;
    store_keys(&mut tiles, d, 0, &k, rs, first);
    store_keys(&mut tiles, d, first, &k[first * rs..], rs, m - first);
    let mut back = vec![0f32; m * d];
    load_keys(&tiles, d, m, &mut back);
    assert_eq!(back, keys);

    let q = rand_vec(seed + 1, g * d);
    let w = m.div_ceil(KEY_TILE) * KEY_TILE;
    let mut scores = vec![0f32; g * w];
    scores_tiled(&q, d, &tiles, &mut scores);
    let want = matmul_ref(&q, &keys, g, d, m); // [g, m]
    let got: Vec<f32> = (0..g).flat_map(|h| scores[h * w..h * w + m].to_vec()).collect();
    assert_close(&got, &want, 1e-5);

    let v: Vec<T> = rand_vec(seed + 2, m * d).into_iter().map(T::from_f32).collect();
    let v32: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    let ps = m + pad;
    let p = rand_vec(seed + 3, g * ps);
    let start = rand_vec(seed + 4, g * d);
    let mut out = start.clone();
    values_weighted(&p, ps, m, &v, d, &mut out);
    let dense_p: Vec<f32> = (0..g).flat_map(|h| p[h * ps..h * ps + m].to_vec()).collect();
    let vt: Vec<f32> = (0..d).flat_map(|c| (0..m).map(|r| v32[r * d + c]).collect::<Vec<_>>()).collect();
    let want: Vec<f32> = matmul_ref(&dense_p, &vt, g, m, d).iter().zip(&start).map(|(a, b)| a + b).collect();
    assert_close(&out, &want, 1e-5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matmul_f32_matches_reference(n in 1usize..12, inf in 1usize..150, outf in 1usize..300, seed in 0u64..1000) {
        let x = rand_vec(seed, n * inf);
        let w = rand_vec(seed + 1, outf * inf);
        let mut y = vec![0f32; n * outf];
        matmul(&x, DenseWeight::F32(w.clone()).view(), &mut y, n, inf, outf);
        assert_close(&y, &matmul_ref(&x, &w, n, inf, outf), 1e-4);
    }

    #[test]
    fn matmul_half_matches_reference(n in 1usize..10, inf in 1usize..130, outf in 1usize..300, seed in 0u64..1000) {
        let x = rand_vec(seed, n * inf);
        let w = rand_vec(seed + 7, outf * inf);
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        let want_h = matmul_ref(&x, &wh.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), n, inf, outf);
        let want_b = matmul_ref(&x, &wb.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), n, inf, outf);
        let mut y = vec![0f32; n * outf];
        matmul(&x, DenseWeight::F16(wh).view(), &mut y, n, inf, outf);
        assert_close(&y, &want_h, 1e-4);
        matmul(&x, DenseWeight::Bf16(wb).view(), &mut y, n, inf, outf);
        assert_close(&y, &want_b, 1e-4);
    }

    #[test]
    fn attention_matmuls_match_reference(n in 1usize..9, m in 1usize..20, k in 1usize..70, pad in 0usize..5, seed in 0u64..1000) {
        let a_rs = k + pad;
        let a = rand_vec(seed, n * a_rs);
        let b = rand_vec(seed + 3, m * a_rs);
        let mut y = vec![0f32; n * m];
        matmul_abt_strided(&a, a_rs, &b, a_rs, &mut y, n, m, k);
        let dense_a: Vec<f32> = (0..n).flat_map(|r| a[r * a_rs..r * a_rs + k].to_vec()).collect();
        let dense_b: Vec<f32> = (0..m).flat_map(|r| b[r * a_rs..r * a_rs + k].to_vec()).collect();
        assert_close(&y, &matmul_ref(&dense_a, &dense_b, n, k, m), 1e-4);

        // P·V with V strided, written into a strided output.
        let p = rand_vec(seed + 5, n * m);
        let mut out = vec![0f32; n * a_rs];
        matmul_ab_strided(&p, &b, a_rs, &mut out, a_rs, n, m, k);
        let vt: Vec<f32> = (0..k).flat_map(|c| (0..m).map(|r| dense_b[r * k + c]).collect::<Vec<_>>()).collect();
        let want = matmul_ref(&p, &vt, n, m, k);
        let got: Vec<f32> = (0..n).flat_map(|r| out[r * a_rs..r * a_rs + k].to_vec()).collect();
        assert_close(&got, &want, 1e-4);
    }

    #[test]
    fn grouped_decode_attention_kernels_match_reference(
        m in 1usize..100, d in 1usize..140, g in 1usize..10, pad in 0usize..9, seed in 0u64..1000,
    ) {
        grouped_kernels_case::<f16>(m, d, g, pad, seed);
        grouped_kernels_case::<f32>(m, d, g, pad, seed);
    }

    #[test]
    fn rmsnorm_matches_reference(n in 1usize..5, dim in 1usize..300, seed in 0u64..1000) {
        let x = rand_vec(seed, n * dim);
        let w = rand_vec(seed + 1, dim);
        let mut out = vec![0f32; n * dim];
        rmsnorm(&x, &w, 1e-5, &mut out);
        assert_close(&out, &rmsnorm_ref(&x, &w, 1e-5), 1e-5);
    }

    #[test]
    fn rope_matches_reference(n in 1usize..6, heads in 1usize..4, half in 1usize..33, pos0 in 0usize..5000, seed in 0u64..1000) {
        let d = 2 * half;
        let x = rand_vec(seed, n * heads * d);
        let positions: Vec<usize> = (pos0..pos0 + n).collect();
        let base = 10000.0f64;
        let inv: Vec<f32> = (0..half).map(|i| base.powf(-(2.0 * i as f64) / d as f64) as f32).collect();
        for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
            let mut got = x.clone();
            rope(&mut got, &positions, heads, d, &inv, layout);
            assert_close(&got, &rope_ref(&x, &positions, heads, d, base, layout), 2e-4);
        }
    }

    #[test]
    fn softmax_and_silu_match_reference(len in 1usize..200, seed in 0u64..1000) {
        let x: Vec<f32> = rand_vec(seed, len).iter().map(|v| v * 30.0).collect();
        let mut s = x.clone();
        softmax(&mut s);
        assert_close(&s, &softmax_ref(&x), 1e-5);
        let up = rand_vec(seed + 9, len);
        let mut g = x.clone();
        silu_mul(&mut g, &up);
        assert_close(&g, &silu_mul_ref(&x, &up), 1e-5);
    }
}

/// The two RoPE layouts are the same rotation up to a fixed permutation of features (the GGUF q/k row
/// permutation): applying interleaved RoPE to permuted features equals permuting half-split output.
#[test]
fn rope_layouts_related_by_gguf_permutation() {
    let (heads, d) = (2, 8);
    let half = d / 2;
    let x = rand_vec(42, 3 * heads * d);
    let positions = [0usize, 5, 17];
    let inv: Vec<f32> = (0..half).map(|i| 10000f64.powf(-(2.0 * i as f64) / d as f64) as f32).collect();
    // hf feature (j·half + i) ↔ gguf feature (2i + j)
    let to_gguf = |v: &[f32]| -> Vec<f32> {
        let mut out = v.to_vec();
        for (t, chunk) in v.chunks(d).enumerate() {
            for j in 0..2 {
                for i in 0..half {
                    out[t * d + 2 * i + j] = chunk[j * half + i];
                }
            }
        }
        out
    };
    let mut hf = x.clone();
    rope(&mut hf, &positions, heads, d, &inv, RopeLayout::HalfSplit);
    let mut gg = to_gguf(&x);
    rope(&mut gg, &positions, heads, d, &inv, RopeLayout::Interleaved);
    assert_close(&gg, &to_gguf(&hf), 1e-6);
    // And the layouts are not interchangeable (a wrong layout would be caught).
    let mut wrong = to_gguf(&x);
    rope(&mut wrong, &positions, heads, d, &inv, RopeLayout::HalfSplit);
    assert!(wrong.iter().zip(&gg).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn softmax_all_masked_row_is_zero() {
    let mut x = vec![f32::NEG_INFINITY; 4];
    softmax(&mut x);
    assert_eq!(x, vec![0.0; 4]);
}

#[test]
fn exp_approx_is_within_a_few_ulp() {
    // The softmax's e^x against f64 exp over its whole useful range, ~2M points including both ends.
    let (lo, hi) = (-87.0f32, 88.0f32);
    let steps = 2_000_000;
    let mut worst = 0f64;
    for i in 0..=steps {
        let x = lo + (hi - lo) * i as f32 / steps as f32;
        let want = (x as f64).exp();
        let rel = ((vptq_kernels::exp_approx(x) as f64 - want) / want).abs();
        worst = worst.max(rel);
    }
    assert!(worst < 2.0 * f32::EPSILON as f64, "worst relative error {worst:e}");
    assert_eq!(vptq_kernels::exp_approx(0.0), 1.0);
    assert_eq!(vptq_kernels::exp_approx(-100.0), 0.0);
    assert_eq!(vptq_kernels::exp_approx(f32::NEG_INFINITY), 0.0);
}
