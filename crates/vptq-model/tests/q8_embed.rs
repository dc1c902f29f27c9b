//! 8-bit embeddings and head in a folder (`quantization_config.dense_layers`, `*.qweight` + `*.scales`):
//! written with `export_embeddings`, loaded back, logits close to the f32 model and identical to the same
//! conversion done in memory; f16 storage round-trips too; every malformed record or tensor is a clear error.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use vptq_format::hf::{write_safetensors, HalfOrFloat, OwnedTensor};
use vptq_kernels::dense::DenseWeight;
use vptq_model::load::load_hf_weights;
use vptq_model::{
    convert_embeddings, export_embeddings, EmbedStorage, KvCache, Linear, Llama, LoadOptions, LogitsMode,
};

const VOCAB: usize = 50;
const HIDDEN: usize = 32;
const FFN: usize = 48;

fn rand_vec(seed: &mut u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn config(tied: bool) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "tie_word_embeddings": tied,
    })
}

/// A dense f32 tiny model's tensors by name.
fn dense_tensors(tied: bool) -> BTreeMap<String, OwnedTensor> {
    let mut seed = 11u64;
    let mut t = BTreeMap::new();
    let mut add = |name: &str, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v = rand_vec(&mut seed, n, scale).iter().map(|x| x + offset).collect();
        t.insert(name.to_string(), OwnedTensor::from_float(name, shape, &HalfOrFloat::F32(v)));
    };
    add("model.embed_tokens.weight", vec![VOCAB, HIDDEN], 1.0, 0.0);
    let p = "model.layers.0";
    add(&format!("{p}.input_layernorm.weight"), vec![HIDDEN], 0.2, 1.0);
    add(&format!("{p}.post_attention_layernorm.weight"), vec![HIDDEN], 0.2, 1.0);
    add(&format!("{p}.self_attn.q_proj.weight"), vec![HIDDEN, HIDDEN], 0.3, 0.0);
    add(&format!("{p}.self_attn.k_proj.weight"), vec![16, HIDDEN], 0.3, 0.0);
    add(&format!("{p}.self_attn.v_proj.weight"), vec![16, HIDDEN], 0.3, 0.0);
    add(&format!("{p}.self_attn.o_proj.weight"), vec![HIDDEN, HIDDEN], 0.3, 0.0);
    add(&format!("{p}.mlp.gate_proj.weight"), vec![FFN, HIDDEN], 0.3, 0.0);
    add(&format!("{p}.mlp.up_proj.weight"), vec![FFN, HIDDEN], 0.3, 0.0);
    add(&format!("{p}.mlp.down_proj.weight"), vec![HIDDEN, FFN], 0.3, 0.0);
    add("model.norm.weight", vec![HIDDEN], 0.2, 1.0);
    if !tied {
        add("lm_head.weight", vec![VOCAB, HIDDEN], 0.5, 0.0);
    }
    t
}

fn write_folder(dir: &Path, config: &Value, tensors: &BTreeMap<String, OwnedTensor>) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let list: Vec<OwnedTensor> = tensors.values().cloned().collect();
    write_safetensors(&dir.join("model.safetensors"), &list, None).unwrap();
}

fn load(dir: &Path) -> Llama {
    load_hf_weights(dir, &LoadOptions::default()).unwrap()
}

fn logits(m: &Llama) -> Vec<f32> {
    let tokens: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
    let mut cache = KvCache::new(&m.config, tokens.len());
    m.forward(&tokens, &mut cache, LogitsMode::All).unwrap()
}

/// ‖a − b‖ / ‖b‖.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// The dense folder with its embedding/head replaced by `storage`, as a quantize pipeline would write it.
fn write_with_storage(dir: &Path, tied: bool, storage: EmbedStorage) -> Llama {
    let src = tempfile::tempdir().unwrap();
    write_folder(src.path(), &config(tied), &dense_tensors(tied));
    let dense = load(src.path());
    let export = export_embeddings(&dense, storage).unwrap();
    let mut tensors = dense_tensors(tied);
    tensors.remove("model.embed_tokens.weight");
    tensors.remove("lm_head.weight");
    for t in &export.tensors {
        tensors.insert(t.name.clone(), t.clone());
    }
    let mut cfg = config(tied);
    export.record_in(&mut cfg).unwrap();
    write_folder(dir, &cfg, &tensors);
    dense
}

