//! Escaping text for HTML (the status page, the email bodies) and for Slack's mrkdwn.

/// `text` safe inside an element or a quoted attribute value.
pub fn escape(text: &str) -> String {
    escape_chars(text, true)
}

/// `text` with only `&`, `<` and `>` escaped: the characters Slack's mrkdwn reserves for its control sequences
/// (its "Formatting text" page asks for exactly these three, and shows quotes as typed).
pub fn escape_markup(text: &str) -> String {
    escape_chars(text, false)
}

fn escape_chars(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">&'é"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;é"
        );
        assert_eq!(
            escape_markup("<!channel> & \"it's\""),
            "&lt;!channel&gt; &amp; \"it's\""
        );
    }
}
