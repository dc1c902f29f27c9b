//! Scalar baselines for one linear layer (issue 3, deliverable 7): round-to-nearest and GPTQ at `b` bits with
//! groups of `gs` input columns per output row, in the same code as VPTQ for an honest comparison: the Hessian
//! goes through the same [`PreparedHessian`] (dead columns, act-order, damping, `U`), the report has the same
//! proxy error `tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)`, and the storage is counted tensor by tensor.
//!
//! Config names: `rtn-w{b}-g{gs}` and `gptq-w{b}-g{gs}`, optionally followed by `-sym` (symmetric grid),
//! `-noact` (GPTQ without act-order) and `-static` (GPTQ static groups). Defaults: asymmetric, GPTQ with
//! act-order (as VPTQ's `enable_perm`) and sequential groups, damping 0.01·mean diag(H), no extra ridge
//! (`hessian_regularize` 0, GPTQ's own preprocessing), lazy blocks of 128.
//!
//! **Bits per weight** (GPTQ's packed layout, [`ScalarStorageBits`]): with `G = ceil(N / gs)` groups per row,
//! `codes` = `M·ceil(N·b/32)·32` (b-bit codes packed in 32-bit words along the input dimension);
//! `scales` = `M·G·16` (f16); `zeros` = `G·ceil(M·b/32)·32` (b-bit zero points, packed; 0 when symmetric: the
//! zero point is the constant 2ᵇ⁻¹); `g_idx` = `32·N` (int32 group of each input column) only when it cannot
//! be derived as `j / gs`, i.e. act-order with sequential groups; `bits_per_weight = total / (M·N)`.
//! E.g. `N = 576, gs = 128, b = 2`, asymmetric, no g_idx: `2 + 5·(16 + 2)/576 = 2.15625`.
//! Never does IO. Dependencies: none beyond this crate.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use crate::algo::scalar::{gptq_quantize, rtn_quantize, GroupOrder, ScalarCodes, ScalarGrid};
use crate::algo::vptq::proxy_error;
use crate::error::{check_finite_f32, check_len, QuantError, Result};
use crate::layer::{LayerReport, PreparedHessian};

/// Which scalar quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarMethod {
    /// Round-to-nearest: every weight to its own group's grid, no data needed.
    Rtn,
    /// GPTQ: column by column with error feedback through `U` (needs a Hessian).
    Gptq,
}

/// Settings of the scalar baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarConfig {
    /// RTN or GPTQ.
    pub method: ScalarMethod,
    /// b: bits per code, 1..=8.
    pub bits: u32,
    /// gs: input columns per group (≥ 1; the last group of a row is partial when `gs ∤ N`; `gs ≥ N`: one group).
    pub group_size: usize,
    /// Symmetric grid (no stored zero point) instead of min/max with a zero point.
    pub sym: bool,
    /// GPTQ: process columns by descending `diag(H)` (act-order). Ignored by RTN.
    pub act_order: bool,
    /// GPTQ: fit every group's parameters on the input weights before the loop, groups by original column index
    /// (GPTQ `static_groups = True`); false: fit each group on the error-updated weights when it starts, groups
    /// being runs of `gs` columns in processing order (GPTQ's default; with act-order this needs `g_idx`).
    /// Ignored by RTN.
    pub static_groups: bool,
    /// GPTQ damping: `damp·mean(diag H)` added before the Cholesky factor (0.01).
    pub damp: f64,
    /// λ of `H ← H / mean(diag H) + λ·I` before damping (0: GPTQ's own preprocessing; VPTQ uses 0.01).
    pub hessian_regularize: f64,
    /// Columns per lazy-update block of GPTQ (128).
    pub block_size: usize,
}

