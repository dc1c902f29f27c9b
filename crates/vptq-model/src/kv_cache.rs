//! Key/value cache: per layer and kv head, the rotated keys and the values of every position seen so far.
//! Keys are kept in transposed tiles (`vptq_kernels::attn`, `[tiles, head_dim, KEY_TILE]`) so that decode scores
//! need no lane sums; values row-major (`[positions, head_dim]`). One kv head's keys and values are each
//! contiguous, so decode attention streams them instead of striding over the other heads. Entries are f16 by
//! default (half the memory and the bytes decode attention streams; keys and values stay far inside f16's range),
//! or f32 ([`KvPrecision`]).

use crate::config::LlamaConfig;
use half::f16;
use vptq_kernels::attn::{load_keys, store_keys, KvElem, KEY_TILE};

/// The element type of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvPrecision {
    /// Half precision: half the memory, and what decode attention streams.
    #[default]
    F16,
    /// Single precision: keys and values exactly as computed, so that two computations of them compare closely
    /// (f16 rounding can turn an f32 ulp of difference into an f16 ulp).
    F32,
}

/// One layer's keys and values stored as `T`. Empty until the first append fixes its head shape.
#[derive(Debug, Clone, Default)]
pub struct HeadCache<T> {
    /// Per kv head: rotated keys, `[tiles, head_dim, KEY_TILE]` (entries past `len` are stale).
    keys: Vec<Vec<T>>,
    /// Per kv head: values, `[len, head_dim]`.
    values: Vec<Vec<T>>,
    head_dim: usize,
    len: usize,
}

impl<T: KvElem> HeadCache<T> {
    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn append(&mut self, k: &[f32], v: &[f32], n_kv_heads: usize, head_dim: usize) {
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
            keys.resize(tiles * head_dim * KEY_TILE, T::ZERO);
            store_keys(keys, head_dim, self.len, &k[h * head_dim..], kv_dim, n);
            for row in v.chunks_exact(kv_dim) {
                self.values[h].extend(row[h * head_dim..(h + 1) * head_dim].iter().map(|&x| T::from_f32(x)));
            }
        }
        self.len += n;
    }

    /// Kv head `h`'s key tiles, `[len.div_ceil(KEY_TILE), head_dim, KEY_TILE]`.
    pub fn key_tiles(&self, h: usize) -> &[T] {
        &self.keys[h][..self.len.div_ceil(KEY_TILE) * self.head_dim * KEY_TILE]
    }

    /// Kv head `h`'s values, `[len, head_dim]`.
    pub fn values(&self, h: usize) -> &[T] {
        &self.values[h]
    }

    /// Kv head `h`'s keys as f32 rows, `[len, head_dim]` (a copy, for the prefill GEMMs).
    pub fn key_rows(&self, h: usize) -> Vec<f32> {
        let mut rows = vec![0f32; self.len * self.head_dim];
        load_keys(&self.keys[h], self.head_dim, self.len, &mut rows);
        rows
    }

    /// Kv head `h`'s values as f32, `[len, head_dim]` (a copy, for the prefill GEMMs).
    pub fn value_rows(&self, h: usize) -> Vec<f32> {
        self.values[h].iter().map(|x| x.to_f32()).collect()
    }

    fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            let tiles = len.div_ceil(KEY_TILE);
            for (k, v) in self.keys.iter_mut().zip(&mut self.values) {
                k.truncate(tiles * self.head_dim * KEY_TILE);
                v.truncate(len * self.head_dim);
            }
        }
    }

    fn n_bytes(&self) -> usize {
        self.keys.iter().chain(&self.values).map(|x| x.len() * size_of::<T>()).sum()
    }
}

/// Keys and values of one layer, in the cache's precision.
#[derive(Debug, Clone)]
pub enum LayerCache {
    /// f16 entries.
    F16(HeadCache<f16>),
    /// f32 entries.
    F32(HeadCache<f32>),
}

impl Default for LayerCache {
    fn default() -> Self {
        LayerCache::new(KvPrecision::default())
    }
}

/// Runs `$e` with `$c` bound to the layer's [`HeadCache`], whatever its element type.
macro_rules! each {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            LayerCache::F16($c) => $e,
            LayerCache::F32($c) => $e,
        }
    };
}

impl LayerCache {
    /// An empty layer cache of precision `p`.
    pub fn new(p: KvPrecision) -> Self {
        match p {
            KvPrecision::F16 => LayerCache::F16(HeadCache::default()),
            KvPrecision::F32 => LayerCache::F32(HeadCache::default()),
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        each!(self, c => c.len)
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the keys and values of `n` new positions, `k`, `v`: `[n, n_kv_heads · head_dim]`.
    ///
    /// # Panics
    /// If the head shape differs from earlier appends, or `k`, `v` are not whole rows of it.
    pub fn append(&mut self, k: &[f32], v: &[f32], n_kv_heads: usize, head_dim: usize) {
        each!(self, c => c.append(k, v, n_kv_heads, head_dim))
    }

    /// Drops positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        each!(self, c => c.truncate(len))
    }

    /// Bytes held.
    pub fn n_bytes(&self) -> usize {
        each!(self, c => c.n_bytes())
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
    /// An empty f16 cache for `config` holding at most `capacity` positions (clamped to the model's context).
    pub fn new(config: &LlamaConfig, capacity: usize) -> Self {
        Self::with_precision(config, capacity, KvPrecision::default())
    }

    /// [`KvCache::new`] with entries of precision `p`.
    pub fn with_precision(config: &LlamaConfig, capacity: usize, p: KvPrecision) -> Self {
        KvCache {
            layers: vec![LayerCache::new(p); config.n_layers],
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
