//! Newtype identifiers, so a group id can never be passed where a user id is expected.
//! Strings that come from users (group ids, Wappi profile ids) are validated by `parse`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A Telegram user id (also the id of the private chat with that user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// A Telegram chat id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatId(pub i64);

impl From<UserId> for ChatId {
    fn from(u: UserId) -> Self {
        ChatId(u.0)
    }
}

/// A mailing: one post sent to a list of groups from one Wappi profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MailingId(pub i64);

/// A scheduled series: one post snapshot run on a rule's dates (a one-off is a series of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeriesId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Display for MailingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A WhatsApp group id as Wappi addresses it: `<digits>@g.us` or `<digits>-<digits>@g.us`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupJid(String);

impl GroupJid {
    /// Accepts `120363…@g.us`, the legacy `7911…-1567…@g.us`, or bare digits (the suffix is
    /// added). Surrounding spaces are ignored. Anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim();
        let local = s.strip_suffix("@g.us").unwrap_or(s);
        let mut parts = local.split('-');
        let first = parts.next()?;
        let second = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let digits = |p: &str| (5..=40).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(first) || !second.is_none_or(digits) {
            return None;
        }
        Some(GroupJid(format!("{local}@g.us")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Wappi profile id (one connected WhatsApp number), e.g. `2f099bc3-478d`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileId(String);

impl ProfileId {
    /// Letters, digits and `-`, 4 to 64 characters. The exact shape is not documented by Wappi
    /// (`8hex-4hex` is what is seen), so only what is safe in a query string is enforced.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim();
        let ok = (4..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| ProfileId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a stored image (a row of `images`).
pub type ImageId = i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids() {
        let cases = [
            ("120363025246125486@g.us", Some("120363025246125486@g.us")),
            ("  120363025246125486  ", Some("120363025246125486@g.us")),
            (
                "79115576367-1567456345@g.us",
                Some("79115576367-1567456345@g.us"),
            ),
            ("79115576367@c.us", None),
            ("hello", None),
            ("", None),
            ("123", None),
            ("1-2-3@g.us", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                GroupJid::parse(input).as_ref().map(GroupJid::as_str),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn profile_ids() {
        assert!(ProfileId::parse("2f099bc3-478d").is_some());
        assert!(ProfileId::parse("a b").is_none());
        assert!(ProfileId::parse("x&y=z").is_none());
    }
}
