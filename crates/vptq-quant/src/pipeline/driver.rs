//! The whole-model driver: the calibration activations stream through the model one decoder block at a
//! time, so only one block's Hessians exist at once (vptq-spec.md §1.1).
//!
//! For block `b`: run it on every calibration sequence's residual stream, accumulating `H = E[x xᵀ]` of its
//! four linear inputs; quantize its selected linears (q/k/v share one prepared Hessian, gate/up share one;
//! each finished layer goes to the checkpoint); then advance the residual streams to block `b + 1`'s input —
//! with the full-precision block in *reference* mode (every Hessian then comes from the full-precision model,
//! as the reference does), or with the block's quantized weights in *sequential* mode (GPTQ-style: later
//! layers are calibrated on what the quantized earlier layers actually produce).

use super::checkpoint::Checkpoint;
use super::result::{round_f16, weight_bits, LayerResult, LayerStats, LayerWeights, Method};
use super::{hf_bias, hf_weight, model_rows, module_name, quant_err, vq_layer_data, PipelineError, Result, Site};
use super::{is_selected, LINEARS};
use crate::algo::hessian::HessianAccumulator;
use crate::layer::{quantize_linear_prepared, PreparedHessian};
use crate::scalar_layer::{quantize_linear_scalar, ScalarConfig};
use std::time::Instant;
use vptq_format::FormatError;
use vptq_kernels::DenseWeight;
use vptq_model::{Block, DenseLinear, LayerCache, Linear, Llama};

/// Where block `b`'s calibration inputs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalibMode {
    /// From the full-precision model (layers independent).
    Reference,
    /// From the model with blocks `0..b` already quantized.
    Sequential,
}

impl std::str::FromStr for CalibMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "reference" => Ok(CalibMode::Reference),
            "sequential" => Ok(CalibMode::Sequential),
            _ => Err(format!("unknown calibration mode `{s}` (expected reference or sequential)")),
        }
    }
}

impl std::fmt::Display for CalibMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CalibMode::Reference => "reference",
            CalibMode::Sequential => "sequential",
        })
    }
}

/// What [`quantize_model`] does.
#[derive(Debug, Clone, Copy)]
pub struct QuantizeOptions<'a> {
    /// The quantization method of every selected layer.
    pub method: &'a Method,
    /// Calibration mode.
    pub mode: CalibMode,
    /// Module path substrings to quantize (empty: all decoder linears).
    pub include: &'a [String],
    /// Module path substrings to keep dense.
    pub exclude: &'a [String],
    /// Where finished layers are saved and found again.
    pub checkpoint: Option<&'a Checkpoint>,
    /// Shrink codebooks larger than the vectors of a layer ([`crate::VqConfig::clamped_to_shape`]) instead of
    /// failing.
    pub clamp_centroids: bool,
    /// Store main codebooks that lie on their int8 grid as int8 ([`LayerResult::int8_codebooks`]).
    pub int8_codebooks: bool,
}

/// Progress of [`quantize_model`].
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Block `block` starts (its Hessians are being collected).
    Block {
        /// Block index.
        block: usize,
        /// Blocks in the model.
        blocks: usize,
    },
    /// Layer `module` starts.
    LayerStart {
        /// Module path.
        module: &'a str,
        /// Its weight count `M·N`.
        weights: u64,
    },
    /// A layer is finished (quantized now, or found in the checkpoint).
    Layer {
        /// Layers finished so far, this one included.
        done: usize,
        /// Layers selected.
        total: usize,
        /// Weights of the finished layers.
        done_weights: u64,
        /// Weights of all selected layers.
        total_weights: u64,
        /// The layer.
        result: &'a LayerResult,
        /// True when it came from the checkpoint.
        resumed: bool,
    },
}

