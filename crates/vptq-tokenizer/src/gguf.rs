//! Building a [`Tokenizer`] from the `tokenizer.*` metadata of a GGUF file (llama.cpp's embedded tokenizer).
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE: tokens, merges "a b", token types, a
//! pre-tokenizer named by `tokenizer.ggml.pre`, see `pretokenize.rs`). Token types follow llama.cpp:
//! 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control tokens become special added
//! tokens (matched whole in text, skipped by `decode(.., true)`); user-defined tokens become non-special
//! added tokens (matched whole in text, always decoded), as llama.cpp and transformers treat them.
//!
//! Allowed dependencies: `vptq-format` (GGUF metadata access only), `tokenizers`, this crate's modules.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::{AddedToken, PostProcessorWrapper};
use vptq_format::gguf::{GgufFile, MetaValue};

use crate::error::{Result, TokenizerError};
use crate::pretokenize::{PreTokenizerKind, SUPPORTED_PRE_TOKENIZERS};
use crate::tokenizer::{DeclaredId, Parts, Tokenizer};

/// `tokenizer.ggml.model` values this crate builds.
pub const SUPPORTED_MODELS: &[&str] = &["gpt2"];

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
/// Extra end-of-turn / end-of-message ids some converters write (Llama 3 `<|eot_id|>`, `<|eom_id|>`).
const KEYS_EXTRA_EOS: &[&str] = &["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"];
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// Token ids are u32; more tokens than that cannot be addressed.
const MAX_TOKENS: usize = u32::MAX as usize;

impl Tokenizer {
    /// Builds the tokenizer embedded in a GGUF file's metadata.
    ///
    /// # Errors
    /// [`TokenizerError::MissingKey`] / [`TokenizerError::BadMetadata`] for absent or ill-typed keys,
    /// [`TokenizerError::UnsupportedModel`], [`TokenizerError::UnsupportedPreTokenizer`],
    /// [`TokenizerError::BadMerge`], [`TokenizerError::TokenIdOutOfRange`] for bos/eos/unk/pad ids.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let meta = Meta { file, path: &file.path };
        let model = meta.str(KEY_MODEL)?.ok_or_else(|| meta.missing(KEY_MODEL))?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel {
                path: file.path.clone(),
                model: model.to_owned(),
                supported: SUPPORTED_MODELS.join(", "),
            });
        }
        let pre = PreTokenizerKind::from_gguf_name(meta.str(KEY_PRE)?).map_err(|name| {
            TokenizerError::UnsupportedPreTokenizer {
                path: file.path.clone(),
                name,
                supported: SUPPORTED_PRE_TOKENIZERS.join(", "),
            }
        })?;

        let tokens = meta.str_array(KEY_TOKENS)?.ok_or_else(|| meta.missing(KEY_TOKENS))?;
        if tokens.is_empty() || tokens.len() > MAX_TOKENS {
            return Err(meta.bad(KEY_TOKENS, format!("{} tokens (must be 1..={MAX_TOKENS})", tokens.len())));
        }
        let token_types = meta.int_array(KEY_TOKEN_TYPE)?;
        if let Some(types) = &token_types {
            if types.len() != tokens.len() {
                let problem = format!("{} entries for {} tokens", types.len(), tokens.len());
                return Err(meta.bad(KEY_TOKEN_TYPE, problem));
            }
        }
        let merge_strings = meta.str_array(KEY_MERGES)?.ok_or_else(|| meta.missing(KEY_MERGES))?;

        // A token text listed twice keeps its first id; the later id then decodes to nothing (the BPE vocab
        // is a map from text to id). Real vocabularies have no duplicates.
        let mut vocab = Vocab::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            vocab.entry((*token).to_owned()).or_insert(id as u32);
        }
        let merges = parse_merges(&merge_strings, &vocab, &file.path)?;

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Build { path: file.path.clone(), reason: e.to_string() })?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre_tokenizer = pre.build().map_err(|reason| TokenizerError::Build { path: file.path.clone(), reason })?;
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        if let Some(types) = &token_types {
            let added: Vec<AddedToken> = tokens
                .iter()
                .zip(types)
                .filter_map(|(token, &ty)| match ty {
                    TOKEN_TYPE_CONTROL => Some(AddedToken::from(*token, true).normalized(false)),
                    TOKEN_TYPE_USER_DEFINED => Some(AddedToken::from(*token, false).normalized(false)),
                    _ => None,
                })
                .collect();
            // One call: each call rebuilds the matcher over all added tokens.
            inner.add_tokens(&added);
        }

        let bos = meta.id(KEY_BOS)?;
        let mut eos: Vec<DeclaredId> = meta.id(KEY_EOS)?.into_iter().collect();
        for key in KEYS_EXTRA_EOS {
            eos.extend(meta.id(key)?);
        }
        // Without the key, llama.cpp adds BOS for the Llama 3 pre-tokenizer and not for the other byte-level
        // ones (SmolLM2, Qwen2 and GPT-2 style vocabularies have no BOS convention).
        let add_bos = meta.bool(KEY_ADD_BOS)?.unwrap_or(pre == PreTokenizerKind::Llama3);
        if add_bos {
            if let Some(declared) = &bos {
                // An out-of-range id gets no post-processor here; `assemble` reports it.
                let text = usize::try_from(declared.id).ok().and_then(|i| tokens.get(i)).copied();
                if let Some(text) = text {
                    let post = bos_post_processor(text, declared.id as u32, &file.path)?;
                    inner.with_post_processor(Some(post));
                }
            }
        }
        let chat_template = meta.str(KEY_CHAT_TEMPLATE)?.map(str::to_owned);
        let model_max_length = match meta.str("general.architecture")? {
            Some(arch) => meta.u64(&format!("{arch}.context_length"))?,
            None => None,
        };

        let parts = Parts {
            inner,
            vocab_size: tokens.len(),
            bos,
            eos,
            unk: meta.id(KEY_UNK)?,
            pad: meta.id(KEY_PAD)?,
            add_bos,
            chat_template,
            model_max_length,
        };
        Tokenizer::assemble(parts)
    }

    /// Opens a GGUF file and builds its tokenizer.
    ///
    /// # Errors
    /// Those of `GgufFile::open` (wrapped as [`TokenizerError::Format`]) and of [`Tokenizer::from_gguf`].
    pub fn from_gguf_path(path: &Path) -> Result<Tokenizer> {
        Tokenizer::from_gguf(&GgufFile::open(path)?)
    }
}