impl ScalarConfig {
    /// `method` at `bits` bits with groups of `group_size`: asymmetric, act-order for GPTQ, sequential groups,
    /// damp 0.01, no ridge, blocks of 128.
    pub fn new(method: ScalarMethod, bits: u32, group_size: usize) -> Self {
        Self {
            method,
            bits,
            group_size,
            sym: false,
            act_order: method == ScalarMethod::Gptq,
            static_groups: false,
            damp: 0.01,
            hessian_regularize: 0.0,
            block_size: 128,
        }
    }

    /// The grid these settings quantize to.
    pub fn grid(&self) -> ScalarGrid {
        ScalarGrid { bits: self.bits, sym: self.sym }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// `InvalidConfig` naming the first bad field: bits outside 1..=8, zero group or block size, damping or
    /// ridge negative or not finite.
    pub fn validate(&self) -> Result<()> {
        self.grid().validate()?;
        let invalid = |field, value: String, reason| Err(QuantError::InvalidConfig { field, value, reason });
        if self.group_size == 0 {
            return invalid("group_size", "0".into(), "must be at least 1");
        }
        if self.block_size == 0 {
            return invalid("block_size", "0".into(), "must be at least 1");
        }
        for (field, value) in [("damp", self.damp), ("hessian_regularize", self.hessian_regularize)] {
            if !(value >= 0.0 && value.is_finite()) {
                return invalid(field, value.to_string(), "must be finite and >= 0");
            }
        }
        Ok(())
    }

    /// The [`PreparedHessian`] GPTQ expects with these settings (ridge, act-order, damping) from `h [n, n]`
    /// (`E[x xᵀ]` of the layer input); share it between layers reading the same input.
    ///
    /// # Errors
    /// As [`PreparedHessian::new`].
    pub fn prepare_hessian(&self, h: &[f64], n: usize) -> Result<PreparedHessian> {
        let act_order = self.method == ScalarMethod::Gptq && self.act_order;
        PreparedHessian::from_settings(h, n, self.hessian_regularize, act_order, self.damp)
    }
}

impl FromStr for ScalarConfig {
    type Err = QuantError;

    /// Parses `{rtn|gptq}-w{bits}-g{group}[-sym][-noact][-static]` into [`ScalarConfig::new`] plus the flags,
    /// and validates it.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| QuantError::BadScalarPreset { preset: s.to_string(), reason };
        let parts: Vec<&str> = s.trim().split('-').collect();
        if parts.len() < 3 {
            return Err(bad("expected at least 3 dash-separated parts"));
        }
        let method = match parts[0] {
            "rtn" => ScalarMethod::Rtn,
            "gptq" => ScalarMethod::Gptq,
            _ => return Err(bad("method must be `rtn` or `gptq`")),
        };
        let number = |text: Option<&str>, what| -> Result<usize> {
            text.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad(what))
        };
        let bits = number(parts[1].strip_prefix('w'), "second part must be `w` and the bits")?;
        let group_size = number(parts[2].strip_prefix('g'), "third part must be `g` and the group size")?;
        let bits = u32::try_from(bits).unwrap_or(u32::MAX);
        let mut cfg = ScalarConfig::new(method, bits, group_size);
        for flag in &parts[3..] {
            match (*flag, method) {
                ("sym", _) => cfg.sym = true,
                ("noact", ScalarMethod::Gptq) => cfg.act_order = false,
                ("static", ScalarMethod::Gptq) => cfg.static_groups = true,
                ("noact" | "static", ScalarMethod::Rtn) => return Err(bad("`noact` and `static` are GPTQ options")),
                _ => return Err(bad("unknown option (known: `sym`, `noact`, `static`)")),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl fmt::Display for ScalarConfig {
    /// The name [`FromStr`] reads back: `gptq-w3-g128`, `rtn-w4-g128-sym`, `gptq-w2-g128-noact-static`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self.method {
            ScalarMethod::Rtn => "rtn",
            ScalarMethod::Gptq => "gptq",
        };
        write!(f, "{method}-w{}-g{}", self.bits, self.group_size)?;
        if self.sym {
            write!(f, "-sym")?;
        }
        if self.method == ScalarMethod::Gptq {
            if !self.act_order {
                write!(f, "-noact")?;
            }
            if self.static_groups {
                write!(f, "-static")?;
            }
        }
        Ok(())
    }
}

/// Bits one scalar-quantized layer costs in GPTQ's packed layout (formula in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalarStorageBits {
    /// b-bit codes, each row packed into whole 32-bit words.
    pub codes: u64,
    /// One f16 scale per row and group.
    pub scales: u64,
    /// b-bit zero points packed per group (0 when symmetric).
    pub zeros: u64,
    /// int32 group index per input column, when it is not `j / gs` (0 otherwise).
    pub g_idx: u64,
}

