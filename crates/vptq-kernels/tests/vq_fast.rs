//! Parity of the fast VPTQ kernels (`vq_fast::PreparedVq`) with the reference dequantization `dequantize_ref`
//! and the fused oracle `gemv_vq_ref`: random shapes with tails (M not a multiple of v, odd N), every main
//! index width 1–16 with every residual width 0–16, groups, outliers, perm and norm on/off, f32/f16/bf16
//! codebooks prepared in each precision (int8 within its rounding bound of the reference, then exact against
//! its own dequantization), 1–6 tokens (decode and prefill paths), every instruction set, several threads.

use half::{bf16, f16};
use proptest::prelude::*;
use vptq_format::hf::HalfOrFloat;
use vptq_format::vptq::int8_codebook::grid_steps;
use vptq_format::vptq::{pack_indices, VqLayout, VqTensors};
use vptq_kernels::reference::matmul_ref;
use vptq_kernels::vq::{dequantize_ref, gemv_vq_ref, VqView};
use vptq_kernels::vq_fast::{BookPrecision, Isa, PreparedVq};

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

/// (M, N-free shape: v, b, r, G, gs, outlier_size, v0, k0, perm, norm)
#[derive(Debug, Clone, Copy)]
struct Shape {
    m: usize,
    v: usize,
    b: u32,
    r: u32,
    g: usize,
    gs: usize,
    os: usize,
    v0: usize,
    k0: usize,
    perm: bool,
    norm: bool,
}

impl Shape {
    fn layout(&self) -> VqLayout {
        VqLayout {
            in_features: self.os + self.g * self.gs,
            out_features: self.m,
            vector_len: self.v,
            num_centroids: 1 << self.b,
            num_res_centroids: if self.r == 0 { 0 } else { 1 << self.r },
            group_num: self.g,
            group_size: self.gs,
            outlier_size: self.os,
            outlier_vector_len: if self.os > 0 { self.v0 } else { 0 },
            outlier_num_centroids: if self.os > 0 { self.k0 } else { 0 },
            enable_norm: self.norm,
            enable_perm: self.perm,
            bias: false,
        }
    }
}

fn codebook(rng: &mut Rng, n: usize, p: u8) -> HalfOrFloat {
    let v: Vec<f32> = (0..n).map(|_| rng.float()).collect();
    match p {
        0 => HalfOrFloat::F32(v),
        1 => HalfOrFloat::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
        _ => HalfOrFloat::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
    }
}

