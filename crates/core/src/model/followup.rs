//! After the send: a mailing that acts on an earlier mailing's posts instead of posting. ✏️
//! fixes the text in every group, 🗑 deletes the post in every group. It is an ordinary
//! mailing (ledger, pace, progress, ⛔, report, exactly once per row), whose rows aim at the
//! WhatsApp messages the earlier mailing's rows recorded. This file holds its pure rules: which
//! groups it reaches, what each row aims at, the edit window, and how a group's history
//! settles a row whose outcome is unknown.

use crate::model::ids::GroupJid;
pub use crate::model::ledger::{Action, FollowUp};
use crate::model::ledger::{Content, Delivery, DeliveryState};
use std::collections::HashMap;

/// How long WhatsApp lets a sent message be edited: 15 minutes (the limit documented for
/// WhatsApp gateways' edit calls; `EDIT_WINDOW_SECS` changes it).
pub const EDIT_WINDOW_MS: i64 = 15 * 60_000;

/// The message a row of the earlier mailing left in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// WhatsApp's id of the message, as Wappi gave it.
    pub message_id: String,
    /// Unix ms when it was sent (the row's first attempt: never later than the send, so an
    /// edit window counted from it never ends late).
    pub sent_at: i64,
}

/// Every message of an earlier mailing, by (group, part): its sent rows that carry an id.
pub fn targets(rows: &[Delivery]) -> HashMap<(GroupJid, u32), Target> {
    rows.iter()
        .filter(|r| r.state == DeliveryState::Sent)
        .filter_map(|r| {
            let id = r.message_id.as_deref().filter(|id| !id.is_empty())?;
            let sent_at = if r.first_attempt_at > 0 {
                r.first_attempt_at
            } else {
                r.updated_at
            };
            Some((
                (r.group.clone(), r.part),
                Target {
                    message_id: id.to_string(),
                    sent_at,
                },
            ))
        })
        .collect()
}

/// The groups a follow-up reaches, in the earlier mailing's order: for an edit, those whose
/// text part (0) was sent; for a delete, those where any part was.
pub fn groups(action: Action, rows: &[Delivery]) -> Vec<GroupJid> {
    let targets = targets(rows);
    let mut seen = std::collections::HashSet::new();
    let mut sorted: Vec<&Delivery> = rows.iter().collect();
    sorted.sort_by_key(|r| r.position);
    sorted
        .into_iter()
        .filter(|r| match action {
            Action::Edit => r.part == 0,
            Action::Delete => true,
        })
        .filter(|r| targets.contains_key(&(r.group.clone(), r.part)))
        .filter(|r| seen.insert(r.group.clone()))
        .map(|r| r.group.clone())
        .collect()
}

/// When the edit window of a target closes.
pub fn edit_deadline(target: &Target, window_ms: i64) -> i64 {
    target.sent_at.saturating_add(window_ms)
}

/// The edit window over an earlier mailing's text messages: (when the first closes, when the
/// last closes); `None` when no text message was sent.
pub fn edit_window(rows: &[Delivery], window_ms: i64) -> Option<(i64, i64)> {
    let deadlines: Vec<i64> = targets(rows)
        .iter()
        .filter(|((_, part), _)| *part == 0)
        .map(|(_, t)| edit_deadline(t, window_ms))
        .collect();
    Some((*deadlines.iter().min()?, *deadlines.iter().max()?))
}

/// The content of a follow-up of `original`: the same parts (so its rows aim at the same
/// messages), `text` as the new text for an edit (or the corrected post of a repost).
pub fn content(original: &Content, follow_up: FollowUp, text: Option<&str>) -> Content {
    Content {
        text: text.map_or_else(|| original.text.clone(), str::to_string),
        images: original.images.clone(),
        caption: original.caption,
        canary: false,
        follow_up: Some(follow_up),
    }
}

/// What a group's history says of a follow-up row whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The change is there: the message carries the new text, or it is deleted.
    Done,
    /// The message is there unchanged: the call did not go through; make it again.
    NotDone,
    /// The message is not in what was read, and the read did not reach back to it.
    Unknown,
}

/// One message of a group's history, as far as settling a follow-up needs it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub id: &'a str,
    pub body: &'a str,
    pub caption: &'a str,
    pub deleted: bool,
}

