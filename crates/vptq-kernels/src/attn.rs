//! Decode attention over a grouped-query cache: the scores of a kv head's query heads against its keys, and
//! their weighted sum of its values, each key or value read once for the whole group.
//!
//! Keys are stored in tiles of [`KEY_TILE`] positions, each tile transposed (`[tiles, head_dim, KEY_TILE]`):
//! the scores of a tile are then `head_dim` broadcast FMAs over `KEY_TILE` lanes, with no lane sums, where
//! row-major keys need one horizontal sum per position and head. Values stay row-major (`[positions, head_dim]`):
//! the weighted sum is an FMA of a whole row per position.

/// Positions per key tile: two 16-lane registers, so each query head has two independent FMA chains.
pub const KEY_TILE: usize = 32;

/// Query heads served per sweep: with [`KEY_TILE`] = 32 that is up to 8 accumulator registers (scores) or
/// 16 (values, 64 features at a time), which fit AVX-512's 32 without spills.
const MAX_GROUP: usize = 4;

/// Features of the output per sweep over the values.
const VALUE_CHUNK: usize = 64;

/// `out[g][j] = q[g] · key_j` for the positions of `tiles` (`[t, d, KEY_TILE]`); `q` is `[g, d]` and `out`
/// `[g, t·KEY_TILE]` (positions past the cache's length come out of whatever the tile holds there).
#[inline(always)]
fn scores_body<const FMA: bool>(q: &[f32], d: usize, tiles: &[f32], out: &mut [f32]) {
    let g = q.len() / d;
    let t = tiles.len() / (d * KEY_TILE);
    let w = t * KEY_TILE;
    let mut h0 = 0;
    while h0 < g {
        let take = (g - h0).min(MAX_GROUP);
        let (q, out) = (&q[h0 * d..(h0 + take) * d], &mut out[h0 * w..(h0 + take) * w]);
        match take {
            4 => scores_group::<FMA, 4>(q, d, tiles, out),
            3 => scores_group::<FMA, 3>(q, d, tiles, out),
            2 => scores_group::<FMA, 2>(q, d, tiles, out),
            _ => scores_group::<FMA, 1>(q, d, tiles, out),
        }
        h0 += take;
    }
}

#[inline(always)]
fn scores_group<const FMA: bool, const G: usize>(q: &[f32], d: usize, tiles: &[f32], out: &mut [f32]) {
    let w = out.len() / G;
    for (ti, tile) in tiles.chunks_exact(d * KEY_TILE).enumerate() {
        let mut acc = [[0f32; KEY_TILE]; G];
        for (c, keys) in tile.chunks_exact(KEY_TILE).enumerate() {
            let keys: &[f32; KEY_TILE] = keys.try_into().expect("KEY_TILE elements");
            for (hi, a) in acc.iter_mut().enumerate() {
                let qc = q[hi * d + c];
                for l in 0..KEY_TILE {
                    a[l] = if FMA { qc.mul_add(keys[l], a[l]) } else { a[l] + qc * keys[l] };
                }
            }
        }
        for (hi, a) in acc.iter().enumerate() {
            out[hi * w + ti * KEY_TILE..hi * w + (ti + 1) * KEY_TILE].copy_from_slice(a);
        }
    }
}

/// `out[g] += Σ_{j<m} p[g·ps + j] · v[j]` over rows of `v` (`[m, d]`); `out` is `[g, d]`.
#[inline(always)]
fn values_body<const FMA: bool>(p: &[f32], ps: usize, m: usize, v: &[f32], d: usize, out: &mut [f32]) {
    let g = out.len().checked_div(d).unwrap_or(0);
    let mut h0 = 0;
    while h0 < g {
        let take = (g - h0).min(MAX_GROUP);
        let (p, out) = (&p[h0 * ps..], &mut out[h0 * d..(h0 + take) * d]);
        match take {
            4 => values_group::<FMA, 4>(p, ps, m, d, v, out),
            3 => values_group::<FMA, 3>(p, ps, m, d, v, out),
            2 => values_group::<FMA, 2>(p, ps, m, d, v, out),
            _ => values_group::<FMA, 1>(p, ps, m, d, v, out),
        }
        h0 += take;
    }
}

