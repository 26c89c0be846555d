//! Text helpers every exporter shares: HTML escaping (element content and
//! attribute values), Markdown table rows and cells, and cutting long prompts
//! to their end.

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text from results made safe inside a Markdown table cell or a line of
/// text: `|` escaped, newlines as spaces, `<` and `>` as entities (GitHub
/// renders inline HTML).
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ").replace('<', "&lt;").replace('>', "&gt;")
}

/// `text` as a fenced Markdown code block whose fence is longer than any run
/// of backticks inside it, so a hostile prompt cannot close the block early
/// and have the rest rendered as Markdown or HTML (CommonMark's rule).
pub fn md_code_block(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}\n")
}

/// One Markdown table row; an empty cell is written `| |`.
pub fn md_row<S: AsRef<str>>(cells: &[S]) -> String {
    let mut row = String::from("|");
    for c in cells {
        match c.as_ref() {
            "" => row.push_str(" |"),
            c => row.push_str(&format!(" {c} |")),
        }
    }
    row.push('\n');
    row
}

/// The last `n` characters of `s`, with an ellipsis when cut.
pub fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        format!("…{}", s.chars().skip(count - n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert(1)</script> & \"'"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;&#39;"
        );
        assert_eq!(md_cell("a|b\n<i>"), "a\\|b &lt;i&gt;");
        assert_eq!(md_row(&["x", "", "y"]), "| x | | y |\n");
        assert_eq!(tail_chars("abcdef", 3), "…def");
        assert_eq!(tail_chars("ab", 3), "ab");
    }
}
