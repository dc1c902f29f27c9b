//! Key/value cache: per layer and kv head, the rotated keys and the values of every position seen so far.
//! Keys are kept in transposed tiles (`vptq_kernels::attn`, `[tiles, head_dim, KEY_TILE]`) so that decode scores
//! need no lane sums; values row-major (`[positions, head_dim]`). One kv head's keys and values are each
//! contiguous, so decode attention streams them instead of striding over the other heads.

use crate::config::LlamaConfig;
use vptq_kernels::attn::{load_keys, store_keys, KEY_TILE};

/// Keys and values of one layer. Empty until the first [`LayerCache::append`] fixes its head shape.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Per kv head: rotated keys, `[tiles, head_dim, KEY_TILE]` (entries past `len` are stale).
    keys: Vec<Vec<f32>>,
    /// Per kv head: values, `[len, head_dim]`.
    values: Vec<Vec<f32>>,
    head_dim: usize,
    len: usize,
}

impl LayerCache {
    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the keys and values of `n` new positions, `k`, `v`: `[n, n_kv_heads · head_dim]`.
    ///
    /// # Panics
    /// If the head shape differs from earlier appends, or `k`, `v` are not whole rows of it.
    pub fn append(&mut self, k: &[f32], v: &[f32], n_kv_heads: usize, head_dim: usize) {
        if self.keys.is_empty() {
            self.keys = vec![Vec::new(); n_kv_heads];
            self.values = vec![Vec::new(); n_kv_heads];
            self.head_dim = head_dim;
        }
        assert!(self.keys.len() == n_kv_heads && self.head_dim == head_dim, "cache head shape changed");
        let kv_dim = n_kv_heads * head_dim;
        assert!(k.len() == v.len() && k.len().is_multiple_of(kv_dim), "keys/values are not whole rows");
        let n = k.len() / kv_dim;
        if n == 0 {
            return;
        }
        let tiles = (self.len + n).div_ceil(KEY_TILE);
        for h in 0..n_kv_heads {
            let keys = &mut self.keys[h];
            keys.resize(tiles * head_dim * KEY_TILE, 0.0);
            store_keys(keys, head_dim, self.len, &k[h * head_dim..], kv_dim, n);
            for row in v.chunks_exact(kv_dim) {
                self.values[h].extend_from_slice(&row[h * head_dim..(h + 1) * head_dim]);
            }
        }
        self.len += n;
    }

    /// Kv head `h`'s key tiles, `[len.div_ceil(KEY_TILE), head_dim, KEY_TILE]`.
    pub fn key_tiles(&self, h: usize) -> &[f32] {
        &self.keys[h][..self.len.div_ceil(KEY_TILE) * self.head_dim * KEY_TILE]
    }

    /// Kv head `h`'s values, `[len, head_dim]`.
    pub fn values(&self, h: usize) -> &[f32] {
        &self.values[h]
    }

    /// Kv head `h`'s keys as rows, `[len, head_dim]` (a copy, for the prefill GEMMs).
    pub fn key_rows(&self, h: usize) -> Vec<f32> {
        let mut rows = vec![0f32; self.len * self.head_dim];
        load_keys(&self.keys[h], self.head_dim, self.len, &mut rows);
        rows
    }

    /// Drops positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            let tiles = len.div_ceil(KEY_TILE);
            for (k, v) in self.keys.iter_mut().zip(&mut self.values) {
                k.truncate(tiles * self.head_dim * KEY_TILE);
                v.truncate(len * self.head_dim);
            }
        }
    }

    /// Bytes held.
    pub fn n_bytes(&self) -> usize {
        self.keys.iter().chain(&self.values).map(|x| x.len() * 4).sum()
    }
}

/// The cache of all layers, with a capacity in positions.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// One entry per layer.
    pub layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `config` holding at most `capacity` positions (clamped to the model's context).
    pub fn new(config: &LlamaConfig, capacity: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); config.n_layers],
            len: 0,
            capacity: capacity.min(config.max_seq_len),
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum positions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (keeps the allocations).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Drops positions from `len` on (used to rewind to a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            for l in &mut self.layers {
                l.truncate(len);
            }
        }
    }

    /// Records that every layer now holds `len` positions (after a forward pass appended to each).
    pub(crate) fn advance(&mut self, len: usize) {
        debug_assert!(self.layers.iter().all(|l| l.len() == len));
        self.len = len;
    }

    /// Bytes held.
    pub fn n_bytes(&self) -> usize {
        self.layers.iter().map(LayerCache::n_bytes).sum()
    }
}
