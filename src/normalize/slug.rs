//! Group slugs: an ASCII transliteration of the group's name, lower case, words joined
//! by hyphens ("Osobní trenér" → `osobni-trener`).

/// Longest slug kept; longer transliterations are cut at a word boundary when possible.
pub const SLUG_MAX: usize = 100;

/// The slug of `name`, or `None` when nothing letter- or digit-like is left.
pub fn slugify(name: &str) -> Option<String> {
    let mut slug = ascii_words(name, |c| c.is_ascii_alphanumeric(), '-', usize::MAX);
    if slug.len() > SLUG_MAX {
        let cut = slug[..SLUG_MAX].rfind('-').filter(|&i| i > SLUG_MAX / 2).unwrap_or(SLUG_MAX);
        slug.truncate(cut);
    }
    (!slug.is_empty()).then_some(slug)
}

/// `text` transliterated to ASCII and lower-cased, keeping the characters `keep` accepts:
/// each run of others (or of what has no transliteration) becomes one `separator` between
/// words, none at either end; cut at `max` bytes.
pub(super) fn ascii_words(text: &str, keep: fn(char) -> bool, separator: char, max: usize) -> String {
    let ascii = deunicode::deunicode_with_tofu(text, " ");
    let mut out = String::with_capacity(ascii.len().min(max));
    let mut gap = false;
    for c in ascii.chars() {
        if keep(c) {
            if gap && !out.is_empty() {
                out.push(separator);
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
            if out.len() >= max {
                out.truncate(max);
                break;
            }
        } else {
            gap = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transliterates_and_joins_words() {
        for (name, slug) in [
            ("Osobní trenér", "osobni-trener"),
            ("trainer", "trainer"),
            ("Personal Trainer", "personal-trainer"),
            ("  Žluťoučký kůň – VIP!  ", "zlutoucky-kun-vip"),
            ("Straße & Co.", "strasse-co"),
            ("Группа 1", "gruppa-1"),
            ("東京", "dong-jing"),
            ("a--b__c", "a-b-c"),
        ] {
            assert_eq!(slugify(name).as_deref(), Some(slug), "{name}");
        }
    }

    #[test]
    fn nothing_left_is_none() {
        for name in ["", "   ", "!!!", "–"] {
            assert_eq!(slugify(name), None, "{name:?}");
        }
    }

    #[test]
    fn long_names_are_cut() {
        let name = "word ".repeat(60);
        let slug = slugify(&name).unwrap();
        assert!(slug.len() <= SLUG_MAX && !slug.ends_with('-'), "{slug}");
        assert!(slugify(&"x".repeat(300)).unwrap().len() == SLUG_MAX);
    }
}