impl ScalarStorageBits {
    /// Sum of all parts.
    pub fn total(&self) -> u64 {
        self.codes + self.scales + self.zeros + self.g_idx
    }
}

/// One scalar-quantized linear: codes, parameters, the dequantized weight and a report.
/// `G = ceil(N / gs)`; `weight[i, j] = scales[i, g_idx[j]]·(codes[i, j] − zeros[i, g_idx[j]])`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarQuantized {
    /// M.
    pub out_features: usize,
    /// N.
    pub in_features: usize,
    /// The settings used.
    pub config: ScalarConfig,
    /// weight [M, N]: the dequantized weight `Ŵ`, original column order.
    pub weight: Vec<f32>,
    /// codes [M, N], original column order.
    pub codes: Vec<u8>,
    /// scales [M, G]: f16-exact.
    pub scales: Vec<f32>,
    /// zeros [M, G] (the constant 2ᵇ⁻¹ when symmetric).
    pub zeros: Vec<u8>,
    /// g_idx [N]: group of original column `j`.
    pub g_idx: Vec<u32>,
    /// Whether `g_idx` must be stored (it is not `j / gs`: act-order with sequential groups).
    pub g_idx_stored: bool,
    /// Proxy error (NaN when no Hessian was given) and timing; `kmeans_secs` is 0, `loop_secs` the
    /// quantization itself.
    pub report: LayerReport,
}

impl ScalarQuantized {
    /// G: groups per row.
    pub fn num_groups(&self) -> usize {
        self.in_features.div_ceil(self.config.group_size)
    }

    /// Storage of this layer, tensor by tensor.
    pub fn storage_bits(&self) -> ScalarStorageBits {
        let (m, n, g, b) =
            (self.out_features as u64, self.in_features as u64, self.num_groups() as u64, u64::from(self.config.bits));
        ScalarStorageBits {
            codes: m * (n * b).div_ceil(32) * 32,
            scales: m * g * 16,
            zeros: if self.config.sym { 0 } else { g * (m * b).div_ceil(32) * 32 },
            g_idx: if self.g_idx_stored { 32 * n } else { 0 },
        }
    }

    /// `storage_bits().total() / (M·N)`: honest bits per weight.
    pub fn bits_per_weight(&self) -> f64 {
        self.storage_bits().total() as f64 / (self.out_features * self.in_features) as f64
    }
}

