//! VPTQ model folders (Hugging Face layout, vptq-spec.md §2) written by the test's own packer must load as
//! `Linear::Vq`, reconstruct exactly the weights the test computed, and give the logits of the same model loaded
//! dense from those weights. Bad folders must fail with errors naming the tensor or layer and the file.

mod vq_fixture;

use serde_json::{json, Value};
use vptq_format::hf::OwnedTensor;
use vptq_model::load::load_hf_weights;
use vptq_model::{KvCache, Linear, LoadOptions, LogitsMode};
use vq_fixture::{ConfigStyle, Model, Prec, Spec};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Loads the VPTQ and the dense folders of `model`, checks every quantized layer's weights and the logits of a
/// prefill and of single-token decode steps.
fn check(model: &Model, style: ConfigStyle, config: Option<Value>) {
    let (vq_dir, dense_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config.unwrap_or_else(|| model.vq_config(style));
    Model::write_vq(vq_dir.path(), &config, &model.vq_tensors());
    model.write_dense(dense_dir.path());
    let vq = load_hf_weights(vq_dir.path(), &LoadOptions::default()).unwrap();
    let dense = load_hf_weights(dense_dir.path(), &LoadOptions::default()).unwrap();

    let mut n_vq = 0;
    for (l, block) in vq.blocks.iter().enumerate() {
        for (short, lin) in block.linears() {
            let want = model
                .quant
                .iter()
                .find(|q| q.name.starts_with(&format!("model.layers.{l}.")) && q.name.ends_with(short));
            match (lin, want) {
                (Linear::Vq(q), Some(w)) => {
                    n_vq += 1;
                    assert_eq!(q.dequantize(), w.weight, "{}: reconstructed weight", w.name);
                    assert_eq!(q.bias().map(<[f32]>::to_vec), w.bias, "{}: bias", w.name);
                    assert!(lin.kind().starts_with(&format!("vq v{} k{}", w.spec.v, w.spec.k)), "{}", lin.kind());
                    let bias = w.bias.as_ref().map_or(0, |b| b.len() * 4);
                    assert_eq!(lin.n_bytes(), q.prepared().n_bytes() + bias, "{}: n_bytes read per token", w.name);
                }
                (Linear::Dense(_), None) => {}
                (other, want) => {
                    panic!("layer {l} {short}: loaded {} but fixture quantized: {}", other.kind(), want.is_some())
                }
            }
        }
    }
    assert_eq!(n_vq, model.quant.len());
    assert!(vq.head.as_ref().is_none_or(|h| matches!(h, Linear::Dense(_))));

    let tokens: Vec<u32> = (0..9).map(|i| (i * 41 + 3) % vq_fixture::VOCAB as u32).collect();
    let logits = |m: &vptq_model::Llama| {
        let mut cache = KvCache::new(&m.config, 32);
        let mut all = m.forward(&tokens[..6], &mut cache, LogitsMode::All).unwrap();
        for &t in &tokens[6..] {
            all.extend(m.forward(&[t], &mut cache, LogitsMode::Last).unwrap());
        }
        all
    };
    let (a, b) = (logits(&vq), logits(&dense));
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.1, "degenerate logits");
    assert!(max_abs_diff(&a, &b) < 1e-3 * scale.max(1.0), "logits differ by {}", max_abs_diff(&a, &b));
}

/// Per-projection variety in one model: residual on/off (widths 8+4, 12+0, 6+8 with r > b, 16+16), padding rows
/// (v = 6, 12), groups, outliers, perm absorbed, norm off, −1 and 0 for "none".
fn mixed(layer: usize, short: &str) -> Option<Spec> {
    let s = match short {
        "q_proj" => Spec::new(8, 256, 16),
        "k_proj" => Spec::new(6, 4096, 0),
        "v_proj" => Spec { norm: false, ..Spec::new(12, 64, 256) },
        "o_proj" => Spec { groups: 2, ..Spec::new(4, 16, 4) },
        "gate_proj" => Spec { groups: 2, outliers: 8, v0: 4, k0: 16, ..Spec::new(8, 256, 0) },
        "up_proj" => Spec { perm: false, ..Spec::new(8, 512, 0) },
        "down_proj" => Spec::new(2, 65536, 65536),
        _ => unreachable!(),
    };
    Some(Spec { prec: if layer == 0 { Prec::F16 } else { Prec::F32 }, ..s })
}

#[test]
fn mixed_layouts_config_for_layers() {
    check(&Model::new("llama", 2, true, 11, mixed), ConfigStyle::ForLayers, None);
}

#[test]
fn bf16_codebooks_untied_head() {
    let m = Model::new("llama", 1, false, 12, |_, short| Some(Spec { prec: Prec::Bf16, ..mixed(0, short)? }));
    check(&m, ConfigStyle::ForLayers, None);
}

