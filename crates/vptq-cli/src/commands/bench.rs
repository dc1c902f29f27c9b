//! `vptq bench`: prefill and decode speed, peak memory, and the bandwidth bound.

use crate::args::{peak_rss_bytes, Context, ModelArgs};
use anyhow::Result;
use vptq_eval::{bench, measure_read_bandwidth, BenchOptions};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens for the prefill measurement
    #[arg(long, default_value_t = 128)]
    prompt_len: usize,
    /// Tokens decoded per repeat
    #[arg(long, default_value_t = 64)]
    gen_len: usize,
    /// Timed repeats after one warm-up
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let loaded = args.model.load(ctx)?;
    let sp = crate::progress::spinner(ctx.quiet || args.json, "benchmark");
    let opts = BenchOptions { prompt_len: args.prompt_len, gen_len: args.gen_len, repeats: args.repeats };
    let mut rss = None;
    let report = bench(
        &loaded.model,
        &opts,
        |m| sp.set_message(format!("benchmark: {m}")),
        || {
            rss = peak_rss_bytes();
            sp.set_message("measuring memory read bandwidth");
            measure_read_bandwidth(1 << 30)
        },
    )?;
    sp.finish_and_clear();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["peak_rss_bytes"] = rss.into();
        v["model"] = loaded.source.path().display().to_string().into();
        v["weight_bytes"] = loaded.model.weight_bytes().into();
        println!("{v}");
    } else {
        println!("model        {}", loaded.source.path().display());
        println!("threads      {}", report.threads);
        println!(
            "prefill      {:.1} tok/s  ({} tokens, median of {})",
            report.prefill_tok_s, report.prompt_len, report.repeats
        );
        println!(
            "decode       {:.2} tok/s  ({} tokens, median of {})",
            report.decode_tok_s, report.gen_len, report.repeats
        );
        println!(
            "bound        {:.2} tok/s  ({:.1} MB of weights per token at {:.1} GB/s measured read bandwidth; {:.0}% of bound)",
            report.decode_bound_tok_s,
            report.weight_bytes_per_token as f64 / 1e6,
            report.read_bandwidth_gb_s,
            report.decode_efficiency * 100.0
        );
        let w = &report.weight_bytes_breakdown;
        let kinds: Vec<String> = w.linear_kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        println!(
            "weights      projections {:.2} MB ({}), head {:.2} MB ({}), embedding row {:.2} KB ({}), norms {:.2} KB",
            w.linears as f64 / 1e6,
            kinds.join(", "),
            w.head as f64 / 1e6,
            w.head_kind,
            w.embed_row as f64 / 1e3,
            w.embed_kind,
            w.norms as f64 / 1e3
        );
        if let Some(r) = rss {
            println!("peak RSS     {:.1} MiB", r as f64 / (1024.0 * 1024.0));
        }
    }
    Ok(())
}