/// Quantizes `w [M, N]` (row-major, `[out_features, in_features]`) with RTN or GPTQ per `cfg`. `prepared` is the
/// layer input's Hessian, best made by [`ScalarConfig::prepare_hessian`]: GPTQ needs it, RTN only uses it for
/// the proxy error. `N` is taken from `prepared` when given, else from `w.len() / m`.
///
/// GPTQ zeroes dead columns (as GPTQ and the VPTQ layer do) and processes columns in `prepared.perm` order,
/// which must match `cfg.act_order` (identity without it, descending `diag(H)` with it).
///
/// # Errors
/// `InvalidConfig` (bad settings; GPTQ without a Hessian; a Hessian prepared with the other act-order setting);
/// `ShapeMismatch`; `NonFinite`; `Empty` for a zero dimension.
pub fn quantize_linear_scalar(
    w: &[f32],
    m: usize,
    prepared: Option<&PreparedHessian>,
    cfg: &ScalarConfig,
) -> Result<ScalarQuantized> {
    let start = Instant::now();
    cfg.validate()?;
    if m == 0 || w.is_empty() {
        return Err(QuantError::Empty { what: "weight (a zero dimension)" });
    }
    let n = prepared.map_or(w.len() / m, |p| p.in_features);
    check_len("weight [M, N]", w.len(), m * n)?;
    check_finite_f32("weight", w)?;
    let gs = cfg.group_size;
    let grid = cfg.grid();

    let t = Instant::now();
    // out: codes and parameters with columns in processing order; perm[q] = original column of column q
    let identity: Vec<usize> = (0..n).collect();
    let (out, perm): (ScalarCodes, &[usize]) = match cfg.method {
        ScalarMethod::Rtn => (rtn_quantize(w, m, n, grid, GroupOrder::Sequential { group_size: gs })?, &identity),
        ScalarMethod::Gptq => {
            let ph = prepared.ok_or(QuantError::InvalidConfig {
                field: "method",
                value: "gptq".into(),
                reason: "GPTQ needs the layer's Hessian (a PreparedHessian)",
            })?;
            check_act_order(ph, cfg.act_order)?;
            let perm = &ph.perm[..];
            let mut dead = vec![false; n];
            ph.dead_columns.iter().for_each(|&j| dead[j] = true);
            // wp [M, N]: W with columns permuted, dead columns (inputs always 0) zeroed
            let mut wp = vec![0f32; m * n];
            for i in 0..m {
                for (q, &j) in perm.iter().enumerate() {
                    wp[i * n + q] = if dead[j] { 0.0 } else { w[i * n + j] };
                }
            }
            let static_of: Vec<usize>;
            let groups = if cfg.static_groups {
                static_of = perm.iter().map(|&j| j / gs).collect();
                GroupOrder::Static { group_of: &static_of }
            } else {
                GroupOrder::Sequential { group_size: gs }
            };
            (gptq_quantize(&wp, m, n, &ph.hessian_inv_chol, grid, groups, cfg.block_size)?, perm)
        }
    };
    let loop_secs = t.elapsed().as_secs_f64();

    // back to the original column order
    let mut weight = vec![0f32; m * n];
    let mut codes = vec![0u8; m * n];
    for i in 0..m {
        for (q, &j) in perm.iter().enumerate() {
            weight[i * n + j] = out.dequantized[i * n + q];
            codes[i * n + j] = out.codes[i * n + q];
        }
    }
    let mut g_idx = vec![0u32; n];
    for (q, &j) in perm.iter().enumerate() {
        g_idx[j] = out.group_of[q] as u32;
    }
    let g_idx_stored = g_idx.iter().enumerate().any(|(j, &g)| g as usize != j / gs);
    debug_assert_eq!(out.num_groups, n.div_ceil(gs));

    let proxy_err = match prepared {
        Some(ph) => {
            // ph.hessian is in ph.perm order: permute both weights the same way
            let permuted = |a: &[f32]| -> Vec<f32> {
                let mut p = vec![0f32; m * n];
                for i in 0..m {
                    for (q, &j) in ph.perm.iter().enumerate() {
                        p[i * n + q] = a[i * n + j];
                    }
                }
                p
            };
            proxy_error(&permuted(w), &permuted(&weight), m, n, &ph.hessian)?
        }
        None => f64::NAN,
    };

    Ok(ScalarQuantized {
        out_features: m,
        in_features: n,
        config: cfg.clone(),
        weight,
        codes,
        scales: out.params.iter().map(|p| p.scale).collect(),
        zeros: out.params.iter().map(|p| p.zero).collect(),
        g_idx,
        g_idx_stored,
        report: LayerReport { proxy_err, secs: start.elapsed().as_secs_f64(), kmeans_secs: 0.0, loop_secs },
    })
}

