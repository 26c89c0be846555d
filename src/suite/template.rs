//! Jinja templates of suites (lm-evaluation-harness vocabulary), rendered with
//! minijinja. Python-style methods that lm-eval YAML files use
//! (`answer.split('####')[-1].strip()`, `choices.label.index(answerKey)`) work
//! through minijinja-contrib's pycompat layer plus `index` for lists. Filters
//! of our own stand in for lm-eval's Python hooks (`hellaswag_clean`,
//! `mmlu_category`).

use anyhow::{anyhow, Result};
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, State};

/// lm-evaluation-harness's HellaSwag `preprocess`: strip, " [title]" → ". ",
/// drop `[...]` spans, collapse double spaces (once, as the reference does).
pub fn hellaswag_clean(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    // re.sub("\\[.*?\\]", "", text): each '[' up to the next ']' on the same line.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find('[') {
        match rest[i..].find(']') {
            Some(j) if !rest[i..i + j].contains('\n') => {
                out.push_str(&rest[..i]);
                rest = &rest[i + j + 1..];
            }
            _ => {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// MMLU's four categories (as lm-evaluation-harness groups the 57 subjects).
pub fn mmlu_category(subject: &str) -> &'static str {
    const STEM: &[&str] = &[
        "abstract_algebra",
        "anatomy",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "high_school_physics",
        "high_school_statistics",
        "machine_learning",
    ];
    const HUMANITIES: &[&str] = &[
        "formal_logic",
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "international_law",
        "jurisprudence",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
        "prehistory",
        "professional_law",
        "world_religions",
    ];
    const SOCIAL: &[&str] = &[
        "econometrics",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ];
    if STEM.contains(&subject) {
        "stem"
    } else if HUMANITIES.contains(&subject) {
        "humanities"
    } else if SOCIAL.contains(&subject) {
        "social_sciences"
    } else {
        "other"
    }
}

fn unknown_method(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if method == "index" && value.len().is_some() && value.as_str().is_none() {
        if let [needle] = args {
            let iter = value.try_iter()?;
            for (i, v) in iter.enumerate() {
                if &v == needle {
                    return Ok(Value::from(i));
                }
            }
            return Err(Error::new(ErrorKind::InvalidOperation, format!("{needle} is not in list")));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// The template environment every suite uses.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    // A template that loops for ever, or nearly, stops with an error instead.
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_unknown_method_callback(unknown_method);
    env.add_filter("hellaswag_clean", |s: String| hellaswag_clean(&s));
    env.add_filter("mmlu_category", |s: String| mmlu_category(&s));
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env
}

/// If `src` is exactly one `{{ expression }}`, returns the expression.
pub fn sole_expression(src: &str) -> Option<&str> {
    let s = src.trim();
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim().trim_start_matches('-').trim_end_matches('-').trim())
}

/// Instructions one rendering may run (minijinja's fuel): thousands of times
/// what any benchmark prompt needs.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Longest text one rendering may produce (bytes): far past any model's context.
pub const MAX_RENDERED_BYTE: usize = 4 << 20;

/// A template error as one line: minijinja's `{:#}` appends a multi-line
/// excerpt of the template; this keeps the kind, the detail, `(in NAME:LINE)`
/// and the causes.
pub fn one_line(e: Error) -> anyhow::Error {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    anyhow!(crate::error::fold_lines(&text))
}

/// Renders a template against one document to a string.
pub fn render(env: &Environment, src: &str, doc: &Value) -> Result<String> {
    let text = env.render_str(src, doc).map_err(one_line)?;
    if text.len() > MAX_RENDERED_BYTE {
        return Err(anyhow!(
            "renders {} bytes, more than the {} MiB openweigh accepts for one prompt; the template or the document is wrong",
            text.len(),
            MAX_RENDERED_BYTE >> 20
        ));
    }
    Ok(text)
}

/// Evaluates a template to a value: a template that is a single `{{ expr }}`
/// yields the expression's own value (a list, an int), as lm-eval's
/// `doc_to_choice` / `doc_to_target` do; anything else renders to a string.
pub fn evaluate(env: &Environment, src: &str, doc: &Value) -> Result<Value> {
    match sole_expression(src) {
        Some(expr) => {
            let e = env.compile_expression(expr).map_err(one_line)?;
            e.eval(doc).map_err(one_line)
        }
        None => Ok(Value::from(render(env, src, doc)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        Value::from_serialize(serde_json::json!({
            "question": "Which is a gas?",
            "choices": {"text": ["ice", "steam"], "label": ["A", "B"]},
            "answerKey": "B",
            "answer": "2 + 2 = <<2+2=4>>4\n#### 1,234",
            "label": "1",
        }))
    }

    #[test]
    fn renders_text() {
        let env = environment();
        let s = render(&env, "Question: {{question}}\nAnswer:", &doc()).unwrap();
        assert_eq!(s, "Question: Which is a gas?\nAnswer:");
    }

    #[test]
    fn expression_yields_list_and_index() {
        let env = environment();
        let choices = evaluate(&env, "{{choices.text}}", &doc()).unwrap();
        assert_eq!(choices.len(), Some(2));
        let target = evaluate(&env, "{{choices.label.index(answerKey)}}", &doc()).unwrap();
        assert_eq!(target.as_usize(), Some(1));
        let gold = evaluate(&env, "{{ label | int }}", &doc()).unwrap();
        assert_eq!(gold.as_usize(), Some(1));
    }

    #[test]
    fn python_string_methods() {
        let env = environment();
        let t = evaluate(&env, "{{answer.split('####')[-1].strip()}}", &doc()).unwrap();
        assert_eq!(t.as_str(), Some("1,234"));
    }

    #[test]
    fn hellaswag_preprocessing_matches_reference() {
        assert_eq!(
            hellaswag_clean(" Roof shingle removal: A man is sitting on a roof. [title] He starts  pulling up roofing [step] on a roof. "),
            "Roof shingle removal: A man is sitting on a roof.. He starts pulling up roofing on a roof."
        );
    }
}
