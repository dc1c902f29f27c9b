//! `vptq chat`: interactive multi-turn chat. Each turn renders the whole conversation with the model's chat
//! template; the session reuses the KV cache for the shared prefix.

use crate::args::{Context, ModelArgs, SamplingArgs};
use anyhow::Result;
use std::io::{BufRead, Write};
use vptq_model::generate::{generate, Session};
use vptq_tokenizer::ChatMessage;

/// Arguments of `chat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// System prompt
    #[arg(long, short)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Runs the command: `/exit` or an empty line ends it; so does end of input.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let opts = args.sampling.generate_options()?;
    let loaded = args.model.load(ctx)?;
    let tok = &loaded.tokenizer;
    let mut session = Session::new(&loaded.model, loaded.model.config.max_seq_len.min(8192));
    let mut messages: Vec<ChatMessage> = args.system.iter().map(|s| ChatMessage::system(s.clone())).collect();
    if !ctx.quiet {
        eprintln!("chat with {} — empty line or /exit to quit", loaded.source.path().display());
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if !ctx.quiet {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.trim() == "/exit" {
            break;
        }
        messages.push(ChatMessage::user(line));
        let prompt = tok.apply_chat_template(&messages, true)?;
        let ids = tok.encode(&prompt, false)?;
        if ids.len() + 1 >= session.capacity() {
            anyhow::bail!(
                "the conversation ({} tokens) no longer fits the context of {}",
                ids.len(),
                session.capacity()
            );
        }
        let mut out = std::io::stdout().lock();
        let gen = generate(&mut session, tok, &ids, &opts, |piece| {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        })?;
        writeln!(out)?;
        messages.push(ChatMessage::assistant(gen.text.trim().to_string()));
    }
    Ok(())
}
