//! Pre-tokenizers of byte-level BPE vocabularies, selected by the GGUF key `tokenizer.ggml.pre`.
//!
//! A pre-tokenizer cuts text into words before BPE merges run inside each word; it must be the one the
//! vocabulary was trained with, or merges that should apply never see their pair. Each name below maps to the
//! pre-tokenizer of the model family's published `tokenizer.json`.
//!
//! Allowed dependencies: `tokenizers` (pre-tokenizer types), this crate's errors.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

/// Qwen2 split: like Llama 3 but every digit on its own (`\p{N}`).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3 split: numbers in groups of up to three digits (`\p{N}{1,3}`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` names accepted, for error messages.
pub const SUPPORTED_PRE_TOKENIZERS: &[&str] =
    &["default", "gpt2", "smollm", "qwen2", "deepseek-r1-qwen", "llama-bpe", "llama3", "llama-v3"];

/// A pre-tokenizer family of byte-level BPE vocabularies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2's byte-level regex, no prefix space (`default`, `gpt2`, or no `tokenizer.ggml.pre` at all).
    Gpt2,
    /// SmolLM: every digit split on its own, then GPT-2's byte-level regex, no prefix space.
    SmolLm,
    /// Qwen2 (and DeepSeek-R1 distilled into Qwen): [`QWEN2_SPLIT`] isolated, then byte-level mapping.
    Qwen2,
    /// Llama 3: [`LLAMA3_SPLIT`] isolated, then byte-level mapping.
    Llama3,
}

impl PreTokenizerKind {
    /// The kind named by `tokenizer.ggml.pre`; `None` (key absent) means GPT-2.
    ///
    /// # Errors
    /// Returns the unknown name when it is not one of [`SUPPORTED_PRE_TOKENIZERS`].
    pub fn from_gguf_name(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("default") | Some("gpt2") => Ok(Self::Gpt2),
            Some("smollm") => Ok(Self::SmolLm),
            Some("qwen2") | Some("deepseek-r1-qwen") => Ok(Self::Qwen2),
            Some("llama-bpe") | Some("llama3") | Some("llama-v3") => Ok(Self::Llama3),
            Some(other) => Err(other.to_owned()),
        }
    }

    /// The `tokenizers` pre-tokenizer for this kind.
    ///
    /// # Errors
    /// Only if the regex library rejects one of the fixed patterns above (a bug, reported as text).
    pub fn build(self) -> Result<PreTokenizerWrapper, String> {
        // GPT-2 style: ByteLevel does both the regex split and the byte→char mapping. trim_offsets only
        // affects offsets, never ids; true matches the published SmolLM/GPT-2 tokenizer.json files.
        let byte_level_regex = || ByteLevel::new(false, true, true);
        Ok(match self {
            Self::Gpt2 => byte_level_regex().into(),
            Self::SmolLm => Sequence::new(vec![Digits::new(true).into(), byte_level_regex().into()]).into(),
            Self::Qwen2 => split_then_bytes(QWEN2_SPLIT)?,
            Self::Llama3 => split_then_bytes(LLAMA3_SPLIT)?,
        })
    }
}

/// `Split(regex, Isolated)` followed by the byte-level mapping without GPT-2's regex (the split already
/// did the cutting), as in the Qwen2 and Llama 3 tokenizer.json files.
fn split_then_bytes(pattern: &str) -> Result<PreTokenizerWrapper, String> {
    let split = Split::new(SplitPattern::Regex(pattern.to_owned()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| format!("pre-tokenizer regex does not compile: {e}"))?;
    Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    /// The words a pre-tokenizer cuts `text` into, in byte-level spelling.
    fn words(kind: PreTokenizerKind, text: &str) -> Vec<String> {
        let pre = kind.build().expect("fixed patterns compile");
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).expect("pre-tokenize");
        s.get_splits(OffsetReferential::Original, OffsetType::Byte).into_iter().map(|(w, _, _)| w.to_owned()).collect()
    }

    #[test]
    fn names_map_to_kinds() {
        assert_eq!(PreTokenizerKind::from_gguf_name(None), Ok(PreTokenizerKind::Gpt2));
        assert_eq!(PreTokenizerKind::from_gguf_name(Some("smollm")), Ok(PreTokenizerKind::SmolLm));
        assert_eq!(PreTokenizerKind::from_gguf_name(Some("llama-bpe")), Ok(PreTokenizerKind::Llama3));
        assert_eq!(PreTokenizerKind::from_gguf_name(Some("bogus")), Err("bogus".to_owned()));
        for name in SUPPORTED_PRE_TOKENIZERS {
            assert!(PreTokenizerKind::from_gguf_name(Some(name)).is_ok(), "{name}");
        }
    }

    #[test]
    fn digits_are_grouped_per_family() {
        // "Ġ" is the byte-level spelling of a space.
        assert_eq!(words(PreTokenizerKind::SmolLm, "ab 1234"), ["ab", "Ġ", "1", "2", "3", "4"]);
        assert_eq!(words(PreTokenizerKind::Qwen2, "ab 1234"), ["ab", "Ġ", "1", "2", "3", "4"]);
        assert_eq!(words(PreTokenizerKind::Llama3, "ab 1234"), ["ab", "Ġ", "123", "4"]);
        assert_eq!(words(PreTokenizerKind::Gpt2, "ab 1234"), ["ab", "Ġ1234"]);
    }

    #[test]
    fn whitespace_before_newline_stays_with_it() {
        // `\s*[\r\n]+` keeps "  \n" together; `\s+(?!\S)` leaves the last space for the next word.
        assert_eq!(words(PreTokenizerKind::Qwen2, "a  \n  b"), ["a", "ĠĠĊ", "Ġ", "Ġb"]);
    }
}
