//! Go's `fmt` verbs as kube's messages use them: `%q` of a string (`strconv.Quote`) and `%q` of
//! a `[]string` (`["a" "b"]`). Clients match these messages byte for byte, so the quoting
//! must be Go's, not Rust's `{:?}`.

/// `%q` of a string: double quotes, Go escapes for quotes, backslashes and control characters.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%q` of a `[]string`: `["a" "b"]`.
pub fn quote_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_strconv_quote() {
        assert_eq!(quote("jane"), r#""jane""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("a\nb\u{1}"), r#""a\nb\x01""#);
        assert_eq!(quote("ü"), "\"ü\"");
        assert_eq!(quote_list(&["", "apps"]), r#"["" "apps"]"#);
        assert_eq!(quote_list::<&str>(&[]), "[]");
    }
}