#[test]
fn q8_folder_round_trips() {
    for tied in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let dense = write_with_storage(dir.path(), tied, EmbedStorage::Q8);
        let cfg: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        let q = &cfg["quantization_config"];
        assert_eq!(q["quant_method"], "vptq");
        assert_eq!(q["dense_layers"]["model.embed_tokens"], json!({"format": "int8_absmax", "group_size": HIDDEN}));
        assert_eq!(q["dense_layers"].get("lm_head").is_some(), !tied, "{cfg}");

        let m = load(dir.path());
        assert!(matches!(m.embed.weight, DenseWeight::Q8(_)));
        if !tied {
            assert!(matches!(&m.head, Some(Linear::Dense(d)) if matches!(d.weight, DenseWeight::Q8(_))));
        }
        // One byte per weight plus one f32 scale per row.
        assert_eq!(m.embed.weight.n_bytes(), VOCAB * HIDDEN + VOCAB * 4);
        let (want, got) = (logits(&dense), logits(&m));
        let err = rel_err(&got, &want);
        assert!(err < 0.02, "tied {tied}: relative logit error {err}");
        // Loading the folder gives exactly what converting the f32 model in memory gives.
        let mut converted = dense.clone();
        convert_embeddings(&mut converted, EmbedStorage::Q8).unwrap();
        assert_eq!(logits(&converted), got);
        // Exporting the loaded 8-bit model again reuses its values instead of quantizing twice.
        let again = export_embeddings(&m, EmbedStorage::Q8).unwrap();
        let first = export_embeddings(&dense, EmbedStorage::Q8).unwrap();
        assert_eq!(again.tensors.len(), first.tensors.len());
        for (a, b) in again.tensors.iter().zip(&first.tensors) {
            assert_eq!((&a.name, &a.data), (&b.name, &b.data));
        }
    }
}

#[test]
fn f16_folder_round_trips_without_a_record() {
    for tied in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let dense = write_with_storage(dir.path(), tied, EmbedStorage::F16);
        let cfg: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        assert!(cfg.get("quantization_config").is_none(), "f16 needs no record: {cfg}");
        let m = load(dir.path());
        assert!(matches!(m.embed.weight, DenseWeight::F16(_)));
        if !tied {
            assert!(matches!(&m.head, Some(Linear::Dense(d)) if matches!(d.weight, DenseWeight::F16(_))));
        }
        let err = rel_err(&logits(&m), &logits(&dense));
        assert!(err < 2e-3, "tied {tied}: relative logit error {err}");
    }
}

#[test]
fn record_is_added_to_an_existing_quantization_config() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), &config(true), &dense_tensors(true));
    let export = export_embeddings(&load(dir.path()), EmbedStorage::Q8).unwrap();
    let mut cfg = config(true);
    cfg["quantization_config"] = json!({"quant_method": "vptq", "config_for_layers": {"a": {}}});
    export.record_in(&mut cfg).unwrap();
    assert_eq!(cfg["quantization_config"]["config_for_layers"], json!({"a": {}}));
    assert!(cfg["quantization_config"]["dense_layers"]["model.embed_tokens"].is_object());
    let mut bad = json!({"quantization_config": 3});
    assert!(export.record_in(&mut bad).is_err());
}

/// Writes the untied Q8 folder, lets `edit` change its config and tensors, and returns the load error.
fn load_error(edit: impl FnOnce(&mut Value, &mut BTreeMap<String, OwnedTensor>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_with_storage(dir.path(), false, EmbedStorage::Q8);
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let mut tensors = dense_tensors(false);
    tensors.remove("model.embed_tokens.weight");
    tensors.remove("lm_head.weight");
    let src = tempfile::tempdir().unwrap();
    write_folder(src.path(), &config(false), &dense_tensors(false));
    for t in export_embeddings(&load(src.path()), EmbedStorage::Q8).unwrap().tensors {
        tensors.insert(t.name.clone(), t);
    }
    edit(&mut cfg, &mut tensors);
    write_folder(dir.path(), &cfg, &tensors);
    match load_hf_weights(dir.path(), &LoadOptions::default()) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e.to_string(),
    }
}

fn f32_tensor(name: &str, shape: Vec<usize>, v: f32) -> OwnedTensor {
    let n = shape.iter().product();
    OwnedTensor::from_float(name, shape, &HalfOrFloat::F32(vec![v; n]))
}

fn assert_has(e: &str, needles: &[&str]) {
    for n in needles {
        assert!(e.contains(n), "error lacks `{n}`: {e}");
    }
}

