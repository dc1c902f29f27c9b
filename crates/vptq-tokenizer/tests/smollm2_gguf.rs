//! The real SmolLM2-135M-Instruct tokenizer from its GGUF: golden ids from an independent reference,
//! round trips through the Hugging Face folder form, its chat template, and streaming decode.

mod common;

use vptq_tokenizer::{ChatMessage, Tokenizer};

use common::{smollm2, GOLDEN};

#[test]
fn metadata_matches_the_model_card() {
    let Some(tok) = smollm2() else { return };
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    // Declared eos <|im_end|> first, then <|endoftext|> as an eos-like special token.
    assert_eq!(tok.eos_ids(), &[2, 0]);
    assert_eq!(tok.unk_id(), Some(0));
    assert_eq!(tok.pad_id(), Some(2));
    assert!(!tok.add_bos());
    assert_eq!(tok.model_max_length(), Some(8192));
    assert_eq!(tok.special_tokens().len(), 17);
    assert_eq!(tok.special_tokens()[1].content, "<|im_start|>");
    assert!(tok.chat_template().is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(256).as_deref(), Some("ĠĠ"));
}

#[test]
fn encodes_to_golden_ids_and_decodes_back() {
    let Some(tok) = smollm2() else { return };
    for (text, ids) in GOLDEN {
        assert_eq!(tok.encode(text, false).expect("encode"), *ids, "{text:?}");
        // add_bos is false for SmolLM2: add_special changes nothing.
        assert_eq!(tok.encode(text, true).expect("encode"), *ids, "{text:?}");
        assert_eq!(tok.decode(ids, false).expect("decode"), *text, "{text:?}");
    }
    assert_eq!(tok.encode("12345", false).expect("encode").len(), 5);
}

#[test]
fn skip_special_drops_control_tokens_only() {
    let Some(tok) = smollm2() else { return };
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", false).expect("encode");
    assert_eq!(tok.decode(&ids, true).expect("decode"), "user\nhi");
    let err = tok.decode(&[49152], false).expect_err("id out of range");
    assert!(err.to_string().contains("49152"), "{err}");
}

#[test]
fn hf_folder_round_trip_gives_identical_tokenizer() {
    let Some(tok) = smollm2() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_tokenizer_json().expect("export")).expect("write");
    let config = serde_json::to_string_pretty(&tok.tokenizer_config_json()).expect("json");
    std::fs::write(dir.path().join("tokenizer_config.json"), config).expect("write");

    let back = Tokenizer::from_hf_dir(dir.path()).expect("reload");
    for (text, ids) in GOLDEN {
        assert_eq!(back.encode(text, false).expect("encode"), *ids, "{text:?}");
        assert_eq!(back.encode(text, true).expect("encode"), *ids, "{text:?}");
        assert_eq!(back.decode(ids, false).expect("decode"), *text);
        assert_eq!(back.decode(ids, true).expect("decode"), tok.decode(ids, true).expect("decode"));
    }
    assert_eq!(back.vocab_size(), tok.vocab_size());
    assert_eq!(back.bos_id(), tok.bos_id());
    assert_eq!(back.eos_ids(), tok.eos_ids());
    assert_eq!(back.unk_id(), tok.unk_id());
    assert_eq!(back.pad_id(), tok.pad_id());
    assert_eq!(back.add_bos(), tok.add_bos());
    assert_eq!(back.chat_template(), tok.chat_template());
    assert_eq!(back.model_max_length(), tok.model_max_length());
    assert_eq!(back.special_tokens(), tok.special_tokens());

    // save_hf_files writes the same two files.
    let dir2 = tempfile::tempdir().expect("tempdir");
    tok.save_hf_files(dir2.path()).expect("save");
    let again = Tokenizer::from_hf_dir(dir2.path()).expect("reload");
    assert_eq!(again.encode(GOLDEN[1].0, false).expect("encode"), GOLDEN[1].1);
}

#[test]
fn chat_template_renders_system_and_user_with_generation_prompt() {
    let Some(tok) = smollm2() else { return };
    let messages = [ChatMessage::system("You are terse."), ChatMessage::user("What is 2+2?")];
    let text = tok.apply_chat_template(&messages, true).expect("render");
    // Read off the template: each message is <|im_start|>{role}\n{content}<|im_end|>\n; a system message
    // first suppresses the default one; the generation prompt opens an assistant turn. (transformers'
    // Jinja2 renderer gives the same string.)
    let expected = "<|im_start|>system\nYou are terse.<|im_end|>\n\
                    <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
                    <|im_start|>assistant\n";
    assert_eq!(text, expected);

    // Without a system message the template inserts its default one.
    let text = tok.apply_chat_template(&[ChatMessage::user("hi")], false).expect("render");
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nhi<|im_end|>\n"
    );
    // The rendered prompt tokenizes with the control tokens whole.
    let ids = tok.encode(expected, true).expect("encode");
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 3);
}

#[test]
fn stream_decoder_never_splits_a_character() {
    let Some(tok) = smollm2() else { return };
    let text = "Smile 🙂🙂 then 日本語 and café!<|im_end|>";
    let ids = tok.encode(text, false).expect("encode");
    // The emoji is two byte-level tokens ("ðŁ" + "ĻĤ"): the first alone is not valid UTF-8.
    assert!(tok.decode(&[10813], false).expect("decode").contains('\u{FFFD}'));
    for skip_special in [false, true] {
        let mut stream = tok.stream_decoder(skip_special);
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.extend(stream.push(id));
        }
        pieces.extend(stream.flush());
        for piece in &pieces {
            assert!(!piece.contains('\u{FFFD}'), "broken piece {piece:?} in {pieces:?}");
        }
        assert_eq!(pieces.concat(), tok.decode(&ids, skip_special).expect("decode"));
        assert!(pieces.contains(&"🙂".to_owned()) || pieces.iter().any(|p| p.ends_with('🙂')), "{pieces:?}");
    }
    let mut stream = tok.stream_decoder(false);
    assert_eq!(stream.push(10813), None, "half an emoji is held back");
    assert_eq!(stream.push(38887).as_deref(), Some("🙂"));
    assert_eq!(stream.push(10813), None);
    assert_eq!(stream.flush().as_deref(), Some("\u{FFFD}"), "flush gives up on the unfinished character");
}