#[test]
fn shared_layer_config_with_full_name_override_and_not_convert() {
    // Layer 0's q_proj differs from the shared q_proj entry and is listed by full name; layer 1's gate_proj is
    // dense and excluded by modules_to_not_convert although the shared map names gate_proj.
    let spec = |l: usize, short: &str| match (l, short) {
        (0, "q_proj") => Some(Spec::new(4, 1024, 0)),
        (1, "gate_proj") => None,
        _ => Some(Spec { prec: Prec::Bf16, ..Spec::new(8, 256, 16) }),
    };
    let mut m = Model::new("llama", 2, true, 13, spec);
    m.not_convert = vec!["layers.1.mlp.gate_proj".into()];
    let mut config = m.vq_config(ConfigStyle::Shared);
    let q0 = m.quant.iter().find(|q| q.name == "model.layers.0.self_attn.q_proj").unwrap();
    let mut full = serde_json::Map::new();
    full.insert(q0.name.clone(), q0.config(false));
    config["quantization_config"]["config_for_layers"] = Value::Object(full);
    check(&m, ConfigStyle::Shared, Some(config));
}

#[test]
fn legacy_quant_config_and_qwen2_bias() {
    let m = Model::new("qwen2", 1, true, 14, |_, short| match short {
        "down_proj" => None,
        _ => Some(Spec::new(8, 256, 4)),
    });
    assert!(m.quant.iter().any(|q| q.bias.is_some()));
    check(&m, ConfigStyle::Legacy, None);
}

// ---- bad inputs: one quantized q_proj, altered before writing ----

fn one_layer() -> Model {
    Model::new("llama", 1, true, 21, |_, short| (short == "q_proj").then(|| Spec::new(8, 256, 16)))
}

const Q: &str = "model.layers.0.self_attn.q_proj";

/// Writes `model` with `edit` applied to its tensors and `edit_cfg` to the per-layer dict of q_proj; returns
/// the load error.
fn load_err(edit: impl FnOnce(&mut Vec<OwnedTensor>), edit_cfg: impl FnOnce(&mut Value)) -> String {
    let m = one_layer();
    let mut config = m.vq_config(ConfigStyle::ForLayers);
    edit_cfg(&mut config["quantization_config"]["config_for_layers"][Q]);
    let mut tensors = m.vq_tensors();
    edit(&mut tensors);
    let dir = tempfile::tempdir().unwrap();
    Model::write_vq(dir.path(), &config, &tensors);
    load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string()
}

fn tensor<'a>(ts: &'a mut [OwnedTensor], suffix: &str) -> &'a mut OwnedTensor {
    ts.iter_mut().find(|t| t.name == format!("{Q}.{suffix}")).unwrap()
}

fn assert_names(e: &str, what: &[&str]) {
    for w in what {
        assert!(e.contains(w), "error `{e}` lacks `{w}`");
    }
}

#[test]
fn indices_of_the_wrong_size() {
    let e = load_err(
        |ts| {
            let t = tensor(ts, "indices");
            t.shape[2] += 1; // one more word per row than group_size · T needs
            t.data = vec![0; t.shape.iter().product::<usize>() * 4];
        },
        |_| {},
    );
    assert_names(&e, &["model.safetensors", Q, "indices", "needs 24", "disagree"]);
    let e = load_err(
        |ts| {
            let t = tensor(ts, "indices");
            t.shape[1] -= 1;
            t.data.truncate(t.shape.iter().product::<usize>() * 4);
        },
        |_| {},
    );
    assert_names(&e, &["model.safetensors", "indices", "shape [1, 7, 24]"]);
}

#[test]
fn perm_not_a_permutation() {
    let e = load_err(
        |ts| {
            let first = tensor_first_u16(ts);
            tensor(ts, "perm").data[2..4].copy_from_slice(&first); // perm[1] = perm[0]
        },
        |_| {},
    );
    assert_names(&e, &["model.safetensors", Q, "perm", "not a permutation", "appears twice"]);
    let e = load_err(|ts| tensor(ts, "perm").data[0..2].copy_from_slice(&64u16.to_le_bytes()), |_| {});
    assert_names(&e, &["perm", "outside 0..64"]);
}

fn tensor_first_u16(ts: &mut [OwnedTensor]) -> [u8; 2] {
    let d = &tensor(ts, "perm").data;
    [d[0], d[1]]
}

#[test]
fn codebook_too_short() {
    let e = load_err(
        |ts| {
            let t = tensor(ts, "centroids.weight");
            t.shape[1] /= 2;
            t.data.truncate(t.data.len() / 2);
        },
        |_| {},
    );
    assert_names(&e, &["model.safetensors", Q, "centroids.weight", "codebook too short", "address 256"]);
}

