//! Outlier block and groups (vptq-spec.md §1.6): a product-quantization style split of the (permuted) input
//! columns. The first `outlier_size` columns — the largest Hessian diagonals after act-order — get their own
//! codebook (own vector length, no residual); the rest is cut into `group_num` contiguous groups of
//! `group_size` columns, each with its own main (and residual) codebook. [`SplitQuantizer`] is the
//! [`VectorQuantizer`] that sends every column to the codebook owning it.
//! Never does IO. Dependencies: none beyond this crate.

use std::ops::Range;

use crate::algo::kmeans::Codebook;
use crate::algo::residual::quantize_column_two_stage;
use crate::algo::vptq::VectorQuantizer;
use crate::error::{QuantError, Result};

/// Which codebook owns a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnPart {
    /// The outlier block.
    Outlier,
    /// Main group `g` (0-based).
    Group(usize),
}

/// How the `in_features` (permuted) columns are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSplit {
    /// N: all input columns.
    pub in_features: usize,
    /// Leading columns in the outlier block (0: none).
    pub outlier_size: usize,
    /// G: main groups.
    pub group_num: usize,
    /// Columns per group, `(N − outlier_size) / G`.
    pub group_size: usize,
}

impl ColumnSplit {
    /// The spec's split: `outlier_size = ceil(p/100 · N)`, increased by `(N − outlier_size) mod G` so the rest
    /// divides evenly; `p = 0` means no outlier block, and then `N` must divide by `G`.
    ///
    /// # Errors
    /// `InvalidConfig` if `G = 0`, `p` is outside [0, 100), `N` does not divide by `G` without outliers, or no
    /// column is left for the groups.
    pub fn new(in_features: usize, outlier_percent: f64, group_num: usize) -> Result<Self> {
        let n = in_features;
        let invalid = |field, value: String, reason| Err(QuantError::InvalidConfig { field, value, reason });
        if group_num == 0 {
            return invalid("group_num", "0".into(), "must be at least 1");
        }
        if !(0.0..100.0).contains(&outlier_percent) {
            return invalid("outlier_percent", outlier_percent.to_string(), "must be in [0, 100)");
        }
        let outlier_size = if outlier_percent > 0.0 {
            let size = ((outlier_percent / 100.0 * n as f64).ceil() as usize).min(n);
            size + (n - size) % group_num
        } else {
            if !n.is_multiple_of(group_num) {
                return invalid(
                    "group_num",
                    group_num.to_string(),
                    "in_features must divide by group_num when there is no outlier block",
                );
            }
            0
        };
        if outlier_size >= n {
            return invalid("outlier_percent", outlier_percent.to_string(), "leaves no column for the main groups");
        }
        Ok(Self { in_features: n, outlier_size, group_num, group_size: (n - outlier_size) / group_num })
    }

    /// The codebook owning permuted column `col`: outliers first, then `1 + (col − outlier_size) / group_size`
    /// in the spec's numbering (here `Group(g)` with `g` from 0).
    pub fn part_of(&self, col: usize) -> ColumnPart {
        if col < self.outlier_size {
            ColumnPart::Outlier
        } else {
            ColumnPart::Group((col - self.outlier_size) / self.group_size)
        }
    }

    /// The (permuted) columns of a part.
    pub fn columns(&self, part: ColumnPart) -> Range<usize> {
        match part {
            ColumnPart::Outlier => 0..self.outlier_size,
            ColumnPart::Group(g) => {
                let start = self.outlier_size + g * self.group_size;
                start..start + self.group_size
            }
        }
    }
}

/// Quantizes each column with the codebook(s) of its part: outlier columns with `outlier` (single stage), group
/// `g` columns with `main[g]` and, when present, `residual[g]` (two-stage greedy, spec §1.9).
#[derive(Debug, Clone)]
pub struct SplitQuantizer<'a> {
    split: ColumnSplit,
    outlier: Option<&'a Codebook>,
    main: Vec<&'a Codebook>,
    residual: Vec<&'a Codebook>,
}

