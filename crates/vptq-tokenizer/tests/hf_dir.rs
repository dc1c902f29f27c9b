//! Loading Hugging Face tokenizer folders: the accepted shapes of tokenizer_config.json and
//! generation_config.json, and malformed files reported as errors.

use std::path::Path;

use serde_json::json;
use vptq_tokenizer::{Tokenizer, TokenizerError};

/// A tiny word-level tokenizer.json: enough to test the config handling around it.
fn tokenizer_json() -> serde_json::Value {
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "<|eot_id|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "<|eot_id|>": 2, "hello": 3, "world": 4, "<unk>": 5}, "unk_token": "<unk>"}
    })
}

fn write(dir: &Path, name: &str, value: &serde_json::Value) {
    std::fs::write(dir.join(name), value.to_string()).expect("write");
}

fn folder(config: Option<serde_json::Value>, generation: Option<serde_json::Value>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "tokenizer.json", &tokenizer_json());
    if let Some(config) = config {
        write(dir.path(), "tokenizer_config.json", &config);
    }
    if let Some(generation) = generation {
        write(dir.path(), "generation_config.json", &generation);
    }
    dir
}

#[test]
fn tokenizer_json_alone_is_enough() {
    let dir = folder(None, None);
    let tok = Tokenizer::from_hf_dir(dir.path()).expect("load");
    assert_eq!(tok.vocab_size(), 6);
    assert_eq!(tok.bos_id(), None);
    // No declared eos, but <|eot_id|> is an eos-like special token.
    assert_eq!(tok.eos_ids(), [2]);
    assert!(!tok.add_bos());
    assert_eq!(tok.encode("hello<s>world", true).expect("encode"), [3, 0, 4]);
    assert_eq!(tok.chat_template(), None);
}

#[test]
fn config_tokens_as_strings_or_objects_and_generation_eos_list() {
    let config = json!({
        "bos_token": {"content": "<s>", "lstrip": false},
        "eos_token": "</s>",
        "add_bos_token": true,
        "model_max_length": 1.0e30,
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ messages[0].content }}"}
        ]
    });
    let dir = folder(Some(config), Some(json!({"bos_token_id": 0, "eos_token_id": [1, 2, 4]})));
    let tok = Tokenizer::from_hf_dir(dir.path()).expect("load");
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.eos_ids(), [1, 2, 4]);
    assert!(tok.add_bos());
    assert_eq!(tok.encode("hello world", true).expect("encode"), [0, 3, 4]);
    assert_eq!(tok.encode("hello world", false).expect("encode"), [3, 4]);
    assert_eq!(tok.chat_template(), Some("{{ messages[0].content }}"));
    assert_eq!(tok.model_max_length(), None, "1e30 means no limit");
    let config = tok.tokenizer_config_json();
    assert_eq!(config["bos_token"], "<s>");
    assert_eq!(config["eos_token"], "</s>");
    assert_eq!(tok.generation_config_json(), json!({"bos_token_id": 0, "eos_token_id": [1, 2, 4]}));
}

#[test]
fn generation_eos_integer_and_chat_template_file() {
    let dir = folder(Some(json!({"eos_token": "</s>"})), Some(json!({"eos_token_id": 4})));
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ 'T' }}").expect("write");
    let tok = Tokenizer::from_hf_dir(dir.path()).expect("load");
    assert_eq!(tok.eos_ids(), [1, 4, 2]);
    assert_eq!(tok.chat_template(), Some("{{ 'T' }}"));
}

fn assert_fails(dir: &Path, fragments: &[&str]) -> TokenizerError {
    let err = Tokenizer::from_hf_dir(dir).expect_err("must fail");
    let message = err.to_string();
    for fragment in fragments {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
    err
}

#[test]
fn malformed_files_are_reported() {
    let empty = tempfile::tempdir().expect("tempdir");
    let err = assert_fails(empty.path(), &["tokenizer.json"]);
    assert!(matches!(err, TokenizerError::Io { .. }));

    let dir = folder(None, None);
    std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 17").expect("write");
    let err = assert_fails(dir.path(), &["tokenizer.json", "not a valid tokenizer.json"]);
    assert!(matches!(err, TokenizerError::Json { .. }));

    std::fs::write(dir.path().join("tokenizer.json"), "{\"version\": \"1.0\", \"model\": {\"type\": \"Nope\"}}")
        .expect("write");
    assert_fails(dir.path(), &["not a valid tokenizer.json"]);

    let dir = folder(None, None);
    std::fs::write(dir.path().join("tokenizer_config.json"), "[1, 2").expect("write");
    assert_fails(dir.path(), &["tokenizer_config.json", "invalid JSON"]);

    let dir = folder(Some(json!({"eos_token": "<nope>"})), None);
    let err = assert_fails(dir.path(), &["eos_token", "<nope>", "not a token"]);
    assert!(matches!(err, TokenizerError::UnknownToken { .. }));

    let dir = folder(Some(json!({"bos_token": 5})), None);
    assert_fails(dir.path(), &["bos_token", "expected a string or object"]);

    let dir = folder(Some(json!({"add_bos_token": "yes"})), None);
    assert_fails(dir.path(), &["add_bos_token", "expected a bool"]);

    let dir = folder(Some(json!({"chat_template": [{"name": "default"}]})), None);
    assert_fails(dir.path(), &["chat_template", "name", "template"]);

    let dir = folder(None, Some(json!({"eos_token_id": 99})));
    let err = assert_fails(dir.path(), &["generation_config.json", "eos_token_id", "99", "6 tokens"]);
    assert!(matches!(err, TokenizerError::TokenIdOutOfRange { .. }));

    let dir = folder(None, Some(json!({"eos_token_id": [1, -3]})));
    assert_fails(dir.path(), &["eos_token_id", "non-negative integer"]);
}