#[inline(always)]
fn values_group<const FMA: bool, const G: usize>(p: &[f32], ps: usize, m: usize, d: usize, v: &[f32], out: &mut [f32]) {
    let mut c0 = 0;
    while c0 < d {
        if d - c0 >= VALUE_CHUNK {
            let mut acc = [[0f32; VALUE_CHUNK]; G];
            for j in 0..m {
                let row: &[f32; VALUE_CHUNK] = v[j * d + c0..j * d + c0 + VALUE_CHUNK].try_into().expect("chunk");
                for (hi, a) in acc.iter_mut().enumerate() {
                    let pj = p[hi * ps + j];
                    for l in 0..VALUE_CHUNK {
                        a[l] = if FMA { pj.mul_add(row[l], a[l]) } else { a[l] + pj * row[l] };
                    }
                }
            }
            for (hi, a) in acc.iter().enumerate() {
                for (o, x) in out[hi * d + c0..hi * d + c0 + VALUE_CHUNK].iter_mut().zip(a) {
                    *o += x;
                }
            }
            c0 += VALUE_CHUNK;
        } else {
            for j in 0..m {
                let row = &v[j * d + c0..(j + 1) * d];
                for hi in 0..G {
                    let pj = p[hi * ps + j];
                    for (o, x) in out[hi * d + c0..(hi + 1) * d].iter_mut().zip(row) {
                        *o += pj * x;
                    }
                }
            }
            c0 = d;
        }
    }
}

macro_rules! multiversion {
    ($(#[$doc:meta])* $pub_name:ident, $body:ident, ($($a:ident: $at:ty),*)) => {
        $(#[$doc])*
        pub fn $pub_name($($a: $at),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($a: $at),*) {
                    $body::<true>($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $at),*) {
                    $body::<true>($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features the function is compiled for were detected at run time.
                    return unsafe { avx512($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($a),*) };
                }
            }
            $body::<false>($($a),*)
        }
    };
}

multiversion!(
    /// `out[g][j] = q[g] · key_j` for every position of the key tiles `tiles` (`[t, d, KEY_TILE]`, each tile
    /// transposed); `q` is `[g, d]`, `out` `[g, t·KEY_TILE]`.
    ///
    /// # Panics
    /// If `out` is shorter than `[g, t·KEY_TILE]`.
    scores_tiled, scores_body, (q: &[f32], d: usize, tiles: &[f32], out: &mut [f32])
);

multiversion!(
    /// `out[g] += Σ_{j<m} p[g·p_stride + j] · v[j]` over the first `m` rows of `v` (`[m, d]`); `out` is
    /// `[g, d]`: a group's attention-weighted sums of one kv head's values.
    ///
    /// # Panics
    /// If `p` or `v` is too short for `g = out.len() / d` heads of `m` positions.
    values_weighted, values_body, (p: &[f32], p_stride: usize, m: usize, v: &[f32], d: usize, out: &mut [f32])
);

/// Writes `n` keys (row `i` at `k[i·stride..][..d]`, position `pos0 + i`) into key tiles (`[t, d, KEY_TILE]`),
/// which must already cover those positions.
pub fn store_keys(tiles: &mut [f32], d: usize, pos0: usize, k: &[f32], stride: usize, n: usize) {
    for i in 0..n {
        let row = &k[i * stride..i * stride + d];
        let pos = pos0 + i;
        let base = pos / KEY_TILE * d * KEY_TILE + pos % KEY_TILE;
        for (c, &x) in row.iter().enumerate() {
            tiles[base + c * KEY_TILE] = x;
        }
    }
}

/// Reads positions `0..len` of key tiles back as rows (`[len, d]`), for the prefill GEMMs.
pub fn load_keys(tiles: &[f32], d: usize, len: usize, out: &mut [f32]) {
    for (pos, row) in out[..len * d].chunks_exact_mut(d).enumerate() {
        let base = pos / KEY_TILE * d * KEY_TILE + pos % KEY_TILE;
        for (c, x) in row.iter_mut().enumerate() {
            *x = tiles[base + c * KEY_TILE];
        }
    }
}
