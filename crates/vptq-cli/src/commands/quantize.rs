//! `vptq quantize`: a model (GGUF or Hugging Face folder) → Hugging Face VPTQ folder. Calibration windows from
//! a text (default: the first 90 % of the Brown corpus), Hessians streamed block by block (reference or
//! sequential mode), every selected decoder linear quantized with one method, each finished layer
//! checkpointed beside the output so that the same command resumes an interrupted run.

use crate::args::{peak_rss_bytes, Context, ModelArgs};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vptq_model::export::check_output_dir;
use vptq_model::EmbedStorage;
use vptq_quant::pipeline::{
    calibration_windows, quantize_model, write_vptq_folder, CalibMode, Checkpoint, Event, LayerOverride, Method,
    QuantizeOptions,
};
use vptq_quant::{NormMode, VqConfig};

/// Arguments of `quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output folder (created; must be absent or empty unless --force)
    #[arg(long, short)]
    out: PathBuf,
    /// Method: a VPTQ preset `v{v}-k{k}` or `v{v}-k{k}-{kr}` (kr: residual centroids), or a scalar baseline
    /// `rtn-w{bits}-g{group}` / `gptq-w{bits}-g{group}` (e.g. gptq-w2-g128)
    #[arg(long, default_value = "v6-k4096")]
    preset: String,
    /// Override the preset's main vector length v (2–16)
    #[arg(long)]
    vector_len: Option<usize>,
    /// Override the preset's main centroids k (power of two ≤ 65536)
    #[arg(long)]
    centroids: Option<usize>,
    /// Override the preset's residual centroids (0: none)
    #[arg(long)]
    res_centroids: Option<usize>,
    /// Percent of input columns (largest Hessian diagonal) coded with their own outlier codebook
    #[arg(long)]
    outlier_percent: Option<f64>,
    /// Vector length of the outlier codebook
    #[arg(long)]
    outlier_vector_len: Option<usize>,
    /// Centroids of the outlier codebook
    #[arg(long)]
    outlier_centroids: Option<usize>,
    /// Codebooks per layer, each for a contiguous group of input columns
    #[arg(long)]
    groups: Option<usize>,
    /// Per-input-column normalization (the reference uses min-max; none measured lower proxy errors on SmolLM2
    /// and saves the scale/bias bits)
    #[arg(long, value_enum, default_value_t = NormArg::None)]
    norm: NormArg,
    /// Codebook values: int8 (a main codebook is snapped to a per-lane power-of-two int8 grid before the
    /// error-feedback loop, which compensates it, when that adds at most 4% to its k-means distortion; the
    /// kernels then keep it in int8 losslessly, measured faster) or free (any f16 value, as the reference)
    #[arg(long, value_enum, default_value_t = GridArg::Int8)]
    codebook_grid: GridArg,
    /// How snapped main codebooks are stored: f16 (the HF VPTQ layout every VPTQ loader reads) or int8 (8 bits
    /// per value plus a step per lane: half the codebook bytes, same values; `centroids.weight` is replaced by
    /// `centroids.qweight` + `centroids.scales`, which other loaders reject as a missing tensor)
    #[arg(long, value_enum, default_value_t = StorageArg::F16)]
    codebook_storage: StorageArg,
    /// Calibration text file (default: the first 90% of the Brown corpus from the asset cache)
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Number of calibration windows N
    #[arg(long, default_value_t = 32)]
    calib_samples: usize,
    /// Tokens per calibration window L
    #[arg(long, default_value_t = 512)]
    calib_len: usize,
    /// Where each block's calibration inputs come from: the full-precision model (reference) or the model
    /// with the earlier blocks already quantized (sequential)
    #[arg(long, default_value = "sequential")]
    mode: CalibMode,
    /// Maximum k-means iterations per codebook (the reference runs 100; see docs/QUANTIZATION.md)
    #[arg(long, default_value_t = 10)]
    kmeans_iters: usize,
    /// Quantize the normalized weight with the reference's H instead of the Hessian it actually has (S·H·S,
    /// the default: 4–19% lower proxy error measured on SmolLM2)
    #[arg(long)]
    reference_hessian: bool,
    /// Fit each codebook on a uniform sample of at most this many vectors (0: all)
    #[arg(long)]
    kmeans_max_vectors: Option<usize>,
    /// Seed of calibration sampling and k-means
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Quantize only modules whose path contains one of these (repeatable; default: all decoder linears)
    #[arg(long)]
    include: Vec<String>,
    /// Keep modules whose path contains one of these dense (repeatable)
    #[arg(long)]
    exclude: Vec<String>,
    /// Per-layer bit allocation: `PATTERN=PRESET` quantizes the modules whose path contains PATTERN with the
    /// VPTQ preset PRESET (`v{v}-k{k}[-{kr}]`) instead of --preset, every other setting kept (repeatable; the
    /// last matching one wins), e.g. `--layer-preset layers.0.=v6-k4096-256`
    #[arg(long, value_name = "PATTERN=PRESET")]
    layer_preset: Vec<String>,
    /// One main codebook per linear kind (q_proj, …, down_proj), trained on all its layers and used by each
    /// (an experiment: the HF layout still stores it in every layer; the summary's
    /// `bits_per_weight_codebooks_once` counts it once)
    #[arg(long)]
    share_codebooks: bool,
    /// Shrink a codebook with more centroids than its layer has vectors to fit the layer (default: error)
    #[arg(long)]
    clamp_centroids: bool,
    /// Replace a non-empty output folder and discard a checkpoint of a different command
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on stdout
    #[arg(long)]
    json: bool,
}