/// Quantizes the selected decoder linears of `model` with calibration sequences `calib`. Returns one result
/// per selected layer, in model order. The result does not depend on the thread count, nor on whether the run
/// was resumed from a checkpoint.
///
/// # Errors
/// No layer selected, empty calibration, a layer that is already VPTQ, quantizer errors (naming the module),
/// checkpoint errors.
pub fn quantize_model(
    model: &Llama,
    calib: &[Vec<u32>],
    opts: &QuantizeOptions<'_>,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<LayerResult>> {
    let blocks = model.blocks.len();
    let selected: Vec<Vec<usize>> = (0..blocks)
        .map(|b| {
            (0..LINEARS.len())
                .filter(|&i| is_selected(&module_name(b, LINEARS[i].1), opts.include, opts.exclude))
                .collect()
        })
        .collect();
    let weights_of = |b: usize, i: usize| {
        let l = model.blocks[b].linears()[i].1;
        (l.out_features() * l.in_features()) as u64
    };
    let total: usize = selected.iter().map(Vec::len).sum();
    let total_weights: u64 = selected
        .iter()
        .enumerate()
        .flat_map(|(b, s)| s.iter().map(move |&i| (b, i)))
        .map(|(b, i)| weights_of(b, i))
        .sum();
    if total == 0 {
        return Err(PipelineError::InvalidArgument("no decoder linear matches --include / --exclude".into()));
    }
    // Settings a layer cannot take fail now, before any calibration work.
    for (b, sel) in selected.iter().enumerate() {
        for &i in sel {
            let l = model.blocks[b].linears()[i].1;
            let check = match opts.method {
                Method::Vq(cfg) if opts.clamp_centroids => {
                    cfg.clamped_to_shape(l.out_features(), l.in_features()).map(drop)
                }
                Method::Vq(cfg) => cfg.validate_for_shape(l.out_features(), l.in_features()).map(drop),
                Method::Scalar(cfg) => cfg.validate(),
            };
            check.map_err(quant_err(module_name(b, LINEARS[i].1)))?;
        }
    }
    if calib.is_empty() || calib.iter().any(Vec::is_empty) {
        return Err(PipelineError::InvalidArgument("calibration needs at least one non-empty sequence".into()));
    }
    // xs[s] [L_s, hidden]: residual stream of sequence s at the input of the current block.
    let mut xs: Vec<Vec<f32>> = calib.iter().map(|s| model.embed_tokens(s)).collect::<Result<_, _>>()?;
    let mut results: Vec<LayerResult> = Vec::with_capacity(total);
    let mut done_weights = 0u64;
    // Blocks after the last selected one need no calibration inputs.
    let last = selected.iter().rposition(|s| !s.is_empty()).expect("invariant: total > 0");
    for (b, sel) in selected.iter().enumerate().take(last + 1) {
        progress(Event::Block { block: b, blocks });
        let block = &model.blocks[b];
        let mut layers: Vec<Option<LayerResult>> = Vec::with_capacity(sel.len());
        for &i in sel {
            let lin = block.linears()[i].1;
            let module = module_name(b, LINEARS[i].1);
            let found = match opts.checkpoint {
                Some(c) => c.load(&module, lin.out_features(), lin.in_features())?,
                None => None,
            };
            layers.push(found);
        }
        let mut sites: Vec<Site> =
            sel.iter().zip(&layers).filter(|(_, l)| l.is_none()).map(|(&i, _)| LINEARS[i].2).collect();
        sites.dedup();
        // The full-precision block's outputs, when the Hessian pass computed them anyway.
        let mut fp_next: Option<Vec<Vec<f32>>> = None;
        let mut hessians: Vec<(Site, HessianAccumulator)> = Vec::new();
        if !sites.is_empty() {
            let width = |s: Site| match s {
                Site::Qkv | Site::Up => model.config.hidden_size,
                Site::O => model.config.n_heads * model.config.head_dim,
                Site::Down => model.config.intermediate_size,
            };
            hessians = sites.iter().map(|&s| (s, HessianAccumulator::new(width(s)))).collect();
            let keep = opts.mode == CalibMode::Reference;
            let mut outs = Vec::with_capacity(if keep { xs.len() } else { 0 });
            for x in &xs {
                let mut y = x.clone();
                let mut failed = None;
                model.forward_block(block, &mut y, 0, &mut LayerCache::default(), &mut |site, h| {
                    if let Some((_, acc)) = hessians.iter_mut().find(|(s, _)| *s == site) {
                        if let Err(e) = acc.add_batch(h) {
                            failed.get_or_insert(e);
                        }
                    }
                });
                if let Some(e) = failed {
                    return Err(quant_err(format!("model.layers.{b} (calibration)"))(e));
                }
                if keep {
                    outs.push(y);
                }
            }
            if keep {
                fp_next = Some(outs);
            }
        }
        let mut prepared: Option<(Site, PreparedHessian)> = None;
        for (slot, &i) in sel.iter().enumerate() {
            let (_, short, site) = LINEARS[i];
            let module = module_name(b, short);
            let resumed = layers[slot].is_some();
            if !resumed {
                progress(Event::LayerStart { module: &module, weights: weights_of(b, i) });
                let lin = block.linears()[i].1;
                let started = Instant::now();
                if !matches!(&prepared, Some((s, _)) if *s == site) {
                    let acc = &hessians.iter().find(|(s, _)| *s == site).expect("invariant: site collected").1;
                    let h = acc.finish().map_err(quant_err(&module))?;
                    let n = acc.in_features();
                    let ph = match opts.method {
                        Method::Vq(cfg) => PreparedHessian::new(&h, n, cfg),
                        Method::Scalar(cfg) => cfg.prepare_hessian(&h, n),
                    };
                    prepared = Some((site, ph.map_err(quant_err(&module))?));
                }
                let ph = &prepared.as_ref().expect("invariant: prepared just above").1;
                let r = match opts.method {
                    Method::Vq(cfg) => {
                        let clamped;
                        let cfg = if opts.clamp_centroids {
                            let (m, n) = (lin.out_features(), lin.in_features());
                            clamped = cfg.clamped_to_shape(m, n).map_err(quant_err(&module))?;
                            &clamped
                        } else {
                            cfg
                        };
                        quantize_vq(model, short, lin, &module, ph, cfg, started)?
                            .with_int8_codebooks(opts.int8_codebooks)
                    }
                    Method::Scalar(cfg) => quantize_scalar(model, short, lin, &module, ph, cfg, started)?,
                };
                if let Some(c) = opts.checkpoint {
                    c.save(&r, hf_bias(model, short, lin).as_deref())?;
                }
                layers[slot] = Some(r);
            }
            done_weights += weights_of(b, i);
            let r = layers[slot].as_ref().expect("invariant: filled above");
            let done = results.len() + slot + 1;
            progress(Event::Layer { done, total, done_weights, total_weights, result: r, resumed });
        }
        let layers: Vec<LayerResult> = layers.into_iter().map(|l| l.expect("invariant: every layer filled")).collect();
        if b == last {
            results.extend(layers);
            break;
        }
        xs = match (opts.mode, fp_next) {
            (CalibMode::Reference, Some(next)) => next,
            (CalibMode::Reference, None) => advance(model, block, xs),
            (CalibMode::Sequential, _) => advance(model, &quantized_block(model, b, &layers), xs),
        };
        results.extend(layers);
    }
    Ok(results)
}

