//! Chat templates: a model's own Jinja template (GGUF
//! `tokenizer.chat_template` or `tokenizer_config.json`) rendered for one user
//! message with the assistant's generation prompt, the way transformers'
//! `apply_chat_template` renders it (Python string methods through
//! minijinja-contrib's pycompat layer, `raise_exception`, blocks trimmed).

use anyhow::Result;
use minijinja::{Environment, Error, ErrorKind, Value};

/// Renders `template` for a single user message, generation prompt appended.
pub fn render(template: &str, user: &str, bos: &str, eos: &str) -> Result<String> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    // As transformers renders chat templates: a newline after a block tag is
    // dropped, and whitespace before a block tag on its line is stripped.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    let ctx = minijinja::context! {
        messages => vec![minijinja::context!{ role => "user", content => user }],
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    };
    env.render_str(template, ctx)
        .map_err(|e| crate::suite::template::one_line(e).context("rendering the model's chat template"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm_chat_template_shape() {
        let tpl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let s = render(tpl, "Hi", "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let tpl = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}{{ messages[0]['content'].strip() }}";
        assert_eq!(render(tpl, "  Hi  ", "", "").unwrap(), "Hi");
        let e = render("{{ raise_exception('no system role') }}", "x", "", "").unwrap_err();
        assert!(format!("{e:#}").contains("no system role"));
    }
}
