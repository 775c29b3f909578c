//! Phone numbers: stored and returned as `+<country code> <national number>`, validated
//! for their country by libphonenumber's data (the `phonenumber` crate).

use std::fmt;

pub use phonenumber::country::Id as Region;

/// Why a phone number was refused; every variant is `INVALID_PHONE` to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("letters are not allowed in a phone number (no vanity numbers or extensions)")]
    Letters,
    #[error("the phone number contains {0:?}; only digits, spaces, + and . - / ( ) are allowed")]
    InvalidCharacter(char),
    #[error("a + may appear once, before the digits")]
    MisplacedPlus,
    #[error("the phone number cannot be read: {0}")]
    Unreadable(String),
    #[error("not a valid number for its country")]
    NotValid,
}

/// A valid phone number in its stored form, e.g. `+420 777123456`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Normalises `input`; a number without a country prefix (`+` or `00`) is read in
    /// `default_region`.
    pub fn parse(input: &str, default_region: Region) -> Result<Phone, PhoneError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(PhoneError::Empty);
        }
        let mut dialled = String::with_capacity(input.len());
        for c in input.chars() {
            match c {
                '0'..='9' => dialled.push(c),
                '+' if dialled.is_empty() => dialled.push(c),
                '+' => return Err(PhoneError::MisplacedPlus),
                '.' | '-' | '/' | '(' | ')' => {}
                c if c.is_whitespace() => {}
                c if c.is_alphabetic() => return Err(PhoneError::Letters),
                c => return Err(PhoneError::InvalidCharacter(c)),
            }
        }
        if dialled.is_empty() || dialled == "+" {
            return Err(PhoneError::Empty);
        }
        // `00` is the international prefix across most of the world; read it as `+`.
        // International input is parsed with no region: given one, the library applies
        // that region's trunk-prefix rules to another country's number.
        let international = dialled.strip_prefix("00").map(|rest| format!("+{rest}"));
        let dialled = international.unwrap_or(dialled);
        let region = (!dialled.starts_with('+')).then_some(default_region);
        let number = phonenumber::parse(region, &dialled).map_err(|e| PhoneError::Unreadable(e.to_string()))?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::NotValid);
        }
        // The national number's Display keeps significant leading zeros (Italy).
        Ok(Phone(format!("+{} {}", number.code().value(), number.national())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a region setting such as `CZ` (ISO 3166-1 alpha-2, any case).
pub fn parse_region(code: &str) -> Option<Region> {
    code.trim().to_ascii_uppercase().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::vectors;

    #[test]
    fn shared_vectors() {
        let cases = vectors::load("phone.tsv");
        for case in &cases {
            let region = match case.col(1) {
                "-" => Region::CZ,
                code => parse_region(code).unwrap_or_else(|| panic!("line {}: bad region {code}", case.line)),
            };
            let got = Phone::parse(case.input(), region);
            match case.col(2) {
                "ERROR" => {
                    assert!(got.is_err(), "line {}: {:?} should be refused, got {got:?}", case.line, case.input())
                }
                want => assert_eq!(got.as_ref().map(Phone::as_str), Ok(want), "line {}: {:?}", case.line, case.input()),
            }
        }
        assert!(cases.len() >= 30);
    }

    #[test]
    fn specific_reasons() {
        assert_eq!(Phone::parse("  ", Region::CZ), Err(PhoneError::Empty));
        assert_eq!(Phone::parse("+", Region::CZ), Err(PhoneError::Empty));
        assert_eq!(Phone::parse("777 ABC", Region::CZ), Err(PhoneError::Letters));
        assert_eq!(Phone::parse("777#", Region::CZ), Err(PhoneError::InvalidCharacter('#')));
        assert_eq!(Phone::parse("1+2", Region::CZ), Err(PhoneError::MisplacedPlus));
        assert_eq!(Phone::parse("777 12 345", Region::CZ), Err(PhoneError::NotValid));
    }

    #[test]
    fn regions_read_in_any_case() {
        assert_eq!(parse_region("cz"), Some(Region::CZ));
        assert_eq!(parse_region(" GB "), Some(Region::GB));
        assert_eq!(parse_region("XX"), None);
        assert_eq!(parse_region(""), None);
    }
}