#[test]
fn missing_tensors_are_named() {
    let e = load_error(|_, t| {
        t.remove("model.embed_tokens.qweight");
    });
    assert_has(&e, &["model.embed_tokens.qweight", "missing", "dense_layers"]);
    let e = load_error(|_, t| {
        t.remove("lm_head.scales");
    });
    assert_has(&e, &["lm_head.scales", "missing"]);
}

#[test]
fn wrong_dtypes_are_named() {
    let e = load_error(|_, t| {
        t.insert(
            "model.embed_tokens.qweight".into(),
            f32_tensor("model.embed_tokens.qweight", vec![VOCAB, HIDDEN], 1.0),
        );
    });
    assert_has(&e, &["model.embed_tokens.qweight", "dtype F32"]);
    let e = load_error(|_, t| {
        t.insert("lm_head.scales".into(), OwnedTensor::from_i8("lm_head.scales", vec![VOCAB, 1], &[1; VOCAB]));
    });
    assert_has(&e, &["lm_head.scales", "dtype I8"]);
}

#[test]
fn wrong_shapes_and_counts_are_named() {
    let e = load_error(|_, t| {
        let q = OwnedTensor::from_i8("model.embed_tokens.qweight", vec![VOCAB - 1, HIDDEN], &[0; (VOCAB - 1) * HIDDEN]);
        t.insert(q.name.clone(), q);
    });
    assert_has(&e, &["model.embed_tokens.qweight", "shape"]);
    // Two scales per row while the config says one group per row.
    let e = load_error(|_, t| {
        t.insert("lm_head.scales".into(), f32_tensor("lm_head.scales", vec![VOCAB, 2], 0.01));
    });
    assert_has(&e, &["lm_head.scales", "[50, 2]", "expected [50, 1]"]);
    // The config says groups of 16 (two per row) but the file has one scale per row.
    let e = load_error(|c, _| {
        c["quantization_config"]["dense_layers"]["model.embed_tokens"]["group_size"] = json!(16);
    });
    assert_has(&e, &["model.embed_tokens.scales", "expected [50, 2]"]);
    let e = load_error(|c, _| {
        c["quantization_config"]["dense_layers"]["model.embed_tokens"]["group_size"] = json!(5);
    });
    assert_has(&e, &["group_size 5 does not divide", "32"]);
}

#[test]
fn bad_scales_are_rejected() {
    for (v, what) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (-0.5, "-0.5")] {
        let e = load_error(|_, t| {
            let mut s = vec![0.01f32; VOCAB];
            s[7] = v;
            t.insert(
                "lm_head.scales".into(),
                OwnedTensor::from_float("lm_head.scales", vec![VOCAB, 1], &HalfOrFloat::F32(s)),
            );
        });
        assert_has(&e, &["lm_head.scales", "scale 7", what]);
    }
}

#[test]
fn bad_records_are_rejected() {
    let e = load_error(|c, _| {
        c["quantization_config"]["dense_layers"]["model.embed_tokens"]["format"] = json!("int4_magic");
    });
    assert_has(&e, &["config.json", "int4_magic", "int8_absmax"]);
    let e = load_error(|c, _| {
        c["quantization_config"]["dense_layers"]["model.layers.0.mlp.up_proj"] =
            json!({"format": "int8_absmax", "group_size": 32});
    });
    assert_has(&e, &["model.layers.0.mlp.up_proj", "only"]);
    for g in [json!(0), json!(-3), json!("32"), json!(1.5)] {
        let e = load_error(|c, _| {
            c["quantization_config"]["dense_layers"]["lm_head"]["group_size"] = g.clone();
        });
        assert_has(&e, &["lm_head", "group_size must be a positive integer"]);
    }
    let e = load_error(|c, _| {
        c["quantization_config"]["dense_layers"] = json!([1, 2]);
    });
    assert_has(&e, &["dense_layers is not an object"]);
}

#[test]
fn unrecorded_or_ambiguous_tensors_are_rejected() {
    // int8 tensors that the config does not describe: never read `.qweight` by guessing.
    let e = load_error(|c, _| {
        c["quantization_config"]["dense_layers"].as_object_mut().unwrap().remove("model.embed_tokens");
    });
    assert_has(&e, &["model.embed_tokens.qweight", "does not record"]);
    // Both the recorded int8 tensors and a float `.weight`.
    let e = load_error(|_, t| {
        t.insert("lm_head.weight".into(), f32_tensor("lm_head.weight", vec![VOCAB, HIDDEN], 0.1));
    });
    assert_has(&e, &["lm_head.weight", "also has"]);
}
