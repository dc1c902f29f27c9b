//! One linear layer end to end (vptq-spec.md §1.4–1.9): normalization, dead columns, act-order permutation,
//! damping, inverse-Hessian factor, Hessian-weighted k-means per codebook, the error-feedback loop, the
//! residual pass — and the result laid out as the packed Hugging Face VPTQ format needs it (§2.2).
//! Never does IO, never sees a model. Dependencies: none beyond this crate.

use std::time::Instant;

use crate::algo::hessian::{act_order_perm, damp, fix_dead_columns, normalize_and_regularize, permute_symmetric};
use crate::algo::kmeans::{train_column_codebook, Codebook, ColumnCodebook, KMeansConfig};
use crate::algo::linalg::inverse_upper_cholesky;
use crate::algo::outlier::{ColumnPart, SplitQuantizer};
use crate::algo::residual::train_residual_codebook;
use crate::algo::vptq::{proxy_error, vptq_quantize_unscored};
use crate::config::{NormMode, VqConfig};
use crate::error::{check_finite_f32, check_finite_f64, check_len, QuantError, Result};
use vptq_format::vptq::int8_codebook::grid_steps;

/// The Hessian side of a layer, computed once and shared by every layer reading the same input (q/k/v,
/// gate/up): regularization, dead columns, permutation, damping and `U` depend on `H` and the config only.
#[derive(Debug, Clone)]
pub struct PreparedHessian {
    /// N: input columns.
    pub in_features: usize,
    /// perm [N]: permuted column `q` is original column `perm[q]` (identity without act-order).
    pub perm: Vec<usize>,
    /// Original columns whose `H[j][j]` was 0 (their weights are zeroed before quantization).
    pub dead_columns: Vec<usize>,
    /// column_weights [N], permuted order: `H[j][j]` of the regularized `H` before the dead-column fix (the
    /// k-means weight of every vector of column `j`, spec §1.4 step 2).
    pub column_weights: Vec<f32>,
    /// hessian [N, N], permuted: regularized, dead columns fixed, not damped (the proxy-error metric).
    pub hessian: Vec<f64>,
    /// hessian_inv_chol [N, N], permuted: `U`, upper, `Uᵀ U = H⁻¹` of the damped `H`.
    pub hessian_inv_chol: Vec<f64>,
}

impl PreparedHessian {
    /// Prepares `h [n, n]` (`E[x xᵀ]` of the layer input) with `cfg`'s regularization, permutation and damping.
    ///
    /// # Errors
    /// `ShapeMismatch`; `NonFinite`; `NotPositiveDefinite` if `H` is not positive definite even after damping.
    pub fn new(h: &[f64], n: usize, cfg: &VqConfig) -> Result<Self> {
        Self::from_settings(h, n, cfg.hessian_regularize, cfg.enable_perm, cfg.percdamp)
    }

    /// [`Self::new`] with the three settings it reads spelled out: `H ← H / mean(diag H) + hessian_regularize·I`,
    /// act-order permutation when `enable_perm`, damping `percdamp·mean(diag H)` before the factor. The scalar
    /// baselines (`scalar_layer.rs`) prepare their Hessian through this, so both quantizers share one code path.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn from_settings(
        h: &[f64],
        n: usize,
        hessian_regularize: f64,
        enable_perm: bool,
        percdamp: f64,
    ) -> Result<Self> {
        check_len("hessian [N, N]", h.len(), n * n)?;
        check_finite_f64("hessian", h)?;
        // hr [N, N]: H / mean(diag) + λI, original order
        let mut hr = h.to_vec();
        normalize_and_regularize(&mut hr, n, hessian_regularize)?;
        let diag: Vec<f64> = (0..n).map(|j| hr[j * n + j]).collect();
        let dead_columns = fix_dead_columns(&mut hr, n)?;
        let perm = if enable_perm { act_order_perm(&hr, n)? } else { (0..n).collect() };
        let hessian = permute_symmetric(&hr, n, &perm)?;
        drop(hr);
        let mut damped = hessian.clone();
        damp(&mut damped, n, percdamp)?;
        let hessian_inv_chol = inverse_upper_cholesky(&damped, n)?;
        let column_weights = perm.iter().map(|&j| diag[j] as f32).collect();
        Ok(Self { in_features: n, perm, dead_columns, column_weights, hessian, hessian_inv_chol })
    }
}

/// The outlier block's codebook and indices.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierCodes {
    /// v0: outlier vector length.
    pub vector_len: usize,
    /// k0: outlier centroids.
    pub num_centroids: usize,
    /// centroids [k0·v0] (`outlier_centroids.weight` row 0)
    pub centroids: Vec<f32>,
    /// indices [ceil(M/v0), outlier_size]: index of vector `i` of permuted outlier column `c`
    pub indices: Vec<u32>,
}

/// Timing and quality of one quantized layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerReport {
    /// `tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)` of the dequantized weight, `H` regularized (not damped).
    pub proxy_err: f64,
    /// Wall time of the whole layer (including Hessian preparation when called through [`quantize_linear`]).
    pub secs: f64,
    /// Part of `secs` spent in k-means (main, outlier and residual codebooks).
    pub kmeans_secs: f64,
    /// Part of `secs` spent in the error-feedback loop (both passes).
    pub loop_secs: f64,
}

