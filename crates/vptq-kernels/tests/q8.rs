//! int8 weights (`q8`): quantization error bounds, every SIMD dot against a scalar f64 reference over random
//! lengths, group sizes and group phases, and `matmul` (GEMV and prefill paths) against the reference matmul of
//! the dequantized weight (the GEMV within the rounding bound of its 15-bit activations; `tests/q8_gemv.rs` checks
//! the integer dots themselves).

use proptest::prelude::*;
use vptq_kernels::dense::{matmul, DenseWeight};
use vptq_kernels::q8::{q8_dot_impls, Q8Error, Q8Weight};
use vptq_kernels::q8_gemv::ACT_MAX;
use vptq_kernels::reference::matmul_ref;

mod common;

use common::rand_vec;

/// Element `i` of the stored weight, written from the definition `q · scale[i / group]`.
fn deq(w: &Q8Weight, i: usize) -> f32 {
    w.values()[i] as f32 * w.scales()[i / w.group()]
}

#[test]
fn quantization_is_absmax_symmetric() {
    let w = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.5, -3.0, 0.1];
    let q = Q8Weight::quantize(&w, 4).unwrap();
    assert_eq!(q.scales(), &[1.0 / 127.0, 0.0, 3.0 / 127.0]);
    assert_eq!(&q.values()[..4], &[64, -127, 32, 0]);
    assert_eq!(&q.values()[4..8], &[0, 0, 0, 0], "an all-zero group stays zero");
    assert_eq!(&q.values()[8..], &[127, 64, -127, 4]);
    // A last group shorter than `group`.
    let q = Q8Weight::quantize(&w[..10], 4).unwrap();
    assert_eq!(q.scales().len(), 3);
    assert_eq!(q.view().n_bytes(), 10 + 3 * 4);
}

#[test]
fn invalid_storage_is_rejected() {
    assert_eq!(Q8Weight::new(vec![0; 8], vec![1.0; 2], 0), Err(Q8Error::ZeroGroup));
    assert_eq!(Q8Weight::new(vec![0; 9], vec![1.0; 2], 4), Err(Q8Error::ScaleCount { expected: 3, got: 2 }));
    assert!(matches!(Q8Weight::new(vec![0; 8], vec![1.0, f32::NAN], 4), Err(Q8Error::BadScale { index: 1, .. })));
    assert!(matches!(Q8Weight::new(vec![0; 8], vec![f32::INFINITY, 1.0], 4), Err(Q8Error::BadScale { index: 0, .. })));
    assert!(matches!(Q8Weight::new(vec![0; 8], vec![1.0, -1.0], 4), Err(Q8Error::BadScale { index: 1, .. })));
    assert_eq!(Q8Weight::quantize(&[1.0, f32::NAN], 2), Err(Q8Error::NonFiniteWeight { index: 1 }));
    assert_eq!(Q8Weight::quantize(&[1.0], 0), Err(Q8Error::ZeroGroup));
    assert!(Q8Weight::new(vec![], vec![], 4).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quantization_error_is_at_most_half_a_step(n in 1usize..300, group in 1usize..80, seed in 0u64..1000) {
        let w: Vec<f32> = rand_vec(seed, n).iter().enumerate().map(|(i, v)| v * (1.0 + (i % 7) as f32)).collect();
        let q = Q8Weight::quantize(&w, group).unwrap();
        for (i, &x) in w.iter().enumerate() {
            let s = q.scales()[i / group];
            prop_assert!((deq(&q, i) - x).abs() <= s * 0.5 * (1.0 + 1e-5) + 1e-12, "element {}", i);
        }
        let mut out = vec![0f32; n];
        q.view().to_f32_range(0, &mut out);
        for (i, o) in out.iter().enumerate() {
            prop_assert_eq!(*o, deq(&q, i));
        }
    }

    #[test]
    fn every_dot_impl_matches_reference(
        len in 0usize..400, group in 1usize..200, phase_seed in 0usize..1000, seed in 0u64..1000,
    ) {
        let phase = phase_seed % group;
        let total = phase + len;
        let w = Q8Weight::quantize(&rand_vec(seed, total), group).unwrap();
        let x = rand_vec(seed + 5, len);
        let want: f64 = (0..len).map(|i| x[i] as f64 * deq(&w, phase + i) as f64).sum();
        let scale_sum: f64 = x.iter().map(|v| v.abs() as f64).sum::<f64>() + 1.0;
        let got_view = w.view().dot(&x, phase);
        prop_assert!((got_view as f64 - want).abs() <= 1e-5 * scale_sum, "view: {} vs {}", got_view, want);
        let scales = if len == 0 { &w.scales()[..0] } else { &w.scales()[..=(total - 1) / group] };
        for (name, dot) in q8_dot_impls() {
            let got = dot(&x, &w.values()[phase..], scales, group, phase);
            prop_assert!((got as f64 - want).abs() <= 1e-5 * scale_sum, "{}: {} vs {}", name, got, want);
        }
    }

    #[test]
    fn to_f32_range_matches_elements(
        n in 1usize..300, group in 1usize..70, a in 0usize..300, b in 0usize..300, seed in 0u64..1000,
    ) {
        let w = Q8Weight::quantize(&rand_vec(seed, n), group).unwrap();
        let start = a % n;
        let mut out = vec![0f32; b % (n - start) + 1];
        w.view().to_f32_range(start, &mut out);
        for (k, o) in out.iter().enumerate() {
            prop_assert_eq!(*o, deq(&w, start + k));
        }
    }

    #[test]
    fn matmul_q8_matches_reference(
        n in 1usize..12, inf in 1usize..150, outf in 1usize..300, per_row in any::<bool>(), group in 1usize..64,
        seed in 0u64..1000,
    ) {
        let x = rand_vec(seed, n * inf);
        let group = if per_row { inf } else { group };
        let w = Q8Weight::quantize(&rand_vec(seed + 1, outf * inf), group).unwrap();
        let dense: Vec<f32> = (0..outf * inf).map(|i| deq(&w, i)).collect();
        let mut y = vec![0f32; n * outf];
        matmul(&x, DenseWeight::Q8(w).view(), &mut y, n, inf, outf);
        let want = matmul_ref(&x, &dense, n, inf, outf);
        // The decode GEMV (up to 4 tokens) of weights whose rows each lie in one scale group (`group` a multiple
        // of `inf`, not only `per_row`) quantizes each token's activations to ±16383 steps (`q8_gemv`): an output
        // may move by half a step per unit of Σ|w|.
        let integer_gemv = n <= 4 && group % inf == 0;
        let act_step = |t: usize| x[t * inf..(t + 1) * inf].iter().fold(0f32, |m, v| m.max(v.abs())) / ACT_MAX;
        for t in 0..n {
            for o in 0..outf {
                let (g, w_) = (y[t * outf + o], want[t * outf + o]);
                let abs_w: f32 = dense[o * inf..(o + 1) * inf].iter().map(|v| v.abs()).sum();
                let act = if integer_gemv { 0.5 * act_step(t) * abs_w * 1.001 } else { 0.0 };
                prop_assert!((g - w_).abs() <= 1e-4 * (1.0 + w_.abs()) + act, "[{}, {}]: got {}, want {}", t, o, g, w_);
            }
        }
    }
}
