//! Tokenizers built from small GGUF files written in memory with `GgufWriter`: exact encodings of a tiny
//! byte-level vocabulary, the HF export of it, and every malformed-metadata case reported as an error.

use std::path::PathBuf;
use std::time::Instant;

use vptq_format::gguf::{GgufFile, GgufWriter, MetaValue};
use vptq_tokenizer::{Tokenizer, TokenizerError};

/// GPT-2's byte → printable-char table: printable Latin-1 bytes stand for themselves, the others are
/// moved to U+0100 onwards in byte order (so a space is 'Ġ', a newline 'Ċ').
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + rank).expect("valid char")
}

fn strings(items: &[&str]) -> MetaValue {
    MetaValue::Array(items.iter().map(|s| MetaValue::String((*s).to_owned())).collect())
}

const ID_BOS: u32 = 263;
const ID_ENDOFTEXT: u32 = 264;
const ID_EOS: u32 = 265;
const ID_THINK: u32 = 266;

/// Metadata of the tiny tokenizer: ids 0..=255 are the bytes, 256..=262 the merges below, then
/// `<|s|>` (bos, control), `<|endoftext|>` (control), `<|e|>` (eos, control), `<think>` (user-defined).
fn tiny_meta() -> Vec<(String, MetaValue)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    tokens.extend(["<|s|>", "<|endoftext|>", "<|e|>", "<think>"].map(String::from));
    let mut types = vec![1; tokens.len()];
    types[ID_BOS as usize] = 3;
    types[ID_ENDOFTEXT as usize] = 3;
    types[ID_EOS as usize] = 3;
    types[ID_THINK as usize] = 4;
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    vec![
        ("general.architecture".into(), MetaValue::String("llama".into())),
        ("llama.context_length".into(), MetaValue::U32(512)),
        ("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::String("default".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(types.into_iter().map(MetaValue::I32).collect())),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(ID_BOS)),
        ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(ID_EOS)),
        ("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            MetaValue::String(
                "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}".into(),
            ),
        ),
    ]
}

fn gguf(meta: Vec<(String, MetaValue)>) -> GgufFile {
    let mut writer = GgufWriter::new();
    for (key, value) in meta {
        writer.add_meta(key, value);
    }
    GgufFile::from_bytes(PathBuf::from("tiny.gguf"), writer.to_bytes()).expect("valid GGUF")
}

/// The tiny metadata with `key` set to `value` (`None` removes it).
fn tiny_with(key: &str, value: Option<MetaValue>) -> GgufFile {
    let mut meta = tiny_meta();
    meta.retain(|(k, _)| k != key);
    meta.extend(value.map(|v| (key.to_owned(), v)));
    gguf(meta)
}

#[test]
fn tiny_vocabulary_encodes_exactly() {
    let tok = Tokenizer::from_gguf(&gguf(tiny_meta())).expect("build");
    assert_eq!(tok.vocab_size(), 267);
    // "hello" merges all the way; " world" becomes "Ġwor" + "l" + "d"; <|e|> is matched whole.
    let ids = tok.encode("hello world<|e|>", true).expect("encode");
    assert_eq!(ids, [259, 262, u32::from(b'l'), u32::from(b'd'), ID_EOS]);
    assert_eq!(tok.decode(&ids, false).expect("decode"), "hello world<|e|>");
    assert_eq!(tok.decode(&ids, true).expect("decode"), "hello world");
    // Two bytes of UTF-8, no merges: one token per byte.
    assert_eq!(tok.encode("é", false).expect("encode"), [0xC3, 0xA9]);
    // User-defined tokens are matched whole but are not special: decoded even with skip_special.
    let ids = tok.encode("<think>hi", false).expect("encode");
    assert_eq!(ids, [ID_THINK, u32::from(b'h'), u32::from(b'i')]);
    assert_eq!(tok.decode(&ids, true).expect("decode"), "<think>hi");
    let special: Vec<u32> = tok.special_tokens().iter().map(|t| t.id).collect();
    assert_eq!(special, [ID_BOS, ID_ENDOFTEXT, ID_EOS]);
    // Declared eos first, then <|endoftext|> by the eos-like rule.
    assert_eq!(tok.eos_ids(), [ID_EOS, ID_ENDOFTEXT]);
    assert_eq!(tok.model_max_length(), Some(512));
    let text = tok.apply_chat_template(&[vptq_tokenizer::ChatMessage::user("yo")], false).expect("render");
    assert_eq!(text, "<|s|>yo<|e|>");
}

