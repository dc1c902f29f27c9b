//! `VqConfig`: the resolved, validated settings of one quantization run (vptq-spec.md §1.11 defaults), with
//! `FromStr`/`Display` for presets named like the VPTQ-community models: `v{v}-k{k}` or `v{v}-k{k}-{kr}`
//! (`"v8-k65536-256"`, `"v6-k4096"`, `"v8-k256"`; `kr = 0` means no residual codebook).
//! Plumbing, no math. Dependencies: none beyond this crate.

use std::fmt;
use std::str::FromStr;

use crate::algo::kmeans::{KMeansInit, MAX_CENTROIDS, MAX_VECTOR_LEN};
use crate::algo::outlier::ColumnSplit;
use crate::error::{QuantError, Result};

/// Per-input-column normalization of the weight before quantization (spec §1.4 step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormMode {
    /// No normalization: scale 1, bias 0.
    None,
    /// `bias_j = min_i W[i,j]`, `scale_j = max − min` (the reference since 2025-01).
    MinMax,
    /// `bias_j = mean`, `scale_j = std` (unbiased) over the column (the reference in late 2024).
    MeanStd,
}

/// Everything that decides how one linear layer is quantized.
#[derive(Debug, Clone, PartialEq)]
pub struct VqConfig {
    /// `v`: length of the main vectors, cut along the output dimension (2..=16).
    pub vector_len: usize,
    /// `k`: centroids per main codebook (power of two, 2..=65536).
    pub num_centroids: usize,
    /// `kr`: centroids per residual codebook (power of two, 2..=65536), 0 for no residual stage.
    pub num_res_centroids: usize,
    /// Percentage of input columns (largest Hessian diagonal first) in the outlier block; 0 disables it.
    pub outlier_percent: f64,
    /// Vector length of the outlier codebook (used when `outlier_percent > 0`).
    pub outlier_vector_len: usize,
    /// Centroids of the outlier codebook (used when `outlier_percent > 0`).
    pub outlier_num_centroids: usize,
    /// Number of main codebooks, each owning a contiguous group of the non-outlier columns.
    pub group_num: usize,
    /// Per-input-column normalization.
    pub norm: NormMode,
    /// Reorder input columns by descending `diag(H)` (act-order).
    pub enable_perm: bool,
    /// `λ` of `H ← H / mean(diag H) + λ·I`, applied first (the Hessian loader's 0.01).
    pub hessian_regularize: f64,
    /// GPTQ damping `percdamp·mean(diag H)` added before the Cholesky factor (0.01).
    pub percdamp: f64,
    /// Run k-means and the error-feedback loop on the normalized weight `W' = (W − bias)·S⁻¹` with the
    /// Hessian it actually has, `S H S` (k-means weights `s_j²·H[j][j]`, `U' = U·S⁻¹`), instead of the
    /// reference's `H` (false, the default, is what the reference does; spec §1.4 applies `H` unchanged to `W'`).
    pub scale_aware_hessian: bool,
    /// Columns per lazy-update block of the error-feedback loop (128).
    pub block_size: usize,
    /// Maximum Lloyd iterations of every k-means (100).
    pub kmeans_iters: usize,
    /// Relative objective decrease below which k-means stops (1e-5).
    pub kmeans_tol: f64,
    /// k-means initialization.
    pub kmeans_init: KMeansInit,
    /// Fit k-means on a uniform sample of at most this many vectors per codebook (`None`: all).
    pub kmeans_max_fit_vectors: Option<usize>,
    /// Snap each trained main codebook to its int8 grid (per lane, `vq_fast::int8_grid_step`) before the
    /// error-feedback loop where that adds little distortion, so the loop compensates the rounding and the
    /// kernels can hold the codebook in int8 without loss (false, the default, is the reference's free f16
    /// codebook).
    pub int8_grid: bool,
    /// Seed of every random choice (codebook `c` of a layer uses `seed + c`).
    pub seed: u64,
}