/// Random tensors for `layout` (codebooks in precision `p`: 0 f32, 1 f16, 2 bf16), packed by the format crate.
fn random_tensors(layout: VqLayout, seed: u64, p: u8) -> VqTensors {
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

/// Largest |a − b| relative to the largest |b| (at least 1).
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

const PRECISIONS: [BookPrecision; 4] =
    [BookPrecision::Auto, BookPrecision::F32, BookPrecision::Stored, BookPrecision::Int8];

/// Largest |Ŵ_int8 − Ŵ| the int8 rounding allows: half a step (max |c| / 127 in the entry's lane, bounded here
/// by the largest |c| of the main codebook) times the column scale, plus f32 rounding of the residual's division.
fn int8_bound(t: &VqTensors, col: usize, w: f32) -> f32 {
    let max_c = match &t.centroids {
        HalfOrFloat::F32(c) => c.iter().fold(0f32, |m, x| m.max(x.abs())),
        HalfOrFloat::F16(c) => c.iter().fold(0f32, |m, x| m.max(x.to_f32().abs())),
        HalfOrFloat::Bf16(c) => c.iter().fold(0f32, |m, x| m.max(x.to_f32().abs())),
    };
    let s = t.weight_scale.as_ref().map_or(1.0, |s| s[col].abs());
    max_c / 254.0 * s * 1.0001 + 1e-5 * (1.0 + w.abs())
}
const ISAS: [Isa; 3] = [Isa::Best, Isa::Avx2, Isa::Portable];

/// Checks every path of one layer: exact dequantization, then products for `tokens` tokens against `Ŵ·x`.
fn check(shape: Shape, seed: u64, p: u8, tokens: &[usize]) -> Result<(), TestCaseError> {
    let layout = shape.layout();
    prop_assert!(layout.validate().is_ok(), "{:?}: {:?}", shape, layout.validate());
    let t = random_tensors(layout, seed, p);
    let view = VqView::new(&t);
    let (m, n) = (layout.out_features, layout.in_features);
    let w = dequantize_ref(&view); // [M, N]
    let mut rng = Rng(seed ^ 0x5555);
    for (pi, &prec) in PRECISIONS.iter().enumerate() {
        let isa = ISAS[(seed as usize + pi) % 3];
        let prep = PreparedVq::new(&view, prec).with_isa(isa);
        let dq = prep.dequantize();
        let int8 = prep.describe().contains("i8");
        if int8 {
            let bad = (0..m * n).find(|&e| (dq[e] - w[e]).abs() > int8_bound(&t, e % n, w[e]));
            prop_assert!(bad.is_none(), "{:?} {isa:?} int8: element {:?} beyond its rounding bound", shape, bad);
        } else {
            // Same f32 operations as the reference (centroid + residual, then · scale + offset): exact.
            let bad = dq.iter().zip(&w).position(|(a, b)| a.to_bits() != b.to_bits());
            prop_assert!(bad.is_none(), "{:?} {:?} {:?} {}: element {:?}", shape, prec, isa, prep.describe(), bad);
        }
        // Products against the prepared form's own weight (the reference's, except for int8).
        let w_prep = if int8 { &dq } else { &w };
        for &nt in tokens {
            let x: Vec<f32> = (0..nt * n).map(|_| rng.float()).collect();
            let want = matmul_ref(&x, w_prep, nt, n, m);
            let mut y = vec![f32::NAN; nt * m];
            prep.matmul(&x, &mut y, nt);
            let d = rel_diff(&y, &want);
            prop_assert!(d < 2e-5, "{:?} {:?} {:?} {} tokens {nt}: rel diff {d}", shape, prec, isa, prep.describe());
            if nt == 1 && !int8 {
                let fused = gemv_vq_ref(&view, &x);
                prop_assert!(rel_diff(&y, &fused) < 2e-5, "vs gemv_vq_ref");
            }
        }
    }
    Ok(())
}

fn shapes() -> impl Strategy<Value = (Shape, u8)> {
    (1usize..70, 1usize..=16, 1u32..=16, 0u32..=16, 1usize..=3, 1usize..=37, 0usize..=4)
        .prop_flat_map(|(m, v, b, r, g, gs, os)| {
            (Just((m, v, b, r, g, gs, os)), 1usize..=6, 1usize..=7, any::<bool>(), any::<bool>(), 0u8..3)
        })
        .prop_map(|((m, v, b, r, g, gs, os), v0, k0, perm, norm, p)| {
            // Wide codebooks only where they stay cheap to generate.
            let (b, r) = if v * g > 16 { (b.min(12), r.min(12)) } else { (b, r) };
            (Shape { m, v, b, r, g, gs, os, v0, k0, perm, norm }, p)
        })
}

/// Proptest cases: 160, or `VPTQ_PROPTEST_CASES` (scripts/test_aarch64.sh lowers it: qemu runs these tests about
/// 60× slower).
fn cases() -> u32 {
    std::env::var("VPTQ_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(160)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn fast_paths_match_reference((shape, p) in shapes(), seed in any::<u64>(), nt in 1usize..=6) {
        check(shape, seed, p, &[nt])?;
    }
}

#[test]
fn every_index_width_pair() {
    // All 16 × 17 (main, residual) widths; v = 3 (odd, padded to 4 lanes) and v = 8 alternate, with a row tail.
    for b in 1..=16u32 {
        for r in 0..=16u32 {
            let v = if (b + r) % 2 == 0 { 3 } else { 8 };
            let shape = Shape { m: 2 * v + 1, v, b, r, g: 1, gs: 21, os: 0, v0: 0, k0: 0, perm: true, norm: true };
            let p = ((b + r) % 3) as u8;
            check(shape, (b * 31 + r) as u64, p, &[1, 2, 5]).unwrap_or_else(|e| panic!("b={b} r={r}: {e}"));
        }
    }
}

#[test]
fn every_vector_length_with_groups_and_outliers() {
    for v in 1..=16 {
        for (os, v0, k0) in [(0, 0, 0), (3, 4, 16), (5, 3, 7)] {
            let shape = Shape { m: 5 * v + 3, v, b: 7, r: 3, g: 2, gs: 13, os, v0, k0, perm: v % 2 == 0, norm: true };
            for p in 0..3u8 {
                check(shape, v as u64 * 7 + p as u64, p, &[1, 2, 3, 4, 6]).unwrap_or_else(|e| panic!("v={v}: {e}"));
            }
        }
    }
}

#[test]
fn published_shapes_and_threads() {
    // SmolLM2-like shapes at the published configurations, in a 3-thread pool (uneven task split).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let cases = [
        Shape { m: 192, v: 6, b: 12, r: 0, g: 1, gs: 576, os: 0, v0: 0, k0: 0, perm: true, norm: true },
        Shape { m: 200, v: 8, b: 16, r: 8, g: 1, gs: 160, os: 0, v0: 0, k0: 0, perm: true, norm: true },
        Shape { m: 130, v: 12, b: 12, r: 12, g: 1, gs: 96, os: 0, v0: 0, k0: 0, perm: false, norm: true },
        Shape { m: 96, v: 4, b: 16, r: 0, g: 1, gs: 100, os: 0, v0: 0, k0: 0, perm: true, norm: false },
    ];
    for (i, shape) in cases.into_iter().enumerate() {
        for p in 0..3u8 {
            pool.install(|| check(shape, i as u64 + 10 * p as u64, p, &[1, 2, 4, 5, 9]))
                .unwrap_or_else(|e| panic!("case {i}: {e}"));
        }
    }
}