#[test]
fn add_bos_prepends_bos_and_survives_export() {
    let tok =
        Tokenizer::from_gguf(&tiny_with("tokenizer.ggml.add_bos_token", Some(MetaValue::Bool(true)))).expect("build");
    assert_eq!(tok.encode("hello", true).expect("encode"), [ID_BOS, 259]);
    assert_eq!(tok.encode("hello", false).expect("encode"), [259]);

    let dir = tempfile::tempdir().expect("tempdir");
    tok.save_hf_files(dir.path()).expect("save");
    let back = Tokenizer::from_hf_dir(dir.path()).expect("reload");
    assert!(back.add_bos());
    assert_eq!(back.encode("hello", true).expect("encode"), [ID_BOS, 259]);
    assert_eq!(back.eos_ids(), tok.eos_ids());

    // Without add_bos_token in the config, the tokenizer.json post-processor tells.
    let config_path = dir.path().join("tokenizer_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).expect("read")).expect("json");
    config.as_object_mut().expect("object").remove("add_bos_token");
    std::fs::write(&config_path, config.to_string()).expect("write");
    let inferred = Tokenizer::from_hf_dir(dir.path()).expect("reload");
    assert!(inferred.add_bos());
    assert_eq!(inferred.encode("hello", true).expect("encode"), [ID_BOS, 259]);
}

/// Asserts that building fails and the message mentions every fragment.
fn assert_fails(file: GgufFile, fragments: &[&str]) -> TokenizerError {
    let err = Tokenizer::from_gguf(&file).expect_err("must fail");
    let message = err.to_string();
    for fragment in fragments {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
    err
}

#[test]
fn missing_or_ill_typed_keys_are_reported() {
    let err =
        assert_fails(tiny_with("tokenizer.ggml.tokens", None), &["tiny.gguf", "tokenizer.ggml.tokens", "missing"]);
    assert!(matches!(err, TokenizerError::MissingKey { .. }));
    assert_fails(tiny_with("tokenizer.ggml.model", None), &["tokenizer.ggml.model", "missing"]);
    assert_fails(tiny_with("tokenizer.ggml.merges", None), &["tokenizer.ggml.merges", "missing"]);
    let ints = MetaValue::Array(vec![MetaValue::U32(1), MetaValue::U32(2)]);
    assert_fails(
        tiny_with("tokenizer.ggml.tokens", Some(ints)),
        &["tokenizer.ggml.tokens", "element 0", "not a string"],
    );
    assert_fails(tiny_with("tokenizer.ggml.tokens", Some(strings(&[]))), &["tokenizer.ggml.tokens", "0 tokens"]);
    let short = MetaValue::Array(vec![MetaValue::I32(1)]);
    assert_fails(tiny_with("tokenizer.ggml.token_type", Some(short)), &["token_type", "1 entries for 267 tokens"]);
    assert_fails(
        tiny_with("tokenizer.ggml.add_bos_token", Some(MetaValue::U8(1))),
        &["add_bos_token", "expected bool"],
    );
}

#[test]
fn malformed_merges_are_reported_with_their_index() {
    let err = assert_fails(
        tiny_with("tokenizer.ggml.merges", Some(strings(&["h e", "hello"]))),
        &["merges[1]", "hello", "two tokens"],
    );
    assert!(matches!(err, TokenizerError::BadMerge { index: 1, .. }));
    assert_fails(tiny_with("tokenizer.ggml.merges", Some(strings(&["h "]))), &["merges[0]", "two tokens"]);
    assert_fails(tiny_with("tokenizer.ggml.merges", Some(strings(&["h zzz"]))), &["merges[0]", "\"zzz\" is not in"]);
    assert_fails(tiny_with("tokenizer.ggml.merges", Some(strings(&["a b"]))), &["merges[0]", "merged token", "ab"]);
}

#[test]
fn special_ids_out_of_range_are_reported() {
    let err = assert_fails(
        tiny_with("tokenizer.ggml.bos_token_id", Some(MetaValue::U32(267))),
        &["bos_token_id", "267", "267 tokens"],
    );
    assert!(matches!(err, TokenizerError::TokenIdOutOfRange { id: 267, vocab_size: 267, .. }));
    assert_fails(
        tiny_with("tokenizer.ggml.eos_token_id", Some(MetaValue::U64(1 << 40))),
        &["eos_token_id", "out of range"],
    );
    assert_fails(
        tiny_with("tokenizer.ggml.padding_token_id", Some(MetaValue::I32(-1))),
        &["padding_token_id", "non-negative"],
    );
}

#[test]
fn unknown_models_and_pre_tokenizers_are_reported() {
    let err = assert_fails(
        tiny_with("tokenizer.ggml.pre", Some(MetaValue::String("tekken".into()))),
        &["tekken", "smollm", "qwen2", "llama-bpe"],
    );
    assert!(matches!(err, TokenizerError::UnsupportedPreTokenizer { .. }));
    let err =
        assert_fails(tiny_with("tokenizer.ggml.model", Some(MetaValue::String("bert".into()))), &["bert", "gpt2"]);
    assert!(matches!(err, TokenizerError::UnsupportedModel { .. }));
}

#[test]
fn every_supported_pre_tokenizer_builds() {
    for name in vptq_tokenizer::SUPPORTED_PRE_TOKENIZERS {
        let tok = Tokenizer::from_gguf(&tiny_with("tokenizer.ggml.pre", Some(MetaValue::String((*name).into()))))
            .expect(name);
        assert_eq!(tok.encode("hello", false).expect("encode"), [259], "{name}");
    }
    // llama.cpp's default for Llama 3 vocabularies without tokenizer.ggml.add_bos_token is to add BOS.
    let mut meta = tiny_meta();
    meta.retain(|(k, _)| k != "tokenizer.ggml.add_bos_token" && k != "tokenizer.ggml.pre");
    meta.push(("tokenizer.ggml.pre".into(), MetaValue::String("llama-bpe".into())));
    let llama3 = Tokenizer::from_gguf(&gguf(meta)).expect("build");
    assert!(llama3.add_bos());
    assert_eq!(llama3.encode("hello", true).expect("encode"), [ID_BOS, 259]);

    let absent = Tokenizer::from_gguf(&tiny_with("tokenizer.ggml.pre", None)).expect("no pre key");
    assert_eq!(absent.encode("hello world", false).expect("encode"), [259, 262, 108, 100]);
}

/// A deterministic vocabulary with `n_merges` merges over the 256 byte tokens, shaped like the big real ones.
fn synthetic_large(n_merges: usize, n_special: usize) -> Vec<(String, MetaValue)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut known: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let mut merges = Vec::with_capacity(n_merges);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while merges.len() < n_merges {
        // xorshift: cheap, deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let left = &tokens[(state % tokens.len() as u64) as usize];
        let right = &tokens[((state >> 32) % 256) as usize];
        let merged = format!("{left}{right}");
        if merged.chars().count() > 12 || known.contains(&merged) {
            continue;
        }
        merges.push(format!("{left} {right}"));
        known.insert(merged.clone());
        tokens.push(merged);
    }
    let mut types = vec![1; tokens.len()];
    for i in 0..n_special {
        tokens.push(format!("<|special_{i}|>"));
        types.push(3);
    }
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let merges: Vec<&str> = merges.iter().map(String::as_str).collect();
    vec![
        ("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::String("qwen2".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(types.into_iter().map(MetaValue::I32).collect())),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
    ]
}

/// A Qwen2-sized vocabulary (151,387 merges, 22 special tokens) builds and works. The build time is printed,
/// never asserted: `cargo test -p vptq-tokenizer --test synthetic_gguf -- --nocapture` shows it.
#[test]
fn qwen2_sized_vocabulary_builds() {
    let file = gguf(synthetic_large(151_387, 22));
    let start = Instant::now();
    let tok = Tokenizer::from_gguf(&file).expect("build");
    println!("151,665 tokens / 151,387 merges: from_gguf took {:?}", start.elapsed());
    assert_eq!(tok.vocab_size(), 256 + 151_387 + 22);
    let text = "The quick brown fox 🙂 <|special_3|> 12345";
    let ids = tok.encode(text, false).expect("encode");
    assert_eq!(tok.decode(&ids, false).expect("decode"), text);
    assert!(ids.contains(&(256 + 151_387 + 3)));
}
