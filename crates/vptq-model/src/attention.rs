//! Causal grouped-query attention of `n` new query tokens against the cached keys/values.
//!
//! Per query head h (sharing kv head h / (n_heads / n_kv_heads)):
//! `out_h = softmax(q_h · K_hᵀ / √d + causal mask) · V_h`. Heads run in parallel; each uses single-threaded
//! GEMMs on strided views of the cache, so no copies of K or V are made.

use rayon::prelude::*;
use vptq_kernels::dense::{matmul_ab_strided, matmul_abt_strided};
use vptq_kernels::ops::softmax;
use vptq_kernels::{axpys_f32_strided, dots_f32_strided};

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// New query tokens.
    pub n: usize,
    /// Position of the first new token (cached positions before it).
    pub pos0: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Features per head.
    pub head_dim: usize,
}

/// Query rows per task: causal masking means block b only needs keys up to its last row, so blocking skips
/// most of the masked upper triangle and gives the thread pool more, smaller tasks.
const QUERY_BLOCK: usize = 64;
/// Up to this many query rows, scores and outputs are plain dot products and axpys.
const FEW_ROWS: usize = 4;

/// Computes attention output `[n, n_heads · head_dim]` from `q` (`[n, n_heads · head_dim]`) and the cache
/// `k`, `v` (`[pos0 + n, n_kv_heads · head_dim]`, the new tokens already appended).
pub fn attention(q: &[f32], k: &[f32], v: &[f32], s: AttnShape) -> Vec<f32> {
    let AttnShape { n, pos0, n_heads, n_kv_heads, head_dim } = s;
    let q_dim = n_heads * head_dim;
    let kv_dim = n_kv_heads * head_dim;
    debug_assert_eq!(k.len(), (pos0 + n) * kv_dim);
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let n_blocks = n.div_ceil(QUERY_BLOCK);
    let tasks: Vec<(usize, usize)> = (0..n_heads).flat_map(|h| (0..n_blocks).map(move |b| (h, b))).collect();
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(h, b)| {
            let kvh = h / group;
            let r0 = b * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(n - r0);
            let len = pos0 + r0 + rows; // keys visible to the block's last query
            let mut scores = vec![0f32; rows * len]; // [rows, len]
            let q_block = &q[r0 * q_dim + h * head_dim..];
            if rows <= FEW_ROWS {
                // Decode: a GEMM call per head costs more in setup than these few dot products.
                for (i, row) in scores.chunks_exact_mut(len).enumerate() {
                    dots_f32_strided(&q_block[i * q_dim..i * q_dim + head_dim], &k[kvh * head_dim..], kv_dim, row);
                }
            } else {
                matmul_abt_strided(q_block, q_dim, &k[kvh * head_dim..], kv_dim, &mut scores, rows, len, head_dim);
            }
            for (i, row) in scores.chunks_exact_mut(len).enumerate() {
                let visible = pos0 + r0 + i + 1;
                for s in &mut row[..visible] {
                    *s *= scale;
                }
                row[visible..].fill(f32::NEG_INFINITY);
                softmax(row);
            }
            let mut out = vec![0f32; rows * head_dim]; // [rows, head_dim]
            if rows <= FEW_ROWS {
                for (p_row, o) in scores.chunks_exact(len).zip(out.chunks_exact_mut(head_dim)) {
                    axpys_f32_strided(p_row, &v[kvh * head_dim..], kv_dim, o);
                }
            } else {
                matmul_ab_strided(&scores, &v[kvh * head_dim..], kv_dim, &mut out, head_dim, rows, len, head_dim);
            }
            out
        })
        .collect();
    let mut out = vec![0f32; n * q_dim];
    for (&(h, b), part) in tasks.iter().zip(&parts) {
        let r0 = b * QUERY_BLOCK;
        for (i, row) in part.chunks_exact(head_dim).enumerate() {
            let t = r0 + i;
            out[t * q_dim + h * head_dim..t * q_dim + (h + 1) * head_dim].copy_from_slice(row);
        }
    }
    out
}

/// Scalar reference: the same attention written from the definition, for tests.
pub fn attention_ref(q: &[f32], k: &[f32], v: &[f32], s: AttnShape) -> Vec<f32> {
    let AttnShape { n, pos0, n_heads, n_kv_heads, head_dim } = s;
    let (q_dim, kv_dim) = (n_heads * head_dim, n_kv_heads * head_dim);
    let mut out = vec![0f32; n * q_dim];
    for t in 0..n {
        for h in 0..n_heads {
            let kvh = h * n_kv_heads / n_heads;
            let visible = pos0 + t + 1;
            let mut w: Vec<f64> = (0..visible)
                .map(|j| {
                    (0..head_dim)
                        .map(|c| q[t * q_dim + h * head_dim + c] as f64 * k[j * kv_dim + kvh * head_dim + c] as f64)
                        .sum::<f64>()
                        / (head_dim as f64).sqrt()
                })
                .collect();
            let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = w
                .iter_mut()
                .map(|x| {
                    *x = (*x - max).exp();
                    *x
                })
                .sum();
            for c in 0..head_dim {
                let acc: f64 = (0..visible).map(|j| w[j] / sum * v[j * kv_dim + kvh * head_dim + c] as f64).sum();
                out[t * q_dim + h * head_dim + c] = acc as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn attention_matches_reference_prefill_and_decode() {
        for &(n, pos0, nh, nkv, d) in
            &[(5, 0, 4, 2, 8), (1, 7, 3, 1, 16), (3, 4, 2, 2, 6), (9, 0, 6, 3, 4), (150, 0, 2, 1, 8), (70, 30, 3, 3, 4)]
        {
            let s = AttnShape { n, pos0, n_heads: nh, n_kv_heads: nkv, head_dim: d };
            let q = vals(1, n * nh * d);
            let k = vals(2, (pos0 + n) * nkv * d);
            let v = vals(3, (pos0 + n) * nkv * d);
            let got = attention(&q, &k, &v, s);
            let want = attention_ref(&q, &k, &v, s);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{g} vs {w} at {:?}", (n, pos0, nh, nkv, d));
            }
        }
    }
}
