//! Speed benchmark: prefill tok/s over a prompt, decode tok/s over generated tokens (greedy), each after a
//! warm-up and as the median of repeats; bytes of weights per decoded token and the decode bound those bytes
//! imply at a measured memory-read bandwidth, with where those bytes come from (projections by storage kind, head,
//! embedding row, norms) so a VPTQ model's decode can be compared with its bound.

use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use vptq_model::sampling::argmax;
use vptq_model::{Llama, LogitsMode, ModelError};

/// Options of a benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Prompt length in tokens.
    pub prompt_len: usize,
    /// Tokens decoded per repeat.
    pub gen_len: usize,
    /// Timed repeats (after one warm-up).
    pub repeats: usize,
}

/// Benchmark result.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Prompt tokens.
    pub prompt_len: usize,
    /// Decoded tokens per repeat.
    pub gen_len: usize,
    /// Timed repeats.
    pub repeats: usize,
    /// Threads in the pool.
    pub threads: usize,
    /// Median prefill throughput.
    pub prefill_tok_s: f64,
    /// Median decode throughput.
    pub decode_tok_s: f64,
    /// All prefill measurements (tok/s).
    pub prefill_samples: Vec<f64>,
    /// All decode measurements (tok/s).
    pub decode_samples: Vec<f64>,
    /// Bytes of weights read per decoded token.
    pub weight_bytes_per_token: usize,
    /// Where those bytes come from.
    pub weight_bytes_breakdown: WeightBytes,
    /// Measured memory-read bandwidth (GB/s, 10⁹ bytes) with the same thread count.
    pub read_bandwidth_gb_s: f64,
    /// Decode tok/s if weight reads ran at that bandwidth.
    pub decode_bound_tok_s: f64,
    /// decode_tok_s / decode_bound_tok_s.
    pub decode_efficiency: f64,
}

/// The bytes of weights one decoded token reads, by part, as held in memory (for VPTQ: packed indices,
/// codebooks, perm, scale/offset; for int8: values and scales).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WeightBytes {
    /// All decoder projections.
    pub linears: usize,
    /// The output head (the embedding table when tied).
    pub head: usize,
    /// One row of the embedding table.
    pub embed_row: usize,
    /// RMSNorm weights (f32).
    pub norms: usize,
    /// Sum of the parts.
    pub total: usize,
    /// Number of decoder projections per storage kind ("f32", "q8", "vq v6 k4096", ...).
    pub linear_kinds: BTreeMap<String, usize>,
    /// Storage kind of the head.
    pub head_kind: String,
    /// Storage kind of the embedding table.
    pub embed_kind: String,
}

impl WeightBytes {
    /// The breakdown of `model`.
    pub fn of(model: &Llama) -> Self {
        let mut linears = 0;
        let mut linear_kinds = BTreeMap::new();
        for (_, l) in model.blocks.iter().flat_map(|b| b.linears()) {
            linears += l.n_bytes();
            *linear_kinds.entry(l.kind()).or_insert(0) += 1;
        }
        let (head, head_kind) = match &model.head {
            Some(h) => (h.n_bytes(), h.kind()),
            None => (model.embed.weight.n_bytes(), model.embed.weight.kind().to_string()),
        };
        let vocab = model.config.vocab_size.max(1);
        // Every row holds the same number of values and scales, so a row is an exact share of the table.
        let embed_row = model.embed.weight.n_bytes() / vocab;
        let norms = (model.blocks.len() * 2 + 1) * model.config.hidden_size * 4;
        WeightBytes {
            linears,
            head,
            embed_row,
            norms,
            total: linears + head + embed_row + norms,
            linear_kinds,
            head_kind,
            embed_kind: model.embed.weight.kind().to_string(),
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Measures memory-read bandwidth in GB/s with the current rayon pool: sums a buffer much larger than the
/// caches (`n_bytes`), best of 3 passes after a warm-up pass.
pub fn measure_read_bandwidth(n_bytes: usize) -> f64 {
    let n = (n_bytes / 8).max(1 << 20);
    let buf: Vec<u64> = (0..n as u64).collect();
    let chunk = (n / (rayon::current_num_threads() * 4)).max(1 << 14);
    let mut best = 0f64;
    for pass in 0..4 {
        let t = Instant::now();
        let s: u64 = buf.par_chunks(chunk).map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b))).sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(s);
        if pass > 0 {
            best = best.max((n * 8) as f64 / secs / 1e9);
        }
    }
    best
}

/// Runs the benchmark (prompt tokens are a fixed pseudo-random sequence of ids below the vocabulary size);
/// `read_bandwidth_gb_s` comes from [`measure_read_bandwidth`], run by the caller after it has read the peak
/// memory (the measurement's buffer would otherwise count as the model's).
///
/// # Errors
/// Prompt plus generation beyond the model's context, or model errors.
pub fn bench(
    model: &Llama,
    opts: &BenchOptions,
    mut on_progress: impl FnMut(&str),
    measure_bandwidth: impl FnOnce() -> f64,
) -> Result<BenchReport, ModelError> {
    let total = opts.prompt_len + opts.gen_len;
    if opts.prompt_len == 0 || opts.repeats == 0 {
        return Err(ModelError::InvalidArgument("prompt length and repeats must be ≥ 1".into()));
    }
    if total > model.config.max_seq_len {
        return Err(ModelError::ContextOverflow { needed: total, max: model.config.max_seq_len });
    }
    let vocab = model.config.vocab_size as u64;
    let prompt: Vec<u32> = (0..opts.prompt_len as u64).map(|i| ((i * 2_654_435_761 + 17) % vocab) as u32).collect();
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let mut cache = model.new_cache(total);
    for rep in 0..=opts.repeats {
        on_progress(&if rep == 0 { "warm-up".to_string() } else { format!("repeat {rep}/{}", opts.repeats) });
        cache.clear();
        let t = Instant::now();
        let logits = model.forward(&prompt, &mut cache, LogitsMode::Last)?;
        let p = opts.prompt_len as f64 / t.elapsed().as_secs_f64();
        let mut next = argmax(&logits);
        let t = Instant::now();
        for _ in 0..opts.gen_len {
            next = argmax(&model.forward(&[next], &mut cache, LogitsMode::Last)?);
        }
        let d = opts.gen_len as f64 / t.elapsed().as_secs_f64();
        if rep > 0 {
            prefill.push(p);
            decode.push(d);
        }
    }
    let breakdown = WeightBytes::of(model);
    let bytes = breakdown.total;
    let bw = measure_bandwidth();
    let bound = bw * 1e9 / bytes as f64;
    let decode_med = if opts.gen_len == 0 { 0.0 } else { median(&mut decode.clone()) };
    Ok(BenchReport {
        prompt_len: opts.prompt_len,
        gen_len: opts.gen_len,
        repeats: opts.repeats,
        threads: rayon::current_num_threads(),
        prefill_tok_s: median(&mut prefill.clone()),
        decode_tok_s: decode_med,
        prefill_samples: prefill,
        decode_samples: decode,
        weight_bytes_per_token: bytes,
        weight_bytes_breakdown: breakdown,
        read_bandwidth_gb_s: bw,
        decode_bound_tok_s: bound,
        decode_efficiency: decode_med / bound,
    })
}