#[test]
fn config_widths_disagree_with_tensors() {
    // The config claims a 512-entry residual codebook (9 bits) over tensors packed with 4-bit residuals: the
    // residual codebook is too short, and with a matching codebook the index rows are too narrow.
    let e = load_err(|_| {}, |c| c["num_res_centroids"] = json!([-1, 512]));
    assert_names(&e, &["res_centroids.weight", "codebook too short"]);
    let e = load_err(
        |ts| {
            let t = tensor(ts, "res_centroids.weight");
            t.shape[1] = 32 * 8;
            t.data = vec![0; 32 * 8 * 2];
        },
        |c| c["num_res_centroids"] = json!([-1, 32]),
    );
    assert_names(&e, &["indices", "disagree with num_centroids / num_res_centroids"]);
}

#[test]
fn unsupported_or_invalid_config() {
    let e = load_err(|_| {}, |c| c["is_indice_packed"] = json!(false));
    assert_names(&e, &["config.json", Q, "unsupported: unpacked indices"]);
    let e = load_err(|_| {}, |c| c["num_centroids"] = json!([-1, 200]));
    assert_names(&e, &["config.json", Q, "power of two"]);
    let e = load_err(|_| {}, |c| c["group_size"] = json!(60));
    assert_names(&e, &["config.json", "≠ in_features 64"]);
    let e = load_err(|_| {}, |c| c["vector_lens"] = json!([-1, 17]));
    assert_names(&e, &["vector length 17"]);
}

#[test]
fn missing_or_mistyped_tensors() {
    let e = load_err(|ts| ts.retain(|t| t.name != format!("{Q}.perm")), |_| {});
    assert_names(&e, &["tensor `model.layers.0.self_attn.q_proj.perm` not found"]);
    let e = load_err(
        |ts| {
            let t = tensor(ts, "indices");
            t.dtype = safetensors::Dtype::I16;
            t.shape[2] *= 2;
        },
        |_| {},
    );
    assert_names(&e, &["indices", "unpacked layout"]);
    // Listed in no map but holding VPTQ tensors.
    let m = one_layer();
    let mut config = m.vq_config(ConfigStyle::ForLayers);
    config["quantization_config"]["config_for_layers"] = json!({});
    let dir = tempfile::tempdir().unwrap();
    Model::write_vq(dir.path(), &config, &m.vq_tensors());
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert_names(&e, &["config.json", Q, "no entry in config_for_layers"]);
}

#[test]
fn other_quant_method_is_refused() {
    let m = one_layer();
    let mut config = m.vq_config(ConfigStyle::ForLayers);
    config["quantization_config"]["quant_method"] = json!("awq");
    let dir = tempfile::tempdir().unwrap();
    Model::write_vq(dir.path(), &config, &m.vq_tensors());
    let e = load_hf_weights(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert_names(&e, &["config.json", "`awq` is not supported"]);
}

/// Replaces q_proj's f16 codebook with the int8 extension (`centroids.qweight` + `centroids.scales`, all steps
/// `step`, values 0), with the qweight tensor's dtype `dtype` and `n_scales` steps.
fn int8_books(ts: &mut Vec<OwnedTensor>, dtype: safetensors::Dtype, n_scales: usize, step: f32) {
    let cb = tensor(ts, "centroids.weight").clone();
    ts.retain(|t| t.name != cb.name);
    let bytes = if dtype == safetensors::Dtype::I8 { 1 } else { 2 };
    let n: usize = cb.shape.iter().product();
    ts.push(OwnedTensor { name: format!("{Q}.centroids.qweight"), dtype, shape: cb.shape, data: vec![0; n * bytes] });
    let steps = vptq_format::hf::HalfOrFloat::F32(vec![step; n_scales]);
    ts.push(OwnedTensor::from_float(format!("{Q}.centroids.scales"), vec![1, n_scales], &steps));
}

#[test]
fn int8_codebook_tensors_are_checked() {
    use safetensors::Dtype;
    let e = load_err(|ts| int8_books(ts, Dtype::F16, 8, 0.5), |_| {});
    assert_names(&e, &["centroids.qweight", "F16"]);
    let e = load_err(|ts| int8_books(ts, Dtype::I8, 7, 0.5), |_| {});
    assert_names(&e, &["centroids.scales"]);
    let e = load_err(|ts| int8_books(ts, Dtype::I8, 8, 0.0), |_| {});
    assert_names(&e, &["model.safetensors", Q, "centroids.scales", "not finite and positive"]);
    let e = load_err(
        |ts| {
            int8_books(ts, Dtype::I8, 8, 0.5);
            ts.retain(|t| !t.name.ends_with("centroids.scales"));
        },
        |_| {},
    );
    assert_names(&e, &["centroids.scales", "not found"]);
    // Neither form: the error names the HF tensor, as for any VPTQ folder.
    let e = load_err(|ts| ts.retain(|t| !t.name.ends_with("centroids.weight")), |_| {});
    assert_names(&e, &["centroids.weight", "not found"]);
}