impl VqConfig {
    /// The reference's defaults for main vectors of length `vector_len`, `num_centroids` main and
    /// `num_res_centroids` residual centroids: no outliers, one group, min/max norm, act-order, λ = 0.01,
    /// percdamp = 0.01, block 128, random-init k-means with 100 iterations and tol 1e-5 on all vectors, seed 0.
    pub fn new(vector_len: usize, num_centroids: usize, num_res_centroids: usize) -> Self {
        Self {
            vector_len,
            num_centroids,
            num_res_centroids,
            outlier_percent: 0.0,
            outlier_vector_len: 4,
            outlier_num_centroids: 4096,
            group_num: 1,
            norm: NormMode::MinMax,
            enable_perm: true,
            hessian_regularize: 0.01,
            percdamp: 0.01,
            scale_aware_hessian: false,
            block_size: 128,
            kmeans_iters: 100,
            kmeans_tol: 1e-5,
            kmeans_init: KMeansInit::Random,
            kmeans_max_fit_vectors: None,
            int8_grid: false,
            seed: 0,
        }
    }

    /// Whether a residual codebook is trained.
    pub fn has_residual(&self) -> bool {
        self.num_res_centroids > 0
    }

    /// Index bits per weight, `log2(k)/v + log2(kr)/v` (codebooks, scale/bias, perm, padding excluded).
    pub fn index_bits_per_weight(&self) -> f64 {
        let bits = |k: usize| if k > 1 { k.ilog2() as f64 } else { 0.0 };
        (bits(self.num_centroids) + bits(self.num_res_centroids)) / self.vector_len as f64
    }

    /// Checks every setting on its own.
    ///
    /// # Errors
    /// `InvalidConfig` naming the first bad field: k or kr not a power of two, v outside 2–16, k > 65536,
    /// outlier percent outside [0, 100), zero groups or block size, negative or non-finite damping.
    pub fn validate(&self) -> Result<()> {
        check_vector_len("vector_len", self.vector_len)?;
        check_centroids("num_centroids", self.num_centroids)?;
        if self.num_res_centroids != 0 {
            check_centroids("num_res_centroids", self.num_res_centroids)?;
        }
        if !(0.0..100.0).contains(&self.outlier_percent) {
            return Err(invalid("outlier_percent", self.outlier_percent, "must be in [0, 100)"));
        }
        if self.outlier_percent > 0.0 {
            check_vector_len("outlier_vector_len", self.outlier_vector_len)?;
            check_centroids("outlier_num_centroids", self.outlier_num_centroids)?;
        }
        if self.group_num == 0 {
            return Err(invalid("group_num", self.group_num, "must be at least 1"));
        }
        if self.block_size == 0 {
            return Err(invalid("block_size", self.block_size, "must be at least 1"));
        }
        for (field, value) in [
            ("hessian_regularize", self.hessian_regularize),
            ("percdamp", self.percdamp),
            ("kmeans_tol", self.kmeans_tol),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(invalid(field, value, "must be finite and >= 0"));
            }
        }
        if self.kmeans_max_fit_vectors == Some(0) {
            return Err(invalid("kmeans_max_fit_vectors", 0, "must be at least 1 (or unset)"));
        }
        Ok(())
    }

    /// Checks the settings against a layer `W [out_features, in_features]`: [`Self::validate`], the column
    /// split, `in_features ≤ 65536` (16-bit perm) and at least as many vectors as centroids in every codebook.
    ///
    /// # Errors
    /// As [`Self::validate`]; `InvalidConfig` for an impossible split or too wide a layer; `TooManyCentroids`.
    pub fn validate_for_shape(&self, out_features: usize, in_features: usize) -> Result<ColumnSplit> {
        self.validate()?;
        if out_features == 0 || in_features == 0 {
            return Err(QuantError::Empty { what: "weight (a zero dimension)" });
        }
        if in_features > MAX_CENTROIDS {
            return Err(invalid("in_features", in_features, "perm is 16-bit: at most 65536 input columns"));
        }
        let split = ColumnSplit::new(in_features, self.outlier_percent, self.group_num)?;
        if split.outlier_size > 0 {
            let vectors = out_features.div_ceil(self.outlier_vector_len) * split.outlier_size;
            check_vectors("outliers", self.outlier_num_centroids, vectors)?;
        }
        let vectors = out_features.div_ceil(self.vector_len) * split.group_size;
        check_vectors("main codebook (per group)", self.num_centroids, vectors)?;
        if self.has_residual() {
            check_vectors("residual codebook (per group)", self.num_res_centroids, vectors)?;
        }
        Ok(split)
    }
}

