//! Generation metrics as pure functions: `exact_match` with an optional
//! filter: the final number (lm-eval's GSM8K "flexible" extraction, preferring
//! the `#### N` answer when the model writes one), the last word, or
//! TriviaQA's answer normalisation; several accepted answers (aliases) match
//! if any does.

use crate::suite::Filter;
use regex::Regex;
use std::sync::OnceLock;

/// A `&'static Regex` of a built-in pattern, compiled once on first use.
macro_rules! regex {
    ($pattern:expr) => {{
        static RE: OnceLock<Regex> = OnceLock::new();
        RE.get_or_init(|| Regex::new($pattern).expect("a valid built-in pattern"))
    }};
}

/// lm-eval's GSM8K normalisation: drop `,` and `$`, a trailing `.`, surrounding space.
pub fn normalize_number(s: &str) -> String {
    let s: String = s.trim().chars().filter(|c| *c != ',' && *c != '$').collect();
    s.trim_end_matches('.').to_string()
}

/// Applies a task's filter to generated text.
pub fn apply_filter(filter: Filter, text: &str) -> String {
    match filter {
        Filter::None => text.trim().to_string(),
        Filter::Number => {
            let raw = regex!(r"#### (-?[0-9.,]+)")
                .captures(text)
                .map(|c| c[1].to_string())
                .or_else(|| regex!(r"-?[$0-9.,]{2,}|-?[0-9]+").find_iter(text).last().map(|m| m.as_str().to_string()))
                .unwrap_or_default();
            normalize_number(&raw)
        }
        Filter::LastWord => text
            .split_whitespace()
            .last()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
            .unwrap_or_default(),
        Filter::Normalized => normalize_answer(text),
        Filter::Letter => answer_letter(text).map(String::from).unwrap_or_default(),
    }
}

/// The option letters a lettered prompt offers (its lines starting "A. ", "B. ", …).
pub fn option_letters(prompt: &str) -> Vec<String> {
    regex!(r"(?m)^([A-J])\. ").captures_iter(prompt).map(|c| c[1].to_string()).collect()
}

/// The option letter a reply picks: after "answer (is)" when present, else
/// the first standalone capital A–J ("B", "(C)", "D. Paris").
pub fn answer_letter(text: &str) -> Option<&str> {
    regex!(r"(?i:answer)(?:\s+is)?\s*[:\-]?\s*\(?\**([A-J])\b")
        .captures(text)
        .or_else(|| regex!(r"\b([A-J])\b").captures(text))
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// TriviaQA's official `normalize_answer` (also SQuAD's): lower case, `_` as a
/// space, punctuation removed, the articles a/an/the removed, whitespace collapsed.
pub fn normalize_answer(text: &str) -> String {
    let lower = text.to_lowercase().replace('_', " ");
    let no_punct: String = lower.chars().filter(|c| !is_punctuation(*c)).collect();
    no_punct.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Python's `string.punctuation` plus the typographic quotes and dashes
/// TriviaQA's normaliser also drops.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || matches!(c, '‘' | '’' | '´' | '`' | '“' | '”' | '–' | '—')
}

/// Exact match of a filtered prediction against any accepted target.
pub fn exact_match<'a>(filter: Filter, prediction: &str, targets: impl IntoIterator<Item = &'a str>) -> bool {
    !prediction.is_empty()
        && targets.into_iter().any(|target| {
            let target = match filter {
                Filter::None | Filter::LastWord | Filter::Letter => target.trim().to_string(),
                Filter::Number => normalize_number(target),
                Filter::Normalized => normalize_answer(target),
            };
            prediction == target
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_filter_prefers_strict_answer() {
        assert_eq!(apply_filter(Filter::Number, "so 3 + 4 = 7\n#### 1,234."), "1234");
        assert_eq!(apply_filter(Filter::Number, "She makes 9 * 2 = $18 dollars."), "18");
        assert_eq!(apply_filter(Filter::Number, "no digits"), "");
        assert!(exact_match(Filter::Number, "1234", ["1,234"]));
        assert!(!exact_match(Filter::Number, "", [""]));
        assert_eq!(apply_filter(Filter::LastWord, " The capital is Paris.\n"), "Paris");
    }

    #[test]
    fn letter_filter_finds_the_chosen_option() {
        for (reply, letter) in [
            ("B", "B"),
            (" (C) Paris", "C"),
            ("D. Because it rains.", "D"),
            ("The answer is A.", "A"),
            ("I think the correct answer is **C**", "C"),
            ("Answer: B", "B"),
            ("It must be option J", "J"),
            ("no idea", ""),
        ] {
            assert_eq!(apply_filter(Filter::Letter, reply), letter, "{reply:?}");
        }
        assert!(exact_match(Filter::Letter, "B", ["B"]));
        assert_eq!(option_letters("Q?\nA. x\nB. y\nC. z\nAnswer:"), ["A", "B", "C"]);
        assert!(!exact_match(Filter::Letter, "", [""]));
    }

    #[test]
    fn triviaqa_normalisation_accepts_aliases() {
        assert_eq!(normalize_answer(" The  Beatles!"), "beatles");
        assert_eq!(normalize_answer("U.S._Open"), "us open");
        let pred = apply_filter(Filter::Normalized, " the Eiffel Tower");
        assert!(exact_match(Filter::Normalized, &pred, ["Tour Eiffel", "Eiffel tower"]));
        assert!(!exact_match(Filter::Normalized, &pred, ["Louvre"]));
        assert!(!exact_match(Filter::Normalized, &apply_filter(Filter::Normalized, " the"), [""]));
    }
}
