//! `vptq inspect`: architecture, tensor table summary and tokenizer facts, without loading the weights.

use crate::args::Context;
use anyhow::Result;
use std::collections::BTreeMap;
use vptq_format::gguf::GgufFile;
use vptq_format::hf::TensorStore;
use vptq_model::{resolve_model, LlamaConfig, ModelSource, Tokenizer};

/// Arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model: a GGUF file, a Hugging Face folder, or `org/name` from the local HF cache
    model: String,
    /// List every tensor
    #[arg(long)]
    tensors: bool,
}

struct Summary {
    count: usize,
    params: usize,
    bytes: usize,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let source = resolve_model(&args.model, ctx.hf_cache.as_deref())?;
    let mut by_type: BTreeMap<String, Summary> = BTreeMap::new();
    let mut add = |ty: String, params: usize, bytes: usize| {
        let s = by_type.entry(ty).or_insert(Summary { count: 0, params: 0, bytes: 0 });
        s.count += 1;
        s.params += params;
        s.bytes += bytes;
    };
    let mut listing = Vec::new();
    let (config, tokenizer, format) = match &source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            for t in &file.tensors {
                add(t.ggml_type.to_string(), t.n_elements(), t.n_bytes);
                listing.push(format!("{:<40} {:<6} {:?}", t.name, t.ggml_type.to_string(), t.shape()));
            }
            let fmt = format!(
                "GGUF v{} ({} metadata keys, {} tensors)",
                file.version,
                file.metadata.len(),
                file.tensors.len()
            );
            (LlamaConfig::from_gguf(&file)?, Tokenizer::from_gguf(&file)?, fmt)
        }
        ModelSource::HfDir(dir) => {
            let (_, config) = vptq_model::load::read_hf_config(dir)?;
            let store = TensorStore::open(dir)?;
            for name in store.names() {
                let t = store.require(name)?;
                add(format!("{:?}", t.dtype), t.shape.iter().product(), t.data.len());
                listing.push(format!("{:<56} {:<5} {:?}", name, format!("{:?}", t.dtype), t.shape));
            }
            (config, Tokenizer::from_hf_dir(dir)?, "Hugging Face folder (safetensors)".to_string())
        }
    };
    let c = &config;
    println!("model        {}", source.path().display());
    println!("format       {format}");
    println!(
        "architecture {} ({} layers, hidden {}, ffn {}, heads {}/{} kv, head_dim {})",
        c.arch.name(),
        c.n_layers,
        c.hidden_size,
        c.intermediate_size,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim
    );
    println!(
        "             vocab {}, context {}, rms_eps {:e}, rope θ {} ({:?}, {}), tied head: {}, qkv bias: {}",
        c.vocab_size,
        c.max_seq_len,
        c.rms_eps,
        c.rope_theta,
        c.rope_layout,
        match c.rope_scaling {
            vptq_model::RopeScaling::None => "no scaling",
            vptq_model::RopeScaling::Llama3 { .. } => "llama3 scaling",
            vptq_model::RopeScaling::Factors(_) => "rope_freqs factors",
        },
        c.tie_embeddings,
        c.qkv_bias
    );
    println!("tensors");
    let (mut tp, mut tb) = (0, 0);
    for (ty, s) in &by_type {
        println!("  {:<6} {:>4} tensors {:>14} params {:>10.2} MiB", ty, s.count, s.params, s.bytes as f64 / 1048576.0);
        tp += s.params;
        tb += s.bytes;
    }
    println!(
        "  total  {:>4} tensors {:>14} params {:>10.2} MiB",
        by_type.values().map(|s| s.count).sum::<usize>(),
        tp,
        tb as f64 / 1048576.0
    );
    if args.tensors {
        for l in &listing {
            println!("  {l}");
        }
    }
    let t = &tokenizer;
    let name =
        |id: Option<u32>| id.map_or("none".to_string(), |i| format!("{i} {:?}", t.id_to_token(i).unwrap_or_default()));
    println!(
        "tokenizer    vocab {}, bos {}, eos {}, add_bos {}",
        t.vocab_size(),
        name(t.bos_id()),
        name(t.eos_id()),
        t.add_bos()
    );
    println!(
        "             {} special tokens, chat template: {}",
        t.special_tokens().len(),
        if t.chat_template().is_some() { "yes" } else { "no (ChatML fallback)" }
    );
    Ok(())
}
