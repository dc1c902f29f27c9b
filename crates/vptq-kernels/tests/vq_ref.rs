//! VPTQ kernel parity: a hand-computed case pins the semantics of §2.4 (padding, perm direction, scale/offset);
//! then for many layouts (residual widths, padding, groups, outliers, perm on/off, norm on/off, f32/f16/bf16
//! codebooks) the step-by-step `dequantize_ref`, the fused `gemv_vq_ref`, the banded `dequantize_rows` and
//! `matmul_vq` must agree.

use half::{bf16, f16};
use vptq_format::hf::HalfOrFloat;
use vptq_format::vptq::{pack_indices, VqLayout, VqTensors};
use vptq_kernels::reference::matmul_ref;
use vptq_kernels::vq::{dequantize_ref, dequantize_rows, gemv_vq_ref, matmul_vq, VqView};

#[test]
fn hand_computed_small_layer() {
    // M = 3, N = 2, v = 2 (one padding row), k = 2, perm = [1, 0], scale = [2, 3], offset = [10, 20].
    let layout = VqLayout {
        in_features: 2,
        out_features: 3,
        vector_len: 2,
        num_centroids: 2,
        num_res_centroids: 0,
        group_num: 1,
        group_size: 2,
        outlier_size: 0,
        outlier_vector_len: 0,
        outlier_num_centroids: 0,
        enable_norm: true,
        enable_perm: true,
        bias: false,
    };
    let t = VqTensors {
        layout,
        centroids: HalfOrFloat::F32(vec![1.0, 2.0, 3.0, 4.0]), // c0 = [1, 2], c1 = [3, 4]
        res_centroids: None,
        // 1-bit indices, one word per row: row 0 = (q0 → c1, q1 → c0), row 1 = (q0 → c0, q1 → c1).
        indices: vec![0b01, 0b10],
        perm: Some(vec![1, 0]),
        weight_scale: Some(vec![2.0, 3.0]),
        weight_bias: Some(vec![10.0, 20.0]),
        bias: None,
        outlier_centroids: None,
        outlier_indices: None,
    };
    t.validate().unwrap();
    let view = VqView::new(&t);
    // Wp = [[3, 1], [4, 2], [1, 3]] (padding row dropped); Ŵ[:, perm[q]] = Wp[:, q] → [[1, 3], [2, 4], [3, 1]];
    // then column 0 · 2 + 10, column 1 · 3 + 20.
    let want = [12.0, 29.0, 14.0, 32.0, 16.0, 23.0];
    assert_eq!(dequantize_ref(&view), want);
    let y = gemv_vq_ref(&view, &[1.0, -1.0]);
    assert_eq!(y, vec![12.0 - 29.0, 14.0 - 32.0, 16.0 - 23.0]);
}