/// Everything the packed format needs for one quantized linear (vptq-spec.md §2.2), plus the dequantized
/// weight and a report. `G` = `group_num`, `gs` = `group_size`, `num_indices = ceil(M/v)`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedLinear {
    /// M.
    pub out_features: usize,
    /// N.
    pub in_features: usize,
    /// v.
    pub vector_len: usize,
    /// k.
    pub num_centroids: usize,
    /// kr (0: no residual).
    pub num_res_centroids: usize,
    /// G.
    pub group_num: usize,
    /// gs = (N − outlier_size) / G.
    pub group_size: usize,
    /// Leading permuted columns in the outlier block.
    pub outlier_size: usize,
    /// num_indices = ceil(M/v).
    pub num_indices: usize,
    /// centroids [G, k·v]
    pub centroids: Vec<f32>,
    /// res_centroids [G, kr·v] (empty without residual)
    pub res_centroids: Vec<f32>,
    /// indices [G, num_indices, gs]: main index of vector row `i`, column `outlier_size + g·gs + c` (permuted)
    pub indices: Vec<u32>,
    /// res_indices [G, num_indices, gs] (empty without residual)
    pub res_indices: Vec<u32>,
    /// The outlier block, when `outlier_size > 0`.
    pub outlier: Option<OutlierCodes>,
    /// Whether the columns were permuted (act-order); `perm` is the identity otherwise.
    pub enable_perm: bool,
    /// perm [N]: quantized column `q` = original column `perm[q]`.
    pub perm: Vec<u16>,
    /// Whether a normalization was applied; `weight_scale` is all 1 and `weight_bias` all 0 otherwise.
    pub enable_norm: bool,
    /// weight_scale [N], original column order.
    pub weight_scale: Vec<f32>,
    /// weight_bias [N], original column order.
    pub weight_bias: Vec<f32>,
    /// quantized_weight [M, N]: the dequantized weight `Ŵ`, original column order.
    pub quantized_weight: Vec<f32>,
    /// Timing and proxy error.
    pub report: LayerReport,
}

/// Bits one quantized layer costs in the packed format (vptq-spec.md §2.2), every tensor counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageBits {
    /// Packed main+residual indices (`[G, num_indices, ceil(gs·T/32)]` int32) plus 16-bit outlier indices.
    pub indices: u64,
    /// Main, residual and outlier centroids.
    pub codebooks: u64,
    /// `weight_scale` and `weight_bias` (0 without normalization).
    pub norm: u64,
    /// `perm` as int16 (0 without act-order).
    pub perm: u64,
}

impl StorageBits {
    /// Sum of all parts.
    pub fn total(&self) -> u64 {
        self.indices + self.codebooks + self.norm + self.perm
    }
}

impl QuantizedLinear {
    /// Storage of this layer with centroids and scale/bias stored in a `value_bits`-bit dtype (16 for
    /// fp16/bf16), index rows padded to whole 32-bit words as the packed format does.
    pub fn storage_bits(&self, value_bits: u64) -> StorageBits {
        let log2 = |k: usize| if k > 1 { u64::from(k.ilog2()) } else { 0 };
        let index_bits = log2(self.num_centroids) + log2(self.num_res_centroids);
        let words_per_row = (self.group_size as u64 * index_bits).div_ceil(32);
        let mut indices = self.group_num as u64 * self.num_indices as u64 * words_per_row * 32;
        let mut codebooks = (self.centroids.len() as u64 + self.res_centroids.len() as u64) * value_bits;
        if let Some(o) = &self.outlier {
            indices += o.indices.len() as u64 * 16;
            codebooks += o.centroids.len() as u64 * value_bits;
        }
        let n = self.in_features as u64;
        StorageBits {
            indices,
            codebooks,
            norm: if self.enable_norm { 2 * n * value_bits } else { 0 },
            perm: if self.enable_perm { 16 * n } else { 0 },
        }
    }

    /// `storage_bits(value_bits).total() / (M·N)`: honest bits per weight of this layer.
    pub fn bits_per_weight(&self, value_bits: u64) -> f64 {
        self.storage_bits(value_bits).total() as f64 / (self.out_features * self.in_features) as f64
    }
}

/// Quantizes `w [M, N]` (row-major, `[out_features, in_features]`) with the Hessian proxy `h [N, N]` of its
/// input. `N` is taken from `h`, `M` from `w`.
///
/// # Errors
/// `ShapeMismatch` (h not square, w not `[M, N]`); `NonFinite`; config errors from
/// [`VqConfig::validate_for_shape`]; `NotPositiveDefinite`.
pub fn quantize_linear(w: &[f32], h: &[f64], cfg: &VqConfig) -> Result<QuantizedLinear> {
    let start = Instant::now();
    let n = h.len().isqrt();
    check_len("hessian [N, N]", h.len(), n * n)?;
    if n == 0 {
        return Err(QuantError::Empty { what: "hessian (N = 0)" });
    }
    let m = w.len() / n;
    check_len("weight [M, N]", w.len(), m * n)?;
    cfg.validate_for_shape(m, n)?;
    let prepared = PreparedHessian::new(h, n, cfg)?;
    let mut q = quantize_linear_prepared(w, m, &prepared, cfg)?;
    q.report.secs = start.elapsed().as_secs_f64();
    Ok(q)
}

