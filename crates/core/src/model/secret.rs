//! A wrapper for secrets (tokens, passwords, keys) whose `Debug` and `Display` print `***`, so
//! that a secret can never reach a log line or an error text by accident.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself: call only where it is put on the wire or encrypted.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked form for showing to its owner: the first 4 and last 2 characters.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() <= 8 {
            return "***".into();
        }
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("{head}…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Compares a received secret (a webhook header) with the expected one in constant time, so
/// the answer's timing tells nothing about how much of it was right.
pub fn secret_matches(expected: &[u8], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == got.len() && bool::from(expected.ct_eq(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_compare() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abc", b"abd"));
        assert!(!secret_matches(b"abc", b"ab"));
        assert!(!secret_matches(b"abc", b""));
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("0123456789abcdef0123456789abcdef01234567");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.masked(), "0123…67");
    }
}
