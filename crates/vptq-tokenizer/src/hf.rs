//! Hugging Face tokenizer folders: loading (`tokenizer.json` + optional `tokenizer_config.json`,
//! `generation_config.json`, `chat_template.jinja`) and exporting (`tokenizer.json`, `tokenizer_config.json`)
//! in the form transformers' `AutoTokenizer.from_pretrained` loads.
//!
//! Allowed dependencies: `tokenizers`, `serde_json`, this crate's modules. Only the keys listed on
//! [`Tokenizer::from_hf_dir`] are read; everything else in the JSON files is ignored.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{Result, TokenizerError};
use crate::tokenizer::{DeclaredId, Parts, Tokenizer};

/// File names inside a model folder.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// See [`TOKENIZER_JSON`].
pub const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";
/// See [`TOKENIZER_JSON`].
pub const GENERATION_CONFIG_JSON: &str = "generation_config.json";
/// Newer transformers versions store the chat template in its own file.
pub const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";

impl Tokenizer {
    /// Loads a tokenizer from a Hugging Face model folder.
    ///
    /// Reads `tokenizer.json` (required), and when present: from `tokenizer_config.json` the keys
    /// `chat_template` (a string, or a list of `{name, template}` from which `"default"` is taken, else the
    /// first), `bos_token`/`eos_token`/`unk_token`/`pad_token` (a string or `{"content": ...}`),
    /// `add_bos_token`, `model_max_length`; from `generation_config.json` `bos_token_id` and `eos_token_id`
    /// (an integer or a list, added to the EOS set); `chat_template.jinja` when the config has no template.
    /// Without `add_bos_token`, BOS is added when the tokenizer.json post-processor adds it.
    ///
    /// # Errors
    /// [`TokenizerError::Io`] if tokenizer.json cannot be read, [`TokenizerError::Json`] for malformed files
    /// or values of the wrong type, [`TokenizerError::UnknownToken`] for a bos/eos text not in the vocabulary,
    /// [`TokenizerError::TokenIdOutOfRange`] for ids outside it.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        let tokenizer_path = dir.join(TOKENIZER_JSON);
        let bytes = std::fs::read(&tokenizer_path).map_err(|e| TokenizerError::io(&tokenizer_path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| TokenizerError::json(&tokenizer_path, format!("not a valid tokenizer.json: {e}")))?;
        // Ids are dense in practice, but max id + 1 is what an embedding must cover either way. (A model may
        // have more embedding rows than this: Qwen2.5 pads 151,665 tokens to 151,936 rows.)
        let vocab_size = inner.get_vocab(true).values().copied().max().map_or(0, |max| max as usize + 1);

        let config_path = dir.join(TOKENIZER_CONFIG_JSON);
        let config = read_optional_json(&config_path)?.unwrap_or_default();
        let token_id = |key: &str| -> Result<Option<DeclaredId>> {
            let Some(text) = special_token_text(&config, key, &config_path)? else {
                return Ok(None);
            };
            match inner.token_to_id(&text) {
                Some(id) => Ok(Some(DeclaredId { path: config_path.clone(), key: key.to_owned(), id: u64::from(id) })),
                None => {
                    Err(TokenizerError::UnknownToken { path: config_path.clone(), key: key.to_owned(), token: text })
                }
            }
        };
        let mut bos = token_id("bos_token")?;
        let mut eos: Vec<DeclaredId> = token_id("eos_token")?.into_iter().collect();
        // unk/pad are informational here; a config naming one the vocabulary lacks should not block loading.
        let unk = token_id("unk_token").ok().flatten();
        let pad = token_id("pad_token").ok().flatten();

        let generation_path = dir.join(GENERATION_CONFIG_JSON);
        if let Some(generation) = read_optional_json(&generation_path)? {
            if bos.is_none() {
                bos = ids_of(&generation, "bos_token_id", &generation_path)?.into_iter().next();
            }
            eos.extend(ids_of(&generation, "eos_token_id", &generation_path)?);
        }

        let add_bos = match config.get("add_bos_token") {
            None | Some(Value::Null) => post_processor_adds_bos(&inner, bos.as_ref()),
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(TokenizerError::json(
                    &config_path,
                    format!("add_bos_token: expected a bool, found {other}"),
                ))
            }
        };
        let chat_template = match chat_template_of(&config, &config_path)? {
            Some(template) => Some(template),
            None => read_optional_text(&dir.join(CHAT_TEMPLATE_JINJA))?,
        };
        // transformers writes a huge float (1e30) for "no limit"; only integers are kept.
        let model_max_length = config.get("model_max_length").and_then(Value::as_u64);