/// [`quantize_linear`] with a [`PreparedHessian`] made with the same `cfg` (share it between q/k/v or gate/up).
///
/// # Errors
/// As [`quantize_linear`].
pub fn quantize_linear_prepared(
    w: &[f32],
    m: usize,
    prepared: &PreparedHessian,
    cfg: &VqConfig,
) -> Result<QuantizedLinear> {
    quantize_linear_with(w, m, prepared, cfg, None)
}

/// [`quantize_linear_prepared`] with a given main codebook (one group, e.g. a codebook shared by the layers of
/// one kind, [`train_shared_codebook`]) instead of a k-means fit of its own; the error-feedback loop, residual
/// and outliers as usual.
///
/// # Errors
/// As [`quantize_linear`]; `InvalidConfig` when `codebook` does not have `cfg`'s v and k or `cfg` has groups.
pub fn quantize_linear_shared(
    w: &[f32],
    m: usize,
    prepared: &PreparedHessian,
    cfg: &VqConfig,
    codebook: &Codebook,
) -> Result<QuantizedLinear> {
    if cfg.group_num != 1 || codebook.vector_len() != cfg.vector_len || codebook.num_centroids() != cfg.num_centroids {
        return Err(QuantError::InvalidConfig {
            field: "shared codebook",
            value: format!("v{} k{}", codebook.vector_len(), codebook.num_centroids()),
            reason: "must match the layer's vector length and centroids, with one group",
        });
    }
    quantize_linear_with(w, m, prepared, cfg, Some(codebook))
}

/// Trains one main codebook for layers of one shape: k-means (`cfg`'s v, k, iterations, seed; int8 grid as
/// `cfg.int8_grid`) over the vectors of every weight `[M, N]` in `weights`, each vector weighted 1 (their
/// Hessians are not known before their blocks are reached).
///
/// # Errors
/// As [`train_column_codebook`]; `ShapeMismatch` when a weight is not `[M, N]`.
pub fn train_shared_codebook(weights: &[&[f32]], m: usize, n: usize, cfg: &VqConfig) -> Result<Codebook> {
    let layers = weights.len();
    // w [M, L·N]: the layers side by side, so every column is one of theirs.
    let mut w = vec![0f32; m * layers * n];
    for (l, wl) in weights.iter().enumerate() {
        check_len("weight [M, N]", wl.len(), m * n)?;
        check_finite_f32("weight", wl)?;
        for i in 0..m {
            w[i * layers * n + l * n..][..n].copy_from_slice(&wl[i * n..][..n]);
        }
    }
    let ones = vec![1f32; layers * n];
    // Seeded as a layer's first main codebook.
    let kcfg = kmeans_config(cfg, cfg.num_centroids, 1);
    let fit = train_column_codebook(&w, m, layers * n, 0..layers * n, cfg.vector_len, &ones, &kcfg)
        .map_err(|e| in_part(e, "shared main codebook"))?;
    on_grid_if_asked(cfg, fit)
}

/// The k-means settings of codebook number `codebook` of a layer (its seed offset), with `k` centroids.
fn kmeans_config(cfg: &VqConfig, k: usize, codebook: usize) -> KMeansConfig {
    KMeansConfig {
        num_centroids: k,
        max_iters: cfg.kmeans_iters,
        tol: cfg.kmeans_tol,
        init: cfg.kmeans_init,
        seed: cfg.seed.wrapping_add(codebook as u64),
        max_fit_vectors: cfg.kmeans_max_fit_vectors,
    }
}

/// A fitted main codebook as the layer uses it: snapped to the int8 grid when `cfg.int8_grid` and free.
fn on_grid_if_asked(cfg: &VqConfig, fit: ColumnCodebook) -> Result<Codebook> {
    if cfg.int8_grid {
        snap_if_free(fit)
    } else {
        Ok(fit.codebook)
    }
}

