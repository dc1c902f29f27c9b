//! Decode attention over a whole model's cache: one query token against `len` cached positions in each of
//! `layers` layers (each its own cache, so nothing stays in L2 between layers), SmolLM2-135M's head shapes.
//! Prints µs per token and the effective read bandwidth of K and V.
//!
//! `cargo run --release -p vptq-model --example attn_bench -- [len] [layers] [threads]`

use std::time::Instant;
use vptq_model::attention::{attention, AttnShape};
use vptq_model::LayerCache;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let len = args.first().copied().unwrap_or(160);
    let layers = args.get(1).copied().unwrap_or(30);
    let threads = args.get(2).copied().unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let (n_heads, n_kv_heads, head_dim) = (9, 3, 64);
    let kv_dim = n_kv_heads * head_dim;
    let mut seed = 1u32;
    let mut rand = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let caches: Vec<LayerCache> = (0..layers)
        .map(|_| {
            let k: Vec<f32> = (0..len * kv_dim).map(|_| rand()).collect();
            let v: Vec<f32> = (0..len * kv_dim).map(|_| rand()).collect();
            let mut cache = LayerCache::default();
            cache.append(&k, &v, n_kv_heads, head_dim);
            cache
        })
        .collect();
    let q: Vec<f32> = (0..n_heads * head_dim).map(|_| rand()).collect();
    let shape = AttnShape { n: 1, pos0: len - 1, n_heads, n_kv_heads, head_dim };
    let mut best = f64::INFINITY;
    let mut sink = 0f32;
    pool.install(|| {
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..20 {
                for cache in &caches {
                    sink += attention(&q, cache, shape)[0];
                }
            }
            best = best.min(t.elapsed().as_secs_f64() / 20.0);
        }
    });
    let bytes = (layers * 2 * len * kv_dim * 4) as f64;
    println!(
        "len {len} layers {layers} threads {threads}: {:.1} µs/token, {:.2} GB/s of K+V ({sink:.1e})",
        best * 1e6,
        bytes / best / 1e9
    );
}
