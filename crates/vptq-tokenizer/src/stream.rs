//! Incremental decoding of generated ids into text.
//!
//! A byte-level token can hold part of a UTF-8 character (an emoji is often two or more tokens), and
//! some decoders change a token's text depending on its neighbours (a leading space is dropped at the
//! start of a text). So text is produced by decoding a short window of recent ids and emitting only what
//! extends the previously emitted text, and only once it no longer ends in an incomplete character.
//!
//! Allowed dependencies: this crate's [`Tokenizer`].

use crate::tokenizer::Tokenizer;

/// What a decoder writes for bytes that are not (yet) valid UTF-8.
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// Turns ids pushed one at a time into text pieces whose concatenation equals `decode` of all the ids.
///
/// Every returned piece is valid UTF-8 ending on a complete character; bytes of an unfinished character are
/// held back until a later id completes it (or [`StreamDecoder::flush`] gives up on it).
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    skip_special: bool,
    /// Recent ids: `ids[..n_context]` produced `context_text` (already emitted, kept so the decoder sees
    /// the neighbours of new ids), the rest are not emitted yet.
    ids: Vec<u32>,
    n_context: usize,
    context_text: String,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder with nothing pushed yet. With `skip_special`, special tokens produce no text.
    pub fn new(tokenizer: &'t Tokenizer, skip_special: bool) -> Self {
        StreamDecoder { tokenizer, skip_special, ids: Vec::new(), n_context: 0, context_text: String::new() }
    }

    /// Adds one generated id; returns the text it completes, if any. Ids outside the vocabulary produce no
    /// text (as in `decode` of the underlying library).
    ///
    /// A text that legitimately ends in U+FFFD is held back until the next id or `flush`.
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.ids.push(id);
        // Decoding cannot fail for the byte-level/metaspace decoders used here; if it ever does, this id
        // simply stays pending and its text comes with a later push or flush.
        let text = self.tokenizer.decode_unchecked(&self.ids, self.skip_special).ok()?;
        if text.ends_with(REPLACEMENT) {
            return None;
        }
        let fresh = new_suffix(&self.context_text, &text);
        // The ids just emitted become the context for the next ones; older context is no longer needed.
        self.ids.drain(..self.n_context);
        self.n_context = self.ids.len();
        self.context_text = self.tokenizer.decode_unchecked(&self.ids, self.skip_special).unwrap_or_default();
        (!fresh.is_empty()).then_some(fresh)
    }

    /// Emits whatever is still held back (an unfinished character comes out as U+FFFD) and resets the state.
    pub fn flush(&mut self) -> Option<String> {
        let text = self.tokenizer.decode_unchecked(&self.ids, self.skip_special).unwrap_or_default();
        let fresh = new_suffix(&self.context_text, &text);
        self.ids.clear();
        self.n_context = 0;
        self.context_text.clear();
        (!fresh.is_empty()).then_some(fresh)
    }
}

/// The part of `text` after `emitted`. When `text` does not start with `emitted` (a decoder that rewrote
/// earlier text), the part after their longest common prefix.
fn new_suffix(emitted: &str, text: &str) -> String {
    if let Some(rest) = text.strip_prefix(emitted) {
        return rest.to_owned();
    }
    let common: usize = emitted.chars().zip(text.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
    text[common..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::new_suffix;

    #[test]
    fn suffix_after_common_prefix() {
        assert_eq!(new_suffix("ab", "abc"), "c");
        assert_eq!(new_suffix("", "é"), "é");
        assert_eq!(new_suffix("aé", "aè!"), "è!");
    }
}