/// Splits each merge "a b" at its first space (byte-level tokens never contain a space: it is spelled `Ġ`)
/// and checks that `a`, `b` and `ab` are tokens, so a bad file is reported with the merge's index.
fn parse_merges(merges: &[&str], vocab: &Vocab, path: &Path) -> Result<Vec<(String, String)>> {
    let bad = |index: usize, merge: &str, problem: String| TokenizerError::BadMerge {
        path: path.to_owned(),
        index,
        merge: merge.to_owned(),
        problem,
    };
    let mut out = Vec::with_capacity(merges.len());
    for (index, merge) in merges.iter().enumerate() {
        let Some((left, right)) = merge.split_once(' ') else {
            return Err(bad(index, merge, "expected two tokens separated by one space".into()));
        };
        if left.is_empty() || right.is_empty() {
            return Err(bad(index, merge, "expected two tokens separated by one space".into()));
        }
        for part in [left, right] {
            if !vocab.contains_key(part) {
                return Err(bad(index, merge, format!("{part:?} is not in {KEY_TOKENS}")));
            }
        }
        let merged = format!("{left}{right}");
        if !vocab.contains_key(&merged) {
            return Err(bad(index, merge, format!("the merged token {merged:?} is not in {KEY_TOKENS}")));
        }
        out.push((left.to_owned(), right.to_owned()));
    }
    Ok(out)
}

/// A post-processor that prepends BOS, so that a tokenizer.json exported from this tokenizer makes
/// transformers add BOS exactly when `add_bos` is set. Built from JSON because the template-string parser
/// of `tokenizers` would misread token texts holding spaces or colons.
pub(crate) fn bos_post_processor(bos_text: &str, bos_id: u32, path: &Path) -> Result<PostProcessorWrapper> {
    let value = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": bos_text, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}
        ],
        "pair": [
            {"SpecialToken": {"id": bos_text, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos_text, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}}
        ],
        "special_tokens": {bos_text: {"id": bos_text, "ids": [bos_id], "tokens": [bos_text]}}
    });
    serde_json::from_value(value)
        .map_err(|e| TokenizerError::Build { path: path.to_owned(), reason: format!("BOS post-processor: {e}") })
}

/// Typed access to optional metadata keys, with errors naming the file and key.
struct Meta<'a> {
    file: &'a GgufFile,
    path: &'a Path,
}

impl<'a> Meta<'a> {
    fn missing(&self, key: &str) -> TokenizerError {
        TokenizerError::MissingKey { path: self.path.to_owned(), key: key.to_owned() }
    }

    fn bad(&self, key: &str, problem: impl Into<String>) -> TokenizerError {
        TokenizerError::meta(self.path, key, problem)
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &MetaValue) -> TokenizerError {
        self.bad(key, format!("expected {expected}, found {}", found.type_name()))
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.wrong_type(key, "string", v)),
        }
    }

    fn u64(&self, key: &str) -> Result<Option<u64>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.wrong_type(key, "non-negative integer", v)),
        }
    }

    /// A token id, kept with its key so that a range error can name it.
    fn id(&self, key: &str) -> Result<Option<DeclaredId>> {
        Ok(self.u64(key)?.map(|id| DeclaredId { path: self.path.to_owned(), key: key.to_owned(), id }))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.wrong_type(key, "bool", v)),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [MetaValue]>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| self.wrong_type(key, "array", v)),
        }
    }

    fn str_array(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let strings = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().ok_or_else(|| self.bad(key, format!("element {i} is {}, not a string", v.type_name())))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(strings))
    }

    fn int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let ints = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64().ok_or_else(|| self.bad(key, format!("element {i} is {}, not an integer", v.type_name())))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ints))
    }
}
