//! Generation: a [`Session`] keeps the KV cache and the tokens it holds (so a chat reuses the shared prefix of
//! successive prompts), and [`generate`] streams text token by token with EOS and stop-string handling.

use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::llama::{Llama, LogitsMode};
use crate::sampling::{Sampler, SamplingParams};
use std::time::Instant;
use vptq_tokenizer::{StreamDecoder, Tokenizer};

/// A model with its cache and the tokens the cache holds.
#[derive(Debug)]
pub struct Session<'m> {
    model: &'m Llama,
    cache: KvCache,
    tokens: Vec<u32>,
}

impl<'m> Session<'m> {
    /// A session holding at most `capacity` positions.
    pub fn new(model: &'m Llama, capacity: usize) -> Self {
        Session { model, cache: model.new_cache(capacity), tokens: Vec::new() }
    }

    /// The model.
    pub fn model(&self) -> &'m Llama {
        self.model
    }

    /// Tokens held by the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Capacity in positions.
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// Makes the cache hold exactly `prompt`, reusing the longest common prefix with what it holds, and returns
    /// the logits after the last prompt token.
    ///
    /// # Errors
    /// Empty prompt, context overflow, token out of range.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        let common = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // At least the last prompt token is recomputed: its logits are needed.
        let keep = common.min(prompt.len().saturating_sub(1));
        self.cache.truncate(keep);
        self.tokens.truncate(keep);
        let logits = self.model.forward(&prompt[keep..], &mut self.cache, LogitsMode::Last)?;
        self.tokens.extend_from_slice(&prompt[keep..]);
        Ok(logits)
    }

    /// Feeds one token and returns the next logits.
    ///
    /// # Errors
    /// Context overflow, token out of range.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        let logits = self.model.forward(&[token], &mut self.cache, LogitsMode::Last)?;
        self.tokens.push(token);
        Ok(logits)
    }
}

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Maximum new tokens.
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings; they are not emitted.
    pub stop_strings: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 128, sampling: SamplingParams::default(), stop_strings: Vec::new() }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-sequence token.
    Eos,
    /// A stop string.
    StopString,
    /// `max_tokens` reached.
    MaxTokens,
    /// The context is full.
    ContextFull,
}

/// What a generation did.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Full generated text (without stop string).
    pub text: String,
    /// Generated token ids (including a final EOS if any).
    pub tokens: Vec<u32>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// Seconds spent in prefill.
    pub prefill_secs: f64,
    /// Seconds spent decoding.
    pub decode_secs: f64,
}

/// Emits text as it is produced while holding back any tail that could be the start of a stop string.
struct StopFilter<'a> {
    stops: &'a [String],
    text: String,
    emitted: usize,
}

impl<'a> StopFilter<'a> {
    /// Appends `piece`; returns (text safe to emit now, whether a stop string was found).
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.text.push_str(piece);
        let search_from = self.emitted.saturating_sub(self.stops.iter().map(|s| s.len()).max().unwrap_or(0));
        let search_from = floor_char_boundary(&self.text, search_from);
        let hit =
            self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.text[search_from..].find(s.as_str())).min();
        if let Some(pos) = hit {
            self.text.truncate(search_from + pos);
            let out = self.text[self.emitted.min(self.text.len())..].to_string();
            self.emitted = self.text.len();
            return (out, true);
        }
        let hold = self.stops.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
        let safe = floor_char_boundary(&self.text, self.text.len().saturating_sub(hold)).max(self.emitted);
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        (out, false)
    }

    fn finish(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Generates from `prompt` (token ids), calling `on_text` with each new piece of text as soon as it is final.
///
/// # Errors
/// Model errors (context, token range) and tokenizer decode errors.
pub fn generate(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let t0 = Instant::now();
    let mut logits = session.prefill(prompt)?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut sampler = Sampler::new(opts.sampling.clone());
    let mut decoder = StreamDecoder::new(tokenizer, true);
    let mut filter = StopFilter { stops: &opts.stop_strings, text: String::new(), emitted: 0 };
    let mut tokens = Vec::new();
    let mut stop = StopReason::MaxTokens;
    for i in 0..opts.max_tokens {
        let next = sampler.sample(&logits, session.tokens());
        tokens.push(next);
        if tokenizer.is_eos(next) {
            stop = StopReason::Eos;
            break;
        }
        if let Some(piece) = decoder.push(next) {
            let (out, hit) = filter.push(&piece);
            if !out.is_empty() {
                on_text(&out);
            }
            if hit {
                stop = StopReason::StopString;
                break;
            }
        }
        if i + 1 == opts.max_tokens {
            break;
        }
        if session.tokens().len() + 1 > session.capacity() {
            stop = StopReason::ContextFull;
            break;
        }
        logits = session.step(next)?;
    }
    if stop != StopReason::StopString {
        if let Some(piece) = decoder.flush() {
            filter.text.push_str(&piece);
        }
        let rest = filter.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
    }
    Ok(Generation {
        text: filter.text,
        tokens,
        prompt_tokens: prompt.len(),
        stop,
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::StopFilter;

    #[test]
    fn stop_filter_holds_back_partial_matches_and_cuts_at_stop() {
        let stops = vec!["\nUser:".to_string()];
        let mut f = StopFilter { stops: &stops, text: String::new(), emitted: 0 };
        let mut out = String::new();
        for piece in ["Hello", " world", "\nUs", "er:", " more"] {
            let (o, hit) = f.push(piece);
            out.push_str(&o);
            if hit {
                break;
            }
        }
        assert_eq!(out, "Hello world");
        assert_eq!(f.text, "Hello world");
    }

    #[test]
    fn stop_filter_without_stops_emits_everything() {
        let stops = vec![];
        let mut f = StopFilter { stops: &stops, text: String::new(), emitted: 0 };
        assert_eq!(f.push("héllo").0, "héllo");
        assert_eq!(f.finish(), "");
    }
}