/// Runs `block` on every residual stream.
fn advance(model: &Llama, block: &Block, mut xs: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    for x in &mut xs {
        model.forward_block(block, x, 0, &mut LayerCache::default(), &mut |_, _| {});
    }
    xs
}

/// Block `b` of `model` with the linears in `layers` replaced by their dequantized weights (f32, in the
/// model's row order, the model's own bias).
fn quantized_block(model: &Llama, b: usize, layers: &[LayerResult]) -> Block {
    let mut block = model.blocks[b].clone();
    for (short, slot) in block.linears_mut() {
        if let Some(r) = layers.iter().find(|r| r.module == module_name(b, short)) {
            let bias = match &*slot {
                Linear::Dense(d) => d.bias.clone(),
                Linear::Vq(v) => v.bias().map(<[f32]>::to_vec),
            };
            let w = model_rows(model, short, r.dequantized(), r.in_features);
            *slot = Linear::Dense(DenseLinear::new(DenseWeight::F32(w), bias, r.in_features, r.out_features));
        }
    }
    block
}

fn quantize_vq(
    model: &Llama,
    short: &str,
    lin: &Linear,
    module: &str,
    ph: &PreparedHessian,
    cfg: &crate::VqConfig,
    started: Instant,
) -> Result<LayerResult> {
    let w = hf_weight(model, short, lin, module)?;
    let q = quantize_linear_prepared(&w, lin.out_features(), ph, cfg).map_err(quant_err(module))?;
    drop(w);
    let data = vq_layer_data(module, &q, hf_bias(model, short, lin))?;
    let t = data.to_vq_tensors().map_err(|e| FormatError::vptq("<quantizer>", module, e))?;
    let stats = LayerStats {
        proxy_err: q.report.proxy_err,
        secs: started.elapsed().as_secs_f64(),
        kmeans_secs: q.report.kmeans_secs,
        loop_secs: q.report.loop_secs,
        storage_bits: 0,
    };
    let mut r = LayerResult {
        module: module.to_string(),
        out_features: lin.out_features(),
        in_features: lin.in_features(),
        weights: LayerWeights::Vq(Box::new(t)),
        stats,
        int8_codebooks: false,
    };
    r.stats.storage_bits = weight_bits(module, &r.tensors(None));
    Ok(r)
}

fn quantize_scalar(
    model: &Llama,
    short: &str,
    lin: &Linear,
    module: &str,
    ph: &PreparedHessian,
    cfg: &ScalarConfig,
    started: Instant,
) -> Result<LayerResult> {
    let w = hf_weight(model, short, lin, module)?;
    let q = quantize_linear_scalar(&w, lin.out_features(), Some(ph), cfg).map_err(quant_err(module))?;
    let mut weight = q.weight.clone();
    round_f16(&mut weight);
    let stats = LayerStats {
        proxy_err: q.report.proxy_err,
        secs: started.elapsed().as_secs_f64(),
        kmeans_secs: 0.0,
        loop_secs: q.report.loop_secs,
        storage_bits: q.storage_bits().total(),
    };
    Ok(LayerResult {
        module: module.to_string(),
        out_features: lin.out_features(),
        in_features: lin.in_features(),
        weights: LayerWeights::Dense(weight),
        stats,
        int8_codebooks: false,
    })
}
