//! Plain text for WordPress. Titles, excerpts and content are rendered as HTML by ViewPort
//! (and content runs shortcodes), so an upload's text is reduced to plain text: elements
//! that carry code are dropped with their content, other tags are dropped, and what is left
//! is escaped, shortcode brackets included. No upload can make the ViewPort run script.

/// Elements whose content is code, not text: dropped whole.
const CODE_ELEMENTS: [&str; 6] = [
    "script", "style", "iframe", "object", "noscript", "template",
];

/// The text without markup, not yet escaped (for slugs and checks).
pub fn strip_markup(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let starts_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        if !starts_tag {
            out.push('<');
            rest = after;
            continue;
        }
        let name: String = after
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let Some(close) = after.find('>') else {
            // An unclosed tag swallows the rest, as a browser would.
            rest = "";
            break;
        };
        rest = &after[close + 1..];
        if CODE_ELEMENTS.contains(&name.as_str()) {
            let end = format!("</{name}");
            rest = match find_ascii_ci(rest, &end) {
                Some(i) => rest[i..].find('>').map_or("", |j| &rest[i + j + 1..]),
                None => "",
            };
        }
    }
    out.push_str(rest);
    out.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .trim()
        .to_owned()
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_lowercase()
        .find(&needle.to_ascii_lowercase())
}

/// Escapes what HTML or WordPress would read as markup or a shortcode.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            '[' => out.push_str("&#91;"),
            ']' => out.push_str("&#93;"),
            c => out.push(c),
        }
    }
    out
}

/// Markup stripped, then escaped: safe to store in a WordPress text column.
pub fn plain_text(input: &str) -> String {
    escape(&strip_markup(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_unchanged() {
        let t = "Trolls World Tour (2020)";
        assert_eq!(plain_text(t), t);
        let d = "The story is set in a colorful and vibrant world of the Trolls, small and happy creatures with wild and colorful hair.";
        assert_eq!(plain_text(d), d);
    }

    #[test]
    fn script_is_dropped_with_its_content() {
        assert_eq!(plain_text("<script>alert(1)</script>Hi"), "Hi");
        assert_eq!(plain_text("a<SCRIPT type=x>evil()</ScRiPt >b"), "ab");
        assert_eq!(plain_text("x<style>body{}</style>y"), "xy");
        assert_eq!(plain_text("<script>never closed"), "");
    }

    #[test]
    fn tags_and_handlers_are_dropped() {
        assert_eq!(plain_text("<img src=x onerror=alert(1)>"), "");
        assert_eq!(
            plain_text("<b>bold</b> and <a href='javascript:x'>link</a>"),
            "bold and link"
        );
        assert_eq!(plain_text("<!-- c -->text"), "text");
        assert_eq!(plain_text("dangling <a href="), "dangling");
    }

    #[test]
    fn remaining_markup_characters_are_escaped() {
        assert_eq!(plain_text("a < b > c"), "a &lt; b &gt; c");
        assert_eq!(plain_text("Tom & Jerry"), "Tom &amp; Jerry");
        assert_eq!(
            plain_text("[embed]http://x[/embed]"),
            "&#91;embed&#93;http://x&#91;/embed&#93;"
        );
        assert_eq!(
            plain_text("say \"hi\" it's"),
            "say &quot;hi&quot; it&#039;s"
        );
        assert_eq!(plain_text("&lt;script&gt;"), "&amp;lt;script&amp;gt;");
    }

    #[test]
    fn control_characters_go_newlines_stay() {
        assert_eq!(plain_text("a\u{0}b\u{1b}[31mc\nd"), "ab&#91;31mc\nd");
    }

    #[test]
    fn output_never_contains_a_tag_opener() {
        for input in [
            "<<script>>alert(1)<</script>>",
            "<scr<script>ipt>alert(1)</script>",
            "<svg/onload=alert(1)>",
            "< script>",
            "\u{0}<script>",
        ] {
            let out = plain_text(input);
            assert!(
                !out.contains('<') && !out.contains('>'),
                "{input:?} -> {out:?}"
            );
        }
    }
}