/// GPTQ's column order must be the one `cfg.act_order` asks for: a Hessian prepared for VPTQ (act-order on) given
/// to `gptq-…-noact` would silently run act-order, and the reverse would silently not.
fn check_act_order(ph: &PreparedHessian, act_order: bool) -> Result<()> {
    let n = ph.in_features;
    let ok = if act_order {
        // act-order = stable sort by descending diagonal, so the permuted diagonal is non-increasing
        (1..n).all(|q| ph.hessian[q * n + q] <= ph.hessian[(q - 1) * n + q - 1])
    } else {
        ph.perm.iter().enumerate().all(|(q, &j)| q == j)
    };
    if ok {
        Ok(())
    } else {
        Err(QuantError::InvalidConfig {
            field: "act_order",
            value: act_order.to_string(),
            reason:
                "the prepared Hessian was made with the other act-order setting (use ScalarConfig::prepare_hessian)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{correlated_hessian, normal_f32};

    /// Rows sharing structure plus per-column offsets (like real layers, columns differ in scale).
    fn layer(m: usize, n: usize, seed: u64) -> Vec<f32> {
        let base = normal_f32(m * n, seed);
        let rows = normal_f32(4 * n, seed + 1);
        (0..m * n).map(|e| 0.7 * base[e] + 0.5 * rows[(e / n % 4) * n + e % n]).collect()
    }

    fn identity(n: usize) -> Vec<f64> {
        let mut h = vec![0f64; n * n];
        (0..n).for_each(|j| h[j * n + j] = 1.0);
        h
    }

    fn cfg(s: &str) -> ScalarConfig {
        s.parse().unwrap()
    }

    /// Dequantization from the stored tensors only.
    fn dequantize(q: &ScalarQuantized) -> Vec<f32> {
        let (m, n, g) = (q.out_features, q.in_features, q.num_groups());
        let mut w = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let e = i * g + q.g_idx[j] as usize;
                w[i * n + j] = q.scales[e] * (f32::from(q.codes[i * n + j]) - f32::from(q.zeros[e]));
            }
        }
        w
    }

    #[test]
    fn identity_hessian_gptq_equals_rtn() {
        // N = 200: groups of 64, 64, 64 and a partial 8
        let (m, n) = (33, 200);
        let w = layer(m, n, 1);
        let h = identity(n);
        for bits in [2, 3, 4] {
            let rtn_cfg = cfg(&format!("rtn-w{bits}-g64"));
            let rtn = quantize_linear_scalar(&w, m, Some(&rtn_cfg.prepare_hessian(&h, n).unwrap()), &rtn_cfg).unwrap();
            for flags in ["", "-noact", "-static", "-noact-static"] {
                let c = cfg(&format!("gptq-w{bits}-g64{flags}"));
                let gptq = quantize_linear_scalar(&w, m, Some(&c.prepare_hessian(&h, n).unwrap()), &c).unwrap();
                assert_eq!(gptq.weight, rtn.weight, "w{bits}{flags}");
                assert_eq!((&gptq.codes, &gptq.scales, &gptq.zeros), (&rtn.codes, &rtn.scales, &rtn.zeros));
                assert_eq!(gptq.report.proxy_err, rtn.report.proxy_err);
            }
        }
    }

    #[test]
    fn gptq_beats_rtn_on_a_correlated_hessian_and_more_bits_help() {
        let (m, n) = (48, 256);
        let w = layer(m, n, 2);
        let h = correlated_hessian(n, 3);
        let mut last = (f64::INFINITY, f64::INFINITY);
        for bits in [2, 3, 4] {
            let r = cfg(&format!("rtn-w{bits}-g128"));
            let rtn = quantize_linear_scalar(&w, m, Some(&r.prepare_hessian(&h, n).unwrap()), &r).unwrap();
            for flags in ["", "-noact", "-static"] {
                let g = cfg(&format!("gptq-w{bits}-g128{flags}"));
                let gptq = quantize_linear_scalar(&w, m, Some(&g.prepare_hessian(&h, n).unwrap()), &g).unwrap();
                let (e_g, e_r) = (gptq.report.proxy_err, rtn.report.proxy_err);
                assert!(e_g < 0.8 * e_r, "w{bits}{flags}: gptq {e_g} vs rtn {e_r}");
            }
            let g = cfg(&format!("gptq-w{bits}-g128"));
            let gptq = quantize_linear_scalar(&w, m, Some(&g.prepare_hessian(&h, n).unwrap()), &g).unwrap();
            let now = (rtn.report.proxy_err, gptq.report.proxy_err);
            assert!(now.0 < last.0 && now.1 < last.1, "w{bits}: {now:?} vs {last:?}");
            last = now;
        }
    }

    #[test]
    fn partial_last_group_and_stored_tensors() {
        // N = 200 = 3·64 + 8 (like SmolLM2's 576 = 4·128 + 64)
        let (m, n) = (21, 200);
        let w = layer(m, n, 4);
        let h = correlated_hessian(n, 5);
        for name in ["rtn-w3-g64", "rtn-w2-g64-sym", "gptq-w3-g64", "gptq-w2-g64-static", "gptq-w4-g64-noact-sym"] {
            let c = cfg(name);
            let q = quantize_linear_scalar(&w, m, Some(&c.prepare_hessian(&h, n).unwrap()), &c).unwrap();
            assert_eq!(q.num_groups(), 4);
            assert_eq!((q.scales.len(), q.zeros.len(), q.g_idx.len()), (m * 4, m * 4, n));
            assert_eq!(dequantize(&q), q.weight, "{name}");
            let mut sizes = [0usize; 4];
            q.g_idx.iter().for_each(|&g| sizes[g as usize] += 1);
            assert_eq!(sizes, [64, 64, 64, 8], "{name}");
            // act-order with sequential groups scatters the groups over the original columns
            assert_eq!(q.g_idx_stored, name == "gptq-w3-g64", "{name}");
            assert!(q.report.proxy_err > 0.0 && q.report.proxy_err < 1.0, "{name}: {}", q.report.proxy_err);
        }
        // RTN: every weight within half a step of its group's grid (the partial group included)
        let q = quantize_linear_scalar(&w, m, None, &cfg("rtn-w2-g64")).unwrap();
        assert!(q.report.proxy_err.is_nan());
        for i in 0..m {
            for j in 0..n {
                let step = q.scales[i * 4 + j / 64];
                assert!((w[i * n + j] - q.weight[i * n + j]).abs() <= step * (0.5 + 1e-5));
            }
        }
    }

    #[test]
    fn bits_per_weight_as_documented() {
        // SmolLM2-135M shapes: q_proj 576 → 576, down_proj 1536 → 576
        let h576 = identity(576);
        let w = layer(64, 576, 6);
        for (bits, want) in
            [(2u32, 2.0 + 5.0 * 18.0 / 576.0), (3, 3.0 + 5.0 * 19.0 / 576.0), (4, 4.0 + 5.0 * 20.0 / 576.0)]
        {
            let q = quantize_linear_scalar(&w, 64, None, &cfg(&format!("rtn-w{bits}-g128"))).unwrap();
            let s = q.storage_bits();
            let b = u64::from(bits);
            assert_eq!(s, ScalarStorageBits { codes: 64 * 576 * b, scales: 64 * 5 * 16, zeros: 5 * 64 * b, g_idx: 0 });
            assert_eq!(q.bits_per_weight(), want);
            let sym = quantize_linear_scalar(&w, 64, None, &cfg(&format!("rtn-w{bits}-g128-sym"))).unwrap();
            assert_eq!(sym.bits_per_weight(), f64::from(bits) + 5.0 * 16.0 / 576.0);
        }
        // act-order with sequential groups pays an int32 g_idx per input column
        let mut h = correlated_hessian(576, 7);
        (0..576).for_each(|j| h[j * 576 + j] *= 1.0 + j as f64 / 576.0);
        let c = cfg("gptq-w2-g128");
        let q = quantize_linear_scalar(&w, 64, Some(&c.prepare_hessian(&h, 576).unwrap()), &c).unwrap();
        assert!(q.g_idx_stored);
        assert_eq!(q.storage_bits().g_idx, 32 * 576);
        assert_eq!(q.bits_per_weight(), 2.0 + 5.0 * 18.0 / 576.0 + 32.0 / 64.0);
        let c = cfg("gptq-w2-g128-static");
        let q = quantize_linear_scalar(&w, 64, Some(&c.prepare_hessian(&h, 576).unwrap()), &c).unwrap();
        assert!(!q.g_idx_stored);
        // codes padded to whole words: 3 bits × 100 columns = 300 bits → 10 words per row
        let q = quantize_linear_scalar(&layer(5, 100, 8), 5, None, &cfg("rtn-w3-g128")).unwrap();
        assert_eq!(q.storage_bits(), ScalarStorageBits { codes: 5 * 320, scales: 5 * 16, zeros: 32, g_idx: 0 });
        drop(h576);
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        // 70 rows: two full row batches and a partial one
        let (m, n) = (70, 300);
        let w = layer(m, n, 9);
        let h = correlated_hessian(n, 10);
        let c = cfg("gptq-w3-g128");
        let ph = c.prepare_hessian(&h, n).unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| quantize_linear_scalar(&w, m, Some(&ph), &c).unwrap())
        };
        let (a, b) = (run(1), run(2));
        assert_eq!((a.weight, a.codes, a.scales, a.zeros), (b.weight, b.codes, b.scales, b.zeros));
        assert_eq!(a.report.proxy_err.to_bits(), b.report.proxy_err.to_bits());
    }

    #[test]
    fn dead_columns_are_zeroed_by_gptq() {
        let (m, n) = (10, 40);
        let w = layer(m, n, 11);
        let mut h = correlated_hessian(n, 12);
        for t in 0..n {
            h[5 * n + t] = 0.0;
            h[t * n + 5] = 0.0;
        }
        let c = cfg("gptq-w4-g16");
        let q = quantize_linear_scalar(&w, m, Some(&c.prepare_hessian(&h, n).unwrap()), &c).unwrap();
        assert!((0..m).all(|i| q.weight[i * n + 5] == 0.0));
        assert!(q.report.proxy_err.is_finite());
    }

    #[test]
    fn config_names_parse_print_and_fail_clearly() {
        let c = cfg("gptq-w3-g128");
        assert_eq!(
            (c.method, c.bits, c.group_size, c.sym, c.act_order, c.static_groups),
            (ScalarMethod::Gptq, 3, 128, false, true, false)
        );
        let c = cfg("rtn-w2-g128");
        assert_eq!((c.method, c.bits, c.act_order), (ScalarMethod::Rtn, 2, false));
        for s in ["rtn-w4-g128", "rtn-w8-g1-sym", "gptq-w2-g128-noact", "gptq-w1-g64-sym-noact-static"] {
            assert_eq!(cfg(s).to_string(), s);
        }
        for (s, field) in [("rtn-w0-g128", "bits"), ("gptq-w9-g128", "bits"), ("rtn-w2-g0", "group_size")] {
            match s.parse::<ScalarConfig>() {
                Err(QuantError::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        for s in [
            "",
            "rtn",
            "rtn-w2",
            "awq-w2-g128",
            "rtn-2-g128",
            "rtn-w2-128",
            "rtn-w-g128",
            "rtn-w2-g128-x",
            "rtn-w2-g128-noact",
            "gptq-w+2-g128",
            "gptq-w99999999999999999999999-g128",
        ] {
            let e = s.parse::<ScalarConfig>();
            assert!(matches!(e, Err(QuantError::BadScalarPreset { .. })), "{s}: {e:?}");
        }
        let msg = "rtn-w2".parse::<ScalarConfig>().unwrap_err().to_string();
        assert!(msg.contains("rtn-w{bits}-g{group}"), "{msg}");
        let mut c = cfg("gptq-w2-g128");
        c.damp = -1.0;
        assert!(matches!(c.validate(), Err(QuantError::InvalidConfig { field: "damp", .. })));
    }

    #[test]
    fn bad_layers_are_errors() {
        let (m, n) = (4, 16);
        let w = layer(m, n, 13);
        let h = correlated_hessian(n, 14);
        let gptq = cfg("gptq-w4-g8");
        // GPTQ needs a Hessian
        assert!(matches!(
            quantize_linear_scalar(&w, m, None, &gptq),
            Err(QuantError::InvalidConfig { field: "method", .. })
        ));
        // a Hessian prepared with act-order given to a no-act-order config, and the reverse
        let mut h_sorted = h.clone();
        (0..n).for_each(|j| h_sorted[j * n + j] *= 1.0 + j as f64);
        let act = gptq.prepare_hessian(&h_sorted, n).unwrap();
        assert!(act.perm.iter().enumerate().any(|(q, &j)| q != j));
        let noact = cfg("gptq-w4-g8-noact");
        assert!(matches!(
            quantize_linear_scalar(&w, m, Some(&act), &noact),
            Err(QuantError::InvalidConfig { field: "act_order", .. })
        ));
        let plain = noact.prepare_hessian(&h_sorted, n).unwrap();
        assert!(matches!(
            quantize_linear_scalar(&w, m, Some(&plain), &gptq),
            Err(QuantError::InvalidConfig { field: "act_order", .. })
        ));
        // shapes and values
        let ph = gptq.prepare_hessian(&h, n).unwrap();
        assert!(matches!(quantize_linear_scalar(&w[..60], m, Some(&ph), &gptq), Err(QuantError::ShapeMismatch { .. })));
        assert!(matches!(quantize_linear_scalar(&w, 0, None, &cfg("rtn-w2-g8")), Err(QuantError::Empty { .. })));
        let mut bad = w.clone();
        bad[3] = f32::INFINITY;
        assert!(matches!(quantize_linear_scalar(&bad, m, Some(&ph), &gptq), Err(QuantError::NonFinite { .. })));
    }

    /// SmolLM2-135M's largest layers at 2–4 bits; run with
    /// `cargo test --release -p vptq-quant -- --ignored --nocapture scalar_speed`.
    #[test]
    #[ignore = "timing print, run in release"]
    fn scalar_speed_smollm2_layers() {
        for (m, n) in [(1536, 576), (576, 1536)] {
            let h = correlated_hessian(n.min(64), 15);
            // a cheap SPD Hessian of size n: block-diagonal copies of a correlated 64 × 64 block
            let mut hn = vec![0f64; n * n];
            for b in 0..n / 64 {
                for r in 0..64 {
                    for c in 0..64 {
                        hn[(b * 64 + r) * n + b * 64 + c] = h[r * 64 + c];
                    }
                }
            }
            let w = layer(m, n, 16);
            for bits in [2, 3, 4] {
                let c = cfg(&format!("gptq-w{bits}-g128"));
                let t = Instant::now();
                let ph = c.prepare_hessian(&hn, n).unwrap();
                let prep = t.elapsed().as_secs_f64();
                let g = quantize_linear_scalar(&w, m, Some(&ph), &c).unwrap();
                let r = quantize_linear_scalar(&w, m, Some(&ph), &cfg(&format!("rtn-w{bits}-g128"))).unwrap();
                println!(
                    "{m}x{n} w{bits} ({} threads): prepare H {prep:.3} s; gptq {:.3} s (loop {:.3} s) proxy {:.4e} \
                     {:.4} bpw; rtn {:.3} s proxy {:.4e}",
                    rayon::current_num_threads(),
                    g.report.secs,
                    g.report.loop_secs,
                    g.report.proxy_err,
                    g.bits_per_weight(),
                    r.report.secs,
                    r.report.proxy_err
                );
            }
        }
    }
}
