//! Opaque identifiers and credentials: cuRefNo, identityId and API keys.

use std::fmt;

use rand::distr::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

const CU_REF_NO_LEN: usize = 16;
const IDENTITY_ID_LEN: usize = 32;
const KEY_BODY_LEN: usize = 28;

/// Lower-case hex SHA-256 of the UTF-8 bytes; how secrets are stored.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Not a token of the expected length made of `A-Z`, `a-z`, `0-9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid token: wrong length or a character other than A-Z, a-z, 0-9")]
pub struct InvalidToken;

/// Not `PROD`, `DEV_` or `ROOT` followed by 28 letters or digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key: expected PROD, DEV_ or ROOT followed by 28 letters or digits")]
pub struct KeyFormatError;

fn is_alnum_of_len(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `ThreadRng` is a CSPRNG reseeded from the OS, fit for identifiers that must not be guessed.
fn random_alnum(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A new id for a stored address: 16 letters or digits, unique among the contact's.
pub fn new_address_id() -> String {
    random_alnum(CU_REF_NO_LEN)
}

/// A customer's public reference number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CuRefNo(String);

impl CuRefNo {
    /// Exactly 16 ASCII letters or digits; no trimming, so a padded value is rejected.
    pub fn parse(s: &str) -> Result<CuRefNo, InvalidToken> {
        if is_alnum_of_len(s, CU_REF_NO_LEN) {
            Ok(CuRefNo(s.to_owned()))
        } else {
            Err(InvalidToken)
        }
    }

    pub fn generate() -> CuRefNo {
        CuRefNo(random_alnum(CU_REF_NO_LEN))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CuRefNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A storefront identity secret; only its digest is stored, so `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdentityId(String);

impl IdentityId {
    /// Exactly 32 ASCII letters or digits; no trimming.
    pub fn parse(s: &str) -> Result<IdentityId, InvalidToken> {
        if is_alnum_of_len(s, IDENTITY_ID_LEN) {
            Ok(IdentityId(s.to_owned()))
        } else {
            Err(InvalidToken)
        }
    }

    pub fn generate() -> IdentityId {
        IdentityId(random_alnum(IDENTITY_ID_LEN))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn digest(&self) -> String {
        sha256_hex(&self.0)
    }
}

impl fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityId(****)")
    }
}

/// A single-use account confirmation secret, mailed to the address; only its digest is
/// stored. Same alphabet and length as an identityId, but never interchangeable with one.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmationToken(IdentityId);

impl ConfirmationToken {
    pub fn parse(s: &str) -> Result<ConfirmationToken, InvalidToken> {
        IdentityId::parse(s).map(ConfirmationToken)
    }

    pub fn generate() -> ConfirmationToken {
        ConfirmationToken(IdentityId::generate())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The stored form.
    pub fn digest(&self) -> String {
        self.0.digest()
    }
}

impl fmt::Debug for ConfirmationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfirmationToken(****)")
    }
}

/// What a key may reach: `Prod` and `Root` the live space, `Dev` the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiKeyKind {
    Prod,
    Dev,
    Root,
}

impl ApiKeyKind {
    const ALL: [ApiKeyKind; 3] = [ApiKeyKind::Prod, ApiKeyKind::Dev, ApiKeyKind::Root];

    /// The key's first four characters.
    pub fn prefix(&self) -> &'static str {
        match self {
            ApiKeyKind::Prod => "PROD",
            ApiKeyKind::Dev => "DEV_",
            ApiKeyKind::Root => "ROOT",
        }
    }

    /// The name stored in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            ApiKeyKind::Prod => "PROD",
            ApiKeyKind::Dev => "DEV",
            ApiKeyKind::Root => "ROOT",
        }
    }

    /// Inverse of [`ApiKeyKind::as_str`].
    pub fn from_str_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A well-formed API key. It is a credential: only its digest is stored and only
/// [`ApiKey::prefix8`] may be logged, so there is no `Display` and `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// `^(PROD|DEV_|ROOT)[A-Za-z0-9]{28}$`; says nothing about whether the key exists.
    pub fn parse(s: &str) -> Result<ApiKey, KeyFormatError> {
        let well_formed = ApiKeyKind::ALL
            .iter()
            .any(|k| s.strip_prefix(k.prefix()).is_some_and(|body| is_alnum_of_len(body, KEY_BODY_LEN)));
        if well_formed {
            Ok(ApiKey(s.to_owned()))
        } else {
            Err(KeyFormatError)
        }
    }

    pub fn generate(kind: ApiKeyKind) -> ApiKey {
        ApiKey(format!("{}{}", kind.prefix(), random_alnum(KEY_BODY_LEN)))
    }

    pub fn kind(&self) -> ApiKeyKind {
        ApiKeyKind::ALL
            .into_iter()
            .find(|k| self.0.starts_with(k.prefix()))
            .expect("a parsed key starts with a known prefix")
    }

    /// The stored form.
    pub fn digest(&self) -> String {
        sha256_hex(&self.0)
    }

    /// The first 8 characters: all that logs may show.
    pub fn prefix8(&self) -> &str {
        &self.0[..8]
    }

    /// The whole key, for the one response that hands it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "PRODabcdefghijklmnopqrstuvwxyz12";

    #[test]
    fn sha256_of_known_values() {
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn cu_ref_no_parse() {
        assert_eq!(CuRefNo::parse("AbCdEfGh12345678").unwrap().as_str(), "AbCdEfGh12345678");
        for bad in
            ["", "AbCdEfGh1234567", "AbCdEfGh123456789", " AbCdEfGh1234567", "AbCdEfGh1234567-", "AbCdEfGh123456é"]
        {
            assert_eq!(CuRefNo::parse(bad), Err(InvalidToken), "{bad:?}");
        }
    }

    #[test]
    fn identity_id_parse_and_digest() {
        let raw = "a".repeat(32);
        let id = IdentityId::parse(&raw).unwrap();
        assert_eq!(id.digest(), sha256_hex(&raw));
        assert_eq!(id.digest().len(), 64);
        assert!(IdentityId::parse(&"a".repeat(31)).is_err());
        assert!(IdentityId::parse(&"a".repeat(33)).is_err());
        assert!(IdentityId::parse(&format!("{}_", "a".repeat(31))).is_err());
    }

    #[test]
    fn generated_tokens_have_the_right_shape() {
        let r = CuRefNo::generate();
        assert_eq!(CuRefNo::parse(r.as_str()).as_ref(), Ok(&r));
        let i = IdentityId::generate();
        assert_eq!(IdentityId::parse(i.as_str()).as_ref(), Ok(&i));
        assert_ne!(CuRefNo::generate(), CuRefNo::generate());
        for kind in ApiKeyKind::ALL {
            let k = ApiKey::generate(kind);
            assert_eq!(k.expose().len(), 32);
            assert_eq!(ApiKey::parse(k.expose()).as_ref(), Ok(&k));
            assert_eq!(k.kind(), kind);
        }
    }

    #[test]
    fn api_key_parse() {
        let k = ApiKey::parse(KEY).unwrap();
        assert_eq!(k.kind(), ApiKeyKind::Prod);
        assert_eq!(k.prefix8(), "PRODabcd");
        assert_eq!(k.digest(), sha256_hex(KEY));
        assert_eq!(ApiKey::parse(&KEY.replace("PROD", "DEV_")).unwrap().kind(), ApiKeyKind::Dev);
        assert_eq!(ApiKey::parse(&KEY.replace("PROD", "ROOT")).unwrap().kind(), ApiKeyKind::Root);
        for bad in [
            "",
            &KEY[..31],
            &format!("{KEY}x"),
            &KEY.replace("PROD", "prod"),
            &KEY.replace("PROD", "DEVX"),
            &KEY.replace("PROD", "TEST"),
            &KEY.replace('z', "-"),
            &format!(" {}", &KEY[..31]),
        ] {
            assert_eq!(ApiKey::parse(bad), Err(KeyFormatError), "{bad:?}");
        }
    }

    #[test]
    fn kind_names() {
        for kind in ApiKeyKind::ALL {
            assert_eq!(ApiKeyKind::from_str_db(kind.as_str()), Some(kind));
        }
        assert_eq!(ApiKeyKind::Dev.prefix(), "DEV_");
        assert_eq!(ApiKeyKind::Dev.as_str(), "DEV");
        assert_eq!(ApiKeyKind::from_str_db("DEV_"), None);
        assert_eq!(ApiKeyKind::from_str_db("prod"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let id = IdentityId::parse("SecretSecretSecretSecretSecret12").unwrap();
        assert_eq!(format!("{id:?}"), "IdentityId(****)");
        let k = ApiKey::parse(KEY).unwrap();
        let shown = format!("{k:?}");
        assert_eq!(shown, "ApiKey(PRODabcd…)");
        assert!(!shown.contains("efgh"));
        assert_eq!(format!("{:?}", Some(&k)), "Some(ApiKey(PRODabcd…))");
    }
}
