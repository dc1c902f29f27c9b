//! `vptq convert`: GGUF → Hugging Face folder.

use crate::args::Context;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use vptq_model::export::{check_output_dir, export_hf, ExportDtype};
use vptq_model::{load_model, LoadOptions, ModelSource};

/// Arguments of `convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file to convert
    #[arg(long, short)]
    model: PathBuf,
    /// Output folder (created; must be absent or empty unless --force)
    #[arg(long, short)]
    out: PathBuf,
    /// Precision of the written tensors
    #[arg(long, value_enum, default_value_t = DtypeOut::F16)]
    dtype: DtypeOut,
    /// Replace a non-empty output folder
    #[arg(long)]
    force: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum DtypeOut {
    F16,
    Bf16,
    F32,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    check_output_dir(&args.out, args.force)?;
    let source = vptq_model::resolve_model(&args.model.to_string_lossy(), None)?;
    anyhow::ensure!(matches!(source, ModelSource::Gguf(_)), "{}: convert reads GGUF files", args.model.display());
    let sp = crate::progress::spinner(ctx.quiet, format!("loading {}", args.model.display()));
    let loaded = load_model(&source, &LoadOptions::default())?;
    sp.set_message(format!("writing {}", args.out.display()));
    let dtype = match args.dtype {
        DtypeOut::F16 => ExportDtype::F16,
        DtypeOut::Bf16 => ExportDtype::Bf16,
        DtypeOut::F32 => ExportDtype::F32,
    };
    export_hf(&loaded.model, &loaded.tokenizer, &args.out, dtype, args.force)
        .with_context(|| format!("writing {}", args.out.display()))?;
    sp.finish_and_clear();
    if !ctx.quiet {
        eprintln!("wrote {}", args.out.display());
    }
    Ok(())
}
