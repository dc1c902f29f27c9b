//! What the pipeline produces per linear: the stored tensors (packed VPTQ, or a dense baseline weight) with
//! the layer's report, and the honest bit count of what is written.

use crate::config::VqConfig;
use crate::scalar_layer::ScalarConfig;
use vptq_format::hf::{HalfOrFloat, OwnedTensor};
use vptq_format::vptq::{layer_config_json, vq_owned_tensors, vq_owned_tensors_int8, VqTensors};
use vptq_kernels::vq::{dequantize_ref, VqView};

/// How every selected linear is quantized.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// VPTQ with one configuration for every layer.
    Vq(VqConfig),
    /// A scalar baseline (round-to-nearest or GPTQ), stored as its dequantized weight.
    Scalar(ScalarConfig),
}

impl std::str::FromStr for Method {
    type Err = crate::QuantError;

    /// `rtn-…`/`gptq-…` names a scalar baseline ([`ScalarConfig`]), anything else a VPTQ preset ([`VqConfig`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("rtn-") || s.starts_with("gptq-") {
            s.parse().map(Method::Scalar)
        } else {
            s.parse().map(Method::Vq)
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Vq(c) => write!(f, "{c}"),
            Method::Scalar(c) => write!(f, "{c}"),
        }
    }
}

/// The stored form of one quantized linear, in Hugging Face row order.
#[derive(Debug, Clone)]
pub enum LayerWeights {
    /// Packed VPTQ tensors exactly as written (codebooks rounded to f16, indices packed); layer bias included.
    Vq(Box<VqTensors>),
    /// A scalar baseline's dequantized weight `[M, N]`, rounded to f16 as written.
    Dense(Vec<f32>),
}

/// Per-layer numbers for the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerStats {
    /// `tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)`.
    pub proxy_err: f64,
    /// Wall time of the layer.
    pub secs: f64,
    /// Part of `secs` in k-means.
    pub kmeans_secs: f64,
    /// Part of `secs` in the error-feedback loop.
    pub loop_secs: f64,
    /// Bits stored for this layer's weight (layer bias excluded: dense layers have it too).
    pub storage_bits: u64,
}

/// One quantized linear.
#[derive(Debug, Clone)]
pub struct LayerResult {
    /// Full module path, e.g. `model.layers.0.self_attn.q_proj`.
    pub module: String,
    /// Output width `M`.
    pub out_features: usize,
    /// Input width `N`.
    pub in_features: usize,
    /// Stored tensors.
    pub weights: LayerWeights,
    /// Report numbers.
    pub stats: LayerStats,
    /// Store a VPTQ main codebook that lies on its int8 grid as int8 (`vptq::int8_codebook`) instead of f16.
    pub int8_codebooks: bool,
}

impl LayerResult {
    /// Bits of the stored main codebooks (`<module>.centroids.*`), a part of `stats.storage_bits`.
    pub fn main_codebook_bits(&self) -> u64 {
        let prefix = format!("{}.centroids.", self.module);
        self.tensors(None).iter().filter(|t| t.name.starts_with(&prefix)).map(|t| t.data.len() as u64 * 8).sum()
    }

    /// Honest bits per weight: everything stored for the weight divided by `M·N`.
    pub fn bits_per_weight(&self) -> f64 {
        self.stats.storage_bits as f64 / (self.out_features * self.in_features) as f64
    }

    /// This result with its main codebooks stored as int8 where they lie on their grid (`on`), its storage bits
    /// counted anew.
    pub fn with_int8_codebooks(mut self, on: bool) -> Self {
        if on && matches!(self.weights, LayerWeights::Vq(_)) {
            self.int8_codebooks = true;
            self.stats.storage_bits = weight_bits(&self.module, &self.tensors(None));
        }
        self
    }

    /// The weight `Ŵ [M, N]` the stored tensors stand for (HF row order).
    pub fn dequantized(&self) -> Vec<f32> {
        match &self.weights {
            LayerWeights::Vq(t) => dequantize_ref(&VqView::new(t)),
            LayerWeights::Dense(w) => w.clone(),
        }
    }

    /// The safetensors tensors of this layer under its module path; `bias` is used by dense results (VPTQ
    /// tensors carry their own).
    pub fn tensors(&self, bias: Option<&[f32]>) -> Vec<OwnedTensor> {
        match &self.weights {
            LayerWeights::Vq(t) if self.int8_codebooks => vq_owned_tensors_int8(&self.module, t),
            LayerWeights::Vq(t) => vq_owned_tensors(&self.module, t),
            LayerWeights::Dense(w) => {
                let f16 = |v: &[f32]| HalfOrFloat::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect());
                let mut out = vec![OwnedTensor::from_float(
                    format!("{}.weight", self.module),
                    vec![self.out_features, self.in_features],
                    &f16(w),
                )];
                if let Some(b) = bias {
                    out.push(OwnedTensor::from_float(format!("{}.bias", self.module), vec![b.len()], &f16(b)));
                }
                out
            }
        }
    }

    /// The report entry of this layer (`quantization_report.json`).
    pub fn report_json(&self, method: &str) -> serde_json::Value {
        let s = &self.stats;
        let mut v = serde_json::json!({
            "method": method, "proxy_err": s.proxy_err, "secs": s.secs, "kmeans_secs": s.kmeans_secs,
            "loop_secs": s.loop_secs, "storage_bits": s.storage_bits, "bits_per_weight": self.bits_per_weight(),
            "out_features": self.out_features, "in_features": self.in_features,
        });
        if let LayerWeights::Vq(t) = &self.weights {
            v["layout"] = t.layout.describe().into();
            v["config"] = layer_config_json(&t.layout);
        }
        v
    }
}

/// Bits of `tensors` except the layer bias `{module}.bias`.
pub(crate) fn weight_bits(module: &str, tensors: &[OwnedTensor]) -> u64 {
    let bias = format!("{module}.bias");
    tensors.iter().filter(|t| t.name != bias).map(|t| t.data.len() as u64 * 8).sum()
}

/// Rounds through f16, as dense results are written.
pub(crate) fn round_f16(w: &mut [f32]) {
    for x in w {
        *x = half::f16::from_f32(*x).to_f32();
    }
}
