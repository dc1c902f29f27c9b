//! The linear-layer seam: every projection of the model is a [`Linear`]. Formats plug in here as new variants;
//! the model only calls [`Linear::forward`].

use vptq_kernels::dense::{matmul, DenseWeight};

/// A dense `[out_features, in_features]` weight with an optional bias.
#[derive(Debug, Clone)]
pub struct DenseLinear {
    /// Row-major weight `[out_features, in_features]`.
    pub weight: DenseWeight,
    /// Optional bias `[out_features]`.
    pub bias: Option<Vec<f32>>,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
}

impl DenseLinear {
    /// A dense layer; the weight length must equal `in_features · out_features`.
    ///
    /// # Panics
    /// If the lengths disagree (callers check shapes when loading).
    pub fn new(weight: DenseWeight, bias: Option<Vec<f32>>, in_features: usize, out_features: usize) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "invariant: weight shape checked at load");
        if let Some(b) = &bias {
            assert_eq!(b.len(), out_features, "invariant: bias shape checked at load");
        }
        DenseLinear { weight, bias, in_features, out_features }
    }

    /// Copies row `row` widened to f32 into `out` (`[in_features]`): the embedding lookup.
    pub fn row_f32(&self, row: usize, out: &mut [f32]) {
        self.weight.view().to_f32_range(row * self.in_features, out);
    }
}

/// A linear layer `y = x · Wᵀ + b` in any supported storage.
#[derive(Debug, Clone)]
pub enum Linear {
    /// Dense f32/f16/bf16 weight.
    Dense(DenseLinear),
}

impl Linear {
    /// Input width.
    pub fn in_features(&self) -> usize {
        match self {
            Linear::Dense(d) => d.in_features,
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        match self {
            Linear::Dense(d) => d.out_features,
        }
    }

    /// Bytes of weight storage read per token (weights and bias).
    pub fn n_bytes(&self) -> usize {
        match self {
            Linear::Dense(d) => d.weight.n_bytes() + d.bias.as_ref().map_or(0, |b| b.len() * 4),
        }
    }

    /// Storage kind for reports ("f32", "f16", "bf16").
    pub fn kind(&self) -> &'static str {
        match self {
            Linear::Dense(d) => match d.weight {
                DenseWeight::F32(_) => "f32",
                DenseWeight::F16(_) => "f16",
                DenseWeight::Bf16(_) => "bf16",
            },
        }
    }

    /// `y[n, out] = x[n, in] · Wᵀ + b`.
    ///
    /// # Panics
    /// If `x.len() != n · in_features` (an internal invariant of the model).
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * self.out_features()];
        match self {
            Linear::Dense(d) => {
                matmul(x, d.weight.view(), &mut y, n, d.in_features, d.out_features);
                if let Some(b) = &d.bias {
                    for row in y.chunks_exact_mut(d.out_features) {
                        for (v, bb) in row.iter_mut().zip(b) {
                            *v += bb;
                        }
                    }
                }
            }
        }
        y
    }
}
