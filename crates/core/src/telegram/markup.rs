//! Telegram formatting (message entities) to WhatsApp markup.
//!
//! Telegram sends plain text plus a list of entities whose offsets and lengths count UTF-16
//! code units; WhatsApp wants inline markers (`*bold*`, `_italic_`, `~strike~`,
//! ```` ```mono``` ````). Entities are trimmed of surrounding whitespace (WhatsApp only renders
//! a marker that hugs non-space text), arranged into a tree (a span that crosses its parent's
//! end is split in two) and rendered depth first, so markers always nest properly.

use super::types::MessageEntity;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Converts a Telegram text and its entities into WhatsApp markup.
///
/// Bold, italic, strikethrough, code and pre become markers; `text_link` becomes
/// `text (url)`; every other entity (underline, spoiler, mentions…) leaves its text plain.
pub fn to_whatsapp(text: &str, entities: &[MessageEntity]) -> String {
    let chars: Vec<char> = text.chars().collect();
    // UTF-16 offset at which each char starts, plus the total length at the end.
    let mut starts = Vec::with_capacity(chars.len() + 1);
    let mut pos = 0usize;
    for c in &chars {
        starts.push(pos);
        pos += c.len_utf16();
    }
    starts.push(pos);
    // A UTF-16 offset as a char index; an offset inside a surrogate pair rounds up.
    let char_at = |unit: usize| starts.partition_point(|&s| s < unit).min(chars.len());

    let mut queue = BinaryHeap::new();
    for (order, e) in entities.iter().enumerate() {
        let Some(style) = Style::of(e) else { continue };
        let start = char_at(e.offset);
        let end = char_at(e.offset.saturating_add(e.length));
        if let Some((start, end)) = trim(&chars, start, end) {
            queue.push(Reverse(Span {
                start,
                end: Reverse(end),
                order,
                style,
            }));
        }
    }

    let mut roots: Vec<Node> = Vec::new();
    while let Some(Reverse(span)) = queue.pop() {
        if let Some(rest) = insert(&mut roots, &chars, span) {
            queue.push(Reverse(rest));
        }
    }

    let mut out = String::with_capacity(text.len() + 16);
    render(&chars, 0, chars.len(), &roots, Active::default(), &mut out);
    out
}

/// The formatting a span applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Style {
    Bold,
    Italic,
    Strike,
    Mono,
    Link(String),
}

impl Style {
    fn of(e: &MessageEntity) -> Option<Style> {
        Some(match e.kind.as_str() {
            "bold" => Style::Bold,
            "italic" => Style::Italic,
            "strikethrough" => Style::Strike,
            "code" | "pre" => Style::Mono,
            "text_link" => Style::Link(e.url.clone().filter(|u| !u.trim().is_empty())?),
            _ => return None,
        })
    }
}

/// A span in char indices. Ordered by start, then longest first, then entity order, so that
/// a parent always comes before its children.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    start: usize,
    end: Reverse<usize>,
    order: usize,
    style: Style,
}

#[derive(Debug)]
struct Node {
    start: usize,
    end: usize,
    style: Style,
    children: Vec<Node>,
}

/// Shrinks `start..end` to exclude whitespace at both edges; `None` when nothing is left.
fn trim(chars: &[char], mut start: usize, mut end: usize) -> Option<(usize, usize)> {
    while start < end && chars[start].is_whitespace() {
        start += 1;
    }
    while end > start && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    (start < end).then_some((start, end))
}

