//! Free text: names, company, notice.

/// How a text field is presented once cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A person's name: the first character is upper-cased.
    Name,
    /// Kept as written.
    Plain,
}

/// The cleaned value exceeds the field's documented maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("longer than {max} characters")]
pub struct TooLong {
    pub max: usize,
}

/// Invisible format characters that only serve to spoof or hide text. ZWNJ and ZWJ
/// (U+200C, U+200D) are kept: they change the spelling of Persian and Indic names and
/// hold emoji sequences together.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0001}'
    )
}

/// Strips control and invisible format characters, trims, and collapses each run of
/// whitespace into one space. `Ok(None)` when nothing is left; the length limit is
/// counted in characters of the cleaned value.
pub fn clean_text(input: &str, kind: TextKind, max_chars: usize) -> Result<Option<String>, TooLong> {
    let mut out = String::with_capacity(input.len());
    let mut pending_space = false;
    for c in input.chars() {
        // Whitespace first: tab and line feed are control characters too, but they
        // separate words and must not glue them together.
        if c.is_whitespace() {
            pending_space = true;
        } else if c.is_control() || is_invisible_format(c) {
            continue;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    if kind == TextKind::Name {
        let mut chars = out.chars();
        if let Some(first) = chars.next() {
            out = first.to_uppercase().chain(chars).collect();
        }
    }
    if out.chars().count() > max_chars {
        return Err(TooLong { max: max_chars });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Option<String> {
        clean_text(s, TextKind::Plain, 100).unwrap()
    }

    fn name(s: &str) -> Option<String> {
        clean_text(s, TextKind::Name, 100).unwrap()
    }

    #[test]
    fn trims_and_collapses_whitespace() {
        assert_eq!(plain("  Acme \t\n  s.r.o.  ").as_deref(), Some("Acme s.r.o."));
        assert_eq!(plain("a\u{A0}\u{3000}b\r\nc").as_deref(), Some("a b c"));
        assert_eq!(plain("   "), None);
        assert_eq!(plain(""), None);
    }

    #[test]
    fn strips_control_and_invisible_characters() {
        assert_eq!(plain("Jo\u{0}hn\u{7}").as_deref(), Some("John"));
        assert_eq!(plain("\u{FEFF}Jan\u{200B}a").as_deref(), Some("Jana"));
        assert_eq!(plain("a \u{200B} b").as_deref(), Some("a b"));
        assert_eq!(plain("evil\u{202E}gpj.exe").as_deref(), Some("evilgpj.exe"));
        assert_eq!(plain("\u{200B}\u{1}"), None);
        assert_eq!(plain("می\u{200C}خواهم").as_deref(), Some("می\u{200C}خواهم"));
    }

    #[test]
    fn names_get_first_letter_upper_cased_only() {
        assert_eq!(name(" jan  novák ").as_deref(), Some("Jan novák"));
        assert_eq!(name("čeněk").as_deref(), Some("Čeněk"));
        assert_eq!(name("van der BERG").as_deref(), Some("Van der BERG"));
        assert_eq!(name("\u{200B}émile").as_deref(), Some("Émile"));
        assert_eq!(name("123").as_deref(), Some("123"));
        assert_eq!(plain("jan").as_deref(), Some("jan"));
    }

    #[test]
    fn too_long_counts_characters_after_cleaning() {
        assert_eq!(clean_text("ěščřž", TextKind::Plain, 5), Ok(Some("ěščřž".to_owned())));
        assert_eq!(clean_text("  a    b  ", TextKind::Plain, 3), Ok(Some("a b".to_owned())));
        let err = clean_text("abcdef", TextKind::Name, 5).unwrap_err();
        assert_eq!(err, TooLong { max: 5 });
        assert_eq!(err.to_string(), "longer than 5 characters");
    }
}