        let parts = Parts { inner, vocab_size, bos, eos, unk, pad, add_bos, chat_template, model_max_length };
        Tokenizer::assemble(parts)
    }

    /// The tokenizer as a `tokenizer.json` document (vocabulary, merges, added tokens, pre-tokenizer,
    /// decoder, and a BOS post-processor when BOS is added).
    ///
    /// # Errors
    /// [`TokenizerError::Export`] if serialization fails.
    pub fn to_tokenizer_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| TokenizerError::Export { reason: e.to_string() })
    }

    /// A `tokenizer_config.json` document describing the special tokens, BOS policy and chat template, for
    /// transformers' generic fast tokenizer (`PreTrainedTokenizerFast`).
    pub fn tokenizer_config_json(&self) -> Value {
        let text = |id: Option<u32>| id.and_then(|id| self.id_to_token(id)).map_or(Value::Null, Value::String);
        let mut config = Map::new();
        config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        config.insert("bos_token".into(), text(self.bos_id));
        config.insert("eos_token".into(), text(self.eos_id()));
        config.insert("unk_token".into(), text(self.unk_id));
        config.insert("pad_token".into(), text(self.pad_id));
        config.insert("add_bos_token".into(), json!(self.add_bos));
        config.insert("add_eos_token".into(), json!(false));
        // transformers would otherwise delete spaces before punctuation when decoding.
        config.insert("clean_up_tokenization_spaces".into(), json!(false));
        if let Some(max) = self.model_max_length {
            config.insert("model_max_length".into(), json!(max));
        }
        if let Some(template) = &self.chat_template {
            config.insert("chat_template".into(), json!(template));
        }
        Value::Object(config)
    }

    /// A minimal `generation_config.json` fragment with `bos_token_id` and the full `eos_token_id` list, for a
    /// model writer to merge into its own generation config.
    pub fn generation_config_json(&self) -> Value {
        json!({ "bos_token_id": self.bos_id, "eos_token_id": self.eos_ids })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (which must exist).
    ///
    /// # Errors
    /// [`TokenizerError::Export`] or [`TokenizerError::Io`].
    pub fn save_hf_files(&self, dir: &Path) -> Result<()> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| TokenizerError::io(path, e))
        };
        write(TOKENIZER_JSON, self.to_tokenizer_json()?)?;
        let config = serde_json::to_string_pretty(&self.tokenizer_config_json())
            .map_err(|e| TokenizerError::Export { reason: e.to_string() })?;
        write(TOKENIZER_CONFIG_JSON, config)
    }
}

/// Whether encoding with special tokens through the tokenizer.json post-processor puts BOS first.
fn post_processor_adds_bos(inner: &tokenizers::Tokenizer, bos: Option<&DeclaredId>) -> bool {
    let Some(DeclaredId { id: bos_id, .. }) = bos else {
        return false;
    };
    inner.encode("", true).is_ok_and(|encoding| encoding.get_ids().first().is_some_and(|&id| u64::from(id) == *bos_id))
}

/// The text of a special token given as `"<s>"` or `{"content": "<s>", ...}`; `None` if absent or null.
fn special_token_text(config: &Map<String, Value>, key: &str, path: &Path) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(TokenizerError::json(path, format!("{key}: object without a string `content`"))),
        },
        Some(other) => Err(TokenizerError::json(path, format!("{key}: expected a string or object, found {other}"))),
    }
}

/// Token ids under `key`: an integer, a list of integers, or absent/null.
fn ids_of(doc: &Map<String, Value>, key: &str, path: &Path) -> Result<Vec<DeclaredId>> {
    let bad = || TokenizerError::json(path, format!("{key}: expected a non-negative integer or a list of them"));
    let declared = |v: &Value| {
        let id = v.as_u64().ok_or_else(bad)?;
        Ok(DeclaredId { path: path.to_owned(), key: key.to_owned(), id })
    };
    match doc.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(declared).collect(),
        Some(v) => Ok(vec![declared(v)?]),
    }
}

/// `chat_template` as a string, or picked from a list of `{name, template}` ("default", else the first).
fn chat_template_of(config: &Map<String, Value>, path: &Path) -> Result<Option<String>> {
    let bad = |what: &str| TokenizerError::json(path, format!("chat_template: {what}"));
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(entries)) => {
            let mut named = Vec::with_capacity(entries.len());
            for entry in entries {
                let name = entry.get("name").and_then(Value::as_str);
                let template = entry.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(name), Some(template)) => named.push((name, template)),
                    _ => return Err(bad("list entries must be objects with string `name` and `template`")),
                }
            }
            let chosen = named.iter().find(|(name, _)| *name == "default").or(named.first());
            Ok(chosen.map(|(_, template)| (*template).to_owned()))
        }
        Some(other) => Err(bad(&format!("expected a string or a list, found {other}"))),
    }
}

/// A JSON object file, or `None` if the file does not exist.
fn read_optional_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    let Some(text) = read_optional_text(path)? else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(TokenizerError::json(path, "expected a JSON object")),
        Err(e) => Err(TokenizerError::json(path, format!("invalid JSON: {e}"))),
    }
}

/// A UTF-8 text file, or `None` if it does not exist.
fn read_optional_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TokenizerError::io(PathBuf::from(path), e)),
    }
}
