//! The [`Tokenizer`]: a `tokenizers` tokenizer plus what a generator needs around it (BOS/EOS ids, whether to
//! add BOS, special tokens, chat template), however it was loaded (GGUF metadata or a Hugging Face folder).
//!
//! Allowed dependencies: `tokenizers`, `serde_json`, this crate's modules. Loading lives in `gguf.rs` and
//! `hf.rs`; this file only holds the assembled tokenizer and its operations.

use std::path::PathBuf;

use crate::chat::{ChatMessage, ChatTemplate, TemplateExtras};
use crate::error::{Result, TokenizerError};
use crate::stream::StreamDecoder;

/// Texts of special tokens that end a turn or a document in common chat models (a subset of llama.cpp's
/// end-of-generation list). A special token with one of these texts counts as end-of-sequence in addition to
/// the declared `eos` (see [`Tokenizer::eos_ids`]). Non-special tokens with these texts do not.
pub const EOS_LIKE_TOKENS: &[&str] =
    &["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>"];

/// A special (control) token: matched whole in input text and dropped by `decode(.., skip_special = true)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    /// Token id.
    pub id: u32,
    /// Token text, e.g. `<|im_start|>`.
    pub content: String,
}

/// A loaded tokenizer.
///
/// Built by [`Tokenizer::from_gguf`] or [`Tokenizer::from_hf_dir`]; exported with
/// [`Tokenizer::to_tokenizer_json`] and [`Tokenizer::tokenizer_config_json`].
#[derive(Debug, Clone)]
pub struct Tokenizer {
    pub(crate) inner: tokenizers::Tokenizer,
    pub(crate) bos_id: Option<u32>,
    pub(crate) eos_ids: Vec<u32>,
    pub(crate) unk_id: Option<u32>,
    pub(crate) pad_id: Option<u32>,
    pub(crate) add_bos: bool,
    pub(crate) chat_template: Option<String>,
    pub(crate) special_tokens: Vec<SpecialToken>,
    pub(crate) vocab_size: usize,
    pub(crate) model_max_length: Option<u64>,
}

/// A special-token id as a file declares it, with where it came from so that a range error can say so.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredId {
    pub path: PathBuf,
    pub key: String,
    pub id: u64,
}

/// What a loader found, before [`Tokenizer::assemble`] validates it and derives the rest.
pub(crate) struct Parts {
    pub inner: tokenizers::Tokenizer,
    /// Number of token ids (the model's embedding rows).
    pub vocab_size: usize,
    pub bos: Option<DeclaredId>,
    pub eos: Vec<DeclaredId>,
    pub unk: Option<DeclaredId>,
    pub pad: Option<DeclaredId>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
    pub model_max_length: Option<u64>,
}

impl Tokenizer {
    /// Validates ids against the vocabulary and derives the EOS set and special-token list.
    pub(crate) fn assemble(parts: Parts) -> Result<Self> {
        let vocab_size = parts.vocab_size;
        let check = |DeclaredId { path, key, id }: DeclaredId| -> Result<u32> {
            match u32::try_from(id) {
                Ok(small) if (small as usize) < vocab_size => Ok(small),
                _ => Err(TokenizerError::TokenIdOutOfRange { path, key, id, vocab_size }),
            }
        };
        let bos_id = parts.bos.map(check).transpose()?;
        let unk_id = parts.unk.map(check).transpose()?;
        let pad_id = parts.pad.map(check).transpose()?;
        let mut eos_ids = Vec::new();
        for declared in parts.eos {
            let id = check(declared)?;
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }

        let mut special_tokens: Vec<SpecialToken> = parts
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| SpecialToken { id, content: token.content })
            .collect();
        special_tokens.sort_by_key(|t| t.id);
        // Chat models end a turn with a token other than the declared eos often enough (SmolLM2 base text
        // ends in <|endoftext|>, Llama 3 turns in <|eot_id|>) that stopping only on `eos` runs on forever.
        for token in &special_tokens {
            if EOS_LIKE_TOKENS.contains(&token.content.as_str()) && !eos_ids.contains(&token.id) {
                eos_ids.push(token.id);
            }
        }

