//! The validated shape of one VPTQ-quantized linear (vptq-spec.md §2.1–§2.2): vector length, codebook sizes,
//! groups, outliers and which optional tensors exist, with the derived index widths and tensor sizes.
//!
//! No IO: built from a raw per-layer dict by [`VqLayout::from_raw`] (or field by field by a quantizer, then
//! [`VqLayout::validate`]). Errors are plain strings here; callers wrap them with the layer and file.

use super::bits::{words_for, MAX_INDEX_BITS};
use super::config::VqLayerConfigRaw;

/// Largest `in_features` / `out_features` accepted (matches the model crate's dimension cap).
pub const MAX_FEATURES: usize = 1 << 22;
/// Largest vector length (published models use 2 … 16).
pub const MAX_VECTOR_LEN: usize = 16;
/// Largest codebook (16-bit indices).
pub const MAX_CENTROIDS: usize = 1 << MAX_INDEX_BITS;

/// Shape of a VPTQ linear `[out_features M, in_features N]`.
///
/// Columns in permuted order are: `outlier_size` outlier columns, then `group_num` groups of `group_size`
/// columns, each group with its own main (and residual) codebook. Vectors run along the output dimension:
/// vector `i` of a column covers rows `i·v … i·v + v` of the output padded to `num_indices() · v` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VqLayout {
    /// N.
    pub in_features: usize,
    /// M.
    pub out_features: usize,
    /// v, elements per main vector.
    pub vector_len: usize,
    /// k, centroids per main codebook (a power of two).
    pub num_centroids: usize,
    /// kr, centroids per residual codebook (a power of two), 0 = no residual codebook.
    pub num_res_centroids: usize,
    /// G, number of main codebooks.
    pub group_num: usize,
    /// Columns per main codebook.
    pub group_size: usize,
    /// Leading permuted columns quantized with the outlier codebook (0 = none).
    pub outlier_size: usize,
    /// v0, elements per outlier vector (0 when there are no outliers).
    pub outlier_vector_len: usize,
    /// k0, centroids of the outlier codebook (0 when there are no outliers).
    pub outlier_num_centroids: usize,
    /// Per-input-column `weight_scale` / `weight_bias` are present.
    pub enable_norm: bool,
    /// A `perm` tensor is present (columns stored in permuted order).
    pub enable_perm: bool,
    /// The linear has a bias `[out_features]`.
    pub bias: bool,
}

fn is_pow2_codebook(k: usize) -> bool {
    (2..=MAX_CENTROIDS).contains(&k) && k.is_power_of_two()
}

impl VqLayout {
    /// b = log2 k, bits of a main index.
    pub fn index_bits(&self) -> u32 {
        self.num_centroids.trailing_zeros()
    }

    /// r = log2 kr, bits of a residual index (0 without residual).
    pub fn res_index_bits(&self) -> u32 {
        if self.num_res_centroids == 0 {
            0
        } else {
            self.num_res_centroids.trailing_zeros()
        }
    }

    /// T = b + r, bits of one packed element.
    pub fn total_bits(&self) -> u32 {
        self.index_bits() + self.res_index_bits()
    }

    /// True when a residual codebook is present.
    pub fn has_residual(&self) -> bool {
        self.num_res_centroids > 0
    }

    /// True when outlier columns are present.
    pub fn has_outliers(&self) -> bool {
        self.outlier_size > 0
    }

    /// Vectors per column, `ceil(M / v)`.
    pub fn num_indices(&self) -> usize {
        self.out_features.div_ceil(self.vector_len)
    }

    /// Zero rows appended to the output so that it divides into vectors, `(−M) mod v`.
    pub fn padding(&self) -> usize {
        self.num_indices() * self.vector_len - self.out_features
    }

    /// P, 32-bit words per packed index row: `ceil(group_size · T / 32)`.
    pub fn words_per_row(&self) -> usize {
        words_for(self.group_size, self.total_bits())
    }

    /// Outlier vectors per outlier column, `ceil(M / v0)` (0 without outliers).
    pub fn outlier_num_indices(&self) -> usize {
        if self.has_outliers() {
            self.out_features.div_ceil(self.outlier_vector_len)
        } else {
            0
        }
    }

    /// Short description for reports, e.g. `vq v8 k65536+256` (`xG` for groups, `o<size>` for outliers).
    pub fn describe(&self) -> String {
        let mut s = format!("vq v{} k{}", self.vector_len, self.num_centroids);
        if self.has_residual() {
            s.push_str(&format!("+{}", self.num_res_centroids));
        }
        if self.group_num > 1 {
            s.push_str(&format!(" x{}", self.group_num));
        }
        if self.has_outliers() {
            s.push_str(&format!(" o{}", self.outlier_size));
        }
        s
    }

