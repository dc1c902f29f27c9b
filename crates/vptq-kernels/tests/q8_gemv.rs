//! Integer GEMV of int8 weights on 15-bit activations (`q8_gemv`): activation rounding within half a step, every
//! integer dot exactly equal to the i64 sum over random lengths (64-byte steps and tails) and extreme values,
//! and rows scaled by both scales.

use proptest::prelude::*;
use vptq_kernels::q8::Q8Weight;
use vptq_kernels::q8_gemv::{dot_int_impls, dot_int_rows, Q8Act, ACT_MAX};

mod common;

use common::rand_vec;

/// Random int8 values covering the whole range, −128 included (a stored file may hold it).
fn rand_i8(seed: u64, n: usize) -> Vec<i8> {
    rand_vec(seed, n).iter().map(|v| (v * 128.0).floor().clamp(-128.0, 127.0) as i8).collect()
}

fn exact(act: &Q8Act, w: &[i8]) -> i64 {
    act.values().iter().zip(w).map(|(&a, &b)| a as i64 * b as i64).sum()
}

#[test]
fn non_finite_activations_are_refused() {
    assert!(Q8Act::new(&[1.0, f32::NAN]).is_none());
    assert!(Q8Act::new(&[f32::INFINITY]).is_none());
    let zero = Q8Act::new(&[0.0; 5]).unwrap();
    assert_eq!(zero.values(), &[0; 5]);
    assert_eq!(zero.scale(), 0.0);
}

#[test]
fn extremes_are_exact() {
    // Activations at ±max and weights at −128/127 everywhere: the largest products every path must carry.
    for n in [64, 128, 576, 4096, 4160, 9000, 70_000] {
        let x: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
        let act = Q8Act::new(&x).unwrap();
        assert!(act.values().iter().all(|v| v.unsigned_abs() == ACT_MAX as u16));
        for w in [vec![-128i8; n], vec![127i8; n], (0..n).map(|i| if i % 2 == 0 { -128 } else { 127 }).collect()] {
            for (name, dot) in dot_int_impls() {
                assert_eq!(dot(&act, &w), exact(&act, &w), "{name}, n = {n}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn activations_round_to_half_a_step(n in 1usize..300, seed in 0u64..1000, mag in -20i32..20) {
        let x: Vec<f32> = rand_vec(seed, n).iter().map(|v| v * 2f32.powi(mag)).collect();
        let act = Q8Act::new(&x).unwrap();
        let s = act.scale();
        for (i, (&v, &q)) in x.iter().zip(act.values()).enumerate() {
            prop_assert!(q.unsigned_abs() <= ACT_MAX as u16);
            // Half a step, plus the f32 rounding of `v / s` and of `s · q`.
            let tol = s * 0.5 + v.abs() * 4.0 * f32::EPSILON;
            prop_assert!((v - s * q as f32).abs() <= tol, "element {}: {} vs {}·{}", i, v, s, q);
        }
    }

    #[test]
    fn every_integer_dot_is_exact(n in 0usize..700, seed in 0u64..1000) {
        let act = Q8Act::new(&rand_vec(seed, n)).unwrap();
        let w = rand_i8(seed + 3, n);
        let want = exact(&act, &w);
        for (name, dot) in dot_int_impls() {
            prop_assert_eq!(dot(&act, &w), want, "{}", name);
        }
    }

    #[test]
    fn rows_and_gemv_act(rows in 0usize..150, n in 1usize..200, seed in 0u64..1000) {
        let x = rand_vec(seed, n);
        let act = Q8Act::new(&x).unwrap();
        let w = Q8Weight::quantize(&rand_vec(seed + 1, rows * n), n).unwrap();
        let mut ints = vec![0i64; rows];
        dot_int_rows(&act, w.values(), &mut ints);
        let mut y = vec![0f32; rows];
        w.view().gemv_act(&act, 0, &mut y);
        for r in 0..rows {
            let row = &w.values()[r * n..(r + 1) * n];
            prop_assert_eq!(ints[r], exact(&act, row), "row {}", r);
            let s = w.scales()[r];
            prop_assert_eq!(y[r], ints[r] as f32 * act.scale() * s);
            // Against the f32 activations: half an activation step per unit of Σ|w|.
            let want: f64 = row.iter().zip(&x).map(|(&q, &v)| q as f64 * s as f64 * v as f64).sum();
            let abs_w: f64 = row.iter().map(|&q| (q as f64 * s as f64).abs()).sum();
            let tol = (0.5 * act.scale() as f64 + 1e-6) * abs_w * 1.001 + 1e-6 * (1.0 + want.abs());
            prop_assert!((y[r] as f64 - want).abs() <= tol, "row {}: {} vs {}", r, y[r], want);
        }
    }
}
