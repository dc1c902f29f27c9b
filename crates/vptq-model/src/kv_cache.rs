//! Key/value cache: per layer, the rotated keys and the values of every position seen so far,
//! `[positions, n_kv_heads · head_dim]` row-major.

use crate::config::LlamaConfig;

/// Keys and values of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// `[len, kv_dim]` rotated keys.
    pub k: Vec<f32>,
    /// `[len, kv_dim]` values.
    pub v: Vec<f32>,
}

/// The cache of all layers, with a capacity in positions.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// One entry per layer.
    pub layers: Vec<LayerCache>,
    kv_dim: usize,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `config` holding at most `capacity` positions (clamped to the model's context).
    pub fn new(config: &LlamaConfig, capacity: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); config.n_layers],
            kv_dim: config.kv_dim(),
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
        self.len = 0;
        for l in &mut self.layers {
            l.k.clear();
            l.v.clear();
        }
    }

    /// Drops positions from `len` on (used to rewind to a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            for l in &mut self.layers {
                l.k.truncate(len * self.kv_dim);
                l.v.truncate(len * self.kv_dim);
            }
        }
    }

    /// Records that every layer now holds `len` positions (after a forward pass appended to each).
    pub(crate) fn advance(&mut self, len: usize) {
        debug_assert!(self.layers.iter().all(|l| l.k.len() == len * self.kv_dim));
        self.len = len;
    }

    /// Bytes held.
    pub fn n_bytes(&self) -> usize {
        self.layers.iter().map(|l| (l.k.len() + l.v.len()) * 4).sum()
    }
}
