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
use crate::algo::kmeans::Codebook;
use crate::layer::{quantize_linear_prepared, quantize_linear_shared, train_shared_codebook, PreparedHessian};
use crate::scalar_layer::{quantize_linear_scalar, ScalarConfig};
use crate::VqConfig;
use std::time::Instant;
use vptq_format::FormatError;
use vptq_kernels::DenseWeight;
use vptq_model::{Block, DenseLinear, KvPrecision, LayerCache, Linear, Llama};

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
    /// Per-layer VPTQ configurations replacing `method` where their pattern matches (a per-layer bit
    /// allocation); only with a VPTQ `method`.
    pub overrides: &'a [LayerOverride],
    /// One main codebook per linear kind (`q_proj`, …, `down_proj`), trained on all its selected layers before
    /// block 0 ([`crate::train_shared_codebook`]) and used by each of them; VPTQ with one group, no
    /// normalization and no overrides only.
    pub share_codebooks: bool,
}

/// A VPTQ configuration for the modules whose path contains `pattern` (the last matching override wins).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerOverride {
    /// Module path substring, e.g. `layers.0.` or `down_proj`.
    pub pattern: String,
    /// The configuration of those modules.
    pub config: crate::VqConfig,
}

impl QuantizeOptions<'_> {
    /// The method of module `module`: its last matching override, else `method`.
    fn method_for(&self, module: &str) -> std::borrow::Cow<'_, Method> {
        match self.overrides.iter().rev().find(|o| module.contains(o.pattern.as_str())) {
            Some(o) => std::borrow::Cow::Owned(Method::Vq(o.config.clone())),
            None => std::borrow::Cow::Borrowed(self.method),
        }
    }
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
    /// The shared codebook of linear kind `kind` (e.g. `down_proj`) is being trained.
    SharedCodebook {
        /// Short module name.
        kind: &'a str,
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
    if matches!(opts.method, Method::Scalar(_)) && !opts.overrides.is_empty() {
        return Err(PipelineError::InvalidArgument("per-layer VPTQ configurations need a VPTQ method".into()));
    }
    // A pattern that matches nothing is a typo, not a request.
    for o in opts.overrides {
        let hit = selected
            .iter()
            .enumerate()
            .any(|(b, s)| s.iter().any(|&i| module_name(b, LINEARS[i].1).contains(&o.pattern)));
        if !hit {
            return Err(PipelineError::InvalidArgument(format!(
                "per-layer configuration `{}` matches no selected linear (module paths look like {})",
                o.pattern,
                module_name(0, "q_proj")
            )));
        }
    }
    let shared_cfg = match opts.method {
        _ if !opts.share_codebooks => None,
        Method::Vq(c) if c.group_num == 1 && c.norm == crate::NormMode::None && opts.overrides.is_empty() => Some(c),
        _ => {
            return Err(PipelineError::InvalidArgument(
                "shared codebooks need a VPTQ method with one group, no normalization and no per-layer presets".into(),
            ))
        }
    };
    // Settings a layer cannot take fail now, before any calibration work.
    for (b, sel) in selected.iter().enumerate() {
        for &i in sel {
            let l = model.blocks[b].linears()[i].1;
            let module = module_name(b, LINEARS[i].1);
            let check = match &*opts.method_for(&module) {
                Method::Vq(cfg) if opts.clamp_centroids && !opts.share_codebooks => {
                    cfg.clamped_to_shape(l.out_features(), l.in_features()).map(drop)
                }
                Method::Vq(cfg) if opts.share_codebooks => {
                    cfg.validate_for_shape_shared(l.out_features(), l.in_features()).map(drop)
                }
                Method::Vq(cfg) => cfg.validate_for_shape(l.out_features(), l.in_features()).map(drop),
                Method::Scalar(cfg) => cfg.validate(),
            };
            check.map_err(quant_err(module))?;
        }
    }
    if calib.is_empty() || calib.iter().any(Vec::is_empty) {
        return Err(PipelineError::InvalidArgument("calibration needs at least one non-empty sequence".into()));
    }
    let shared = match shared_cfg {
        Some(cfg) => shared_codebooks(model, &selected, cfg, progress)?,
        None => vec![None; LINEARS.len()],
    };
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
                model.forward_block(block, &mut y, 0, &mut LayerCache::new(KvPrecision::F32), &mut |site, h| {
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
        // The prepared Hessian of a site is shared by its layers while their Hessian settings agree.
        let mut prepared: Option<(Site, HessianKey, PreparedHessian)> = None;
        for (slot, &i) in sel.iter().enumerate() {
            let (_, short, site) = LINEARS[i];
            let module = module_name(b, short);
            let resumed = layers[slot].is_some();
            if !resumed {
                progress(Event::LayerStart { module: &module, weights: weights_of(b, i) });
                let lin = block.linears()[i].1;
                let started = Instant::now();
                let method = opts.method_for(&module);
                let key = HessianKey::of(&method);
                if !matches!(&prepared, Some((s, k, _)) if *s == site && *k == key) {
                    let acc = &hessians.iter().find(|(s, _)| *s == site).expect("invariant: site collected").1;
                    let h = acc.finish().map_err(quant_err(&module))?;
                    let n = acc.in_features();
                    let ph = match &*method {
                        Method::Vq(cfg) => PreparedHessian::new(&h, n, cfg),
                        Method::Scalar(cfg) => cfg.prepare_hessian(&h, n),
                    };
                    prepared = Some((site, key, ph.map_err(quant_err(&module))?));
                }
                let ph = &prepared.as_ref().expect("invariant: prepared just above").2;
                let r = match &*method {
                    Method::Vq(cfg) => {
                        let clamped;
                        let cfg = if opts.clamp_centroids && shared[i].is_none() {
                            let (m, n) = (lin.out_features(), lin.in_features());
                            clamped = cfg.clamped_to_shape(m, n).map_err(quant_err(&module))?;
                            &clamped
                        } else {
                            cfg
                        };
                        let w = hf_weight(model, short, lin, &module)?;
                        let q = match shared[i].as_ref() {
                            Some(cb) => quantize_linear_shared(&w, lin.out_features(), ph, cfg, cb),
                            None => quantize_linear_prepared(&w, lin.out_features(), ph, cfg),
                        }
                        .map_err(quant_err(&module))?;
                        drop(w);
                        vq_result(model, short, lin, &module, &q, started)?.with_int8_codebooks(opts.int8_codebooks)
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

/// The settings a prepared Hessian depends on (damping, regularization, permutation), as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HessianKey(u64, u64, bool);

impl HessianKey {
    fn of(method: &Method) -> Self {
        match method {
            Method::Vq(c) => HessianKey(c.percdamp.to_bits(), c.hessian_regularize.to_bits(), c.enable_perm),
            // One scalar method per run: its Hessian never needs re-preparing.
            Method::Scalar(_) => HessianKey(0, 0, false),
        }
    }
}

/// `[i]`: the codebook shared by the selected layers of kind `LINEARS[i]` (none where no layer of the kind is
/// selected). Trained on the weights alone, before any Hessian exists, so it is the same in both modes.
fn shared_codebooks(
    model: &Llama,
    selected: &[Vec<usize>],
    cfg: &VqConfig,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<Option<Codebook>>> {
    let mut shared = vec![None; LINEARS.len()];
    for (i, (_, short, _)) in LINEARS.iter().enumerate() {
        let layers: Vec<usize> = (0..selected.len()).filter(|&b| selected[b].contains(&i)).collect();
        let Some(&first) = layers.first() else { continue };
        progress(Event::SharedCodebook { kind: short });
        let l = model.blocks[first].linears()[i].1;
        let (m, n) = (l.out_features(), l.in_features());
        let ws: Vec<Vec<f32>> = layers
            .iter()
            .map(|&b| hf_weight(model, short, model.blocks[b].linears()[i].1, &module_name(b, short)))
            .collect::<Result<_>>()?;
        let refs: Vec<&[f32]> = ws.iter().map(Vec::as_slice).collect();
        shared[i] = Some(train_shared_codebook(&refs, m, n, cfg).map_err(quant_err(format!("shared {short}")))?);
    }
    Ok(shared)
}

/// Runs `block` on every residual stream.
fn advance(model: &Llama, block: &Block, mut xs: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    for x in &mut xs {
        model.forward_block(block, x, 0, &mut LayerCache::new(KvPrecision::F32), &mut |_, _| {});
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

/// The pipeline's record of a quantized layer `q`.
fn vq_result(
    model: &Llama,
    short: &str,
    lin: &Linear,
    module: &str,
    q: &crate::QuantizedLinear,
    started: Instant,
) -> Result<LayerResult> {
    let data = vq_layer_data(module, q, hf_bias(model, short, lin))?;
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