#[test]
fn perm_direction_with_a_three_cycle() {
    // M = 1, N = 3, v = 1, k = 4: permuted column q uses centroid q (10, 20, 30); perm = [1, 2, 0] is not its
    // own inverse, so Ŵ[0, perm[q]] = C[q] gives [30, 10, 20] and the inverse reading would give [20, 30, 10].
    let layout = VqLayout {
        in_features: 3,
        out_features: 1,
        vector_len: 1,
        num_centroids: 4,
        num_res_centroids: 0,
        group_num: 1,
        group_size: 3,
        outlier_size: 0,
        outlier_vector_len: 0,
        outlier_num_centroids: 0,
        enable_norm: false,
        enable_perm: true,
        bias: false,
    };
    let t = VqTensors {
        layout,
        centroids: HalfOrFloat::F32(vec![10.0, 20.0, 30.0, 40.0]),
        res_centroids: None,
        indices: vec![(1 << 2) | (2 << 4)], // 2-bit indices 0, 1, 2 at bits 0, 2, 4
        perm: Some(vec![1, 2, 0]),
        weight_scale: None,
        weight_bias: None,
        bias: None,
        outlier_centroids: None,
        outlier_indices: None,
    };
    t.validate().unwrap();
    let view = VqView::new(&t);
    assert_eq!(dequantize_ref(&view), [30.0, 10.0, 20.0]);
    assert_eq!(gemv_vq_ref(&view, &[1.0, 0.0, 0.0]), [30.0]);
    let mut row = [0f32; 3];
    dequantize_rows(&view, 0, 1, &mut row);
    assert_eq!(row, [30.0, 10.0, 20.0]);
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn float(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

#[derive(Clone, Copy)]
enum Precision {
    F32,
    F16,
    Bf16,
}

fn codebook(rng: &mut Rng, n: usize, p: Precision) -> HalfOrFloat {
    let v: Vec<f32> = (0..n).map(|_| rng.float()).collect();
    match p {
        Precision::F32 => HalfOrFloat::F32(v),
        Precision::F16 => HalfOrFloat::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
        Precision::Bf16 => HalfOrFloat::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
    }
}

/// Random tensors for `layout`, packed with the format crate's packer.
fn random_tensors(layout: VqLayout, seed: u64, p: Precision) -> VqTensors {
    let mut rng = Rng(seed);
    let l = &layout;
    let (g, n, v) = (l.group_num, l.in_features, l.vector_len);
    let mut indices = Vec::new();
    for _ in 0..g * l.num_indices() {
        let main: Vec<u32> = (0..l.group_size).map(|_| rng.below(l.num_centroids) as u32).collect();
        let res: Vec<u32> = (0..l.group_size).map(|_| rng.below(l.num_res_centroids.max(1)) as u32).collect();
        let res = l.has_residual().then_some(&res[..]);
        indices.extend(pack_indices(&main, res, l.index_bits(), l.res_index_bits()));
    }
    let mut perm: Vec<u16> = (0..n as u16).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    let floats = |rng: &mut Rng, len: usize| (0..len).map(|_| rng.float()).collect::<Vec<f32>>();
    let t = VqTensors {
        layout,
        centroids: codebook(&mut rng, g * l.num_centroids * v, p),
        res_centroids: l.has_residual().then(|| codebook(&mut rng, g * l.num_res_centroids * v, p)),
        indices,
        perm: l.enable_perm.then_some(perm),
        weight_scale: l.enable_norm.then(|| floats(&mut rng, n)),
        weight_bias: l.enable_norm.then(|| floats(&mut rng, n)),
        bias: None,
        outlier_centroids: l
            .has_outliers()
            .then(|| codebook(&mut rng, l.outlier_num_centroids * l.outlier_vector_len, p)),
        outlier_indices: l.has_outliers().then(|| {
            (0..l.outlier_num_indices() * l.outlier_size).map(|_| rng.below(l.outlier_num_centroids) as u16).collect()
        }),
    };
    t.validate().unwrap();
    t
}

/// (M, N, v, k, kr, G, outlier_size, v0, k0, perm, norm)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize, usize, bool, bool);

const CASES: &[Case] = &[
    // vptq-spec.md §2.6's verified configurations (k shrunk where it only costs time).
    (20, 64, 8, 65536, 256, 1, 0, 0, 0, true, true),
    (36, 48, 12, 4096, 4096, 1, 0, 0, 0, true, true),
    (16, 40, 16, 1024, 65536, 1, 0, 0, 0, true, true),
    (10, 32, 4, 1024, 0, 2, 0, 0, 0, true, true),
    (24, 30, 6, 4096, 16, 1, 0, 0, 0, true, true),
    // Residual wider than main, odd widths, perm absorbed, no norm, v = 1.
    (13, 17, 3, 16, 512, 1, 0, 0, 0, false, false),
    (7, 9, 1, 2, 2, 1, 0, 0, 0, true, false),
    (70, 33, 5, 512, 8, 3, 3, 4, 16, false, true),
    // Outliers with groups and padding on both parts.
    (66, 64, 6, 4096, 16, 2, 8, 4, 16, true, true),
    (19, 50, 8, 256, 0, 1, 10, 3, 5, true, true),
];

fn layout_of(c: &Case) -> VqLayout {
    let &(m, n, v, k, kr, g, os, v0, k0, perm, norm) = c;
    VqLayout {
        in_features: n,
        out_features: m,
        vector_len: v,
        num_centroids: k,
        num_res_centroids: kr,
        group_num: g,
        group_size: (n - os) / g,
        outlier_size: os,
        outlier_vector_len: v0,
        outlier_num_centroids: k0,
        enable_norm: norm,
        enable_perm: perm,
        bias: false,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn all_formulations_agree() {
    for (ci, case) in CASES.iter().enumerate() {
        for (pi, p) in [Precision::F32, Precision::F16, Precision::Bf16].into_iter().enumerate() {
            let layout = layout_of(case);
            layout.validate().unwrap_or_else(|e| panic!("case {ci}: {e}"));
            let t = random_tensors(layout, 1 + ci as u64 * 7 + pi as u64, p);
            let view = VqView::new(&t);
            let (m, n) = (layout.out_features, layout.in_features);
            let w = dequantize_ref(&view); // [M, N]

            // Banded dequantization: whole, aligned and unaligned bands.
            let mut full = vec![f32::NAN; m * n];
            dequantize_rows(&view, 0, m, &mut full);
            assert_eq!(full, w, "case {ci}: dequantize_rows(all)");
            for (row0, rows) in [(1, m - 1), (m / 2, m - m / 2), (m - 1, 1), (2, 0)] {
                let mut band = vec![f32::NAN; rows * n];
                dequantize_rows(&view, row0, rows, &mut band);
                assert_eq!(band, w[row0 * n..(row0 + rows) * n], "case {ci}: band {row0}+{rows}");
            }

            // Fused GEMV vs Ŵ·x.
            let mut rng = Rng(99 + ci as u64);
            let x: Vec<f32> = (0..n).map(|_| rng.float()).collect();
            let want = matmul_ref(&x, &w, 1, n, m);
            let got = gemv_vq_ref(&view, &x);
            assert!(max_diff(&got, &want) < 1e-4, "case {ci}: gemv diff {}", max_diff(&got, &want));

            // Banded matmul for decode-sized and prefill-sized batches.
            for tokens in [1, 3, 7] {
                let xs: Vec<f32> = (0..tokens * n).map(|_| rng.float()).collect();
                let want = matmul_ref(&xs, &w, tokens, n, m);
                let mut y = vec![0f32; tokens * m];
                matmul_vq(&view, &xs, &mut y, tokens);
                assert!(max_diff(&y, &want) < 1e-4, "case {ci}, {tokens} tokens: {}", max_diff(&y, &want));
            }
        }
    }
}

#[test]
fn perm_and_norm_change_the_weight() {
    // Guards against a formulation that ignores perm or scale/offset: the same indices without them differ.
    let case = CASES[0];
    let with = random_tensors(layout_of(&case), 5, Precision::F32);
    let mut without = with.clone();
    without.layout.enable_perm = false;
    without.perm = None;
    assert_ne!(dequantize_ref(&VqView::new(&with)), dequantize_ref(&VqView::new(&without)));
    let mut no_norm = with.clone();
    no_norm.layout.enable_norm = false;
    no_norm.weight_scale = None;
    no_norm.weight_bias = None;
    assert_ne!(dequantize_ref(&VqView::new(&with)), dequantize_ref(&VqView::new(&no_norm)));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Small random layouts: every main width 1–10, residual 0–10, v 1–16, groups, outliers, perm, norm.
    fn layouts() -> impl Strategy<Value = (Case, u8)> {
        (1usize..40, 1usize..=16, 1u32..=10, 0u32..=10, 1usize..=3, 1usize..=9, 0usize..=4)
            .prop_flat_map(|(m, v, b, r, g, gs, os)| {
                (Just((m, v, b, r, g, gs, os)), 1usize..=6, 1usize..=7, any::<bool>(), any::<bool>(), 0u8..3)
            })
            .prop_map(|((m, v, b, r, g, gs, os), v0, k0, perm, norm, p)| {
                let kr = if r == 0 { 0 } else { 1 << r };
                let (v0, k0) = if os > 0 { (v0, k0) } else { (0, 0) };
                ((m, os + g * gs, v, 1 << b, kr, g, os, v0, k0, perm, norm), p)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn banded_and_fused_match_reference((case, p) in layouts(), seed in any::<u64>()) {
            let layout = layout_of(&case);
            prop_assert!(layout.validate().is_ok(), "{:?}", layout.validate());
            let prec = [Precision::F32, Precision::F16, Precision::Bf16][p as usize];
            let t = random_tensors(layout, seed, prec);
            let view = VqView::new(&t);
            let (m, n) = (layout.out_features, layout.in_features);
            let w = dequantize_ref(&view);
            let mut rows = vec![f32::NAN; m * n];
            dequantize_rows(&view, 0, m, &mut rows);
            prop_assert_eq!(&rows, &w);
            let mut rng = Rng(seed ^ 0x5555);
            let x: Vec<f32> = (0..2 * n).map(|_| rng.float()).collect();
            let want = matmul_ref(&x, &w, 2, n, m);
            prop_assert!(max_diff(&gemv_vq_ref(&view, &x[..n]), &want[..m]) < 1e-4);
            let mut y = vec![0f32; 2 * m];
            matmul_vq(&view, &x, &mut y, 2);
            prop_assert!(max_diff(&y, &want) < 1e-4);
        }
    }
}
