//! Search keys: the folded form in which a customer's names, company and e-mail are
//! found by a prefix, case- and accent-insensitively ("Müller" is found by `mul`, `MÜL`
//! or `Mül`; "Жуков" by `zhu`).

/// The rules `fold` follows. Stored keys record the version they were computed by; keys of
/// an older version are computed again, so changing `fold` means raising this.
pub const SEARCH_RULES_VERSION: i16 = 1;

/// The longest key kept, in bytes (keys are ASCII): a longer one is cut, and so is a
/// query, so a long prefix still finds what it names.
pub const KEY_MAX: usize = 200;

/// Lower-case ASCII transliteration, with every run of whitespace (or anything without a
/// transliteration) one space, trimmed; `None` when nothing is left.
pub fn fold(text: &str) -> Option<String> {
    let key = super::slug::ascii_words(text, |c| c.is_ascii_graphic(), ' ', KEY_MAX);
    (!key.is_empty()).then_some(key)
}

/// The range of keys that start with `prefix` (a folded key): from `prefix` itself up to,
/// not including, `prefix` followed by a character above every character of a key.
pub fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}\u{7f}"))
}

/// The keys a customer is found by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchKeys {
    /// "first last", or whichever of the two is given.
    pub name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    /// The e-mail as written (not its canonical form, which may drop dots and tags).
    pub email: Option<String>,
}

impl SearchKeys {
    pub fn of(
        first_name: Option<&str>,
        last_name: Option<&str>,
        company_name: Option<&str>,
        email: Option<&str>,
    ) -> Self {
        let name = match (first_name, last_name) {
            (Some(first), Some(last)) => fold(&format!("{first} {last}")),
            (Some(one), None) | (None, Some(one)) => fold(one),
            (None, None) => None,
        };
        SearchKeys {
            name,
            last_name: last_name.and_then(fold),
            company_name: company_name.and_then(fold),
            email: email.and_then(fold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_scripts_and_spaces() {
        for (input, key) in [
            ("Müller", Some("muller")),
            ("  ŽLUŤOUČKÝ   kůň ", Some("zlutoucky kun")),
            ("Ærøskøbing", Some("aeroskobing")),
            ("Жуков", Some("zhukov")),
            ("O'Brien-Smith", Some("o'brien-smith")),
            ("Jan\tNovák", Some("jan novak")),
            ("北京", Some("bei jing")),
            ("Ann@Example.COM", Some("ann@example.com")),
            ("   ", None),
            ("\u{200b}", None),
        ] {
            assert_eq!(fold(input).as_deref(), key, "{input:?}");
        }
    }

    #[test]
    fn keys_are_cut_at_their_limit() {
        let long = "é".repeat(3 * KEY_MAX);
        let key = fold(&long).unwrap();
        assert_eq!(key.len(), KEY_MAX);
        // A query as long as the name is cut the same way, and still finds it.
        let (from, to) = prefix_range(&fold(&long).unwrap());
        assert!(key >= from && key < to);
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_keys_that_start_with_it() {
        let (from, to) = prefix_range("nov");
        for key in ["nov", "novak", "nov~", "nov zz"] {
            assert!(key >= from.as_str() && key < to.as_str(), "{key}");
        }
        for key in ["no", "nou", "now", "o", "mov"] {
            assert!(!(key >= from.as_str() && key < to.as_str()), "{key}");
        }
    }

    #[test]
    fn keys_of_a_customer() {
        let keys = SearchKeys::of(Some("Jana"), Some("Nováková"), Some("ACME s.r.o."), Some("Jana.N@Example.com"));
        assert_eq!(keys.name.as_deref(), Some("jana novakova"));
        assert_eq!(keys.last_name.as_deref(), Some("novakova"));
        assert_eq!(keys.company_name.as_deref(), Some("acme s.r.o."));
        assert_eq!(keys.email.as_deref(), Some("jana.n@example.com"));
        assert_eq!(SearchKeys::of(None, Some("Dvořák"), None, None).name.as_deref(), Some("dvorak"));
        assert_eq!(SearchKeys::of(None, None, None, None), SearchKeys::default());
    }
}
