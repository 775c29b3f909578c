//! E-mail addresses: the normalised form that is stored and returned, and the
//! canonical form that is the uniqueness key within a data space.

/// Bumped whenever a rule below changes, so stored canonical keys can be recomputed.
pub const EMAIL_RULES_VERSION: u32 = 1;

const MAX_LOCAL: usize = 64;
const MAX_LABEL: usize = 63;
const MAX_ADDRESS: usize = 254;

/// Why an address was rejected; the message is shown to API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("empty")]
    Empty,
    #[error("quoted local part not supported")]
    QuotedLocalPart,
    #[error("whitespace or control character inside address")]
    InnerWhitespace,
    #[error("missing @")]
    MissingAt,
    #[error("more than one @")]
    MultipleAt,
    #[error("empty local part")]
    EmptyLocalPart,
    #[error("non-ASCII local part (needs SMTPUTF8, not supported)")]
    NonAsciiLocalPart,
    #[error("local part longer than 64 octets")]
    LocalPartTooLong,
    #[error("leading, trailing or consecutive dot in local part")]
    LocalPartDots,
    #[error("invalid character in local part")]
    InvalidLocalChar,
    #[error("empty domain")]
    EmptyDomain,
    #[error("IP-literal domain not supported")]
    IpLiteral,
    #[error("invalid internationalised domain name")]
    InvalidIdn,
    #[error("trailing dot in domain")]
    TrailingDot,
    #[error("empty domain label (consecutive dots)")]
    EmptyLabel,
    #[error("domain label longer than 63 octets")]
    LabelTooLong,
    // Covers hyphens at either end of a label too: that is part of the LDH rule.
    #[error("domain label not letters/digits/hyphen (LDH)")]
    NotLdh,
    #[error("domain has no TLD (single label)")]
    NoTld,
    #[error("numeric top-level domain")]
    NumericTld,
    #[error("address longer than 254 octets")]
    TooLong,
    #[error("no such mailbox: the provider's rules leave an empty local part")]
    NoMailbox,
}

/// A validated address in both of its forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    normalized: String,
    canonical: String,
}

impl Email {
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        // Before the whitespace check: `"john doe"@x` should be told what is really wrong.
        if s.starts_with('"') {
            return Err(EmailError::QuotedLocalPart);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::InnerWhitespace);
        }
        let (local, domain) = s.split_once('@').ok_or(EmailError::MissingAt)?;
        if domain.contains('@') {
            return Err(EmailError::MultipleAt);
        }
        let local = check_local(local)?;
        let domain = check_domain(domain)?;
        let normalized = format!("{local}@{domain}");
        if normalized.len() > MAX_ADDRESS {
            return Err(EmailError::TooLong);
        }
        let canonical = canonicalize(&local, &domain).ok_or(EmailError::NoMailbox)?;
        Ok(Email { normalized, canonical })
    }

    /// The form that is stored and returned to clients.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The uniqueness key: provider aliases folded together.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// `(normalized, canonical)`.
    pub fn into_parts(self) -> (String, String) {
        (self.normalized, self.canonical)
    }
}

/// RFC 5322 `atext`; dots are handled separately.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn check_local(local: &str) -> Result<String, EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if !local.is_ascii() {
        return Err(EmailError::NonAsciiLocalPart);
    }
    if local.len() > MAX_LOCAL {
        return Err(EmailError::LocalPartTooLong);
    }
    if local.split('.').any(str::is_empty) {
        return Err(EmailError::LocalPartDots);
    }
    if !local.bytes().all(|b| b == b'.' || is_atext(b)) {
        return Err(EmailError::InvalidLocalChar);
    }
    Ok(local.to_ascii_lowercase())
}

fn check_domain(domain: &str) -> Result<String, EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    if domain.starts_with('[') {
        return Err(EmailError::IpLiteral);
    }
    // UTS-46 maps (full-width forms, case) and punycodes; it is deliberately run
    // without its own ASCII restrictions so every structural check below sees the
    // final ASCII form, whatever Unicode the input used to spell it.
    let ascii = idna::domain_to_ascii(domain).map_err(|_| EmailError::InvalidIdn)?;
    if ascii.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if let Some((last, rest)) = labels.split_last() {
        if last.is_empty() && !rest.is_empty() && rest.iter().all(|l| !l.is_empty()) {
            return Err(EmailError::TrailingDot);
        }
    }
    for label in &labels {
        if label.is_empty() {
            return Err(EmailError::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(EmailError::LabelTooLong);
        }
        let ldh = label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ldh || label.starts_with('-') || label.ends_with('-') {
            return Err(EmailError::NotLdh);
        }
    }
    match labels.last() {
        _ if labels.len() < 2 => Err(EmailError::NoTld),
        Some(tld) if tld.bytes().all(|b| b.is_ascii_digit()) => Err(EmailError::NumericTld),
        _ => Ok(ascii),
    }
}

/// Microsoft consumer domains: Outlook.com serves all of them and ignores `+tag`.
#[rustfmt::skip]
const MICROSOFT: &[&str] = &[
    "outlook.com", "outlook.at", "outlook.be", "outlook.com.ar", "outlook.com.au",
    "outlook.com.br", "outlook.cz", "outlook.de", "outlook.dk", "outlook.es",
    "outlook.fr", "outlook.ie", "outlook.in", "outlook.it", "outlook.jp",
    "outlook.kr", "outlook.pt", "outlook.sk",
    "hotmail.com", "hotmail.be", "hotmail.ca", "hotmail.ch", "hotmail.co.jp",
    "hotmail.co.uk", "hotmail.com.ar", "hotmail.com.au", "hotmail.com.br",
    "hotmail.com.mx", "hotmail.cz", "hotmail.de", "hotmail.dk", "hotmail.es",
    "hotmail.fi", "hotmail.fr", "hotmail.gr", "hotmail.it", "hotmail.nl",
    "hotmail.no", "hotmail.se", "hotmail.sk",
    "live.com", "live.at", "live.be", "live.ca", "live.cn", "live.co.uk",
    "live.com.au", "live.com.mx", "live.de", "live.dk", "live.fr", "live.ie",
    "live.it", "live.jp", "live.nl", "live.no", "live.se",
    "msn.com", "passport.com", "windowslive.com",
];