fn quantize_linear_with(
    w: &[f32],
    m: usize,
    prepared: &PreparedHessian,
    cfg: &VqConfig,
    shared: Option<&Codebook>,
) -> Result<QuantizedLinear> {
    let start = Instant::now();
    let n = prepared.in_features;
    check_len("weight [M, N]", w.len(), m * n)?;
    check_finite_f32("weight", w)?;
    let split = match shared {
        Some(_) => cfg.validate_for_shape_shared(m, n)?,
        None => cfg.validate_for_shape(m, n)?,
    };
    let perm = &prepared.perm;

    // 1. per-input-column normalization; weight_scale, weight_bias [N] in original order
    let (weight_scale, weight_bias) = column_norm(w, m, n, cfg.norm);
    let mut dead = vec![false; n];
    prepared.dead_columns.iter().for_each(|&j| dead[j] = true);
    // wp [M, N]: W' normalized, dead columns zeroed, columns permuted
    let mut wp = vec![0f32; m * n];
    for i in 0..m {
        for (q, &j) in perm.iter().enumerate() {
            wp[i * n + q] = if dead[j] { 0.0 } else { (w[i * n + j] - weight_bias[j]) / weight_scale[j] };
        }
    }

    // The Hessian of W' as the loop sees it: H (reference), or S H S with S = diag(weight_scale) permuted, whose
    // inverse factor is U·S⁻¹ (columns of U divided by s) — no new Cholesky. The loop itself needs only the
    // factor and the k-means weights (the proxy error is scored on the original weight with H below).
    let scaled;
    let (hessian_inv_chol, weights): (&[f64], &[f32]) = if cfg.scale_aware_hessian {
        // s [N]: permuted scales
        let s: Vec<f64> = perm.iter().map(|&j| f64::from(weight_scale[j])).collect();
        let mut u = prepared.hessian_inv_chol.clone();
        for a in 0..n {
            for b in 0..n {
                u[a * n + b] /= s[b];
            }
        }
        let wts: Vec<f32> = (0..n).map(|q| (f64::from(prepared.column_weights[q]) * s[q] * s[q]) as f32).collect();
        scaled = (u, wts);
        (&scaled.0[..], &scaled.1[..])
    } else {
        (&prepared.hessian_inv_chol[..], &prepared.column_weights[..])
    };

    // 2. Hessian-weighted k-means, one codebook per part; codebook c of the layer is seeded with seed + c
    // (outliers 0, main group g 1 + g, residual group g 1 + G + g).
    let kcfg = |k: usize, codebook: usize| kmeans_config(cfg, k, codebook);
    let g_num = split.group_num;
    let t = Instant::now();
    let outlier_codebook = if split.outlier_size > 0 {
        let cols = split.columns(ColumnPart::Outlier);
        let cb = train_column_codebook(
            &wp,
            m,
            n,
            cols,
            cfg.outlier_vector_len,
            weights,
            &kcfg(cfg.outlier_num_centroids, 0),
        )
        .map_err(|e| in_part(e, "outliers"))?;
        Some(cb.codebook)
    } else {
        None
    };
    let main_codebooks = match shared {
        Some(cb) => Ok(vec![cb.clone()]),
        None => (0..g_num)
            .map(|g| {
                let cols = split.columns(ColumnPart::Group(g));
                let fit =
                    train_column_codebook(&wp, m, n, cols, cfg.vector_len, weights, &kcfg(cfg.num_centroids, 1 + g))
                        .map_err(|e| in_part(e, &format!("group {g} main codebook")))?;
                on_grid_if_asked(cfg, fit)
            })
            .collect::<Result<Vec<Codebook>>>(),
    }?;
    let mut kmeans_secs = t.elapsed().as_secs_f64();

    // 3. first pass: main codebooks only
    let t = Instant::now();
    let mains: Vec<&Codebook> = main_codebooks.iter().collect();
    let first = SplitQuantizer::new(split, outlier_codebook.as_ref(), mains.clone(), Vec::new())?;
    // Unscored: the report's proxy error is computed once below, on the original weight.
    let mut out = vptq_quantize_unscored(&wp, m, n, hessian_inv_chol, &first, cfg.block_size)?;
    let mut loop_secs = t.elapsed().as_secs_f64();

    // 4. residual: codebooks on the first pass's error, then the loop again from W' with two-stage coding
    let mut res_codebooks: Vec<Codebook> = Vec::new();
    if cfg.has_residual() {
        let t = Instant::now();
        res_codebooks = (0..g_num)
            .map(|g| {
                let cols = split.columns(ColumnPart::Group(g));
                let c = kcfg(cfg.num_res_centroids, 1 + g_num + g);
                train_residual_codebook(&out.qerror, m, n, cols, cfg.vector_len, weights, &c)
                    .map_err(|e| in_part(e, &format!("group {g} residual codebook")))
            })
            .collect::<Result<Vec<Codebook>>>()?;
        kmeans_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let second = SplitQuantizer::new(split, outlier_codebook.as_ref(), mains, res_codebooks.iter().collect())?;
        out = vptq_quantize_unscored(&wp, m, n, hessian_inv_chol, &second, cfg.block_size)?;
        loop_secs += t.elapsed().as_secs_f64();
    }

    // 5. layout for the packed format
    let (v, gs, outlier_size) = (cfg.vector_len, split.group_size, split.outlier_size);
    let num_indices = m.div_ceil(v);
    // indices, res_indices [G, num_indices, gs]
    let layout = |per_column: &[Vec<u32>]| -> Vec<u32> {
        let mut flat = vec![0u32; g_num * num_indices * gs];
        for g in 0..g_num {
            for i in 0..num_indices {
                for c in 0..gs {
                    flat[(g * num_indices + i) * gs + c] = per_column[outlier_size + g * gs + c][i];
                }
            }
        }
        flat
    };
    let indices = layout(&out.indices[..]);
    let res_indices = if cfg.has_residual() { layout(&out.res_indices[..]) } else { Vec::new() };
    let outlier = outlier_codebook.map(|cb| {
        let nv0 = m.div_ceil(cb.vector_len());
        // indices [nv0, outlier_size]
        let mut idx = vec![0u32; nv0 * outlier_size];
        for i in 0..nv0 {
            for c in 0..outlier_size {
                idx[i * outlier_size + c] = out.indices[c][i];
            }
        }
        OutlierCodes {
            vector_len: cb.vector_len(),
            num_centroids: cb.num_centroids(),
            centroids: cb.centroids().to_vec(),
            indices: idx,
        }
    });
    let centroids: Vec<f32> = main_codebooks.iter().flat_map(|cb| cb.centroids().iter().copied()).collect();
    let res_centroids: Vec<f32> = res_codebooks.iter().flat_map(|cb| cb.centroids().iter().copied()).collect();

    // 6. dequantized weight in original order: Ŵ[:, perm[q]] = Q[:, q]·scale + bias; proxy error in permuted order
    let mut quantized_weight = vec![0f32; m * n];
    for i in 0..m {
        for (q, &j) in perm.iter().enumerate() {
            quantized_weight[i * n + j] = out.quantized[i * n + q] * weight_scale[j] + weight_bias[j];
        }
    }
    let permuted = |a: &[f32]| -> Vec<f32> {
        let mut p = vec![0f32; m * n];
        for i in 0..m {
            for (q, &j) in perm.iter().enumerate() {
                p[i * n + q] = a[i * n + j];
            }
        }
        p
    };
    let proxy_err = proxy_error(&permuted(w), &permuted(&quantized_weight), m, n, &prepared.hessian)?;

    Ok(QuantizedLinear {
        out_features: m,
        in_features: n,
        vector_len: v,
        num_centroids: cfg.num_centroids,
        num_res_centroids: cfg.num_res_centroids,
        group_num: g_num,
        group_size: gs,
        outlier_size,
        num_indices,
        centroids,
        res_centroids,
        indices,
        res_indices,
        outlier,
        enable_perm: cfg.enable_perm,
        perm: perm.iter().map(|&j| j as u16).collect(),
        enable_norm: cfg.norm != NormMode::None,
        weight_scale,
        weight_bias,
        quantized_weight,
        report: LayerReport { proxy_err, secs: start.elapsed().as_secs_f64(), kmeans_secs, loop_secs },
    })
}

