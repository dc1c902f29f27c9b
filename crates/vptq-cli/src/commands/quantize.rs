//! `vptq quantize`: a model (GGUF or Hugging Face folder) → Hugging Face VPTQ folder, reference mode: Hessians
//! from the full-precision model on calibration windows of a text file, then every selected decoder linear
//! quantized with one preset.

use crate::args::{Context, ModelArgs};
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use vptq_model::export::check_output_dir;
use vptq_quant::pipeline::{collect_hessians, quantize_model, write_vptq_folder};
use vptq_quant::VqConfig;

/// Arguments of `quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output folder (created; must be absent or empty unless --force)
    #[arg(long, short)]
    out: PathBuf,
    /// Quantization preset `v{v}-k{k}` or `v{v}-k{k}-{kr}`
    #[arg(long, default_value = "v6-k4096")]
    preset: String,
    /// Calibration text file
    #[arg(long)]
    calib: PathBuf,
    /// Number of calibration windows
    #[arg(long, default_value_t = 128)]
    calib_samples: usize,
    /// Tokens per calibration window
    #[arg(long, default_value_t = 2048)]
    calib_len: usize,
    /// k-means iterations per codebook (default: the preset's)
    #[arg(long)]
    kmeans_iters: Option<usize>,
    /// Quantize only modules whose path contains one of these (repeatable; default: all decoder linears)
    #[arg(long)]
    include: Vec<String>,
    /// Keep modules whose path contains one of these dense (repeatable)
    #[arg(long)]
    exclude: Vec<String>,
    /// Replace a non-empty output folder
    #[arg(long)]
    force: bool,
}

/// Splits `tokens` into at most `samples` consecutive non-overlapping windows of `len` tokens.
fn calibration_windows(tokens: &[u32], samples: usize, len: usize) -> Vec<Vec<u32>> {
    tokens.chunks_exact(len.max(1)).take(samples).map(<[u32]>::to_vec).collect()
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    anyhow::ensure!(args.calib_samples > 0 && args.calib_len > 0, "--calib-samples and --calib-len must be positive");
    check_output_dir(&args.out, args.force)?;
    let mut cfg: VqConfig = args.preset.parse()?;
    if let Some(iters) = args.kmeans_iters {
        cfg.kmeans_iters = iters;
    }
    cfg.validate()?;
    let loaded = args.model.load(ctx)?;
    let text = std::fs::read_to_string(&args.calib).with_context(|| format!("reading {}", args.calib.display()))?;
    let tokens = loaded.tokenizer.encode(&text, false)?;
    let windows = calibration_windows(&tokens, args.calib_samples, args.calib_len);
    anyhow::ensure!(
        !windows.is_empty(),
        "{}: {} tokens, fewer than one window of --calib-len {}",
        args.calib.display(),
        tokens.len(),
        args.calib_len
    );
    if windows.len() < args.calib_samples && !ctx.quiet {
        eprintln!("note: {} holds only {} windows of {} tokens", args.calib.display(), windows.len(), args.calib_len);
    }
    let sp = crate::progress::spinner(ctx.quiet, format!("collecting Hessians on {} windows", windows.len()));
    let hessians = collect_hessians(&loaded.model, &windows)?;
    sp.finish_and_clear();

    let pb = crate::progress::bar(ctx.quiet, 0, format!("quantizing ({cfg})"));
    let quantized = quantize_model(&loaded.model, &hessians, &cfg, &args.include, &args.exclude, |p| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
        pb.set_message(format!("{} err {:.2e}", p.module, p.layer.report.proxy_err));
    })?;
    pb.finish_and_clear();
    anyhow::ensure!(!quantized.is_empty(), "no decoder linear matches --include / --exclude");

    let sp = crate::progress::spinner(ctx.quiet, format!("writing {}", args.out.display()));
    write_vptq_folder(&loaded.model, Some(&loaded.tokenizer), &quantized, &args.out, args.force)
        .with_context(|| format!("writing {}", args.out.display()))?;
    sp.finish_and_clear();
    if !ctx.quiet {
        let mean = quantized.iter().map(|(_, q)| q.report.proxy_err).sum::<f64>() / quantized.len() as f64;
        eprintln!("wrote {} ({} layers, mean proxy error {mean:.3e})", args.out.display(), quantized.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_consecutive_and_capped() {
        let t: Vec<u32> = (0..10).collect();
        assert_eq!(calibration_windows(&t, 2, 3), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(calibration_windows(&t, 9, 4).len(), 2);
        assert!(calibration_windows(&t, 3, 11).is_empty());
    }
}
