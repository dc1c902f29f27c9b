//! The decoder: embeddings → n × (RMSNorm → attention → residual → RMSNorm → SwiGLU → residual) → RMSNorm →
//! head. Batched prefill and single-token decode are the same code path with `n` new tokens.

use crate::attention::{attention, AttnShape};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::kv_cache::{KvCache, KvPrecision, LayerCache};
use crate::linear::{DenseLinear, Linear};
use vptq_kernels::ops::{add_in_place, rmsnorm, rope, silu_mul};

/// Weights of one decoder block.
#[derive(Debug, Clone)]
pub struct Block {
    /// RMSNorm weight before attention `[hidden]`.
    pub attn_norm: Vec<f32>,
    /// Query projection `[q_dim, hidden]`.
    pub q_proj: Linear,
    /// Key projection `[kv_dim, hidden]`.
    pub k_proj: Linear,
    /// Value projection `[kv_dim, hidden]`.
    pub v_proj: Linear,
    /// Output projection `[hidden, q_dim]`.
    pub o_proj: Linear,
    /// RMSNorm weight before the MLP `[hidden]`.
    pub ffn_norm: Vec<f32>,
    /// Gate projection `[intermediate, hidden]`.
    pub gate_proj: Linear,
    /// Up projection `[intermediate, hidden]`.
    pub up_proj: Linear,
    /// Down projection `[hidden, intermediate]`.
    pub down_proj: Linear,
}

impl Block {
    /// The seven projections with their Hugging Face short names.
    pub fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            ("q_proj", &self.q_proj),
            ("k_proj", &self.k_proj),
            ("v_proj", &self.v_proj),
            ("o_proj", &self.o_proj),
            ("gate_proj", &self.gate_proj),
            ("up_proj", &self.up_proj),
            ("down_proj", &self.down_proj),
        ]
    }

    /// [`Block::linears`], mutable (to swap a projection's storage).
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            ("q_proj", &mut self.q_proj),
            ("k_proj", &mut self.k_proj),
            ("v_proj", &mut self.v_proj),
            ("o_proj", &mut self.o_proj),
            ("gate_proj", &mut self.gate_proj),
            ("up_proj", &mut self.up_proj),
            ("down_proj", &mut self.down_proj),
        ]
    }
}

/// The input of a group of projections, as seen by a [`Llama::forward_observed`] observer: q/k/v share one
/// input, gate/up share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearInput {
    /// Input of q_proj, k_proj and v_proj `[n, hidden]`.
    Qkv,
    /// Input of o_proj `[n, q_dim]`.
    O,
    /// Input of gate_proj and up_proj `[n, hidden]`.
    Up,
    /// Input of down_proj `[n, intermediate]`.
    Down,
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsMode {
    /// Only the last token's `[vocab]` (generation).
    Last,
    /// Every token's, `[n, vocab]` (perplexity).
    All,
}

/// A LLaMA-family model.
#[derive(Debug, Clone)]
pub struct Llama {
    /// Validated configuration.
    pub config: LlamaConfig,
    /// Token embedding `[vocab, hidden]` (also the head when tied).
    pub embed: DenseLinear,
    /// Decoder blocks.
    pub blocks: Vec<Block>,
    /// Final RMSNorm weight `[hidden]`.
    pub norm: Vec<f32>,
    /// Output head `[vocab, hidden]`; `None` when tied to the embedding.
    pub head: Option<Linear>,
    /// Element type of the caches [`Llama::new_cache`] makes (f16 unless the loader was told otherwise).
    pub kv_precision: KvPrecision,
    inv_freq: Vec<f32>,
}

impl Llama {
    /// Assembles a model; shapes must already have been checked by the loader.
    pub fn new(
        config: LlamaConfig,
        embed: DenseLinear,
        blocks: Vec<Block>,
        norm: Vec<f32>,
        head: Option<Linear>,
    ) -> Self {
        let inv_freq = config.inv_freq();
        let mut model = Llama { config, embed, blocks, norm, head, kv_precision: KvPrecision::default(), inv_freq };
        model.chain_codebook_prefetch();
        model
    }

