//! Decode/prefill timings of the VPTQ kernels at SmolLM2-135M shapes against dense f32/f16, in one run.
//!
//! `cargo run --release -p vptq-kernels --example vq_bench -- [--decode] [--llama7b] [--no-chain] [blocks] [reps]
//! [configs…]`
//! (defaults: 30 blocks, 5 repetitions, all configs; `--llama7b`: LLaMA-2-7B block shapes instead, where a
//! k = 65536 codebook is shared by millions of vectors instead of outnumbering them; `--no-chain`: layers do not
//! prefetch the next layer's codebook). A "model" of `blocks` decoder blocks with random weights
//! is built per storage kind so that, as in a real forward pass, weights do not stay in cache between uses.
//! Configs: f32, f16, v6k4096, v8k65536, v8k65536r256, v4k65536, with `:f32` / `:half` / `:i8` to force the
//! codebook precision (e.g. `v8k65536:f32`).

use half::f16;
use std::time::Instant;
use vptq_format::hf::HalfOrFloat;
use vptq_format::vptq::{pack_indices, VqLayout, VqTensors};
use vptq_kernels::dense::{matmul, DenseWeight};
use vptq_kernels::vq::VqView;
use vptq_kernels::vq_fast::{BookPrecision, PreparedVq};

/// SmolLM2-135M decoder block projections `[out, in]`: q, k, v, o, gate, up, down.
const SHAPES: [(&str, usize, usize); 7] = [
    ("q 576x576", 576, 576),
    ("k 192x576", 192, 576),
    ("v 192x576", 192, 576),
    ("o 576x576", 576, 576),
    ("gate 1536x576", 1536, 576),
    ("up 1536x576", 1536, 576),
    ("down 576x1536", 576, 1536),
];
/// LLaMA-2-7B decoder block projections `[out, in]`.
const SHAPES_7B: [(&str, usize, usize); 7] = [
    ("q 4096x4096", 4096, 4096),
    ("k 4096x4096", 4096, 4096),
    ("v 4096x4096", 4096, 4096),
    ("o 4096x4096", 4096, 4096),
    ("gate 11008x4096", 11008, 4096),
    ("up 11008x4096", 11008, 4096),
    ("down 4096x11008", 4096, 11008),
];
type Shapes = [(&'static str, usize, usize); 7];
const PREFILL_TOKENS: usize = 128;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn float(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

enum Layer {
    Dense(DenseWeight),
    Vq(Box<PreparedVq>),
}

impl Layer {
    fn forward(&self, x: &[f32], y: &mut [f32], n: usize, m: usize, k: usize) {
        match self {
            Layer::Dense(w) => matmul(x, w.view(), y, n, k, m),
            Layer::Vq(p) => p.matmul(x, y, n),
        }
    }
    fn n_bytes(&self) -> usize {
        match self {
            Layer::Dense(w) => w.n_bytes(),
            Layer::Vq(p) => p.n_bytes(),
        }
    }
}

/// (v, k, kr) of a VQ config name.
fn vq_params(name: &str) -> Option<(usize, usize, usize)> {
    Some(match name {
        "v6k4096" => (6, 4096, 0),
        "v6k1024" => (6, 1024, 0),
        "v6k256" => (6, 256, 0),
        "v8k65536" => (8, 65536, 0),
        "v8k65536r256" => (8, 65536, 256),
        "v4k65536" => (4, 65536, 0),
        "v12k4096r4096" => (12, 4096, 4096),
        _ => return None,
    })
}

fn vq_layer(rng: &mut Rng, m: usize, n: usize, (v, k, kr): (usize, usize, usize), prec: BookPrecision) -> Layer {
    let layout = VqLayout {
        in_features: n,
        out_features: m,
        vector_len: v,
        num_centroids: k,
        num_res_centroids: kr,
        group_num: 1,
        group_size: n,
        outlier_size: 0,
        outlier_vector_len: 0,
        outlier_num_centroids: 0,
        enable_norm: true,
        enable_perm: true,
        bias: false,
    };
    let mut indices = Vec::new();
    for _ in 0..layout.num_indices() {
        let main: Vec<u32> = (0..n).map(|_| (rng.next() % k as u64) as u32).collect();
        let res: Vec<u32> = (0..n).map(|_| (rng.next() % kr.max(1) as u64) as u32).collect();
        indices.extend(pack_indices(&main, (kr > 0).then_some(&res[..]), layout.index_bits(), layout.res_index_bits()));
    }
    let mut perm: Vec<u16> = (0..n as u16).collect();
    for i in (1..n).rev() {
        perm.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let mut book = |len: usize| HalfOrFloat::Bf16((0..len).map(|_| half::bf16::from_f32(rng.float())).collect());
    let centroids = book(k * v);
    let res_centroids = (kr > 0).then(|| book(kr * v));
    let t = VqTensors {
        layout,
        centroids,
        res_centroids,
        indices,
        perm: Some(perm),
        weight_scale: Some((0..n).map(|_| rng.float()).collect()),
        weight_bias: Some((0..n).map(|_| rng.float()).collect()),
        bias: None,
        outlier_centroids: None,
        outlier_indices: None,
    };
    t.validate().expect("valid random tensors");
    Layer::Vq(Box::new(PreparedVq::new(&VqView::new(&t), prec)))
}

fn build(config: &str, blocks: usize, shapes: &Shapes, rng: &mut Rng) -> Vec<[Layer; 7]> {
    let (name, prec) = match config.split_once(':') {
        Some((n, "f32")) => (n, BookPrecision::F32),
        Some((n, "half")) => (n, BookPrecision::Stored),
        Some((n, "i8")) => (n, BookPrecision::Int8),
        _ => (config, BookPrecision::Auto),
    };
    (0..blocks)
        .map(|_| {
            shapes.map(|(_, m, n)| match name {
                "f32" => Layer::Dense(DenseWeight::F32((0..m * n).map(|_| rng.float()).collect())),
                "f16" => Layer::Dense(DenseWeight::F16((0..m * n).map(|_| f16::from_f32(rng.float())).collect())),
                other => vq_layer(rng, m, n, vq_params(other).expect("known config"), prec),
            })
        })
        .collect()
}

/// Makes every VQ layer prefetch the codebook of the layer that runs after it, as the model does.
fn chain_prefetch(model: &mut [[Layer; 7]]) {
    let mut layers: Vec<&mut Layer> = model.iter_mut().flat_map(|b| b.iter_mut()).collect();
    for i in 1..layers.len() {
        let next = match &*layers[i] {
            Layer::Vq(p) => Some(p.books_span()),
            Layer::Dense(_) => None,
        };
        if let Layer::Vq(p) = &mut *layers[i - 1] {
            p.prefetch_next(next);
        }
    }
}

/// Best-of-`reps` seconds per pass over all blocks, per shape (summed over blocks), for `n` tokens.
fn time_passes(model: &[[Layer; 7]], shapes: &Shapes, n: usize, reps: usize, rng: &mut Rng) -> [f64; 7] {
    let xs: Vec<Vec<f32>> = shapes.iter().map(|&(_, _, k)| (0..n * k).map(|_| rng.float()).collect()).collect();
    let mut ys: Vec<Vec<f32>> = shapes.iter().map(|&(_, m, _)| vec![0f32; n * m]).collect();
    let mut best = [f64::INFINITY; 7];
    for _ in 0..reps {
        let mut pass = [0f64; 7];
        for block in model {
            for (s, layer) in block.iter().enumerate() {
                let (_, m, k) = shapes[s];
                let t0 = Instant::now();
                layer.forward(&xs[s], &mut ys[s], n, m, k);
                pass[s] += t0.elapsed().as_secs_f64();
            }
        }
        for s in 0..7 {
            best[s] = best[s].min(pass[s]);
        }
    }
    best
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let decode_only = args.iter().any(|a| a == "--decode");
    let shapes = if args.iter().any(|a| a == "--llama7b") { &SHAPES_7B } else { &SHAPES };
    let chain = !args.iter().any(|a| a == "--no-chain");
    args.retain(|a| a != "--decode" && a != "--llama7b" && a != "--no-chain");
    let blocks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(30);
    let reps: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut configs: Vec<String> = args.iter().skip(2).cloned().collect();
    if configs.is_empty() {
        configs = ["f32", "f16", "v6k4096", "v8k65536", "v8k65536r256", "v4k65536"].map(String::from).to_vec();
    }
    let mut rng = Rng(7);
    println!("{blocks} blocks, best of {reps}; decode = 1 token, prefill = {PREFILL_TOKENS} tokens");
    let mut summary = Vec::new();
    for config in &configs {
        let mut model = build(config, blocks, shapes, &mut rng);
        if chain {
            chain_prefetch(&mut model);
        }
        let desc = match &model[0][0] {
            Layer::Vq(p) => p.describe(),
            Layer::Dense(_) => "dense".into(),
        };
        let bytes: Vec<usize> = (0..7).map(|s| model[0][s].n_bytes()).collect();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let (dec, pre) = pool.install(|| {
                let dec = time_passes(&model, shapes, 1, reps, &mut rng);
                let pre = if decode_only {
                    [f64::NAN; 7]
                } else {
                    time_passes(&model[..blocks.min(4)], shapes, PREFILL_TOKENS, reps.min(2), &mut rng)
                };
                (dec, pre)
            });
            println!("\n{config} ({desc}), {threads} thread(s)");
            println!("{:<15} {:>10} {:>11} {:>8} {:>13}", "shape", "bytes/tok", "decode µs", "GB/s", "prefill µs");
            for s in 0..7 {
                let us = dec[s] / blocks as f64 * 1e6;
                let pre_us = pre[s] / blocks.min(4) as f64 * 1e6;
                println!(
                    "{:<15} {:>10} {:>11.1} {:>8.1} {:>13.0}",
                    shapes[s].0,
                    bytes[s],
                    us,
                    bytes[s] as f64 / us / 1e3,
                    pre_us
                );
            }
            let block_dec: f64 = dec.iter().sum::<f64>() / blocks as f64 * 1e6;
            let block_pre: f64 = pre.iter().sum::<f64>() / blocks.min(4) as f64 * 1e6;
            let block_bytes: usize = bytes.iter().sum();
            println!(
                "{:<15} {:>10} {:>11.1} {:>8.1} {:>13.0}",
                "block",
                block_bytes,
                block_dec,
                block_bytes as f64 / block_dec / 1e3,
                block_pre
            );
            summary.push((config.clone(), threads, block_dec, block_pre));
        }
    }
    println!("\nsummary: per decoder block (7 projections), µs; ratio = f32 time / this time");
    println!("{:<18} {:>3} {:>10} {:>8} {:>11} {:>8}", "config", "thr", "decode", "×f32", "prefill", "×f32");
    for (config, threads, dec, pre) in &summary {
        let base = summary.iter().find(|s| s.0 == "f32" && s.1 == *threads);
        let (bd, bp) = base.map_or((f64::NAN, f64::NAN), |b| (b.2, b.3));
        println!("{config:<18} {threads:>3} {dec:>10.1} {:>8.2} {pre:>11.0} {:>8.2}", bd / dec, bp / pre);
    }
}
