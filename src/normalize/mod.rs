//! Pure functions and newtypes for every input the API normalises; no I/O.

pub mod email;
pub mod ip;
pub mod password;
pub mod phone;
pub mod search;
pub mod slug;
pub mod text;
pub mod token;

pub use email::{Email, EmailError, EMAIL_RULES_VERSION};
pub use ip::{ClientIp, IpError};
pub use password::{Password, PasswordError, PASSWORD_MAX_CHARS};
pub use phone::{parse_region, Phone, PhoneError, Region};
pub use search::{SearchKeys, SEARCH_RULES_VERSION};
pub use slug::slugify;
pub use text::{clean_text, TextKind, TooLong};
pub use token::{
    new_address_id, sha256_hex, ApiKey, ApiKeyKind, ConfirmationToken, CuRefNo, IdentityId, InvalidToken,
    KeyFormatError,
};

/// Reading the shared normalisation vectors (`testdata/vectors/*.tsv`).
#[cfg(test)]
pub(crate) mod vectors {
    use std::path::PathBuf;

    /// One case: its 1-based line number and its tab-separated columns, the first
    /// (input) column with its escapes decoded.
    pub(crate) struct Case {
        pub line: usize,
        pub cols: Vec<String>,
    }

    impl Case {
        pub fn input(&self) -> &str {
            &self.cols[0]
        }

        /// Column `i`, or a panic that names the line.
        pub fn col(&self, i: usize) -> &str {
            self.cols.get(i).unwrap_or_else(|| panic!("line {}: missing column {}", self.line, i + 1))
        }
    }

    fn project_copy(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors").join(name)
    }

    /// Decodes the input column's escapes: `\s` space, `\t` tab, `\n` line feed,
    /// `\u{X}` that code point, `\\` a backslash.
    pub(crate) fn decode(raw: &str) -> String {
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('s') => out.push(' '),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('u') => {
                    assert_eq!(chars.next(), Some('{'), "bad \\u escape in {raw:?}");
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let cp = u32::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("bad \\u{{{hex}}} in {raw:?}"));
                    out.push(char::from_u32(cp).unwrap_or_else(|| panic!("bad code point {hex}")));
                }
                other => panic!("unknown escape \\{other:?} in {raw:?}"),
            }
        }
        out
    }

    /// Every non-blank line of `testdata/vectors/<name>`.
    pub(crate) fn load(name: &str) -> Vec<Case> {
        let path = project_copy(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let cases: Vec<Case> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let mut cols: Vec<String> = l.split('\t').map(str::to_owned).collect();
                cols[0] = decode(&cols[0]);
                Case { line: i + 1, cols }
            })
            .collect();
        assert!(!cases.is_empty(), "{} has no cases", path.display());
        cases
    }

    #[test]
    fn decode_escapes() {
        assert_eq!(decode(r"\s\sa\tb\n"), "  a\tb\n");
        assert_eq!(decode(r"x\u{A0}y\u{200B}"), "x\u{a0}y\u{200b}");
        assert_eq!(decode(r"a\\s"), r"a\s");
    }

    /// The shared vectors are the contract; the project's copies must not drift.
    #[test]
    fn copies_match_shared_vectors() {
        for name in ["email.tsv", "ip.tsv", "phone.tsv"] {
            let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors").join(name);
            if !shared.exists() {
                continue;
            }
            let ours = std::fs::read(project_copy(name)).expect("project copy of vectors");
            let theirs = std::fs::read(&shared).expect("shared vectors");
            assert!(ours == theirs, "testdata/vectors/{name} differs from shared/vectors/{name}; copy it again");
        }
    }
}