/// Inserts a span into a sibling list. Spans arrive sorted, so only the last sibling can
/// overlap it. A span crossing that sibling's end is cut there: the inside part goes down,
/// the remainder is returned to be queued again.
fn insert(nodes: &mut Vec<Node>, chars: &[char], span: Span) -> Option<Span> {
    let end = span.end.0;
    match nodes.last_mut() {
        Some(last) if span.start < last.end => {
            if end <= last.end {
                return insert(&mut last.children, chars, span);
            }
            let split = last.end;
            let inside = trim(chars, span.start, split).map(|(s, e)| Span {
                start: s,
                end: Reverse(e),
                ..span.clone()
            });
            let rest = trim(chars, split, end).map(|(s, e)| Span {
                start: s,
                end: Reverse(e),
                ..span.clone()
            });
            if let Some(inside) = inside {
                // The inside part lies within `last`, so it cannot be split again.
                let _ = insert(&mut last.children, chars, inside);
            }
            rest
        }
        _ => {
            nodes.push(Node {
                start: span.start,
                end,
                style: span.style,
                children: Vec::new(),
            });
            None
        }
    }
}

/// The markers already open around a node, so that a span of the same kind nested inside
/// another does not repeat them.
#[derive(Debug, Clone, Copy, Default)]
struct Active {
    bold: bool,
    italic: bool,
    strike: bool,
    link: bool,
}

fn render(
    chars: &[char],
    start: usize,
    end: usize,
    nodes: &[Node],
    active: Active,
    out: &mut String,
) {
    let mut pos = start;
    for node in nodes {
        out.extend(&chars[pos..node.start]);
        render_node(chars, node, active, out);
        pos = node.end;
    }
    out.extend(&chars[pos..end]);
}