/// `--codebook-grid` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum GridArg {
    /// Per-lane int8 grid
    Int8,
    /// Any f16 value
    Free,
}

/// `--codebook-storage` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum StorageArg {
    /// IEEE half, as the HF VPTQ layout
    F16,
    /// int8 with a power-of-two step per lane (codebooks on the int8 grid only)
    Int8,
}

/// `--norm` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum NormArg {
    /// None
    None,
    /// Min/max per input column
    MinMax,
    /// Mean/std per input column
    MeanStd,
}

impl Args {
    fn method(&self) -> Result<Method> {
        let mut cfg: VqConfig = match self.preset.parse::<Method>()? {
            Method::Vq(cfg) => cfg,
            Method::Scalar(s) => {
                let vq_flags = [self.vector_len, self.centroids, self.res_centroids, self.outlier_vector_len]
                    .iter()
                    .chain(&[self.outlier_centroids, self.groups, self.kmeans_max_vectors])
                    .any(Option::is_some)
                    || self.outlier_percent.is_some()
                    || self.clamp_centroids
                    || self.reference_hessian
                    || self.codebook_grid != GridArg::Int8
                    || self.codebook_storage != StorageArg::F16;
                anyhow::ensure!(!vq_flags, "VPTQ options (--vector-len, --centroids, ...) do not apply to {}", s);
                return Ok(Method::Scalar(s));
            }
        };
        let set = |field: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut cfg.vector_len, self.vector_len);
        set(&mut cfg.num_centroids, self.centroids);
        set(&mut cfg.num_res_centroids, self.res_centroids);
        set(&mut cfg.outlier_vector_len, self.outlier_vector_len);
        set(&mut cfg.outlier_num_centroids, self.outlier_centroids);
        set(&mut cfg.group_num, self.groups);
        cfg.kmeans_iters = self.kmeans_iters;
        cfg.scale_aware_hessian = !self.reference_hessian;
        if let Some(p) = self.outlier_percent {
            cfg.outlier_percent = p;
        }
        if let Some(m) = self.kmeans_max_vectors {
            cfg.kmeans_max_fit_vectors = (m > 0).then_some(m);
        }
        cfg.norm = match self.norm {
            NormArg::None => NormMode::None,
            NormArg::MinMax => NormMode::MinMax,
            NormArg::MeanStd => NormMode::MeanStd,
        };
        cfg.int8_grid = self.codebook_grid == GridArg::Int8;
        anyhow::ensure!(
            cfg.int8_grid || self.codebook_storage == StorageArg::F16,
            "--codebook-storage int8 stores codebooks on the int8 grid: it needs --codebook-grid int8"
        );
        cfg.seed = self.seed;
        cfg.validate()?;
        Ok(Method::Vq(cfg))
    }

    /// `--layer-preset` as overrides of `method`: each pattern's preset geometry (v, k, kr) on `method`'s
    /// other settings.
    fn overrides(&self, method: &Method) -> Result<Vec<LayerOverride>> {
        if self.layer_preset.is_empty() {
            return Ok(Vec::new());
        }
        let Method::Vq(base) = method else {
            anyhow::bail!("--layer-preset needs a VPTQ --preset, not {method}");
        };
        self.layer_preset
            .iter()
            .map(|spec| {
                let (pattern, preset) = spec.split_once('=').filter(|(p, _)| !p.is_empty()).with_context(|| {
                    format!("--layer-preset `{spec}`: expected PATTERN=PRESET, e.g. layers.0.=v6-k4096-256")
                })?;
                let p: VqConfig = match preset.parse::<Method>() {
                    Ok(Method::Vq(p)) => p,
                    Ok(Method::Scalar(_)) => anyhow::bail!("--layer-preset `{spec}`: {preset} is not a VPTQ preset"),
                    Err(e) => return Err(anyhow::Error::new(e).context(format!("--layer-preset `{spec}`"))),
                };
                let config = VqConfig {
                    vector_len: p.vector_len,
                    num_centroids: p.num_centroids,
                    num_res_centroids: p.num_res_centroids,
                    ..base.clone()
                };
                config.validate().with_context(|| format!("--layer-preset `{spec}`"))?;
                Ok(LayerOverride { pattern: pattern.to_string(), config })
            })
            .collect()
    }
}

