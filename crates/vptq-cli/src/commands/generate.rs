//! `vptq generate`: stream a continuation of a prompt.

use crate::args::{Context, ModelArgs, SamplingArgs};
use anyhow::Result;
use std::io::Write;
use vptq_model::generate::{generate, Session};

/// Arguments of `generate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text
    #[arg(long, short)]
    prompt: String,
    /// Apply the model's chat template to the prompt (as one user message)
    #[arg(long)]
    chat_template: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print token ids and timing as JSON on stderr at the end
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let opts = args.sampling.generate_options()?;
    let loaded = args.model.load(ctx)?;
    let tok = &loaded.tokenizer;
    let prompt_ids = if args.chat_template {
        let text = tok.apply_chat_template(&[vptq_tokenizer::ChatMessage::user(args.prompt.clone())], true)?;
        tok.encode(&text, false)?
    } else {
        tok.encode(&args.prompt, true)?
    };
    anyhow::ensure!(!prompt_ids.is_empty(), "the prompt encodes to no tokens");
    let capacity = (prompt_ids.len() + opts.max_tokens).min(loaded.model.config.max_seq_len);
    let mut session = Session::new(&loaded.model, capacity);
    let mut out = std::io::stdout().lock();
    if !args.chat_template {
        write!(out, "{}", args.prompt)?;
    }
    let gen = generate(&mut session, tok, &prompt_ids, &opts, |piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    })?;
    writeln!(out)?;
    let n = gen.tokens.len();
    if args.json {
        let report = serde_json::json!({
            "prompt_tokens": gen.prompt_tokens,
            "tokens": gen.tokens,
            "stop": format!("{:?}", gen.stop),
            "prefill_seconds": gen.prefill_secs,
            "decode_seconds": gen.decode_secs,
        });
        eprintln!("{report}");
    } else if !ctx.quiet {
        eprintln!(
            "[{} prompt tokens, {n} generated, stop: {:?}, prefill {:.1} tok/s, decode {:.1} tok/s]",
            gen.prompt_tokens,
            gen.stop,
            gen.prompt_tokens as f64 / gen.prefill_secs.max(1e-9),
            n as f64 / gen.decode_secs.max(1e-9)
        );
    }
    Ok(())
}