    /// Checks every invariant the readers and kernels rely on.
    ///
    /// # Errors
    /// A sentence naming the offending value.
    pub fn validate(&self) -> Result<(), String> {
        for (name, n) in [("in_features", self.in_features), ("out_features", self.out_features)] {
            if n == 0 || n > MAX_FEATURES {
                return Err(format!("{name} = {n} is out of range 1..={MAX_FEATURES}"));
            }
        }
        if !(1..=MAX_VECTOR_LEN).contains(&self.vector_len) {
            return Err(format!("vector length {} is out of range 1..={MAX_VECTOR_LEN}", self.vector_len));
        }
        if !is_pow2_codebook(self.num_centroids) {
            return Err(format!(
                "num_centroids {} is not a power of two in 2..={MAX_CENTROIDS} (indices are log2(k) bits)",
                self.num_centroids
            ));
        }
        if self.num_res_centroids != 0 && !is_pow2_codebook(self.num_res_centroids) {
            return Err(format!(
                "num_res_centroids {} is not a power of two in 2..={MAX_CENTROIDS}",
                self.num_res_centroids
            ));
        }
        if self.group_num == 0 || self.group_size == 0 {
            return Err(format!("group_num {} and group_size {} must be ≥ 1", self.group_num, self.group_size));
        }
        let covered = self.group_num.checked_mul(self.group_size).and_then(|c| c.checked_add(self.outlier_size));
        if covered != Some(self.in_features) {
            return Err(format!(
                "group_size {} · group_num {} + outlier_size {} ≠ in_features {}",
                self.group_size, self.group_num, self.outlier_size, self.in_features
            ));
        }
        if self.has_outliers() {
            if !(1..=MAX_VECTOR_LEN).contains(&self.outlier_vector_len) {
                return Err(format!(
                    "outlier vector length {} is out of range 1..={MAX_VECTOR_LEN}",
                    self.outlier_vector_len
                ));
            }
            if self.outlier_num_centroids == 0 || self.outlier_num_centroids > MAX_CENTROIDS {
                return Err(format!(
                    "outlier num_centroids {} is out of range 1..={MAX_CENTROIDS} (uint16 indices)",
                    self.outlier_num_centroids
                ));
            }
        } else if self.outlier_vector_len != 0 || self.outlier_num_centroids != 0 {
            return Err("outlier vector length / centroids given without outlier columns".into());
        }
        if self.enable_perm && self.in_features > 1 << 16 {
            return Err(format!(
                "enable_perm with in_features {} > 65536 (perm is stored as uint16)",
                self.in_features
            ));
        }
        Ok(())
    }

