//! Arguments shared by several commands, and the run context derived from the environment.

use anyhow::{Context as _, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use vptq_model::{
    convert_embeddings, load_model, resolve_model, BookPrecision, EmbedStorage, KvPrecision, LoadOptions, LoadedModel,
    SamplingParams, WeightDtype,
};

/// Options of every command.
#[derive(ClapArgs, Debug)]
pub struct GlobalArgs {
    /// Worker threads (default: all cores)
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// No progress bars or status lines
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log filter (error, warn, info, debug, trace, or a RUST_LOG-style directive)
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
}

/// What commands need from the environment, read once here (libraries never read env vars).
#[derive(Debug, Clone)]
pub struct Context {
    /// Hide progress output.
    pub quiet: bool,
    /// Asset cache root (`$VPTQ_CACHE`, default `~/.cache/vptq`).
    pub cache_dir: PathBuf,
    /// Hugging Face hub cache root, for `org/name` model specs.
    pub hf_cache: Option<PathBuf>,
}

impl GlobalArgs {
    /// Installs logging and the thread pool.
    pub fn init(&self) -> Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .with_context(|| format!("invalid --log-level `{}`", self.log_level))?;
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
        Ok(())
    }

    /// The worker pool. Commands run inside it (`install`), so the model's parallel loops start from a worker
    /// thread: from an outside thread each of the thousands of parallel calls per token would be a
    /// cross-thread hand-off (measured: about a fifth of decode time went to the scheduler).
    pub fn thread_pool(&self) -> Result<rayon::ThreadPool> {
        let mut builder = rayon::ThreadPoolBuilder::new();
        if let Some(t) = self.threads {
            anyhow::ensure!((1..=1024).contains(&t), "--threads must be between 1 and 1024, got {t}");
            builder = builder.num_threads(t);
        }
        builder.build().context("building the thread pool")
    }

    /// The run context.
    pub fn context(&self) -> Context {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let cache_dir = vptq_assets::default_cache_dir(std::env::var_os("VPTQ_CACHE").as_deref(), home.as_deref());
        let hf_cache = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| home.map(|h| h.join(".cache").join("huggingface").join("hub")));
        Context { quiet: self.quiet, cache_dir, hf_cache }
    }
}

/// Which model to load.
#[derive(ClapArgs, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a GGUF file, a Hugging Face folder, or `org/name` from the local HF cache
    #[arg(long, short)]
    pub model: String,
    /// Precision of dense weights in memory (default: as stored; GGUF tensors are dequantized to f32)
    #[arg(long, value_enum, default_value_t = DtypeArg::Stored)]
    pub dtype: DtypeArg,
    /// Convert the embeddings (and an untied head) after loading: f16, or q8 (int8, a scale per row); `quantize`
    /// also stores them so (q8 is recorded in config.json; loaders that do not know it find no
    /// `model.embed_tokens.weight`)
    #[arg(long, value_enum, default_value_t = EmbedDtypeArg::Stored)]
    pub embed_dtype: EmbedDtypeArg,
    /// How the kernels hold VPTQ codebooks in memory: auto (measured best per layer), f32, stored (f16/bf16 as
    /// in the file), or int8 (a scale per lane: a quarter of f32's bytes, lossy)
    #[arg(long, value_enum, default_value_t = CodebooksArg::Auto)]
    pub codebooks: CodebooksArg,
    /// Element type of the KV cache: f16 (half the bytes, faster attention at long contexts) or f32
    #[arg(long, value_enum, default_value_t = KvCacheArg::F16)]
    pub kv_cache: KvCacheArg,
}

/// `--kv-cache` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCacheArg {
    /// IEEE half
    F16,
    /// 32-bit float
    F32,
}

/// `--codebooks` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodebooksArg {
    /// Measured best for the codebook's size
    Auto,
    /// 32-bit float
    F32,
    /// As stored in the file
    Stored,
    /// int8 with one scale per group and lane
    Int8,
}

/// `--embed-dtype` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedDtypeArg {
    /// As loaded
    Stored,
    /// IEEE half
    F16,
    /// int8 with one scale per row
    Q8,
}

/// `--dtype` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeArg {
    /// As stored
    Stored,
    /// 32-bit float
    F32,
    /// IEEE half
    F16,
    /// bfloat16
    Bf16,
}

impl ModelArgs {
    /// Resolves and loads the model, with a spinner.
    pub fn load(&self, ctx: &Context) -> Result<LoadedModel> {
        let source = resolve_model(&self.model, ctx.hf_cache.as_deref())?;
        let dtype = match self.dtype {
            DtypeArg::Stored => WeightDtype::Stored,
            DtypeArg::F32 => WeightDtype::F32,
            DtypeArg::F16 => WeightDtype::F16,
            DtypeArg::Bf16 => WeightDtype::Bf16,
        };
        let spinner = crate::progress::spinner(ctx.quiet, format!("loading {}", source.path().display()));
        let codebooks = match self.codebooks {
            CodebooksArg::Auto => BookPrecision::Auto,
            CodebooksArg::F32 => BookPrecision::F32,
            CodebooksArg::Stored => BookPrecision::Stored,
            CodebooksArg::Int8 => BookPrecision::Int8,
        };
        let kv_cache = match self.kv_cache {
            KvCacheArg::F16 => KvPrecision::F16,
            KvCacheArg::F32 => KvPrecision::F32,
        };
        let mut loaded = load_model(&source, &LoadOptions { dtype, codebooks, kv_cache })
            .with_context(|| format!("loading model `{}`", self.model))?;
        let embed = match self.embed_dtype {
            EmbedDtypeArg::Stored => None,
            EmbedDtypeArg::F16 => Some(EmbedStorage::F16),
            EmbedDtypeArg::Q8 => Some(EmbedStorage::Q8),
        };
        if let Some(storage) = embed {
            convert_embeddings(&mut loaded.model, storage).context("converting the embeddings")?;
        }
        spinner.finish_and_clear();
        Ok(loaded)
    }
}

/// Sampling flags.
#[derive(ClapArgs, Debug, Clone)]
pub struct SamplingArgs {
    /// Maximum new tokens
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Temperature (0 = greedy)
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Top-k filter (0 = off)
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Top-p (nucleus) filter (1 = off)
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p filter relative to the top token (0 = off)
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty (1 = off)
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop before this string (repeatable)
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// Validated sampling parameters.
    pub fn params(&self) -> Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        };
        p.validate().map_err(anyhow::Error::msg)?;
        Ok(p)
    }

    /// Generation options.
    pub fn generate_options(&self) -> Result<vptq_model::GenerateOptions> {
        Ok(vptq_model::GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: self.params()?,
            stop_strings: self.stop.clone(),
        })
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