impl VqConfig {
    /// [`Self::validate_for_shape`] for a layer whose main codebook is shared with other layers: it was fitted
    /// on the vectors of all of them, so it may hold more centroids than this layer has vectors.
    ///
    /// # Errors
    /// As [`Self::validate_for_shape`], less the main codebook's `TooManyCentroids`.
    pub fn validate_for_shape_shared(&self, out_features: usize, in_features: usize) -> Result<ColumnSplit> {
        VqConfig { num_centroids: 2, ..self.clone() }.validate_for_shape(out_features, in_features)
    }

    /// These settings with every codebook shrunk, where needed, to the largest power of two not above the
    /// vectors it codes in a layer `[out_features, in_features]` (a codebook with more centroids than vectors
    /// only costs bits: the vectors are then stored exactly either way).
    ///
    /// # Errors
    /// As [`Self::validate`]; an impossible column split.
    pub fn clamped_to_shape(&self, out_features: usize, in_features: usize) -> Result<VqConfig> {
        self.validate()?;
        let split = ColumnSplit::new(in_features, self.outlier_percent, self.group_num)?;
        let fit = |k: usize, vectors: usize| if k > vectors && vectors >= 2 { 1 << vectors.ilog2() } else { k };
        let mut c = self.clone();
        let vectors = out_features.div_ceil(self.vector_len) * split.group_size;
        c.num_centroids = fit(c.num_centroids, vectors);
        if c.has_residual() {
            c.num_res_centroids = fit(c.num_res_centroids, vectors);
        }
        if split.outlier_size > 0 {
            let vectors = out_features.div_ceil(self.outlier_vector_len) * split.outlier_size;
            c.outlier_num_centroids = fit(c.outlier_num_centroids, vectors);
        }
        Ok(c)
    }
}

fn invalid(field: &'static str, value: impl fmt::Display, reason: &'static str) -> QuantError {
    QuantError::InvalidConfig { field, value: value.to_string(), reason }
}

fn check_vector_len(field: &'static str, v: usize) -> Result<()> {
    if (2..=MAX_VECTOR_LEN).contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, v, "vector length must be 2..=16"))
    }
}

fn check_centroids(field: &'static str, k: usize) -> Result<()> {
    if k > MAX_CENTROIDS {
        Err(invalid(field, k, "at most 65536 centroids (16-bit indices)"))
    } else if k < 2 || !k.is_power_of_two() {
        Err(invalid(field, k, "must be a power of two >= 2"))
    } else {
        Ok(())
    }
}

fn check_vectors(part: &str, centroids: usize, vectors: usize) -> Result<()> {
    if centroids > vectors {
        Err(QuantError::TooManyCentroids { part: part.to_string(), centroids, vectors })
    } else {
        Ok(())
    }
}

impl FromStr for VqConfig {
    type Err = QuantError;

    /// Parses `v{v}-k{k}` or `v{v}-k{k}-{kr}` into [`VqConfig::new`] and validates it.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| QuantError::BadPreset { preset: s.to_string(), reason };
        let parts: Vec<&str> = s.trim().split('-').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad("expected 2 or 3 dash-separated parts"));
        }
        let number = |text: Option<&str>, what| -> Result<usize> {
            text.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad(what))
        };
        let v = number(parts[0].strip_prefix('v'), "first part must be `v` and a number")?;
        let k = number(parts[1].strip_prefix('k'), "second part must be `k` and a number")?;
        let kr = if parts.len() == 3 { number(Some(parts[2]), "third part must be a number")? } else { 0 };
        let cfg = VqConfig::new(v, k, kr);
        cfg.validate()?;
        Ok(cfg)
    }
}

