//! `vptq fetch`: download and verify the real assets (shared/docs/data.md) into the cache; a no-op for files
//! already present and verified.

use crate::args::Context;
use anyhow::Result;
use indicatif::ProgressBar;
use vptq_assets::{fetch, AssetReport, Cache, FetchOptions, Outcome, Progress};

/// Arguments of `fetch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also fetch Qwen2.5-Coder-1.5B-Instruct Q4_K_M (about 1.1 GB from 22 packages)
    #[arg(long)]
    qwen: bool,
    /// Re-hash every file even when its verification stamp is current
    #[arg(long)]
    verify: bool,
    /// Run `apt-get update` when `apt-get download` finds no package list
    #[arg(long)]
    apt_update: bool,
    /// Print the cache paths as JSON when done
    #[arg(long)]
    json: bool,
}

struct Bars {
    spinner: ProgressBar,
    quiet: bool,
}

impl Progress for Bars {
    fn asset_started(&self, asset: &str) {
        self.spinner.set_message(format!("{asset}: checking"));
    }
    fn step(&self, asset: &str, message: &str) {
        self.spinner.set_message(format!("{asset}: {message}"));
    }
    fn bytes(&self, asset: &str, done: u64, total: u64) {
        let pct = if total > 0 { done as f64 * 100.0 / total as f64 } else { 0.0 };
        self.spinner.set_message(format!("{asset}: {:.0} MB ({pct:.0}%)", done as f64 / 1e6));
    }
    fn asset_finished(&self, report: &AssetReport) {
        if !self.quiet {
            let what = match report.outcome {
                Outcome::AlreadyPresent => "present".to_string(),
                Outcome::Fetched => format!("fetched in {:.1} s", report.seconds),
            };
            self.spinner.suspend(|| eprintln!("{:<24} {what}", report.name));
        }
    }
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let cache = Cache::new(&ctx.cache_dir);
    let bars =
        Bars { spinner: crate::progress::spinner(ctx.quiet || args.json, "fetching"), quiet: ctx.quiet || args.json };
    let opts =
        FetchOptions { include_qwen: args.qwen, trust_stamps: !args.verify, apt_update_if_needed: args.apt_update };
    let report = fetch(&cache, &opts, &bars)?;
    bars.spinner.finish_and_clear();
    if args.json {
        let files: Vec<String> =
            report.assets.iter().flat_map(|a| a.files.iter().map(|f| f.display().to_string())).collect();
        println!("{}", serde_json::json!({ "cache": cache.root().display().to_string(), "files": files }));
    } else if !ctx.quiet {
        eprintln!("cache: {}", cache.root().display());
    }
    Ok(())
}
