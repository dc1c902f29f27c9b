//! `vptq fetch`: download and verify the real assets (see shared/docs/data.md) into the cache.

use crate::args::Context;
use anyhow::Result;

/// Arguments of `fetch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also fetch Qwen2.5-Coder-1.5B-Instruct Q4_K_M (about 1.1 GB from 22 packages)
    #[arg(long)]
    qwen: bool,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let _ = (args, ctx);
    anyhow::bail!("fetch: not wired yet")
}
