//! Errors of the quantizer: structured variants that say which input or setting is wrong.

/// Result alias for this crate.
pub type Result<T, E = QuantError> = std::result::Result<T, E>;

/// Everything that can go wrong while quantizing.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A buffer whose length does not match the shape it is said to have.
    #[error("{what}: expected {expected} elements, got {got}")]
    ShapeMismatch {
        /// Which buffer.
        what: &'static str,
        /// Length implied by the shape.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A matrix that should be symmetric positive definite is not (even after damping).
    #[error("matrix is not positive definite: pivot {pivot} at column {column} (increase damping?)")]
    NotPositiveDefinite {
        /// Column where the Cholesky pivot became non-positive.
        column: usize,
        /// The offending pivot value.
        pivot: f64,
    },
    /// A configuration value outside its valid range.
    #[error("invalid config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// Name of the setting.
        field: &'static str,
        /// Its value, printed.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A preset name that does not parse.
    #[error("invalid preset `{preset}`: {reason} (expected `v{{v}}-k{{k}}` or `v{{v}}-k{{k}}-{{kr}}`)")]
    BadPreset {
        /// The preset text.
        preset: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A scalar-baseline config name that does not parse (`scalar_layer.rs`).
    #[error(
        "invalid scalar config `{preset}`: {reason} (expected `rtn-w{{bits}}-g{{group}}` or \
         `gptq-w{{bits}}-g{{group}}`, optionally followed by `-sym`, `-noact`, `-static`)"
    )]
    BadScalarPreset {
        /// The text.
        preset: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More centroids requested than there are vectors to cluster.
    #[error("{part}: {centroids} centroids for only {vectors} vectors (use a smaller k, or clamp codebooks per layer: --clamp-centroids)")]
    TooManyCentroids {
        /// Which codebook (e.g. "group 0 main", "outliers").
        part: String,
        /// Requested centroids.
        centroids: usize,
        /// Available vectors.
        vectors: usize,
    },
    /// A NaN or infinity in an input.
    #[error("non-finite value in {what} at element {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Flat index of the first bad element.
        index: usize,
    },
    /// An input with nothing in it.
    #[error("empty input: {what}")]
    Empty {
        /// Which input.
        what: &'static str,
    },
}

/// Checks `buf.len() == expected`.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(QuantError::ShapeMismatch { what, expected, got })
    }
}

/// Checks every value is finite.
pub(crate) fn check_finite_f32(what: &'static str, buf: &[f32]) -> Result<()> {
    match buf.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(QuantError::NonFinite { what, index }),
    }
}

/// Checks every value is finite.
pub(crate) fn check_finite_f64(what: &'static str, buf: &[f64]) -> Result<()> {
    match buf.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(QuantError::NonFinite { what, index }),
    }
}
