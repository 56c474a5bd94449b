//! Parsing a group list pasted by a user: one WhatsApp group id per line (also several on a
//! line, separated by `,` `;` or spaces), in any of the shapes `GroupJid::parse` accepts; and
//! why the pre-flight check would leave a group out ([`Doubt`]). Pure: the dialogue turns the
//! result into a reply and the stored list.

use crate::model::ids::GroupJid;
use std::collections::HashSet;

/// Why a group would not get the post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Doubt {
    /// The number is not (any more) a participant.
    Left,
    /// Only admins may post, and the number is not one.
    AdminsOnly,
    /// The id does not resolve to a group.
    Unresolved,
    /// The last delivery audit found our post there not delivered.
    NotDelivered,
}

/// How much of a bad line is quoted back to the user.
const QUOTE_CHARS: usize = 60;

/// The outcome of parsing a pasted list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupListParse {
    /// The valid ids, in the order first seen, each once.
    pub groups: Vec<GroupJid>,
    /// Ids seen again after their first occurrence (one entry per repeat).
    pub duplicates: Vec<GroupJid>,
    /// Lines holding anything that is not an id: 1-based line number and the line (trimmed,
    /// cut to 60 characters, the last
    /// being `…` when cut). Valid ids on such a line are still taken.
    pub invalid: Vec<(usize, String)>,
}

/// Parses a pasted list. Blank lines are ignored; a line is reported as invalid as soon as
/// one of its pieces is not a group id.
pub fn parse_group_list(text: &str) -> GroupListParse {
    let mut out = GroupListParse::default();
    let mut seen = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let mut bad = false;
        for piece in line.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
            if piece.is_empty() {
                continue;
            }
            match GroupJid::parse(piece) {
                Some(jid) if seen.insert(jid.clone()) => out.groups.push(jid),
                Some(jid) => out.duplicates.push(jid),
                None => bad = true,
            }
        }
        if bad {
            out.invalid.push((index + 1, quote(line.trim())));
        }
    }
    out
}

/// The line as is when it has at most 60 characters, else its first 59 and `…`.
fn quote(line: &str) -> String {
    if line.chars().count() <= QUOTE_CHARS {
        return line.to_string();
    }
    let head: String = line.chars().take(QUOTE_CHARS - 1).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jids(ids: &[&str]) -> Vec<GroupJid> {
        ids.iter().map(|s| GroupJid::parse(s).unwrap()).collect()
    }

    #[test]
    fn table() {
        const A: &str = "120363025246125486@g.us";
        const B: &str = "120363111111111111@g.us";
        const L: &str = "79115576367-1567456345@g.us";
        // (input, groups, duplicates, invalid)
        type Case<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<(usize, &'a str)>);
        let cases: Vec<Case> = vec![
            ("", vec![], vec![], vec![]),
            ("\n\n  \n", vec![], vec![], vec![]),
            (A, vec![A], vec![], vec![]),
            ("120363025246125486", vec![A], vec![], vec![]),
            (
                "  120363025246125486@g.us  \r\n79115576367-1567456345@g.us\n",
                vec![A, L],
                vec![],
                vec![],
            ),
            (
                "120363025246125486@g.us, 120363111111111111@g.us",
                vec![A, B],
                vec![],
                vec![],
            ),
            (
                "120363025246125486;120363111111111111\t79115576367-1567456345",
                vec![A, B, L],
                vec![],
                vec![],
            ),
            (
                "120363025246125486\n\n120363025246125486@g.us\n120363025246125486",
                vec![A],
                vec![A, A],
                vec![],
            ),
            (
                "hello\n120363025246125486\n",
                vec![A],
                vec![],
                vec![(1, "hello")],
            ),
            (
                "120363025246125486 junk 120363111111111111\n79115576367@c.us",
                vec![A, B],
                vec![],
                vec![
                    (1, "120363025246125486 junk 120363111111111111"),
                    (2, "79115576367@c.us"),
                ],
            ),
            ("\n\n123\n", vec![], vec![], vec![(3, "123")]),
            (",,;\n", vec![], vec![], vec![]),
        ];
        for (input, groups, duplicates, invalid) in cases {
            let got = parse_group_list(input);
            assert_eq!(got.groups, jids(&groups), "groups of {input:?}");
            assert_eq!(got.duplicates, jids(&duplicates), "duplicates of {input:?}");
            let invalid: Vec<(usize, String)> = invalid
                .into_iter()
                .map(|(n, s)| (n, s.to_string()))
                .collect();
            assert_eq!(got.invalid, invalid, "invalid of {input:?}");
        }
    }

    #[test]
    fn long_bad_lines_are_cut() {
        let line = "я".repeat(100);
        let got = parse_group_list(&line);
        assert_eq!(got.invalid.len(), 1);
        let (n, quoted) = &got.invalid[0];
        assert_eq!(*n, 1);
        assert_eq!(quoted.chars().count(), 60);
        assert!(quoted.ends_with('…'));
        assert_eq!(
            parse_group_list(&"x".repeat(60)).invalid[0].1,
            "x".repeat(60)
        );
    }

    #[test]
    fn order_is_kept() {
        let text: String = (0..50)
            .rev()
            .map(|i| format!("1203630000000000{i:02}\n"))
            .collect();
        let got = parse_group_list(&text);
        assert_eq!(got.groups.len(), 50);
        assert_eq!(got.groups[0].as_str(), "120363000000000049@g.us");
        assert_eq!(got.groups[49].as_str(), "120363000000000000@g.us");
    }
}