/// What a provider ignores in the local part.
#[derive(Clone, Copy)]
enum Fold {
    /// `+tag` only.
    Tag,
    /// `+tag` and dots (Gmail).
    TagDots,
    /// `+tag` and `.`, `_`, `-` (Proton).
    TagPunct,
}

/// Providers whose addresses alias each other: domain → (canonical domain, fold).
/// Only providers known to deliver these variants to one mailbox are listed: merging
/// two real people is worse than missing a duplicate.
fn provider(domain: &str) -> Option<(&str, Fold)> {
    let found = match domain {
        "gmail.com" | "googlemail.com" => ("gmail.com", Fold::TagDots),
        "icloud.com" | "me.com" | "mac.com" => ("icloud.com", Fold::Tag),
        "yandex.ru" | "yandex.com" | "ya.ru" | "yandex.by" | "yandex.kz" | "yandex.ua" | "yandex.com.tr" => {
            ("yandex.ru", Fold::Tag)
        }
        "fastmail.com" | "fastmail.fm" | "zoho.com" | "zohomail.com" => (domain, Fold::Tag),
        "proton.me" | "protonmail.com" | "protonmail.ch" | "pm.me" => (domain, Fold::TagPunct),
        d if MICROSOFT.contains(&d) => (domain, Fold::Tag),
        _ => return None,
    };
    Some(found)
}

/// Both arguments are already normalised.
/// The canonical form; `None` when the provider's rules leave nothing of the local part
/// (`+x@gmail.com`, `.-_@pm.me`): no such mailbox can exist.
fn canonicalize(local: &str, domain: &str) -> Option<String> {
    let Some((canon_domain, fold)) = provider(domain) else {
        return Some(format!("{local}@{domain}"));
    };
    let untagged = local.split('+').next().unwrap_or_default();
    let folded: String = match fold {
        Fold::Tag => untagged.to_owned(),
        Fold::TagDots => untagged.chars().filter(|&c| c != '.').collect(),
        Fold::TagPunct => untagged.chars().filter(|c| !matches!(c, '.' | '_' | '-')).collect(),
    };
    (!folded.is_empty()).then(|| format!("{folded}@{canon_domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::vectors;

    #[test]
    fn shared_vectors() {
        let cases = vectors::load("email.tsv");
        for case in &cases {
            let got = Email::parse(case.input());
            let line = case.line;
            if case.col(1) == "ERROR" {
                let err = got.expect_err(&format!("email.tsv line {line}: accepted {:?}", case.input()));
                assert_eq!(err.to_string(), case.col(2), "email.tsv line {line}: wrong reason");
            } else {
                let email = got.unwrap_or_else(|e| panic!("email.tsv line {line}: rejected: {e}"));
                assert_eq!(email.normalized(), case.col(1), "email.tsv line {line}: normalised");
                assert_eq!(email.canonical(), case.col(2), "email.tsv line {line}: canonical");
            }
        }
    }

    fn err(s: &str) -> EmailError {
        Email::parse(s).expect_err(s)
    }

    fn canon(s: &str) -> String {
        Email::parse(s).expect(s).canonical().to_owned()
    }

    #[test]
    fn rules_beyond_the_vectors() {
        assert_eq!(err("a@b@example.com"), EmailError::MultipleAt);
        assert_eq!(err("user@example.123"), EmailError::NumericTld);
        assert_eq!(err("user@example-.com"), EmailError::NotLdh);
        assert_eq!(err("us_er@ex_ample.com"), EmailError::NotLdh);
        assert_eq!(err("user@exa\u{FF20}mple.com"), EmailError::NotLdh);
        assert_eq!(err(&format!("{}@example.com", "a".repeat(65))), EmailError::LocalPartTooLong);
        assert_eq!(err("user@\u{3000}example.com"), EmailError::InnerWhitespace);
        assert_eq!(err("us\u{7}er@example.com"), EmailError::InnerWhitespace);
        assert_eq!(err("user@example.com\u{3002}"), EmailError::TrailingDot);
        assert!(Email::parse("user@123.example.com").is_ok());
    }

    #[test]
    fn provider_folding() {
        // A rule that leaves nothing of the local part: no such mailbox can exist.
        for empty in ["+tag@gmail.com", "+x@googlemail.com", "+a@icloud.com", "_-_@pm.me"] {
            assert_eq!(Email::parse(empty), Err(EmailError::NoMailbox), "{empty}");
        }
        assert_eq!(canon("a.b+c@fastmail.fm"), "a.b@fastmail.fm");
        assert_eq!(canon("a.b+c@zohomail.com"), "a.b@zohomail.com");
        assert_eq!(canon("a-b+c@pm.me"), "ab@pm.me");
        assert_eq!(canon("a+b@yandex.com.tr"), "a@yandex.ru");
        assert_eq!(canon("a.b+c@msn.com"), "a.b@msn.com");
        assert_eq!(canon("a.b+c@yahoo.com"), "a.b+c@yahoo.com");
        assert_eq!(canon("a.b+c@gmail.co.uk"), "a.b+c@gmail.co.uk");
        let e = Email::parse(" A@B.CZ ").unwrap();
        assert_eq!(e.into_parts(), ("a@b.cz".to_owned(), "a@b.cz".to_owned()));
    }
}
