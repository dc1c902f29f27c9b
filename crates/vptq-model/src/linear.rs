//! The linear-layer seam: every projection of the model is a [`Linear`]. Formats plug in here as new variants;
//! the model only calls [`Linear::forward`].
//!
//! VPTQ layers ([`VqLinear`]) keep only the kernels' prepared form (`vptq_kernels::vq_fast::PreparedVq`:
//! unpacked indices, padded codebooks, perm and scale folded into the input), built once at load from the loaded
//! tensors, which are then dropped. Decode runs the fused codebook-lookup GEMV; prefill
//! dequantizes bands of rows and multiplies them with the f32 GEMM, so the full dense weight never exists.

use crate::error::{ModelError, Result};
use vptq_format::vptq::{VqLayout, VqTensors};
use vptq_kernels::dense::{matmul, DenseWeight};
use vptq_kernels::vq::VqView;
use vptq_kernels::vq_fast::{BookPrecision, BookSpan, PreparedVq};

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

/// A VPTQ-quantized `[out_features, in_features]` weight (vptq-spec.md §2), kept packed, with its optional bias.
#[derive(Debug, Clone)]
pub struct VqLinear {
    /// The kernels' form of the weight (boxed: keeps [`Linear`] small). The loaded tensors are not kept: the
    /// prepared form reproduces their dequantization bit for bit, and keeping both would double the memory.
    prepared: Box<PreparedVq>,
    /// Layer bias `[out_features]`.
    bias: Option<Vec<f32>>,
}

impl VqLinear {
    /// Checks tensors against their layout (what the kernels rely on) and prepares them for the kernels, with
    /// codebooks in `precision`.
    ///
    /// # Errors
    /// [`ModelError::InvalidArgument`] naming the inconsistent tensor.
    pub fn new(tensors: VqTensors, precision: BookPrecision) -> Result<Self> {
        tensors.validate().map_err(|e| ModelError::InvalidArgument(format!("VPTQ linear: {e}")))?;
        let prepared = Box::new(PreparedVq::new(&VqView::new(&tensors), precision));
        Ok(VqLinear { prepared, bias: tensors.bias })
    }

    /// The prepared form the forward pass runs on.
    pub fn prepared(&self) -> &PreparedVq {
        &self.prepared
    }

    /// Shape and codebook sizes.
    pub fn layout(&self) -> &VqLayout {
        self.prepared.layout()
    }

    /// The dense weight `Ŵ` `[out_features, in_features]` in f32 (bit-identical to the reference
    /// dequantization; for export and tests, not for the forward pass).
    pub fn dequantize(&self) -> Vec<f32> {
        self.prepared.dequantize()
    }

    /// Bias `[out_features]`, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// Where this layer's main codebook lies, for the layer that runs before it.
    pub fn books_span(&self) -> BookSpan {
        self.prepared.books_span()
    }

    /// Prefetch `next` (the codebook of the layer that runs after this one) during this layer's decode.
    pub fn prefetch_next(&mut self, next: Option<BookSpan>) {
        self.prepared.prefetch_next(next);
    }
}

/// A linear layer `y = x · Wᵀ + b` in any supported storage.
#[derive(Debug, Clone)]
pub enum Linear {
    /// Dense f32/f16/bf16 weight.
    Dense(DenseLinear),
    /// VPTQ vector-quantized weight.
    Vq(VqLinear),
}

impl Linear {
    /// Input width.
    pub fn in_features(&self) -> usize {
        match self {
            Linear::Dense(d) => d.in_features,
            Linear::Vq(q) => q.layout().in_features,
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        match self {
            Linear::Dense(d) => d.out_features,
            Linear::Vq(q) => q.layout().out_features,
        }
    }

    /// Bytes of weight storage read per decoded token: weights and bias; for VPTQ what the fused kernel reads
    /// (unpacked indices, padded codebooks, perm, scale/offset, outliers) and the bias.
    pub fn n_bytes(&self) -> usize {
        match self {
            Linear::Dense(d) => d.weight.n_bytes() + d.bias.as_ref().map_or(0, |b| b.len() * 4),
            Linear::Vq(q) => q.prepared.n_bytes() + q.bias().map_or(0, |b| b.len() * 4),
        }
    }

    /// Storage kind for reports: "f32", "f16", "bf16", "q8", or a VPTQ description with the codebooks' precision
    /// in memory, such as "vq v8 k65536+256 i8-codebook".
    pub fn kind(&self) -> String {
        match self {
            Linear::Dense(d) => d.weight.kind().to_string(),
            Linear::Vq(q) => format!("{} {}-codebook", q.layout().describe(), q.prepared.codebook_dtype()),
        }
    }

    /// `y[n, out] = x[n, in] · Wᵀ + b`.
    ///
    /// # Panics
    /// If `x.len() != n · in_features` (an internal invariant of the model).
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let out_features = self.out_features();
        let mut y = vec![0f32; n * out_features]; // [n, out]
        let bias = match self {
            Linear::Dense(d) => {
                matmul(x, d.weight.view(), &mut y, n, d.in_features, d.out_features);
                d.bias.as_deref()
            }
            Linear::Vq(q) => {
                q.prepared.matmul(x, &mut y, n);
                q.bias()
            }
        };
        if let Some(b) = bias {
            for row in y.chunks_exact_mut(out_features) {
                for (v, bb) in row.iter_mut().zip(b) {
                    *v += bb;
                }
            }
        }
        y
    }
}
