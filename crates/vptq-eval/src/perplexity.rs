//! Perplexity: the token stream is cut into non-overlapping windows of `ctx` tokens from token 0 (a trailing
//! partial window is dropped); each window runs on an empty cache; every position with a previous token is
//! scored (`ctx − 1` per window); PPL = exp(mean NLL).

use serde::Serialize;
use std::time::Instant;
use vptq_kernels::ops::log_sum_exp;
use vptq_model::{Llama, LogitsMode, ModelError};

/// Options of a perplexity run.
#[derive(Debug, Clone)]
pub struct PplOptions {
    /// Window length in tokens.
    pub ctx: usize,
    /// Evaluate at most this many windows (all when `None`).
    pub max_windows: Option<usize>,
}

/// Result of a perplexity run.
#[derive(Debug, Clone, Serialize)]
pub struct PplReport {
    /// exp(mean NLL).
    pub ppl: f64,
    /// Mean negative log-likelihood in nats.
    pub nll: f64,
    /// Windows evaluated.
    pub windows: usize,
    /// Window length.
    pub ctx: usize,
    /// Positions scored.
    pub tokens_scored: usize,
    /// Tokens in the whole text.
    pub tokens_total: usize,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Computes perplexity of `model` over `tokens`; `on_window(done, total)` is called after each window.
///
/// # Errors
/// Fewer tokens than one window, `ctx < 2` or beyond the model's context, or model errors.
pub fn perplexity(
    model: &Llama,
    tokens: &[u32],
    opts: &PplOptions,
    mut on_window: impl FnMut(usize, usize),
) -> Result<PplReport, ModelError> {
    if opts.ctx < 2 {
        return Err(ModelError::InvalidArgument(format!("context {} is too short (need ≥ 2)", opts.ctx)));
    }
    if opts.ctx > model.config.max_seq_len {
        return Err(ModelError::ContextOverflow { needed: opts.ctx, max: model.config.max_seq_len });
    }
    let available = tokens.len() / opts.ctx;
    if available == 0 {
        return Err(ModelError::InvalidArgument(format!(
            "the text has {} tokens, fewer than one window of {}",
            tokens.len(),
            opts.ctx
        )));
    }
    let windows = opts.max_windows.map_or(available, |m| m.min(available));
    let start = Instant::now();
    let vocab = model.config.vocab_size;
    let mut nll_sum = 0f64;
    let mut scored = 0usize;
    let mut cache = model.new_cache(opts.ctx);
    for w in 0..windows {
        let window = &tokens[w * opts.ctx..(w + 1) * opts.ctx];
        cache.clear();
        let logits = model.forward(window, &mut cache, LogitsMode::All)?; // [ctx, vocab]
        for (t, &target) in window.iter().enumerate().skip(1) {
            let row = &logits[(t - 1) * vocab..t * vocab];
            nll_sum += log_sum_exp(row) - row[target as usize] as f64;
            scored += 1;
        }
        on_window(w + 1, windows);
    }
    let nll = nll_sum / scored as f64;
    Ok(PplReport {
        ppl: nll.exp(),
        nll,
        windows,
        ctx: opts.ctx,
        tokens_scored: scored,
        tokens_total: tokens.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