    /// An empty KV cache of `capacity` positions in [`Llama::kv_precision`].
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::with_precision(&self.config, capacity, self.kv_precision)
    }

    /// Makes each VPTQ projection prefetch the codebook of the projection that runs after it (decode runs them
    /// in [`Block::linears`] order, block after block), so that no layer starts on a cold codebook. Call again
    /// after swapping a projection's storage.
    pub fn chain_codebook_prefetch(&mut self) {
        let mut linears: Vec<&mut Linear> =
            self.blocks.iter_mut().flat_map(|b| b.linears_mut().map(|(_, l)| l)).collect();
        for i in 0..linears.len() {
            let next = match linears.get(i + 1).map(|l| &**l) {
                Some(Linear::Vq(q)) => Some(q.books_span()),
                _ => None,
            };
            if let Linear::Vq(q) = &mut *linears[i] {
                q.prefetch_next(next);
            }
        }
    }

    /// Bytes of weights read to decode one token: every projection and the head, plus one embedding row.
    pub fn weight_bytes_per_token(&self) -> usize {
        let blocks: usize = self.blocks.iter().flat_map(|b| b.linears().map(|(_, l)| l.n_bytes())).sum();
        let head = match &self.head {
            Some(h) => h.n_bytes(),
            None => self.embed.weight.n_bytes(),
        };
        let norms = (self.blocks.len() * 2 + 1) * self.config.hidden_size * 4;
        blocks + head + norms + self.embed.weight.n_bytes() / self.config.vocab_size
    }

    /// Total bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        let blocks: usize = self.blocks.iter().flat_map(|b| b.linears().map(|(_, l)| l.n_bytes())).sum();
        blocks + self.head.as_ref().map_or(0, |h| h.n_bytes()) + self.embed.weight.n_bytes()
    }

    /// Runs `tokens` (positions `cache.len()…`) through the model, appending to `cache`, and returns logits:
    /// `[vocab]` for [`LogitsMode::Last`], `[n, vocab]` for [`LogitsMode::All`].
    ///
    /// # Errors
    /// A token outside the vocabulary, or more positions than the cache holds.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, mode: LogitsMode) -> Result<Vec<f32>> {
        self.forward_observed(tokens, cache, mode, &mut |_, _, _| {})
    }

    /// The embedding rows of `tokens`, `[n, hidden]`.
    ///
    /// # Errors
    /// A token outside the vocabulary.
    pub fn embed_tokens(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let (hidden, vocab) = (self.config.hidden_size, self.config.vocab_size);
        let mut x = vec![0f32; tokens.len() * hidden]; // [n, hidden]
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= vocab {
                return Err(ModelError::TokenOutOfRange { id, vocab_size: vocab });
            }
            self.embed.row_f32(id as usize, &mut x[t * hidden..(t + 1) * hidden]);
        }
        Ok(x)
    }

    /// Runs decoder block `b` (this model's or a stand-in with the same shapes, e.g. a quantized copy) on the
    /// residual stream `x [n, hidden]` of positions `pos0…` in place, appending its keys/values to `kv` (which
    /// must hold exactly `pos0` positions). `observe(input, h)` sees every projection input.
    pub fn forward_block(
        &self,
        b: &Block,
        x: &mut [f32],
        pos0: usize,
        kv: &mut LayerCache,
        observe: &mut dyn FnMut(LinearInput, &[f32]),
    ) {
        let c = &self.config;
        let n = x.len() / c.hidden_size;
        let positions: Vec<usize> = (pos0..pos0 + n).collect();
        let mut h = vec![0f32; x.len()]; // [n, hidden] normalized input of each sub-layer
        rmsnorm(x, &b.attn_norm, c.rms_eps, &mut h);
        observe(LinearInput::Qkv, &h);
        let mut q = b.q_proj.forward(&h, n); // [n, q_dim]
        let mut k = b.k_proj.forward(&h, n); // [n, kv_dim]
        let v = b.v_proj.forward(&h, n); // [n, kv_dim]
        rope(&mut q, &positions, c.n_heads, c.head_dim, &self.inv_freq, c.rope_layout);
        rope(&mut k, &positions, c.n_kv_heads, c.head_dim, &self.inv_freq, c.rope_layout);
        kv.append(&k, &v, c.n_kv_heads, c.head_dim);
        let shape = AttnShape { n, pos0, n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim };
        let att = attention(&q, kv, shape); // [n, q_dim]
        observe(LinearInput::O, &att);
        add_in_place(x, &b.o_proj.forward(&att, n));

        rmsnorm(x, &b.ffn_norm, c.rms_eps, &mut h);
        observe(LinearInput::Up, &h);
        let mut gate = b.gate_proj.forward(&h, n); // [n, intermediate]
        let up = b.up_proj.forward(&h, n);
        silu_mul(&mut gate, &up);
        observe(LinearInput::Down, &gate);
        add_in_place(x, &b.down_proj.forward(&gate, n));
    }

    /// [`Llama::forward`] that also shows `observe(layer, input, x)` every projection input `x [n, in_features]`
    /// (the quantizer's calibration reads the Hessian proxies from these).
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn forward_observed(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        mode: LogitsMode,
        observe: &mut dyn FnMut(usize, LinearInput, &[f32]),
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::InvalidArgument("forward needs at least one token".into()));
        }
        let pos0 = cache.len();
        if pos0 + n > cache.capacity() {
            return Err(ModelError::ContextOverflow { needed: pos0 + n, max: cache.capacity() });
        }
        let hidden = c.hidden_size;
        let mut x = self.embed_tokens(tokens)?; // [n, hidden] residual stream
        for (layer, b) in self.blocks.iter().enumerate() {
            self.forward_block(b, &mut x, pos0, &mut cache.layers[layer], &mut |site, h| observe(layer, site, h));
        }
        cache.advance(pos0 + n);
        let rows = match mode {
            LogitsMode::Last => &x[(n - 1) * hidden..],
            LogitsMode::All => &x[..],
        };
        let n_out = rows.len() / hidden;
        let mut normed = vec![0f32; rows.len()];
        rmsnorm(rows, &self.norm, c.rms_eps, &mut normed);
        Ok(match &self.head {
            Some(head) => head.forward(&normed, n_out),
            None => {
                let mut y = vec![0f32; n_out * c.vocab_size];
                vptq_kernels::dense::matmul(&normed, self.embed.weight.view(), &mut y, n_out, hidden, c.vocab_size);
                y
            }
        })
    }
}