/// Settles a follow-up row from the group's history (`history`, newest first): the target
/// message with the new text (an edit) or marked deleted or gone from a history read back past
/// it (a delete) is done; found unchanged, not done; not found, unknown unless the read
/// reached back past the message (`complete`): then an edit is not done (it will fail
/// visibly) and a delete is done.
pub fn seen<'a>(
    action: Action,
    target_id: &str,
    new_text: &str,
    history: impl IntoIterator<Item = Message<'a>>,
    complete: bool,
) -> Seen {
    let found = history.into_iter().find(|m| m.id == target_id);
    match (action, found) {
        (Action::Edit, Some(m)) => {
            let text = new_text.trim();
            if !m.deleted && (m.body.trim() == text || m.caption.trim() == text) {
                Seen::Done
            } else {
                Seen::NotDone
            }
        }
        (Action::Delete, Some(m)) if m.deleted => Seen::Done,
        (Action::Delete, Some(_)) => Seen::NotDone,
        (_, None) if !complete => Seen::Unknown,
        (Action::Edit, None) => Seen::NotDone,
        (Action::Delete, None) => Seen::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::MailingId;

    fn row(
        group: &str,
        part: u32,
        position: u32,
        state: DeliveryState,
        id: Option<&str>,
    ) -> Delivery {
        Delivery {
            mailing_id: MailingId(1),
            group: GroupJid::parse(group).unwrap(),
            part,
            position,
            state,
            attempts: 1,
            checks: 0,
            first_attempt_at: 1_000 * i64::from(position + 1),
            next_attempt_at: 0,
            message_id: id.map(str::to_string),
            error: None,
            updated_at: 99_000,
        }
    }

    /// Three groups of a photo + text post: a fully sent, one whose text failed after its
    /// photo went, one that failed entirely.
    fn ledger() -> Vec<Delivery> {
        use DeliveryState::*;
        vec![
            row("120363011111111111@g.us", 1, 0, Sent, Some("p1")),
            row("120363011111111111@g.us", 0, 0, Sent, Some("t1")),
            row("120363022222222222@g.us", 1, 1, Sent, Some("p2")),
            row("120363022222222222@g.us", 0, 1, Failed, None),
            row("120363033333333333@g.us", 1, 2, Failed, None),
            row("120363033333333333@g.us", 0, 2, Failed, None),
        ]
    }

    #[test]
    fn an_edit_reaches_the_groups_whose_text_went_and_a_delete_those_where_anything_did() {
        let jids = |v: Vec<GroupJid>| v.iter().map(|g| g.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(
            jids(groups(Action::Edit, &ledger())),
            ["120363011111111111@g.us"]
        );
        assert_eq!(
            jids(groups(Action::Delete, &ledger())),
            ["120363011111111111@g.us", "120363022222222222@g.us"]
        );
        let t = targets(&ledger());
        assert_eq!(t.len(), 3);
        let photo = &t[&(GroupJid::parse("120363022222222222@g.us").unwrap(), 1)];
        assert_eq!((photo.message_id.as_str(), photo.sent_at), ("p2", 2_000));
    }

    #[test]
    fn the_edit_window_runs_from_each_text_message_and_is_none_without_one() {
        let mut rows = ledger();
        rows.push(row(
            "120363044444444444@g.us",
            0,
            3,
            DeliveryState::Sent,
            Some("t4"),
        ));
        assert_eq!(
            edit_window(&rows, EDIT_WINDOW_MS),
            Some((1_000 + EDIT_WINDOW_MS, 4_000 + EDIT_WINDOW_MS))
        );
        assert_eq!(edit_window(&ledger()[2..], EDIT_WINDOW_MS), None);
        // A row from before attempts were timed counts from its last change.
        let mut old = row(
            "120363055555555555@g.us",
            0,
            0,
            DeliveryState::Sent,
            Some("t5"),
        );
        old.first_attempt_at = 0;
        assert_eq!(edit_window(&[old], 10), Some((99_010, 99_010)));
    }

    #[test]
    fn a_follow_up_keeps_the_parts_of_the_post_it_acts_on() {
        let original = Content::with_images("Цена 100", vec![7], false);
        let fix = FollowUp {
            of: MailingId(3),
            action: Action::Edit,
            repost: false,
        };
        let c = content(&original, fix, Some("Цена 90"));
        assert_eq!(c.text, "Цена 90");
        assert_eq!(
            c.part_numbers(),
            vec![0],
            "an edit changes the text part only"
        );
        assert!(
            c.parts().iter().all(|p| p.image.is_none()),
            "nothing is uploaded again"
        );
        let gone = FollowUp {
            action: Action::Delete,
            ..fix
        };
        let c = content(&original, gone, None);
        assert_eq!(c.text, "Цена 100");
        assert_eq!(c.part_numbers(), vec![1, 0], "a delete removes every part");
        let json = serde_json::to_string(&c).unwrap();
        let back: Content = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(
            json.contains(r#""follow_up":{"of":3,"action":"delete"}"#),
            "{json}"
        );
    }

    #[test]
    fn history_settles_an_unknown_edit_or_delete() {
        use Action::*;
        let msg = |id, body, deleted| Message {
            id,
            body,
            caption: "",
            deleted,
        };
        let cases = [
            (Edit, vec![msg("t1", " Цена 90 ", false)], true, Seen::Done),
            (
                Edit,
                vec![msg("t1", "Цена 100", false)],
                false,
                Seen::NotDone,
            ),
            (Edit, vec![msg("x", "Цена 90", false)], false, Seen::Unknown),
            (Edit, vec![msg("x", "Цена 90", false)], true, Seen::NotDone),
            (Edit, vec![msg("t1", "", true)], true, Seen::NotDone),
            (Delete, vec![msg("t1", "", true)], false, Seen::Done),
            (
                Delete,
                vec![msg("t1", "Цена 100", false)],
                true,
                Seen::NotDone,
            ),
            (Delete, vec![], false, Seen::Unknown),
            (Delete, vec![msg("x", "Цена 100", false)], true, Seen::Done),
        ];
        for (action, history, complete, want) in cases {
            let got = seen(action, "t1", "Цена 90", history.clone(), complete);
            assert_eq!(got, want, "{action:?} {history:?} complete={complete}");
        }
        let captioned = Message {
            id: "t1",
            body: "",
            caption: "Цена 90",
            deleted: false,
        };
        assert_eq!(seen(Edit, "t1", "Цена 90", [captioned], false), Seen::Done);
    }
}
