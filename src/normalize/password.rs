//! The storefront password rules: at least 8 characters with an upper-case letter, a
//! lower-case letter and a digit, and at most `PASSWORD_MAX_CHARS`.

use std::fmt;

/// Longer passwords are refused: a cap keeps one request from buying unbounded hashing
/// input, and no password manager produces anything near it.
pub const PASSWORD_MAX_CHARS: usize = 1024;
pub const PASSWORD_MIN_CHARS: usize = 8;

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least 8 characters long and contain an upper-case letter, a lower-case letter and a digit")]
    Weak,
    #[error("the password is longer than 1024 characters")]
    TooLong,
}

/// A password as typed; `Debug` never shows it. Only `new_password` checks the strength
/// rules: a login compares whatever was typed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// A password being set: the strength rules and the length cap.
    pub fn new_password(s: &str) -> Result<Password, PasswordError> {
        let password = Password::typed(s)?;
        let chars = s.chars().count();
        let has = |f: fn(char) -> bool| s.chars().any(f);
        let strong = chars >= PASSWORD_MIN_CHARS
            && has(char::is_uppercase)
            && has(char::is_lowercase)
            && has(|c| c.is_ascii_digit());
        if strong {
            Ok(password)
        } else {
            Err(PasswordError::Weak)
        }
    }

    /// A password offered at login: only the length cap applies. Nothing is trimmed, so
    /// spaces are part of the password.
    pub fn typed(s: &str) -> Result<Password, PasswordError> {
        if s.chars().count() > PASSWORD_MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Password(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_rules() {
        for ok in ["Abcdefg1", "pässWORT9", "Correct Horse 1", &format!("Aa1{}", "x".repeat(1021))] {
            assert!(Password::new_password(ok).is_ok(), "{ok:?}");
        }
        for weak in ["", "Abcdef1", "abcdefg1", "ABCDEFG1", "Abcdefgh", "        ", "ÀÉÎÕÜàéî"] {
            assert_eq!(Password::new_password(weak).err(), Some(PasswordError::Weak), "{weak:?}");
        }
        let long = format!("Aa1{}", "x".repeat(1022));
        assert_eq!(Password::new_password(&long).err(), Some(PasswordError::TooLong));
        assert_eq!(Password::typed(&long).err(), Some(PasswordError::TooLong));
        assert!(Password::typed("x").is_ok(), "login takes what was typed");
    }

    #[test]
    fn debug_hides_the_password() {
        let p = Password::typed("Secret123").unwrap();
        assert!(!format!("{p:?}").contains("Secret"));
        assert_eq!(p.expose(), "Secret123");
    }
}