/// Most extra k-means distortion the int8 grid may add, relative to the fit's own, for a codebook to be snapped.
/// Measured on SmolLM2 blocks 3 and 20: v6-k4096 codebooks add 0.3–3.5 % (snapping all of them left the model's
/// quality unchanged: the error-feedback loop absorbs it), clamped v8-k65536 ones 1.8–22 % (a codebook with
/// nearly as many centroids as vectors has little distortion of its own; snapping all of them cost P&P ppl
/// 30.73 → 32.96).
const GRID_MAX_EXTRA_DISTORTION: f64 = 0.04;

/// The fit's codebook snapped to its int8 grid when that adds at most [`GRID_MAX_EXTRA_DISTORTION`] of the fit's
/// distortion (`Σ_c mass_c·‖C[c] − snap(C[c])‖²`, exact at a Lloyd fixed point, where each centroid is the
/// weighted mean of its vectors), else unchanged.
fn snap_if_free(fit: ColumnCodebook) -> Result<Codebook> {
    let snapped = snap_to_int8_grid(&fit.codebook)?;
    let v = snapped.vector_len();
    let extra: f64 = (fit.codebook.centroids().chunks_exact(v).zip(snapped.centroids().chunks_exact(v)))
        .zip(&fit.mass)
        .map(|((a, b), &mass)| mass * a.iter().zip(b).map(|(&a, &b)| f64::from(a - b).powi(2)).sum::<f64>())
        .sum();
    Ok(if extra <= GRID_MAX_EXTRA_DISTORTION * fit.distortion { snapped } else { fit.codebook })
}

/// `cb` with every entry rounded to its lane's int8 grid (`C[e][l] = round(C[e][l] / step_l) · step_l`, step_l a
/// power of two from the lane's largest |entry|): exact in f16 and f32, and what the kernels hold in int8.
fn snap_to_int8_grid(cb: &Codebook) -> Result<Codebook> {
    let v = cb.vector_len();
    let step = grid_steps(cb.centroids(), 1, v); // [v]
    let snapped = cb.centroids().chunks_exact(v).flat_map(|e| e.iter().zip(&step).map(|(&x, &s)| (x / s).round() * s));
    Codebook::new(snapped.collect(), v)
}

/// Names the codebook in a `TooManyCentroids` error.
fn in_part(e: QuantError, part: &str) -> QuantError {
    match e {
        QuantError::TooManyCentroids { centroids, vectors, .. } => {
            QuantError::TooManyCentroids { part: part.to_string(), centroids, vectors }
        }
        other => other,
    }
}

