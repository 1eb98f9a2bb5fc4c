//! Escaping for the report's HTML: everything the report writes that it did
//! not write itself (client names, snapshot names, reasons, notices, alerts,
//! the store's path) goes through [`escape`] once, in text and in
//! attributes alike. Client names are validated by
//! [`crate::names::ClientName`], but a reason or a notice may quote anything
//! a client sent, so nothing is trusted to be harmless.

/// `text` made safe for HTML text and for a double- or single-quoted
/// attribute value: `&`, `<`, `>`, `"` and `'` become character
/// references, and control characters (which HTML does not allow in text,
/// and which a terminal-minded reason may carry) are shown as `\u{..}`
/// escapes, as the status text shows them; tab and newline stay.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_and_quotes_become_references() {
        assert_eq!(escape("plain.example"), "plain.example");
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        // Already-escaped text is escaped again: it is data, not markup.
        assert_eq!(escape("&lt;"), "&amp;lt;");
        assert_eq!(escape("é ü 日本"), "é ü 日本");
    }

    #[test]
    fn control_characters_are_shown_not_passed() {
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("nul\0"), "nul\\u{0}");
        assert_eq!(escape("del\u{7f}"), "del\\u{7f}");
        assert_eq!(escape("line\nnext\ttab"), "line\nnext\ttab");
    }

    /// A hostile reason can neither close the element or attribute it sits
    /// in nor open one of its own.
    #[test]
    fn a_hostile_string_stays_data() {
        let hostile = "x\"><script>alert(1)</script><img src=x onerror='alert(2)'>";
        let e = escape(hostile);
        for bad in ['<', '>', '"', '\''] {
            assert!(!e.contains(bad), "{bad:?} in {e}");
        }
        assert_eq!(
            e,
            "x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&#39;alert(2)&#39;&gt;"
        );
    }
}
