//! Chat templates rendered with minijinja as transformers renders them with Jinja2. The expected strings of
//! the two Python-flavoured templates below were checked against transformers' own renderer
//! (`transformers.utils.chat_template_utils._compile_jinja_template`, Jinja2 3.1).

use vptq_tokenizer::{ChatMessage, ChatTemplate, TemplateExtras, TokenizerError};

fn extras() -> TemplateExtras {
    TemplateExtras { bos_token: Some("<s>".into()), eos_token: Some("</s>".into()) }
}

#[test]
fn chatml_fallback() {
    let messages = [ChatMessage::system("Be brief."), ChatMessage::user("Hi"), ChatMessage::assistant("Hello")];
    let text = ChatTemplate::chatml().render(&messages, true, &TemplateExtras::default()).expect("render");
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn python_methods_blocks_trimming_and_special_token_variables() {
    // Llama-2 style: strip(), raise_exception, bos/eos variables; trim_blocks/lstrip_blocks remove the
    // newlines and indentation around block tags.
    let source = "{% for message in messages %}
    {% if message['role'] == 'user' %}
{{ bos_token }}[INST] {{ message['content'].strip() }} [/INST]
    {% elif message['role'] == 'assistant' %}
{{ message['content'] | upper }}{{ eos_token }}
    {% else %}
{{ raise_exception('Unsupported role: ' + message['role']) }}
    {% endif %}
{% endfor %}";
    let template = ChatTemplate::new(source).expect("compile");
    let messages = [ChatMessage::user("  hi there \n"), ChatMessage::assistant("ok")];
    assert_eq!(template.render(&messages, false, &extras()).expect("render"), "<s>[INST] hi there [/INST]\nOK</s>\n");

    let err = template.render(&[ChatMessage::new("tool", "x")], false, &extras()).expect_err("raises");
    assert!(matches!(err, TokenizerError::TemplateRender { .. }));
    assert!(err.to_string().contains("Unsupported role: tool"), "{err}");
}

#[test]
fn startswith_split_and_tojson() {
    let source = "{% for m in messages %}{% if m.content.startswith('/') %}{{ m.content[1:].split(' ') | tojson }}\
                  {% else %}{{ m | tojson }}{% endif %}{% endfor %}";
    let template = ChatTemplate::new(source).expect("compile");
    let messages = [ChatMessage::user("/cmd a<b"), ChatMessage::user("é")];
    let text = template.render(&messages, false, &extras()).expect("render");
    // Python json.dumps layout, no HTML escaping (minijinja's own tojson would write \u003c for '<').
    assert_eq!(text, r#"["cmd", "a<b"]{"role": "user", "content": "é"}"#);
}

#[test]
fn strftime_now_is_available() {
    let template = ChatTemplate::new("{{ strftime_now('%Y') }}").expect("compile");
    let year: i32 = template.render(&[], false, &extras()).expect("render").parse().expect("a year");
    assert!(year >= 2024);
}

#[test]
fn syntax_errors_are_reported() {
    for bad in ["{% for m in messages %}no end", "{{ messages[0] ", "{% if %}{% endif %}"] {
        let err = ChatTemplate::new(bad).expect_err("syntax error");
        assert!(matches!(err, TokenizerError::TemplateSyntax { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("syntax error"), "{err}");
    }
}

#[test]
fn loop_controls_are_enabled() {
    let template = ChatTemplate::new(
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}\
         {{ m.content }}{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}",
    )
    .expect("compile");
    let messages = [ChatMessage::system("s"), ChatMessage::user("a"), ChatMessage::user("b"), ChatMessage::user("c")];
    assert_eq!(template.render(&messages, false, &extras()).expect("render"), "ab");
}
