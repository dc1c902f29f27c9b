//! Chat templates: the Jinja templates Hugging Face models ship (`tokenizer.chat_template` in GGUF,
//! `chat_template` in tokenizer_config.json), rendered with minijinja the way transformers renders them
//! (`trim_blocks`, `lstrip_blocks`, Python string/list/dict methods, `raise_exception`, `tojson`,
//! `strftime_now`), plus a ChatML fallback for models without one.
//!
//! Allowed dependencies: `minijinja`, `minijinja-contrib` (pycompat), `serde`, this crate's errors.

use minijinja::{context, Environment, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TokenizerError};
use crate::template_fns;

/// Name under which the template is registered (also shown in error locations).
const TEMPLATE_NAME: &str = "chat_template";

/// ChatML, the format of SmolLM2 and Qwen2 instruct models; used when a model has no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (templates may accept others, e.g. `tool`).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Extra variables a template may use besides `messages` and `add_generation_prompt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateExtras {
    /// Text of the BOS token (`bos_token` in the template); empty when `None`.
    pub bos_token: Option<String>,
    /// Text of the EOS token (`eos_token` in the template); empty when `None`.
    pub eos_token: Option<String>,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl ChatTemplate {
    /// Compiles a Jinja chat template.
    ///
    /// # Errors
    /// [`TokenizerError::TemplateSyntax`] with minijinja's message and line.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        // transformers renders with these two set; templates are written for them (no stray newlines).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", template_fns::raise_exception);
        env.add_function("strftime_now", template_fns::strftime_now);
        env.add_filter("tojson", template_fns::tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| TokenizerError::TemplateSyntax { message: describe(&e) })?;
        Ok(ChatTemplate { env, source: source.to_owned() })
    }

    /// The ChatML fallback ([`CHATML_TEMPLATE`]).
    pub fn chatml() -> Self {
        Self::new(CHATML_TEMPLATE).expect("invariant: the built-in ChatML template compiles")
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation. With `add_generation_prompt`, the text ends with the header of an assistant
    /// turn, ready for generation.
    ///
    /// # Errors
    /// [`TokenizerError::TemplateRender`], including the message of a `raise_exception(...)` in the template.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extras: &TemplateExtras,
    ) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TokenizerError::TemplateRender { message: describe(&e) })?;
        let ctx = context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => extras.bos_token.as_deref().unwrap_or(""),
            eos_token => extras.eos_token.as_deref().unwrap_or(""),
        };
        template.render(ctx).map_err(|e| TokenizerError::TemplateRender { message: describe(&e) })
    }
}

/// minijinja's message with its detail and location, on one line.
fn describe(error: &minijinja::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}