/// 64-bit FNV-1a: a stable digest for the checkpoint fingerprint (not security relevant).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Identifies the command's inputs: the model file(s) (path, size, modification time), the method with every
/// setting, the calibration tokens, the mode and the selection.
fn fingerprint(
    model_path: &Path,
    method: &Method,
    overrides: &[LayerOverride],
    args: &Args,
    windows: &[Vec<u32>],
) -> String {
    let files: Vec<PathBuf> = if model_path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(model_path)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    } else {
        vec![model_path.to_path_buf()]
    };
    let stamps: Vec<String> = files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            format!("{}:{}:{:?}", p.display(), meta.map_or(0, |m| m.len()), mtime)
        })
        .collect();
    let calib =
        fnv1a(windows.iter().flat_map(|w| w.iter().flat_map(|t| t.to_le_bytes()).chain(u32::MAX.to_le_bytes())));
    let method = match method {
        Method::Vq(c) => format!("{c:?}"),
        Method::Scalar(c) => format!("{c:?}"),
    };
    format!(
        "v1|{}|{method}|{overrides:?}|{}|{:?}|{:?}|calib {calib:016x} {}x{}|dtype {:?}|clamp {}|codebooks {:?}|shared {}",
        stamps.join(","),
        args.mode,
        args.include,
        args.exclude,
        windows.len(),
        args.calib_len,
        args.model.dtype,
        args.clamp_centroids,
        args.codebook_storage,
        args.share_codebooks
    )
}