impl<'a> SplitQuantizer<'a> {
    /// Checks that there is an outlier codebook iff the split has outliers, one main codebook per group, one
    /// residual codebook per group or none, and that each residual codebook has its main codebook's `v`.
    ///
    /// # Errors
    /// `InvalidConfig` on any mismatch.
    pub fn new(
        split: ColumnSplit,
        outlier: Option<&'a Codebook>,
        main: Vec<&'a Codebook>,
        residual: Vec<&'a Codebook>,
    ) -> Result<Self> {
        let invalid =
            |field, value: usize, reason| Err(QuantError::InvalidConfig { field, value: value.to_string(), reason });
        if outlier.is_some() != (split.outlier_size > 0) {
            return invalid("outlier codebook", split.outlier_size, "needed exactly when outlier_size > 0");
        }
        if main.len() != split.group_num {
            return invalid("main codebooks", main.len(), "need one per group");
        }
        if !(residual.is_empty() || residual.len() == split.group_num) {
            return invalid("residual codebooks", residual.len(), "need none or one per group");
        }
        for (m, r) in main.iter().zip(&residual) {
            if m.vector_len() != r.vector_len() {
                return invalid("residual vector_len", r.vector_len(), "must equal the main codebook's");
            }
        }
        Ok(Self { split, outlier, main, residual })
    }

    /// The column split.
    pub fn split(&self) -> &ColumnSplit {
        &self.split
    }

    fn codebooks(&self, col: usize) -> (&'a Codebook, Option<&'a Codebook>) {
        match self.split.part_of(col) {
            ColumnPart::Outlier => {
                (self.outlier.expect("invariant: outlier codebook exists when outlier_size > 0"), None)
            }
            ColumnPart::Group(g) => (self.main[g], self.residual.get(g).copied()),
        }
    }
}

impl VectorQuantizer for SplitQuantizer<'_> {
    fn vector_len(&self, col: usize) -> usize {
        self.codebooks(col).0.vector_len()
    }

    fn has_residual(&self, col: usize) -> bool {
        self.codebooks(col).1.is_some()
    }

    fn quantize_column(&self, col: usize, x: &[f32], out: &mut [f32], idx: &mut [u32], res_idx: &mut [u32]) {
        let (main, residual) = self.codebooks(col);
        quantize_column_two_stage(main, residual, x, out, idx, res_idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_the_spec_formula() {
        // no outliers, one group
        let s = ColumnSplit::new(4096, 0.0, 1).unwrap();
        assert_eq!((s.outlier_size, s.group_size), (0, 4096));
        // 1 % of 4096 = 40.96 → 41; (4096 − 41) mod 4 = 3 → 44; groups of (4096 − 44)/4 = 1013
        let s = ColumnSplit::new(4096, 1.0, 4).unwrap();
        assert_eq!((s.outlier_size, s.group_size), (44, 1013));
        assert_eq!(s.part_of(43), ColumnPart::Outlier);
        assert_eq!(s.part_of(44), ColumnPart::Group(0));
        assert_eq!(s.part_of(44 + 1013), ColumnPart::Group(1));
        assert_eq!(s.part_of(4095), ColumnPart::Group(3));
        assert_eq!(s.columns(ColumnPart::Group(3)), 3083..4096);
        assert_eq!(s.columns(ColumnPart::Outlier), 0..44);
        // groups without outliers must divide
        assert!(ColumnSplit::new(100, 0.0, 3).is_err());
        assert_eq!(ColumnSplit::new(100, 0.0, 4).unwrap().group_size, 25);
        assert!(ColumnSplit::new(10, 99.0, 1).is_err(), "nothing left for the groups");
        assert!(ColumnSplit::new(10, 0.0, 0).is_err());
    }

    #[test]
    fn quantizer_checks_its_codebooks() {
        let cb4 = Codebook::new(vec![0.0; 8], 4).unwrap();
        let cb2 = Codebook::new(vec![0.0; 4], 2).unwrap();
        let s = ColumnSplit::new(8, 0.0, 2).unwrap();
        assert!(SplitQuantizer::new(s, None, vec![&cb4, &cb4], vec![]).is_ok());
        assert!(SplitQuantizer::new(s, Some(&cb4), vec![&cb4, &cb4], vec![]).is_err());
        assert!(SplitQuantizer::new(s, None, vec![&cb4], vec![]).is_err());
        assert!(SplitQuantizer::new(s, None, vec![&cb4, &cb4], vec![&cb2, &cb2]).is_err());
        let q = SplitQuantizer::new(s, None, vec![&cb4, &cb2], vec![&cb4, &cb2]).unwrap();
        assert_eq!((q.vector_len(3), q.vector_len(4)), (4, 2));
        assert!(q.has_residual(0));
    }
}