    /// Resolves a raw per-layer dict for an `[out_features, in_features]` linear of the model. "No residual /
    /// no outlier" may be written −1 or 0. `model_bias`: the model's module has a bias (kept even when the dict
    /// says `bias: false`, as transformers does).
    ///
    /// # Errors
    /// Unsupported variants (unpacked indices, `norm_dim` ≠ 0, residual on outliers), missing or inconsistent
    /// values, and anything [`VqLayout::validate`] rejects.
    pub fn from_raw(
        raw: &VqLayerConfigRaw,
        out_features: usize,
        in_features: usize,
        model_bias: bool,
    ) -> Result<Self, String> {
        if raw.is_indice_packed == Some(false) {
            return Err("unsupported: unpacked indices (is_indice_packed = false); only bit-packed int32 indices \
                        are supported — re-pack the model with VPTQ's packing tool"
                .into());
        }
        if let Some(d) = raw.norm_dim.filter(|&d| d != 0) {
            return Err(format!("unsupported: norm_dim = {d} (only per-input-column normalisation, 0, exists)"));
        }
        for (key, want, got) in
            [("in_features", in_features, raw.in_features), ("out_features", out_features, raw.out_features)]
        {
            if let Some(g) = got.filter(|&g| g != want as i64) {
                return Err(format!("{key} = {g} in the config, but the model's layer has {want}"));
            }
        }
        let pair = |key: &str, v: &[i64], allow_empty: bool| -> Result<[i64; 2], String> {
            match v {
                [a, b] => Ok([*a, *b]),
                [] if allow_empty => Ok([-1, -1]),
                other => Err(format!("{key} must be [outlier, main], got {other:?}")),
            }
        };
        let [v0, v] = pair("vector_lens", &raw.vector_lens, false)?;
        let [k0, k] = pair("num_centroids", &raw.num_centroids, false)?;
        let [kr0, kr] = pair("num_res_centroids", &raw.num_res_centroids, true)?;
        let positive = |key: &str, x: i64| -> Result<usize, String> {
            usize::try_from(x).ok().filter(|&x| x > 0).ok_or_else(|| format!("{key} = {x} must be positive"))
        };
        if kr0 > 0 {
            return Err(format!("unsupported: residual codebook on outliers (num_res_centroids[0] = {kr0})"));
        }
        let outlier_size = match raw.outlier_size.unwrap_or(0) {
            x if x <= 0 => 0,
            x => positive("outlier_size", x)?,
        };
        let (outlier_vector_len, outlier_num_centroids) = if outlier_size > 0 {
            (positive("vector_lens[0]", v0)?, positive("num_centroids[0]", k0)?)
        } else {
            (0, 0)
        };
        let group_num = positive("group_num", raw.group_num.unwrap_or(1))?;
        let group_size = match raw.group_size {
            Some(gs) => positive("group_size", gs)?,
            None => in_features.saturating_sub(outlier_size) / group_num,
        };
        let layout = VqLayout {
            in_features,
            out_features,
            vector_len: positive("vector_lens[1]", v)?,
            num_centroids: positive("num_centroids[1]", k)?,
            num_res_centroids: if kr <= 0 { 0 } else { positive("num_res_centroids[1]", kr)? },
            group_num,
            group_size,
            outlier_size,
            outlier_vector_len,
            outlier_num_centroids,
            enable_norm: raw.enable_norm.unwrap_or(false),
            enable_perm: raw.enable_perm.unwrap_or(false),
            bias: raw.bias.unwrap_or(false) || model_bias,
        };
        layout.validate()?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: i64, k: i64, kr: i64) -> VqLayerConfigRaw {
        VqLayerConfigRaw {
            vector_lens: vec![-1, v],
            num_centroids: vec![-1, k],
            num_res_centroids: vec![-1, kr],
            group_num: Some(1),
            group_size: Some(4096),
            outlier_size: Some(0),
            enable_norm: Some(true),
            enable_perm: Some(true),
            is_indice_packed: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn derived_sizes_match_spec_examples() {
        // vptq-spec.md §2.2: Llama-3.1-8B q_proj.
        let l = VqLayout::from_raw(&raw(8, 65536, 256), 4096, 4096, false).unwrap();
        assert_eq!((l.index_bits(), l.res_index_bits(), l.num_indices(), l.padding()), (16, 8, 512, 0));
        assert_eq!(l.words_per_row(), 3072);
        assert_eq!(l.describe(), "vq v8 k65536+256");
        let l = VqLayout::from_raw(&raw(12, 65536, 4096), 4096, 4096, false).unwrap();
        assert_eq!((l.total_bits(), l.num_indices(), l.padding(), l.words_per_row()), (28, 342, 8, 3584));
    }

    #[test]
    fn no_residual_as_minus_one_or_zero() {
        for kr in [-1, 0] {
            let l = VqLayout::from_raw(&raw(8, 256, kr), 64, 4096, false).unwrap();
            assert_eq!((l.num_res_centroids, l.total_bits()), (0, 8));
        }
        let mut r = raw(8, 256, 0);
        r.num_res_centroids.clear();
        assert!(VqLayout::from_raw(&r, 64, 4096, false).is_ok());
    }

    #[test]
    fn rejects_invalid_values() {
        let err = |r: VqLayerConfigRaw, n: usize| VqLayout::from_raw(&r, 64, n, false).unwrap_err();
        assert!(err(raw(8, 1000, 0), 4096).contains("power of two"));
        assert!(err(raw(8, 256, 100), 4096).contains("num_res_centroids 100"));
        assert!(err(raw(17, 256, 0), 4096).contains("vector length 17"));
        assert!(err(raw(0, 256, 0), 4096).contains("vector_lens[1] = 0"));
        assert!(err(raw(8, 1 << 17, 0), 4096).contains("power of two"));
        assert!(err(raw(8, 256, 0), 4000).contains("≠ in_features 4000"));
        let mut r = raw(8, 256, 0);
        r.is_indice_packed = Some(false);
        assert!(err(r, 4096).contains("unsupported: unpacked indices"));
        let mut r = raw(8, 256, 0);
        r.norm_dim = Some(1);
        assert!(err(r, 4096).contains("norm_dim"));
        let mut r = raw(8, 256, 0);
        r.in_features = Some(128);
        assert!(err(r, 4096).contains("in_features = 128"));
        let mut r = raw(8, 256, 0);
        r.vector_lens = vec![8];
        assert!(err(r, 4096).contains("vector_lens must be"));
        let mut r = raw(8, 256, 0);
        r.outlier_size = Some(96);
        r.group_size = Some(4000);
        assert!(err(r, 4096).contains("vector_lens[0] = -1"));
        let mut r = raw(8, 256, 0);
        r.num_res_centroids = vec![16, 256];
        assert!(err(r, 4096).contains("residual codebook on outliers"));
    }

    #[test]
    fn outliers_and_groups() {
        let mut r = raw(6, 4096, 16);
        r.vector_lens = vec![4, 6];
        r.num_centroids = vec![16, 4096];
        r.outlier_size = Some(8);
        r.group_num = Some(2);
        r.group_size = Some(28);
        let l = VqLayout::from_raw(&r, 64, 64, true).unwrap();
        assert_eq!((l.outlier_num_indices(), l.num_indices(), l.padding()), (16, 11, 2));
        assert!(l.bias && l.has_outliers());
        assert_eq!(l.describe(), "vq v6 k4096+16 x2 o8");
        r.group_size = None;
        assert_eq!(VqLayout::from_raw(&r, 64, 64, true).unwrap().group_size, 28);
    }
}
