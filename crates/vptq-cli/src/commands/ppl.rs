//! `vptq ppl`: perplexity of a text file (protocol: shared/docs/data.md).

use crate::args::{Context, ModelArgs};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use vptq_eval::{perplexity, PplOptions};

/// Arguments of `ppl`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// UTF-8 text file, or a cached text by name: `pride` (Pride and Prejudice), another Austen novel's R
    /// name (`emma`, `persuasion`, ...), `brown` (whole), `brown-calib` (first 90%), `brown-heldout` (last 10%)
    #[arg(long, short)]
    text: PathBuf,
    /// Window length in tokens
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Evaluate only the first N windows
    #[arg(long)]
    max_windows: Option<usize>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// The text at `path`, or the cached text it names when no such file exists.
fn read_text(path: &Path, ctx: &Context) -> Result<String> {
    let cache = vptq_assets::Cache::new(&ctx.cache_dir);
    let named = if path.exists() { None } else { path.to_str() };
    let brown = |part: usize| -> Result<String> {
        let (calib, heldout) = cache.brown_split().context("Brown corpus not cached: run `vptq fetch`")?;
        Ok(match part {
            0 => calib,
            1 => heldout,
            _ => std::fs::read_to_string(cache.brown_txt())?,
        })
    };
    match named {
        Some("brown-calib") => brown(0),
        Some("brown-heldout") => brown(1),
        Some("brown") => brown(2),
        Some(name) if name == "pride" || name.parse::<vptq_assets::Novel>().is_ok() => {
            let novel = if name == "pride" {
                vptq_assets::Novel::PridePrejudice
            } else {
                name.parse().map_err(anyhow::Error::msg)?
            };
            let p = cache.austen(novel);
            std::fs::read_to_string(&p).with_context(|| format!("reading {} (run `vptq fetch`)", p.display()))
        }
        _ => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            String::from_utf8(bytes).map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))
        }
    }
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    if args.max_windows == Some(0) {
        anyhow::bail!("--max-windows must be at least 1");
    }
    let text = read_text(&args.text, ctx)?;
    let loaded = args.model.load(ctx)?;
    let tokens = loaded.tokenizer.encode(&text, false)?;
    let windows = args.max_windows.map_or(tokens.len() / args.ctx.max(1), |m| m.min(tokens.len() / args.ctx.max(1)));
    let pb = crate::progress::bar(ctx.quiet || args.json, windows as u64, "perplexity");
    let report =
        perplexity(&loaded.model, &tokens, &PplOptions { ctx: args.ctx, max_windows: args.max_windows }, |done, _| {
            pb.set_position(done as u64)
        })?;
    pb.finish_and_clear();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["model"] = loaded.source.path().display().to_string().into();
        v["text"] = args.text.display().to_string().into();
        println!("{v}");
    } else {
        println!(
            "ppl {:.4}  (nll {:.5}, {} windows × {} tokens, {} scored, {:.1} s)",
            report.ppl, report.nll, report.windows, report.ctx, report.tokens_scored, report.seconds
        );
    }
    Ok(())
}