#[test]
fn prepared_bytes_and_precision() {
    let big = Shape { m: 16, v: 8, b: 16, r: 8, g: 1, gs: 8, os: 0, v0: 0, k0: 0, perm: true, norm: true };
    let t = random_tensors(big.layout(), 1, 2);
    let view = VqView::new(&t);
    let auto = PreparedVq::new(&view, BookPrecision::Auto);
    assert_eq!(auto.describe(), "w8 bf16 idx u16+u8", "k = 65536 stays half by default");
    // indices 16 rows (already a multiple of 4 vectors: 2 → padded to 4) × 8 columns.
    let idx = 4 * 8 * (2 + 1);
    let books = (65536 + 256) * 8 * 2;
    assert_eq!(auto.n_bytes(), idx + books + 8 * 2 + 8 * 4 * 2);
    let small = Shape { b: 12, r: 0, v: 6, ..big };
    let t = random_tensors(small.layout(), 1, 1);
    assert_eq!(PreparedVq::new(&VqView::new(&t), BookPrecision::Auto).describe(), "w8 f16 idx u16", "128 KiB in f32");
    assert_eq!(PreparedVq::new(&VqView::new(&t), BookPrecision::F32).describe(), "w8 f32 idx u16");
    let fits_l1 = Shape { b: 10, ..small };
    let t = random_tensors(fits_l1.layout(), 1, 1);
    assert_eq!(PreparedVq::new(&VqView::new(&t), BookPrecision::Auto).describe(), "w8 f32 idx u16", "32 KiB in f32");
    assert_eq!(PreparedVq::new(&VqView::new(&t), BookPrecision::Stored).describe(), "w8 f16 idx u16");
}

/// `t`'s main codebook rounded onto its per-group, per-lane int8 grid, as the quantizer writes it.
fn snap_to_grid(t: &mut VqTensors) {
    let l = t.layout;
    let (v, k) = (l.vector_len, l.num_centroids);
    let mut c: Vec<f32> = match &t.centroids {
        HalfOrFloat::F32(c) => c.clone(),
        HalfOrFloat::F16(c) => c.iter().map(|x| x.to_f32()).collect(),
        HalfOrFloat::Bf16(c) => c.iter().map(|x| x.to_f32()).collect(),
    };
    let steps = grid_steps(&c, l.group_num, v); // [G, v]
    for (i, x) in c.iter_mut().enumerate() {
        let s = steps[(i / (k * v)) * v + i % v];
        *x = (*x / s).round() * s;
    }
    // On the grid, f16 holds every entry exactly.
    t.centroids = HalfOrFloat::F16(c.iter().map(|&x| f16::from_f32(x)).collect());
    assert!(c.iter().all(|&x| f16::from_f32(x).to_f32() == x));
}