fn render_node(chars: &[char], node: &Node, active: Active, out: &mut String) {
    let inner = |active: Active, out: &mut String| {
        render(chars, node.start, node.end, &node.children, active, out)
    };
    let wrap = |marker: &str, on: bool, active: Active, out: &mut String| {
        if !on {
            out.push_str(marker);
        }
        inner(active, out);
        if !on {
            out.push_str(marker);
        }
    };
    match &node.style {
        Style::Bold => wrap(
            "*",
            active.bold,
            Active {
                bold: true,
                ..active
            },
            out,
        ),
        Style::Italic => wrap(
            "_",
            active.italic,
            Active {
                italic: true,
                ..active
            },
            out,
        ),
        Style::Strike => wrap(
            "~",
            active.strike,
            Active {
                strike: true,
                ..active
            },
            out,
        ),
        // Monospace shows its content verbatim: nested formatting would print its markers.
        Style::Mono => {
            out.push_str("```");
            out.extend(&chars[node.start..node.end]);
            out.push_str("```");
        }
        Style::Link(url) => {
            inner(
                Active {
                    link: true,
                    ..active
                },
                out,
            );
            let shown: String = chars[node.start..node.end].iter().collect();
            if !active.link && shown.trim() != url.trim() {
                out.push_str(" (");
                out.push_str(url);
                out.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: &str, offset: usize, length: usize) -> MessageEntity {
        MessageEntity {
            kind: kind.into(),
            offset,
            length,
            url: None,
        }
    }

    fn link(offset: usize, length: usize, url: &str) -> MessageEntity {
        MessageEntity {
            kind: "text_link".into(),
            offset,
            length,
            url: Some(url.into()),
        }
    }

    #[test]
    fn converts() {
        let cases: Vec<(&str, &str, Vec<MessageEntity>, &str)> = vec![
            ("plain", "hello", vec![], "hello"),
            (
                "bold",
                "hello world",
                vec![e("bold", 0, 5)],
                "*hello* world",
            ),
            (
                "italic",
                "hello world",
                vec![e("italic", 6, 5)],
                "hello _world_",
            ),
            (
                "strike",
                "old new",
                vec![e("strikethrough", 0, 3)],
                "~old~ new",
            ),
            (
                "code",
                "run ls -la now",
                vec![e("code", 4, 6)],
                "run ```ls -la``` now",
            ),
            (
                "pre",
                "a\nfn x() {}\nb",
                vec![e("pre", 2, 9)],
                "a\n```fn x() {}```\nb",
            ),
            (
                "underline plain",
                "under",
                vec![e("underline", 0, 5)],
                "under",
            ),
            (
                "spoiler plain",
                "secret",
                vec![e("spoiler", 0, 6)],
                "secret",
            ),
            (
                "mention plain",
                "hi @bob",
                vec![e("mention", 3, 4)],
                "hi @bob",
            ),
            (
                "text_link",
                "see docs now",
                vec![link(4, 4, "https://x.io")],
                "see docs (https://x.io) now",
            ),
            (
                "link equal url",
                "https://x.io",
                vec![link(0, 12, "https://x.io")],
                "https://x.io",
            ),
            // 😀 is two UTF-16 units: the entity starts at unit 3, char 2.
            (
                "emoji before",
                "😀 hi there",
                vec![e("bold", 3, 2)],
                "😀 *hi* there",
            ),
            (
                "emoji inside",
                "a 😀b c",
                vec![e("italic", 2, 3)],
                "a _😀b_ c",
            ),
            (
                "flag emoji",
                "🇷🇺 Россия",
                vec![e("bold", 5, 6)],
                "🇷🇺 *Россия*",
            ),
            (
                "cyrillic",
                "Привет, мир",
                vec![e("bold", 0, 6), e("italic", 8, 3)],
                "*Привет*, _мир_",
            ),
            (
                "nested",
                "bold and italic",
                vec![e("bold", 0, 15), e("italic", 9, 6)],
                "*bold and _italic_*",
            ),
            (
                "nested same start",
                "both here",
                vec![e("italic", 0, 4), e("bold", 0, 9)],
                "*_both_ here*",
            ),
            (
                "identical ranges",
                "both",
                vec![e("bold", 0, 4), e("italic", 0, 4)],
                "*_both_*",
            ),
            (
                "adjacent",
                "abcd",
                vec![e("bold", 0, 2), e("italic", 2, 2)],
                "*ab*_cd_",
            ),
            (
                "leading space",
                "a  bold",
                vec![e("bold", 1, 6)],
                "a  *bold*",
            ),
            (
                "trailing space",
                "bold  x",
                vec![e("bold", 0, 6)],
                "*bold*  x",
            ),
            (
                "both edges",
                "x\n bold \ny",
                vec![e("bold", 1, 8)],
                "x\n *bold* \ny",
            ),
            ("only whitespace", "a   b", vec![e("bold", 1, 3)], "a   b"),
            ("empty entity", "ab", vec![e("bold", 1, 0)], "ab"),
            (
                "overlapping",
                "abcdefgh",
                vec![e("bold", 0, 5), e("italic", 3, 5)],
                "*abc_de_*_fgh_",
            ),
            (
                "overlap at space",
                "ab cd ef",
                vec![e("bold", 0, 5), e("italic", 3, 5)],
                "*ab _cd_* _ef_",
            ),
            (
                "same kind nested",
                "big bold",
                vec![e("bold", 0, 8), e("bold", 4, 4)],
                "*big bold*",
            ),
            (
                "code ignores inner",
                "x = y",
                vec![e("code", 0, 5), e("bold", 0, 1)],
                "```x = y```",
            ),
            (
                "link in bold",
                "go here",
                vec![e("bold", 0, 7), link(3, 4, "https://a.b")],
                "*go here (https://a.b)*",
            ),
            ("past the end", "abc", vec![e("bold", 1, 50)], "a*bc*"),
            ("offset past end", "abc", vec![e("bold", 10, 2)], "abc"),
        ];
        for (name, text, entities, want) in cases {
            assert_eq!(to_whatsapp(text, &entities), want, "case {name}");
        }
    }

    #[test]
    fn entities_in_any_order() {
        let text = "one two three";
        let ents = vec![
            e("italic", 8, 5),
            e("bold", 0, 13),
            e("strikethrough", 4, 3),
        ];
        assert_eq!(to_whatsapp(text, &ents), "*one ~two~ _three_*");
    }
}
