//! Bad model folders and files: each must fail with a clear error naming the file and the problem, never a
//! panic.

use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_model::load::{load_hf_weights, read_hf_config};
use vptq_model::{resolve_model, LoadOptions};

const GOOD_CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10,
  "rms_norm_eps": 1e-5, "tie_word_embeddings": true}"#;

fn folder(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    dir
}

fn err_of(config: &str) -> String {
    let dir = folder(config);
    let e = read_hf_config(dir.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "error does not name the file: {e}");
    e
}

#[test]
fn config_missing_field_is_named() {
    let e = err_of(r#"{"model_type": "llama", "hidden_size": 8}"#);
    assert!(e.contains("missing field"), "{e}");
}

#[test]
fn config_unsupported_architecture_is_named() {
    let e = err_of(&GOOD_CONFIG.replace("\"llama\"", "\"gpt_neox\""));
    assert!(e.contains("unsupported architecture `gpt_neox`") && e.contains("qwen2"), "{e}");
}

#[test]
fn config_inconsistent_values_are_rejected() {
    assert!(
        err_of(&GOOD_CONFIG.replace("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3")).contains("divisible")
    );
    assert!(err_of(&GOOD_CONFIG.replace("\"hidden_size\": 8", "\"hidden_size\": 0")).contains("out of range"));
    assert!(err_of(&GOOD_CONFIG.replace("1e-5", "-1")).contains("rms_norm_eps"));
    let e =
        err_of(&GOOD_CONFIG.replace("\"tie_word_embeddings\": true", "\"rope_scaling\": {\"rope_type\": \"yarn\"}"));
    assert!(e.contains("yarn"), "{e}");
    let e = err_of(&GOOD_CONFIG.replace("\"tie_word_embeddings\": true", "\"hidden_act\": \"gelu\""));
    assert!(e.contains("gelu"), "{e}");
}

#[test]
fn config_not_json_is_reported() {
    let e = err_of("{ this is not json");
    assert!(e.contains("config.json"), "{e}");
}

fn tensor(name: &str, shape: Vec<usize>) -> OwnedTensor {
    let n = shape.iter().product();
    OwnedTensor::from_float(name, shape, &HalfOrFloat::F32(vec![0.5; n]))
}

fn good_tensors() -> Vec<OwnedTensor> {
    let p = "model.layers.0";
    vec![
        tensor("model.embed_tokens.weight", vec![10, 8]),
        tensor("model.norm.weight", vec![8]),
        tensor(&format!("{p}.input_layernorm.weight"), vec![8]),
        tensor(&format!("{p}.post_attention_layernorm.weight"), vec![8]),
        tensor(&format!("{p}.self_attn.q_proj.weight"), vec![8, 8]),
        tensor(&format!("{p}.self_attn.k_proj.weight"), vec![4, 8]),
        tensor(&format!("{p}.self_attn.v_proj.weight"), vec![4, 8]),
        tensor(&format!("{p}.self_attn.o_proj.weight"), vec![8, 8]),
        tensor(&format!("{p}.mlp.gate_proj.weight"), vec![16, 8]),
        tensor(&format!("{p}.mlp.up_proj.weight"), vec![16, 8]),
        tensor(&format!("{p}.mlp.down_proj.weight"), vec![8, 16]),
    ]
}

#[test]
fn good_folder_loads() {
    let dir = folder(GOOD_CONFIG);
    write_safetensors(&dir.path().join("model.safetensors"), &good_tensors(), None).unwrap();
    let model = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(model.blocks.len(), 1);
}

#[test]
fn wrong_shape_is_named() {
    let dir = folder(GOOD_CONFIG);
    let mut t = good_tensors();
    t[4] = tensor("model.layers.0.self_attn.q_proj.weight", vec![8, 7]);
    write_safetensors(&dir.path().join("model.safetensors"), &t, None).unwrap();
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("q_proj.weight") && e.contains("[8, 7]") && e.contains("[8, 8]"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = folder(GOOD_CONFIG);
    let mut t = good_tensors();
    t.remove(9);
    write_safetensors(&dir.path().join("model.safetensors"), &t, None).unwrap();
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("up_proj.weight") && e.contains("not found"), "{e}");
}

#[test]
fn non_float_tensor_is_rejected() {
    let dir = folder(GOOD_CONFIG);
    let mut t = good_tensors();
    t[1] = OwnedTensor {
        name: "model.norm.weight".into(),
        dtype: safetensors::Dtype::I32,
        shape: vec![8],
        data: vec![0; 32],
    };
    write_safetensors(&dir.path().join("model.safetensors"), &t, None).unwrap();
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("model.norm.weight") && e.contains("unsupported dtype"), "{e}");
}

#[test]
fn lying_safetensors_headers_are_errors() {
    let dir = folder(GOOD_CONFIG);
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, &good_tensors(), None).unwrap();
    let good = std::fs::read(&path).unwrap();
    // Truncated at every length: always an error, never a panic.
    for cut in [0, 4, 8, 20, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
    }
    // A header that claims more data than the file has.
    let header = br#"{"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,1000]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 32]);
    std::fs::write(&path, &bytes).unwrap();
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("invalid safetensors"), "{e}");
    // A header length larger than the file.
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, &bytes).unwrap();
    assert!(load_hf_weights(dir.path(), &LoadOptions::default()).is_err());
}

#[test]
fn sharded_index_with_missing_shard_is_an_error() {
    let dir = folder(GOOD_CONFIG);
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("model-00001-of-00002.safetensors"), "{e}");
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "../escape.safetensors"}}"#,
    )
    .unwrap();
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("plain file name"), "{e}");
}

#[test]
fn sharded_folder_loads() {
    let dir = folder(GOOD_CONFIG);
    let t = good_tensors();
    let (a, b) = t.split_at(5);
    write_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), a, None).unwrap();
    write_safetensors(&dir.path().join("model-00002-of-00002.safetensors"), b, None).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = t
        .iter()
        .enumerate()
        .map(|(i, x)| (x.name.clone(), format!("model-0000{}-of-00002.safetensors", if i < 5 { 1 } else { 2 }).into()))
        .collect();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({ "weight_map": map }).to_string(),
    )
    .unwrap();
    assert!(load_hf_weights(dir.path(), &LoadOptions::default()).is_ok());
}

#[test]
fn unresolvable_model_spec_says_where_it_looked() {
    let e = resolve_model("/definitely/not/here", None).unwrap_err().to_string();
    assert!(e.contains("/definitely/not/here"), "{e}");
}

#[test]
fn gguf_unsupported_architecture_and_missing_keys_are_named() {
    use vptq_format::gguf::{GgufFile, GgufWriter, MetaValue};
    use vptq_model::load::load_gguf_weights;
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::String("falcon".into()));
    let f = GgufFile::from_bytes("odd.gguf".into(), w.to_bytes()).unwrap();
    let e = load_gguf_weights(&f, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("odd.gguf") && e.contains("unsupported architecture `falcon`"), "{e}");

    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::String("llama".into()));
    w.add_meta("llama.embedding_length", MetaValue::U32(8));
    let f = GgufFile::from_bytes("partial.gguf".into(), w.to_bytes()).unwrap();
    let e = load_gguf_weights(&f, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("partial.gguf") && e.contains("llama.attention.head_count"), "{e}");
}