#[test]
fn codebooks_on_the_int8_grid_run_in_int8_bit_identically() {
    // Auto picks int8 for a codebook on the grid, and its dequantization and products equal the f32 form's bit
    // for bit (every scaling is by a power of two); off the grid, Auto never picks int8.
    let shapes = [
        Shape { m: 67, v: 6, b: 12, r: 0, g: 1, gs: 37, os: 0, v0: 0, k0: 0, perm: true, norm: true },
        Shape { m: 35, v: 8, b: 9, r: 6, g: 2, gs: 11, os: 3, v0: 4, k0: 16, perm: true, norm: true },
        Shape { m: 33, v: 3, b: 5, r: 12, g: 1, gs: 29, os: 0, v0: 0, k0: 0, perm: false, norm: false },
        Shape { m: 50, v: 12, b: 7, r: 4, g: 3, gs: 5, os: 2, v0: 3, k0: 7, perm: true, norm: false },
    ];
    for (i, shape) in shapes.into_iter().enumerate() {
        let mut t = random_tensors(shape.layout(), 100 + i as u64, 1);
        let free = PreparedVq::new(&VqView::new(&t), BookPrecision::Auto);
        assert!(!free.describe().contains("i8"), "case {i}: off the grid stays exact: {}", free.describe());
        snap_to_grid(&mut t);
        let view = VqView::new(&t);
        let (m, n) = (t.layout.out_features, t.layout.in_features);
        let w = dequantize_ref(&view);
        let f32s = PreparedVq::new(&view, BookPrecision::F32);
        for isa in ISAS {
            let int8 = PreparedVq::new(&view, BookPrecision::Auto).with_isa(isa);
            assert!(int8.describe().contains("i8"), "case {i}: {}", int8.describe());
            let dq = int8.dequantize();
            assert!(dq.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()), "case {i} {isa:?}: dequantization");
            let f32s = f32s.clone().with_isa(isa);
            for nt in [1, 2, 3, 7] {
                let mut rng = Rng(nt as u64 + 3);
                let x: Vec<f32> = (0..nt * n).map(|_| rng.float()).collect();
                let (mut a, mut b) = (vec![0f32; nt * m], vec![0f32; nt * m]);
                int8.matmul(&x, &mut a, nt);
                f32s.matmul(&x, &mut b, nt);
                assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()), "case {i} {isa:?} {nt} tokens");
            }
        }
    }
}

#[test]
fn prefetching_the_next_layer_changes_no_output() {
    // The hint is only ever prefetched: a live span, a dropped layer's span and none give the same bits.
    let shape = Shape { m: 96, v: 6, b: 12, r: 4, g: 2, gs: 40, os: 3, v0: 2, k0: 16, perm: true, norm: true };
    let t = random_tensors(shape.layout(), 5, 0);
    let next = PreparedVq::new(&VqView::new(&random_tensors(shape.layout(), 6, 0)), BookPrecision::Auto);
    let dropped =
        PreparedVq::new(&VqView::new(&random_tensors(shape.layout(), 7, 0)), BookPrecision::Int8).books_span();
    let mut p = PreparedVq::new(&VqView::new(&t), BookPrecision::Int8);
    let n = shape.layout().in_features;
    let mut rng = Rng(9);
    for tokens in [1, 2, 3] {
        let x: Vec<f32> = (0..tokens * n).map(|_| rng.float()).collect();
        let run = |p: &PreparedVq| {
            let mut y = vec![0f32; tokens * shape.m];
            p.matmul(&x, &mut y, tokens);
            y
        };
        p.prefetch_next(None);
        let plain = run(&p);
        p.prefetch_next(Some(next.books_span()));
        assert_eq!(run(&p), plain, "{tokens} tokens, live span");
        p.prefetch_next(Some(dropped));
        assert_eq!(run(&p), plain, "{tokens} tokens, dropped span");
    }
}
