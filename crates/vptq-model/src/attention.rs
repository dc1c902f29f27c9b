//! Causal grouped-query attention of `n` new query tokens against the cached keys/values.
//!
//! Per query head h (sharing kv head h / (n_heads / n_kv_heads)):
//! `out_h = softmax(q_h · K_hᵀ / √d + causal mask) · V_h`.
//!
//! Decode (n ≤ [`FEW_ROWS`]) runs one task per kv head and chunk of positions: the kv head's query heads are
//! served together (`vptq_kernels::attn`), so each key and value is read once per group, and the chunks'
//! softmaxes merge by their log-sum-exps. Prefill widens each kv head's keys (as rows) and values to f32 once
//! per call, then runs query heads × blocks of query rows in parallel, each with single-threaded GEMMs.

use crate::kv_cache::{HeadCache, LayerCache};
use rayon::prelude::*;
use vptq_kernels::attn::{scores_tiled, values_weighted, KvElem, KEY_TILE};
use vptq_kernels::dense::{matmul_ab_strided, matmul_abt_strided};
use vptq_kernels::ops::{softmax, softmax_lse};

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
/// Up to this many query rows, attention takes the grouped decode path.
pub const FEW_ROWS: usize = 4;
/// Fewest positions per decode chunk: below this a chunk's merge costs more than its parallelism gains.
const MIN_CHUNK: usize = 8 * KEY_TILE;

/// Computes attention output `[n, n_heads · head_dim]` from `q` (`[n, n_heads · head_dim]`) and `cache`,
/// which holds `pos0 + n` positions (the new tokens already appended).
pub fn attention(q: &[f32], cache: &LayerCache, s: AttnShape) -> Vec<f32> {
    debug_assert_eq!(cache.len(), s.pos0 + s.n);
    match cache {
        LayerCache::F16(c) => attention_in(q, c, s),
        LayerCache::F32(c) => attention_in(q, c, s),
    }
}

fn attention_in<T: KvElem>(q: &[f32], cache: &HeadCache<T>, s: AttnShape) -> Vec<f32> {
    if s.n <= FEW_ROWS {
        decode(q, cache, s)
    } else {
        prefill(q, cache, s)
    }
}

/// A chunk's result for one query row and one query head: the softmax-weighted values of the chunk's visible
/// positions (`out`, normalized within the chunk) and the log-sum-exp of their scores.
struct Partial {
    lse: Vec<f32>, // [n, group]
    out: Vec<f32>, // [n, group, head_dim]
}

fn decode<T: KvElem>(q: &[f32], cache: &HeadCache<T>, s: AttnShape) -> Vec<f32> {
    let AttnShape { n, pos0, n_heads, n_kv_heads, head_dim: d } = s;
    let (q_dim, group, len) = (n_heads * d, n_heads / n_kv_heads, pos0 + n);
    let scale = 1.0 / (d as f32).sqrt();
    // Two tasks per thread where the context is long enough; the chunk a whole number of key tiles.
    let want = (2 * rayon::current_num_threads()).div_ceil(n_kv_heads);
    let chunks = want.min(len.div_ceil(MIN_CHUNK)).max(1);
    let chunk = len.div_ceil(chunks).next_multiple_of(KEY_TILE);
    let chunks = len.div_ceil(chunk);
    let tasks: Vec<(usize, usize)> = (0..n_kv_heads).flat_map(|h| (0..chunks).map(move |c| (h, c))).collect();
    let parts: Vec<Partial> = tasks
        .par_iter()
        .map(|&(kvh, c)| {
            let (c0, c1) = (c * chunk, ((c + 1) * chunk).min(len));
            let tiles = &cache.key_tiles(kvh)[c0 * d..c1.div_ceil(KEY_TILE) * KEY_TILE * d];
            let w = tiles.len() / d; // [c0, c0 + w) scored, a whole number of tiles
            let values = &cache.values(kvh)[c0 * d..c1 * d];
            let mut part = Partial { lse: vec![0f32; n * group], out: vec![0f32; n * group * d] };
            let mut qs = vec![0f32; group * d]; // [group, d] this row's query heads, scaled by 1/√d
            let mut scores = vec![0f32; group * w]; // [group, w]
            for i in 0..n {
                let visible = (pos0 + i + 1).min(c1).saturating_sub(c0);
                let q_row = &q[i * q_dim + kvh * group * d..i * q_dim + (kvh + 1) * group * d];
                for (a, &b) in qs.iter_mut().zip(q_row) {
                    *a = b * scale;
                }
                scores_tiled(&qs, d, tiles, &mut scores);
                for (g, row) in scores.chunks_exact_mut(w).enumerate() {
                    part.lse[i * group + g] = softmax_lse(&mut row[..visible]);
                }
                values_weighted(&scores, w, visible, values, d, &mut part.out[i * group * d..(i + 1) * group * d]);
            }
            part
        })
        .collect();
    let mut out = vec![0f32; n * q_dim];
    for (kv_parts, kvh) in parts.chunks_exact(chunks).zip(0..) {
        for i in 0..n {
            for g in 0..group {
                let lse: Vec<f32> = kv_parts.iter().map(|p| p.lse[i * group + g]).collect();
                let max = lse.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let total = max + lse.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
                let o = &mut out[i * q_dim + (kvh * group + g) * d..][..d];
                for (p, &l) in kv_parts.iter().zip(&lse) {
                    let weight = (l - total).exp();
                    let src = &p.out[(i * group + g) * d..][..d];
                    for (a, &b) in o.iter_mut().zip(src) {
                        *a += weight * b;
                    }
                }
            }
        }
    }
    out
}

