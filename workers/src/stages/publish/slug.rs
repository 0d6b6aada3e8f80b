//! The post slug (seed 6.1, e145): the title slugified, then the version, then the
//! environment, lowercase: "Trolls World Tour (2020)", v0-0-01, Development →
//! `trolls-world-tour-2020-v0-0-01-development`.

/// `wp_posts.post_name` is 200 characters; this leaves room for a `-NN` uniqueness suffix.
pub const MAX_SLUG_LEN: usize = 190;

/// Lowercase ASCII letters and digits separated by single hyphens. Accents and other
/// scripts are transliterated first (as WordPress's `remove_accents` does), apostrophes
/// vanish ("don't" → "dont"), and every other run of characters becomes one hyphen.
pub fn slugify(text: &str) -> String {
    let ascii = deunicode::deunicode(text);
    let mut out = String::with_capacity(ascii.len());
    let mut gap = false;
    for c in ascii.chars() {
        if c == '\'' || c == '`' {
            continue;
        }
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// The slug of a post: title, version and environment, each slugified, empty parts left
/// out, the title part shortened (at a hyphen where it can) so the whole fits.
pub fn post_slug(title: &str, version: &str, environment: &str) -> String {
    let tail: Vec<String> = [version, environment]
        .iter()
        .map(|p| slugify(p))
        .filter(|p| !p.is_empty())
        .collect();
    let tail = tail.join("-");
    let mut head = slugify(title);
    let room = MAX_SLUG_LEN.saturating_sub(if tail.is_empty() { 0 } else { tail.len() + 1 });
    if head.len() > room {
        head.truncate(room);
        if let Some(cut) = head.rfind('-').filter(|i| *i > room / 2) {
            head.truncate(cut);
        }
        while head.ends_with('-') {
            head.pop();
        }
    }
    let mut slug = [head, tail]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    slug.truncate(MAX_SLUG_LEN);
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example() {
        assert_eq!(
            post_slug("Trolls World Tour (2020)", "v0-0-01", "Development"),
            "trolls-world-tour-2020-v0-0-01-development"
        );
    }

    #[test]
    fn punctuation_and_spacing_collapse() {
        assert_eq!(slugify("  Hello,   World!!  "), "hello-world");
        assert_eq!(slugify("--a--b--"), "a-b");
        assert_eq!(slugify("Don't Stop"), "dont-stop");
        assert_eq!(slugify("C++ & Rust / Go"), "c-rust-go");
        assert_eq!(
            slugify("<script>alert(1)</script>"),
            "script-alert-1-script"
        );
        assert_eq!(slugify("!!!"), "");
    }

    #[test]
    fn unicode_is_transliterated() {
        assert_eq!(slugify("Crème Brûlée"), "creme-brulee");
        assert_eq!(slugify("Ærøskøbing"), "aeroskobing");
        assert_eq!(slugify("Straße"), "strasse");
        let cjk = slugify("千と千尋の神隠し");
        assert!(!cjk.is_empty());
        assert!(cjk
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn empty_parts_are_left_out() {
        assert_eq!(post_slug("???", "v1-0-0", "Testing"), "v1-0-0-testing");
        assert_eq!(post_slug("Title", "", ""), "title");
    }

    #[test]
    fn long_titles_are_cut_to_fit() {
        let title = "word ".repeat(100);
        let slug = post_slug(&title, "v0-0-01", "Development");
        assert!(slug.len() <= MAX_SLUG_LEN, "{}", slug.len());
        assert!(slug.ends_with("-v0-0-01-development"));
        assert!(!slug.contains("--"));
        let one_word = "x".repeat(500);
        let slug = post_slug(&one_word, "v0-0-01", "Development");
        assert!(slug.len() <= MAX_SLUG_LEN);
        assert!(slug.ends_with("x-v0-0-01-development"));
    }
}