        Ok(Tokenizer {
            inner: parts.inner,
            bos_id,
            eos_ids,
            unk_id,
            pad_id,
            add_bos: parts.add_bos,
            chat_template: parts.chat_template,
            special_tokens,
            vocab_size,
            model_max_length: parts.model_max_length,
        })
    }

    /// Number of token ids (rows of the model's embedding), including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Beginning-of-sequence id, if the tokenizer declares one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence ids: the declared eos first (GGUF `tokenizer.ggml.eos_token_id`, or tokenizer_config
    /// `eos_token`), then other declared ones (GGUF `eot`/`eom` ids, generation_config `eos_token_id`), then
    /// every special token whose text is in [`EOS_LIKE_TOKENS`]. Generation stops on any of them.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The primary end-of-sequence id (first of [`Tokenizer::eos_ids`]).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_ids.first().copied()
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// Unknown-token id, if declared.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Padding id, if declared.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Whether [`Tokenizer::encode`] with `add_special = true` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The model's chat template source (Jinja), if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Special tokens, by increasing id.
    pub fn special_tokens(&self) -> &[SpecialToken] {
        &self.special_tokens
    }

    /// Maximum sequence length the model was trained for, if known (GGUF `<arch>.context_length`).
    pub fn model_max_length(&self) -> Option<u64> {
        self.model_max_length
    }

    /// The wrapped `tokenizers` tokenizer, for features this type does not expose.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`. Special-token texts in `text` (e.g. `<|im_start|>`) become their ids.
    /// With `add_special`, BOS is prepended when [`Tokenizer::add_bos`] is set; nothing else is added.
    ///
    /// # Errors
    /// [`TokenizerError::Encode`] if the underlying tokenizer fails (it does not for byte-level BPE).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        // The inner post-processor is bypassed (add_special_tokens = false) so that BOS follows `add_bos`
        // alone, whatever post-processor a tokenizer.json came with.
        let encoding = self.inner.encode(text, false).map_err(|e| TokenizerError::Encode { reason: e.to_string() })?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if add_special && self.add_bos {
            ids.extend(self.bos_id);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Text of `ids`. With `skip_special`, special tokens are left out.
    ///
    /// # Errors
    /// [`TokenizerError::Decode`] if an id is not below [`Tokenizer::vocab_size`].
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(TokenizerError::Decode {
                reason: format!("token id {bad} is not in the vocabulary ({} tokens)", self.vocab_size),
            });
        }
        self.decode_unchecked(ids, skip_special)
    }

    /// Decode without the id check; unknown ids yield no text (the library's behaviour).
    pub(crate) fn decode_unchecked(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| TokenizerError::Decode { reason: e.to_string() })
    }

    /// A decoder that turns ids generated one at a time into text as soon as it is complete UTF-8.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special)
    }

    /// The token text of `id` in the vocabulary's own spelling (byte-level: a space is `Ġ`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token given in the vocabulary's own spelling, or of a special token's text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Text of the BOS token (for chat templates), if any.
    pub fn bos_token(&self) -> Option<String> {
        self.bos_id.and_then(|id| self.id_to_token(id))
    }

    /// Text of the primary EOS token (for chat templates), if any.
    pub fn eos_token(&self) -> Option<String> {
        self.eos_id().and_then(|id| self.id_to_token(id))
    }

    /// The model's chat template compiled, or the ChatML fallback when it has none.
    ///
    /// # Errors
    /// [`TokenizerError::TemplateSyntax`] if the model's template does not compile.
    pub fn compiled_chat_template(&self) -> Result<ChatTemplate> {
        match &self.chat_template {
            Some(source) => ChatTemplate::new(source),
            None => Ok(ChatTemplate::chatml()),
        }
    }

    /// Renders `messages` with the model's chat template (ChatML when it has none), passing the tokenizer's
    /// BOS/EOS texts to the template.
    ///
    /// # Errors
    /// Template syntax or rendering errors.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let extras = TemplateExtras { bos_token: self.bos_token(), eos_token: self.eos_token() };
        self.compiled_chat_template()?.render(messages, add_generation_prompt, &extras)
    }
}