/// The calibration text: `--calib`, or the first 90 % of the cached Brown corpus.
fn calibration_text(args: &Args, ctx: &Context) -> Result<(String, String)> {
    match &args.calib {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((text, p.display().to_string()))
        }
        None => {
            let cache = vptq_assets::Cache::new(&ctx.cache_dir);
            let (calib, _) = cache.brown_split().with_context(|| {
                "the default calibration text (Brown corpus) is not in the asset cache: run `vptq fetch`, or pass --calib FILE"
            })?;
            Ok((calib, "brown (first 90%)".into()))
        }
    }
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let started = Instant::now();
    check_output_dir(&args.out, args.force)?;
    let method = args.method()?;
    let overrides = args.overrides(&method)?;
    let (text, calib_name) = calibration_text(&args, ctx)?;
    let loaded = args.model.load(ctx)?;
    let tokens = loaded.tokenizer.encode(&text, false)?;
    let windows = calibration_windows(&tokens, args.calib_samples, args.calib_len, args.seed)
        .with_context(|| format!("calibration text {calib_name}"))?;
    if windows.len() * args.calib_len > tokens.len() && !ctx.quiet {
        eprintln!(
            "note: {calib_name} holds {} tokens, fewer than {} windows of {}: windows overlap",
            tokens.len(),
            args.calib_samples,
            args.calib_len
        );
    }
    let source = vptq_model::resolve_model(&args.model.model, ctx.hf_cache.as_deref())?;
    let ckpt_dir = Checkpoint::dir_for(&args.out);
    let checkpoint =
        Checkpoint::open(&ckpt_dir, &fingerprint(source.path(), &method, &overrides, &args, &windows), args.force)?;

    let mp = indicatif::MultiProgress::new();
    if ctx.quiet {
        mp.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let overall = mp.add(crate::progress::bar(ctx.quiet, 0, format!("quantizing ({method}, {} mode)", args.mode)));
    let layer_bar = mp.add(crate::progress::spinner(ctx.quiet, "collecting Hessians"));
    let (mut resumed, mut rate) = (0usize, None::<f64>);
    let mut layer_started = Instant::now();
    let quant_started = Instant::now();
    let opts = QuantizeOptions {
        method: &method,
        mode: args.mode,
        include: &args.include,
        exclude: &args.exclude,
        checkpoint: Some(&checkpoint),
        clamp_centroids: args.clamp_centroids,
        int8_codebooks: args.codebook_storage == StorageArg::Int8,
        overrides: &overrides,
        share_codebooks: args.share_codebooks,
    };
    let results = quantize_model(&loaded.model, &windows, &opts, &mut |e| match e {
        Event::SharedCodebook { kind } => layer_bar.set_message(format!("training the shared {kind} codebook")),
        Event::Block { block, blocks } => {
            layer_bar.set_message(format!("block {}/{blocks}: collecting Hessians", block + 1))
        }
        Event::LayerStart { module, weights } => {
            layer_started = Instant::now();
            // Per-layer ETA from the weights-per-second rate of the layers done so far in this run.
            let eta = rate.map_or(String::new(), |r| format!(", ~{:.0}s", weights as f64 / r));
            layer_bar.set_message(format!("{module} ({:.2}M weights{eta})", weights as f64 / 1e6));
        }
        Event::Layer { done, total, done_weights, total_weights, result, resumed: from_ckpt } => {
            overall.set_length(total_weights);
            overall.set_position(done_weights);
            overall.set_message(format!("layer {done}/{total}"));
            if from_ckpt {
                resumed += 1;
            } else {
                let w = (result.out_features * result.in_features) as f64;
                let r = w / layer_started.elapsed().as_secs_f64().max(1e-6);
                rate = Some(rate.map_or(r, |old| 0.7 * old + 0.3 * r));
            }
            if !ctx.quiet {
                let tag = if from_ckpt { " (from checkpoint)" } else { "" };
                mp.suspend(|| {
                    eprintln!(
                        "{:<40} err {:.3e}  {:.2} bpw  {:.1}s{tag}",
                        result.module,
                        result.stats.proxy_err,
                        result.bits_per_weight(),
                        result.stats.secs
                    )
                });
            }
        }
    });
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            // Keep finished layers for a rerun; a checkpoint with none is just clutter.
            if checkpoint.layer_count() == 0 {
                let _ = checkpoint.remove();
            }
            return Err(e.into());
        }
    };
    let quant_secs = quant_started.elapsed().as_secs_f64();
    overall.finish_and_clear();
    layer_bar.finish_and_clear();

    let run = serde_json::json!({
        "method": method.to_string(), "mode": args.mode.to_string(), "model": args.model.model,
        "calibration": {"text": calib_name, "samples": windows.len(), "len": args.calib_len, "seed": args.seed},
        "include": args.include, "exclude": args.exclude, "layer_presets": args.layer_preset,
        "share_codebooks": args.share_codebooks,
        "embed_dtype": loaded.model.embed.weight.kind(), "resumed_layers": resumed,
        "quantize_secs": quant_secs, "threads": rayon::current_num_threads(),
        "codebook_grid": format!("{:?}", args.codebook_grid).to_lowercase(),
        "codebook_storage": format!("{:?}", args.codebook_storage).to_lowercase(),
    });
    let sp = crate::progress::spinner(ctx.quiet, format!("writing {}", args.out.display()));
    // `--embed-dtype q8` converted the embeddings at load (so calibration saw them): store them so.
    let embed = if loaded.model.embed.weight.kind() == "q8" { EmbedStorage::Q8 } else { EmbedStorage::F16 };
    write_vptq_folder(&loaded.model, Some(&loaded.tokenizer), &results, run, embed, &args.out, args.force)
        .with_context(|| format!("writing {}", args.out.display()))?;
    checkpoint.remove()?;
    sp.finish_and_clear();

    let weights: usize = results.iter().map(|r| r.out_features * r.in_features).sum();
    let bits: u64 = results.iter().map(|r| r.stats.storage_bits).sum();
    let mut summary = serde_json::json!({
        "out": args.out.display().to_string(), "method": method.to_string(), "mode": args.mode.to_string(),
        "layers": results.len(), "resumed_layers": resumed,
        "bits_per_weight": bits as f64 / weights.max(1) as f64,
        "mean_proxy_err": results.iter().map(|r| r.stats.proxy_err).sum::<f64>() / results.len().max(1) as f64,
        "wall_secs": started.elapsed().as_secs_f64(), "quantize_secs": quant_secs,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    if args.share_codebooks {
        // Every layer stores the shared codebook of its kind: count one copy per kind.
        let copies: u64 = results.iter().map(|r| r.main_codebook_bits()).sum();
        let mut kinds: Vec<(&str, u64)> = Vec::new();
        for r in &results {
            let kind = r.module.rsplit('.').next().unwrap_or_default();
            if !kinds.iter().any(|(k, _)| *k == kind) {
                kinds.push((kind, r.main_codebook_bits()));
            }
        }
        let once = bits - copies + kinds.iter().map(|(_, b)| b).sum::<u64>();
        summary["bits_per_weight_codebooks_once"] = serde_json::json!(once as f64 / weights.max(1) as f64);
    }
    if args.json {
        println!("{summary}");
    } else if !ctx.quiet {
        eprintln!(
            "wrote {} ({} layers, {:.3} bits per weight, mean proxy error {:.3e}, {:.0}s)",
            args.out.display(),
            results.len(),
            summary["bits_per_weight"].as_f64().unwrap_or(0.0),
            summary["mean_proxy_err"].as_f64().unwrap_or(0.0),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