impl fmt::Display for VqConfig {
    /// The preset name `v{v}-k{k}-{kr}` (`-{kr}` omitted without residual).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}-k{}", self.vector_len, self.num_centroids)?;
        if self.has_residual() {
            write!(f, "-{}", self.num_res_centroids)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_print() {
        let c: VqConfig = "v8-k65536-256".parse().unwrap();
        assert_eq!((c.vector_len, c.num_centroids, c.num_res_centroids), (8, 65536, 256));
        assert_eq!(c.index_bits_per_weight(), 3.0);
        assert_eq!(c.to_string(), "v8-k65536-256");
        let c: VqConfig = "v6-k4096".parse().unwrap();
        assert_eq!((c.vector_len, c.num_centroids, c.num_res_centroids), (6, 4096, 0));
        assert_eq!(c.to_string(), "v6-k4096");
        let c: VqConfig = "v8-k256-0".parse().unwrap();
        assert!(!c.has_residual());
        assert_eq!(c.index_bits_per_weight(), 1.0);
    }

    #[test]
    fn invalid_presets_and_settings() {
        for (s, field) in [
            ("v8-k1000", "num_centroids"),
            ("v1-k256", "vector_len"),
            ("v17-k256", "vector_len"),
            ("v8-k131072", "num_centroids"),
            ("v8-k256-3", "num_res_centroids"),
        ] {
            match s.parse::<VqConfig>() {
                Err(QuantError::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        for s in ["", "v8", "x8-k256", "v8-k", "v8-k256-1-2", "v-8-k256", "v8-k+256"] {
            assert!(matches!(s.parse::<VqConfig>(), Err(QuantError::BadPreset { .. })), "{s}");
        }
        let mut c = VqConfig::new(8, 256, 0);
        c.group_num = 0;
        assert!(matches!(c.validate(), Err(QuantError::InvalidConfig { field: "group_num", .. })));
        let mut c = VqConfig::new(8, 256, 0);
        c.percdamp = f64::NAN;
        assert!(matches!(c.validate(), Err(QuantError::InvalidConfig { field: "percdamp", .. })));
    }

    #[test]
    fn clamping_shrinks_only_oversized_codebooks() {
        let cfg: VqConfig = "v8-k65536-256".parse().unwrap();
        // 192×576 at v = 8: 24 · 576 = 13824 vectors → k = 8192; the residual's 256 fits.
        let c = cfg.clamped_to_shape(192, 576).unwrap();
        assert_eq!((c.num_centroids, c.num_res_centroids), (8192, 256));
        assert!(c.validate_for_shape(192, 576).is_ok());
        assert_eq!(cfg.clamped_to_shape(4096, 4096).unwrap(), cfg);
    }

    #[test]
    fn more_centroids_than_vectors_is_an_error() {
        // 64 × 64 at v8: 8 vectors per column · 64 columns = 512 vectors
        let c = VqConfig::new(8, 1024, 0);
        assert!(matches!(c.validate_for_shape(64, 64), Err(QuantError::TooManyCentroids { vectors: 512, .. })));
        assert!(VqConfig::new(8, 512, 0).validate_for_shape(64, 64).is_ok());
        let mut g = VqConfig::new(8, 512, 0);
        g.group_num = 2;
        assert!(matches!(g.validate_for_shape(64, 64), Err(QuantError::TooManyCentroids { vectors: 256, .. })));
        assert!(matches!(
            VqConfig::new(8, 256, 0).validate_for_shape(8, 70000),
            Err(QuantError::InvalidConfig { field: "in_features", .. })
        ));
    }
}
