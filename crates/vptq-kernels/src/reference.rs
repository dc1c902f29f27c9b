//! Scalar reference implementations (f64 accumulation, no SIMD, no threads): the oracle for kernel tests.

use crate::ops::RopeLayout;

/// `y[n, out] = x[n, in] · Wᵀ`, W `[out, in]`.
pub fn matmul_ref(x: &[f32], w: &[f32], n: usize, in_features: usize, out_features: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * out_features];
    for t in 0..n {
        for o in 0..out_features {
            let mut acc = 0f64;
            for i in 0..in_features {
                acc += x[t * in_features + i] as f64 * w[o * in_features + i] as f64;
            }
            y[t * out_features + o] = acc as f32;
        }
    }
    y
}

/// RMSNorm of each row.
pub fn rmsnorm_ref(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let dim = weight.len();
    let mut out = vec![0f32; x.len()];
    for (r, row) in x.chunks(dim).enumerate() {
        let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        for i in 0..dim {
            out[r * dim + i] = (row[i] as f64 * inv * weight[i] as f64) as f32;
        }
    }
    out
}

/// RoPE written from the definition: rotate the pair (a, b) of frequency i by angle `pos · θ_i`.
pub fn rope_ref(
    x: &[f32],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    theta_base: f64,
    layout: RopeLayout,
) -> Vec<f32> {
    let mut out = x.to_vec();
    let half = head_dim / 2;
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..n_heads {
            let base = t * n_heads * head_dim + h * head_dim;
            for i in 0..half {
                let theta = theta_base.powf(-(2.0 * i as f64) / head_dim as f64);
                let angle = pos as f64 * theta;
                let (a, b) = match layout {
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    RopeLayout::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (x[base + a] as f64, x[base + b] as f64);
                out[base + a] = (x0 * angle.cos() - x1 * angle.sin()) as f32;
                out[base + b] = (x0 * angle.sin() + x1 * angle.cos()) as f32;
            }
        }
    }
    out
}

/// Softmax of a row.
pub fn softmax_ref(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}

/// `silu(g) · u`.
pub fn silu_mul_ref(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = g as f64;
            (g / (1.0 + (-g).exp()) * u as f64) as f32
        })
        .collect()
}