/// Per-input-column `(weight_scale, weight_bias)` `[N]` of `w [M, N]`; a zero or non-finite scale (constant
/// column) becomes 1 so `W' = (W − bias) / scale` stays finite.
fn column_norm(w: &[f32], m: usize, n: usize, mode: NormMode) -> (Vec<f32>, Vec<f32>) {
    let fix = |s: f32| if s > 0.0 && s.is_finite() { s } else { 1.0 };
    let column = |j: usize| (0..m).map(move |i| w[i * n + j]);
    match mode {
        NormMode::None => (vec![1.0; n], vec![0.0; n]),
        NormMode::MinMax => (0..n)
            .map(|j| {
                let (lo, hi) = column(j).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
                (fix(hi - lo), lo)
            })
            .unzip(),
        NormMode::MeanStd => (0..n)
            .map(|j| {
                let mean = column(j).map(f64::from).sum::<f64>() / m as f64;
                let ss = column(j).map(|x| (f64::from(x) - mean).powi(2)).sum::<f64>();
                let std = if m > 1 { (ss / (m - 1) as f64).sqrt() } else { 0.0 };
                (fix(std as f32), mean as f32)
            })
            .unzip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{correlated_hessian, normal_f32};

    /// A layer whose rows share structure, so codebooks and error feedback have something to find.
    fn correlated_layer(m: usize, n: usize, seed: u64) -> Vec<f32> {
        let base = normal_f32(m * n, seed);
        let rows = normal_f32(8 * n, seed + 1);
        (0..m * n).map(|e| 0.6 * base[e] + rows[(e / n % 8) * n + e % n] + 0.05 * (e % n) as f32).collect()
    }

    fn fast(mut cfg: VqConfig) -> VqConfig {
        cfg.kmeans_iters = 8;
        cfg
    }

    /// Dequantization written from vptq-spec.md §2.4, independent of the quantizer's own code.
    fn dequantize_spec(q: &QuantizedLinear) -> Vec<f32> {
        let (m, n, v, gs, os) = (q.out_features, q.in_features, q.vector_len, q.group_size, q.outlier_size);
        let mut wp = vec![0f32; m * n];
        for g in 0..q.group_num {
            let cb = &q.centroids[g * q.num_centroids * v..(g + 1) * q.num_centroids * v];
            for i in 0..q.num_indices {
                for c in 0..gs {
                    let e = (g * q.num_indices + i) * gs + c;
                    let main = q.indices[e] as usize;
                    for t in 0..v {
                        let row = i * v + t;
                        if row >= m {
                            continue;
                        }
                        let mut val = cb[main * v + t];
                        if q.num_res_centroids > 0 {
                            let rc = &q.res_centroids[g * q.num_res_centroids * v..];
                            val += rc[q.res_indices[e] as usize * v + t];
                        }
                        wp[row * n + os + g * gs + c] = val;
                    }
                }
            }
        }
        if let Some(o) = &q.outlier {
            let v0 = o.vector_len;
            for i in 0..m.div_ceil(v0) {
                for c in 0..os {
                    for t in 0..v0 {
                        if i * v0 + t < m {
                            wp[(i * v0 + t) * n + c] = o.centroids[o.indices[i * os + c] as usize * v0 + t];
                        }
                    }
                }
            }
        }
        let mut w = vec![0f32; m * n];
        for i in 0..m {
            for qc in 0..n {
                let j = q.perm[qc] as usize;
                w[i * n + j] = wp[i * n + qc] * q.weight_scale[j] + q.weight_bias[j];
            }
        }
        w
    }

    #[test]
    fn spec_dequantization_reproduces_the_quantized_weight() {
        // M = 40 is not a multiple of v = 6 (padding), 2 groups, a 10 % outlier block, residual
        let (m, n) = (40, 48);
        let w = correlated_layer(m, n, 1);
        let h = correlated_hessian(n, 2);
        let mut cfg = fast("v6-k64-16".parse().unwrap());
        cfg.group_num = 2;
        cfg.outlier_percent = 10.0;
        cfg.outlier_vector_len = 4;
        cfg.outlier_num_centroids = 16;
        for norm in [NormMode::MinMax, NormMode::MeanStd, NormMode::None] {
            cfg.norm = norm;
            let q = quantize_linear(&w, &h, &cfg).unwrap();
            // 10 % of 48 → 5, + (48 − 5) mod 2 → 6; groups of 21
            assert_eq!((q.outlier_size, q.group_size, q.num_indices), (6, 21, 7));
            assert_eq!(q.indices.len(), 2 * 7 * 21);
            assert_eq!(q.res_indices.len(), 2 * 7 * 21);
            assert_eq!(q.centroids.len(), 2 * 64 * 6);
            assert_eq!(q.res_centroids.len(), 2 * 16 * 6);
            assert!(q.indices.iter().all(|&i| i < 64) && q.res_indices.iter().all(|&i| i < 16));
            let mut sorted: Vec<u16> = q.perm.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n as u16).collect::<Vec<_>>());
            let deq = dequantize_spec(&q);
            for (a, b) in deq.iter().zip(&q.quantized_weight) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{norm:?}: {a} vs {b}");
            }
            assert!(q.report.proxy_err > 0.0 && q.report.proxy_err < 0.5, "{norm:?}: {}", q.report.proxy_err);
        }
    }

    #[test]
    fn storage_is_counted_per_tensor() {
        let (m, n) = (64, 96);
        let w = correlated_layer(m, n, 12);
        let h = correlated_hessian(n, 13);
        let q = quantize_linear(&w, &h, &fast("v8-k256-16".parse().unwrap())).unwrap();
        let s = q.storage_bits(16);
        // 8 index rows of 96 × 12 bits = 36 words each; 256·8 + 16·8 fp16 centroids; scale+bias; perm
        assert_eq!(
            s,
            StorageBits { indices: 8 * 36 * 32, codebooks: (2048 + 128) * 16, norm: 2 * 96 * 16, perm: 96 * 16 }
        );
        assert_eq!(q.bits_per_weight(16), s.total() as f64 / (64.0 * 96.0));
    }

    #[test]
    fn int8_grid_codebooks_lie_on_the_grid_at_no_cost() {
        let (m, n) = (96, 128);
        let w = correlated_layer(m, n, 21);
        let h = correlated_hessian(n, 22);
        for preset in ["v6-k256", "v4-k64-16", "v8-k128-2"] {
            let free = fast(preset.parse().unwrap());
            let grid = VqConfig { int8_grid: true, ..free.clone() };
            let (qf, qg) = (quantize_linear(&w, &h, &free).unwrap(), quantize_linear(&w, &h, &grid).unwrap());
            let (v, k) = (grid.vector_len, grid.num_centroids);
            for lane in 0..v {
                let lane_vals: Vec<f32> = qg.centroids.iter().skip(lane).step_by(v).copied().collect();
                assert_eq!(lane_vals.len(), k);
                let s = vptq_format::vptq::int8_grid_step(lane_vals.iter().fold(0f32, |a, x| a.max(x.abs())));
                for &c in &lane_vals {
                    let q = c / s;
                    assert!(q == q.round() && q.abs() <= 127.0, "{preset}: {c} is off the grid of step {s}");
                    assert_eq!(half::f16::from_f32(c).to_f32(), c, "{preset}: {c} is exact in f16");
                }
            }
            // Only the main codebook is snapped (these fits have distortion to spare); the loop compensates the
            // rounding.
            let (ef, eg) = (qf.report.proxy_err, qg.report.proxy_err);
            assert!(eg < ef * 1.05, "{preset}: proxy error {eg} on the grid vs {ef} free");
        }
    }

    #[test]
    fn more_bits_give_a_lower_proxy_error() {
        // 256 × 128: 8192 vectors at v4 (2 per centroid), 4096 at v8
        let (m, n) = (256, 128);
        let w = correlated_layer(m, n, 3);
        let h = correlated_hessian(n, 4);
        let v4 = quantize_linear(&w, &h, &fast("v4-k4096".parse().unwrap())).unwrap();
        let v8 = quantize_linear(&w, &h, &fast("v8-k256".parse().unwrap())).unwrap();
        assert!(v4.report.proxy_err < v8.report.proxy_err, "{} vs {}", v4.report.proxy_err, v8.report.proxy_err);
    }

    #[test]
    fn residual_outliers_and_groups_lower_the_error() {
        let (m, n) = (64, 96);
        let w = correlated_layer(m, n, 5);
        let h = correlated_hessian(n, 6);
        let base_cfg = fast("v4-k16".parse().unwrap());
        let base = quantize_linear(&w, &h, &base_cfg).unwrap().report.proxy_err;

        let residual = quantize_linear(&w, &h, &fast("v4-k16-16".parse().unwrap())).unwrap().report.proxy_err;
        assert!(residual < base, "residual {residual} vs {base}");

        let mut groups = base_cfg.clone();
        groups.group_num = 4;
        let grouped = quantize_linear(&w, &h, &groups).unwrap().report.proxy_err;
        assert!(grouped <= base, "groups {grouped} vs {base}");

        let mut outliers = base_cfg.clone();
        outliers.outlier_percent = 5.0;
        outliers.outlier_vector_len = 4;
        outliers.outlier_num_centroids = 16;
        let with_outliers = quantize_linear(&w, &h, &outliers).unwrap();
        assert!(with_outliers.outlier.is_some());
        assert!(with_outliers.report.proxy_err <= base, "outliers {} vs {base}", with_outliers.report.proxy_err);
    }

    #[test]
    fn scale_aware_hessian_lowers_the_error_when_column_scales_differ() {
        let (m, n) = (64, 96);
        // columns at scales 0.1, 1 and 10
        let w: Vec<f32> = correlated_layer(m, n, 14)
            .iter()
            .enumerate()
            .map(|(e, &x)| x * 10f32.powi((e % n % 3) as i32 - 1))
            .collect();
        let h = correlated_hessian(n, 15);
        let reference = fast("v4-k16".parse().unwrap());
        let aware = VqConfig { scale_aware_hessian: true, ..reference.clone() };
        let (r, a) = (quantize_linear(&w, &h, &reference).unwrap(), quantize_linear(&w, &h, &aware).unwrap());
        assert!(a.report.proxy_err < r.report.proxy_err, "{} vs {}", a.report.proxy_err, r.report.proxy_err);
        // the dequantized weight is still what the packed tensors say
        let deq = dequantize_spec(&a);
        assert!(deq.iter().zip(&a.quantized_weight).all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs())));
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        let (m, n) = (48, 200);
        let w = correlated_layer(m, n, 7);
        let h = correlated_hessian(n, 8);
        let cfg = fast("v8-k64-8".parse().unwrap());
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| quantize_linear(&w, &h, &cfg).unwrap())
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(a.quantized_weight, b.quantized_weight);
        assert_eq!((a.indices, a.res_indices, a.centroids), (b.indices, b.res_indices, b.centroids));
        assert_eq!(a.report.proxy_err.to_bits(), b.report.proxy_err.to_bits());
    }

    #[test]
    fn bad_layers_are_errors() {
        let cfg = fast("v4-k16".parse().unwrap());
        let h = correlated_hessian(8, 9);
        assert!(matches!(quantize_linear(&[0.0; 30], &h, &cfg), Err(QuantError::ShapeMismatch { .. })));
        assert!(matches!(quantize_linear(&[0.0; 64], &h[..63], &cfg), Err(QuantError::ShapeMismatch { .. })));
        // 8 × 8 at v4: 16 vectors for 32 centroids
        let big = fast("v4-k32".parse().unwrap());
        assert!(matches!(quantize_linear(&[0.0; 64], &h, &big), Err(QuantError::TooManyCentroids { .. })));
        // negative definite H stays indefinite after regularization and damping
        let mut neg = vec![0f64; 64];
        (0..8).for_each(|j| neg[j * 8 + j] = -1.0);
        assert!(matches!(quantize_linear(&[0.0; 64], &neg, &cfg), Err(QuantError::NotPositiveDefinite { .. })));
        let mut w = vec![0f32; 64];
        w[5] = f32::NAN;
        assert!(matches!(quantize_linear(&w, &h, &cfg), Err(QuantError::NonFinite { .. })));
    }

    /// Where the time goes on a SmolLM2-135M `down_proj` (576 × 1536) at v6-k4096 with 10 k-means iterations;
    /// run with `cargo test --release -p vptq-quant -- --ignored --nocapture layer_speed`.
    #[test]
    #[ignore = "timing print, run in release"]
    fn layer_speed_smollm2_down_proj() {
        use crate::algo::hessian::HessianAccumulator;
        let (m, n, rows) = (576, 1536, 8192);
        // inputs with shared factors: x_j = z_(j mod 64)·a_j + noise
        let z = normal_f32(rows * 64, 1);
        let noise = normal_f32(rows * n, 2);
        let a = normal_f32(n, 3);
        let x: Vec<f32> = (0..rows * n).map(|e| z[e / n * 64 + e % n % 64] * a[e % n] + 0.3 * noise[e]).collect();
        let t = Instant::now();
        let mut acc = HessianAccumulator::new(n);
        for batch in x.chunks(2048 * n) {
            acc.add_batch(batch).unwrap();
        }
        let h = acc.finish().unwrap();
        let hessian_secs = t.elapsed().as_secs_f64();
        let mut cfg: VqConfig = "v6-k4096".parse().unwrap();
        cfg.kmeans_iters = 10;
        let t = Instant::now();
        let prepared = PreparedHessian::new(&h, n, &cfg).unwrap();
        let prepare_secs = t.elapsed().as_secs_f64();
        let w = normal_f32(m * n, 4);
        let q = quantize_linear_prepared(&w, m, &prepared, &cfg).unwrap();
        let aware = VqConfig { scale_aware_hessian: true, ..cfg.clone() };
        let qa = quantize_linear_prepared(&w, m, &prepared, &aware).unwrap();
        println!("scale-aware Hessian: proxy_err {:.4e} in {:.2} s", qa.report.proxy_err, qa.report.secs);
        println!(
            "down_proj {m}x{n} v6-k4096 (10 k-means iters, {} threads): H from {rows} rows {hessian_secs:.2} s, \
             prepare (regularize, perm, damp, U) {prepare_secs:.2} s, layer {:.2} s = k-means {:.2} s + loop {:.2} s, \
             proxy_err {:.4e}, {:.3} bits/weight",
            rayon::current_num_threads(),
            q.report.secs,
            q.report.kmeans_secs,
            q.report.loop_secs,
            q.report.proxy_err,
            q.bits_per_weight(16)
        );
    }

    #[test]
    fn dead_columns_are_handled() {
        let (m, n) = (16, 16);
        let w = correlated_layer(m, n, 10);
        let mut h = correlated_hessian(n, 11);
        // input 3 is always zero
        for t in 0..n {
            h[3 * n + t] = 0.0;
            h[t * n + 3] = 0.0;
        }
        let mut cfg = fast("v4-k16".parse().unwrap());
        cfg.hessian_regularize = 0.0;
        let q = quantize_linear(&w, &h, &cfg).unwrap();
        let prepared = PreparedHessian::new(&h, n, &cfg).unwrap();
        assert_eq!(prepared.dead_columns, vec![3]);
        let q3 = prepared.perm.iter().position(|&j| j == 3).unwrap();
        assert_eq!(prepared.column_weights[q3], 0.0, "k-means weight of a dead column is its raw diagonal, 0");
        assert!(q.report.proxy_err.is_finite());
    }
}
