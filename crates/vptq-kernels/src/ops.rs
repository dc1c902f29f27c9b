//! Element-wise and row-wise operations of the decoder, on `[n_tokens, features]` row-major buffers.

/// How RoPE pairs the features of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: what llama.cpp's GGUF converter's q/k row permutation expects.
    Interleaved,
    /// Split halves `(x[i], x[i + d/2])`: Hugging Face's rotate-half, and GGUF qwen2 weights.
    HalfSplit,
}

/// RMSNorm of each row of `x` (`[n, dim]`) into `out`: `out = x / sqrt(mean(x²) + eps) · weight`.
///
/// # Panics
/// If lengths disagree.
pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    assert_eq!(x.len(), out.len());
    assert_eq!(x.len() % dim.max(1), 0);
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum();
        let inv = 1.0 / (ss / dim as f32 + eps).sqrt();
        for ((o, v), w) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * inv * w;
        }
    }
}

/// Rotary position embedding applied in place to `x` (`[n, n_heads · head_dim]`), token t at `positions[t]`.
///
/// `inv_freq` has `head_dim / 2` entries (θ_i, already including any frequency scaling).
///
/// # Panics
/// If lengths disagree.
pub fn rope(x: &mut [f32], positions: &[usize], n_heads: usize, head_dim: usize, inv_freq: &[f32], layout: RopeLayout) {
    let half = head_dim / 2;
    assert_eq!(inv_freq.len(), half);
    assert_eq!(x.len(), positions.len() * n_heads * head_dim);
    let mut cos = vec![0f32; half];
    let mut sin = vec![0f32; half];
    for (row, &pos) in x.chunks_exact_mut(n_heads * head_dim).zip(positions) {
        for i in 0..half {
            // f64 angle: positions up to 10⁵ times θ≈1 lose precision in f32 before the sin/cos.
            let angle = pos as f64 * inv_freq[i] as f64;
            cos[i] = angle.cos() as f32;
            sin[i] = angle.sin() as f32;
        }
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match layout {
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    RopeLayout::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// In-place softmax of one row; entries equal to `-inf` become 0 (vectorized, with a polynomial `e^x`).
pub fn softmax(x: &mut [f32]) {
    crate::simd::softmax_f32(x);
}

/// [`softmax`] that also returns the row's log-sum-exp `ln Σ e^x` (−∞ if every entry is −∞): softmaxes of parts
/// of a row, each weighted by `e^(lse_part − lse_row)`, combine into the softmax of the whole row.
pub fn softmax_lse(x: &mut [f32]) -> f32 {
    crate::simd::softmax_f32(x)
}

/// SwiGLU: `gate[i] = silu(gate[i]) · up[i]`, in place in `gate`.
///
/// # Panics
/// If lengths disagree.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `x += y` element-wise.
///
/// # Panics
/// If lengths disagree.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `log Σ exp(x)` of a row, computed stably in f64.
pub fn log_sum_exp(x: &[f32]) -> f64 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return max;
    }
    let s: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + s.ln()
}