fn prefill<T: KvElem>(q: &[f32], cache: &HeadCache<T>, s: AttnShape) -> Vec<f32> {
    let AttnShape { n, pos0, n_heads, n_kv_heads, head_dim } = s;
    let q_dim = n_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let keys: Vec<Vec<f32>> = (0..n_kv_heads).into_par_iter().map(|h| cache.key_rows(h)).collect();
    let values: Vec<Vec<f32>> = (0..n_kv_heads).into_par_iter().map(|h| cache.value_rows(h)).collect();
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
            matmul_abt_strided(q_block, q_dim, &keys[kvh], head_dim, &mut scores, rows, len, head_dim);
            for (i, row) in scores.chunks_exact_mut(len).enumerate() {
                let visible = pos0 + r0 + i + 1;
                for s in &mut row[..visible] {
                    *s *= scale;
                }
                row[visible..].fill(f32::NEG_INFINITY);
                softmax(row);
            }
            let mut out = vec![0f32; rows * head_dim]; // [rows, head_dim]
            matmul_ab_strided(&scores, &values[kvh], head_dim, &mut out, head_dim, rows, len, head_dim);
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
    use crate::kv_cache::KvPrecision;

    fn vals(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Attention from a cache of each precision against the reference on the keys and values as stored.
    fn check(n: usize, pos0: usize, nh: usize, nkv: usize, d: usize) {
        let s = AttnShape { n, pos0, n_heads: nh, n_kv_heads: nkv, head_dim: d };
        let q = vals(1, n * nh * d);
        let k = vals(2, (pos0 + n) * nkv * d);
        let v = vals(3, (pos0 + n) * nkv * d);
        for (p, round) in [(KvPrecision::F16, true), (KvPrecision::F32, false)] {
            // The cache filled as generation fills it: the past in one append, then the new rows.
            let mut cache = LayerCache::new(p);
            let kv_dim = nkv * d;
            cache.append(&k[..pos0 * kv_dim], &v[..pos0 * kv_dim], nkv, d);
            cache.append(&k[pos0 * kv_dim..], &v[pos0 * kv_dim..], nkv, d);
            let got = attention(&q, &cache, s);
            let (rk, rv) = if round { (round_f16(&k), round_f16(&v)) } else { (k.clone(), v.clone()) };
            let want = attention_ref(&q, &rk, &rv, s);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{g} vs {w} at {:?}", (p, n, pos0, nh, nkv, d));
            }
        }
    }

    fn round_f16(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
    }

    #[test]
    fn attention_matches_reference_prefill_and_decode() {
        for &(n, pos0, nh, nkv, d) in
            &[(5, 0, 4, 2, 8), (1, 7, 3, 1, 16), (3, 4, 2, 2, 6), (9, 0, 6, 3, 4), (150, 0, 2, 1, 8), (70, 30, 3, 3, 4)]
        {
            check(n, pos0, nh, nkv, d);
        }
    }

    #[test]
    fn decode_attention_merges_chunks_and_groups() {
        // Contexts long enough to split into chunks (merged by log-sum-exp) at any thread count, groups of 1 to 7
        // query heads per kv head, head sizes with and without a 64-feature tail.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
        pool.install(|| {
            for &(n, pos0, nh, nkv, d) in &[
                (1, 300, 4, 1, 64),
                (4, 297, 9, 3, 64),
                (2, 520, 7, 1, 80),
                (1, 1000, 2, 2, 128),
                (3, 31, 14, 2, 32),
                (1, 0, 3, 1, 64),
            ] {
                check(n, pos0, nh, nkv, d);
            }
        });
    }

    #[test]
    fn truncated_cache_attends_to_the_kept_prefix_only() {
        let (nkv, d, nh) = (2, 64, 4);
        let kv_dim = nkv * d;
        let (k, v) = (vals(2, 60 * kv_dim), vals(3, 60 * kv_dim));
        let mut cache = LayerCache::default();
        cache.append(&k[..50 * kv_dim], &v[..50 * kv_dim], nkv, d);
        cache.truncate(37);
        cache.append(&k[37 * kv_dim..38 * kv_dim], &v[37 * kv_dim..38 * kv_dim], nkv, d);
        let s = AttnShape { n: 1, pos0: 37, n_heads: nh, n_kv_heads: nkv, head_dim: d };
        let q = vals(1, nh * d);
        let got = attention(&q, &cache, s);
        let want = attention_ref(&q, &round_f16(&k[..38 * kv_dim]), &round_f16(&v[..38 * kv_dim]), s);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
    }
}
