//! The mailing ledger: the system of record of what was sent where. One row per
//! (mailing, group, part); a row is marked `sending` durably before the Wappi call, so a crash
//! can never turn into a silent skip or a silent double.

use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use serde::{Deserialize, Serialize};

/// How one send attempt to a group ended, as the engine counts it (the `outcome` of its
/// `send` log events and the label of a runtime's send counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendOutcome {
    Sent,
    Failed,
    Retried,
    InDoubt,
    RateLimited,
    Paused,
}

impl SendOutcome {
    pub const ALL: [SendOutcome; 6] = [
        SendOutcome::Sent,
        SendOutcome::Failed,
        SendOutcome::Retried,
        SendOutcome::InDoubt,
        SendOutcome::RateLimited,
        SendOutcome::Paused,
    ];

    /// Its word in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::Failed => "failed",
            SendOutcome::Retried => "retried",
            SendOutcome::InDoubt => "in_doubt",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::Paused => "paused",
        }
    }
}

/// The state of one delivery row: `pending → sending → sent | failed | in_doubt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sending,
    Sent,
    Failed,
    /// Wappi may or may not have sent it (crash or lost answer); settled by reading the chat.
    InDoubt,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::InDoubt => "in_doubt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Sent,
            "failed" => DeliveryState::Failed,
            "in_doubt" => DeliveryState::InDoubt,
            _ => return None,
        })
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub mailing_id: MailingId,
    pub group: GroupJid,
    /// Which message of the post (see [`Content::parts`]): 0 carries the text (a text message,
    /// or the captioned collage) and goes last in its group; images 1..=n go before it.
    pub part: u32,
    /// Order of sending within the mailing.
    pub position: u32,
    pub state: DeliveryState,
    /// Send attempts that reached Wappi or failed on the way (rate-limit pauses not counted).
    pub attempts: u32,
    /// Reads of the group's history that failed while settling the row (`in_doubt`), counted
    /// apart from the sends (a rate-limited read is not counted).
    pub checks: u32,
    /// Unix ms when the row was first marked `sending` (0 = never): how far back its group's
    /// history must be read to settle it.
    pub first_attempt_at: i64,
    /// Unix ms before which the row is not tried again (backoff, settle retry).
    pub next_attempt_at: i64,
    pub message_id: Option<String>,
    /// A readable reason for `failed` / `in_doubt`.
    pub error: Option<String>,
    /// Unix ms of the last change.
    pub updated_at: i64,
}

/// The lifecycle of a mailing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailingStatus {
    /// Being sent (or waiting for a runner to pick it up).
    Running,
    /// Stopped by the engine because the account needs attention; can be resumed.
    Paused,
    Cancelled,
    Done,
}

impl MailingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MailingStatus::Running => "running",
            MailingStatus::Paused => "paused",
            MailingStatus::Cancelled => "cancelled",
            MailingStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => MailingStatus::Running,
            "paused" => MailingStatus::Paused,
            "cancelled" => MailingStatus::Cancelled,
            "done" => MailingStatus::Done,
            _ => return None,
        })
    }

    /// Running and paused mailings hold their profile: no second one may start.
    pub fn is_active(self) -> bool {
        matches!(self, MailingStatus::Running | MailingStatus::Paused)
    }
}

/// WhatsApp's limit on an image caption, in characters (the Wappi spec is silent; 1024 is
/// WhatsApp's documented media caption limit). A longer text goes as its own message after
/// the image.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// The content snapshot taken when a mailing starts. Stored as JSON in `mailings.content`
/// (`{"text":"…"}` for a text-only mailing, as before images existed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The text in WhatsApp markup.
    pub text: String,
    /// The images sent before (or with) the text, in order: the confirmed collage alone, or
    /// the photos. Image rows never change, so this is a true snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<crate::model::ids::ImageId>,
    /// The text travels as the caption of the last image instead of as its own message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caption: bool,
    /// A canary start: the first [`CANARY_POSTS`] groups get the post, their delivery is
    /// read back after a short wait, and only then do the others (see `mailing::canary`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// Set on a follow-up: the mailing edits or deletes an earlier mailing's messages instead
    /// of posting (see `model::followup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
}

/// What a follow-up does to each message of the earlier post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace the text (of the text message, or the caption of the captioned collage).
    Edit,
    /// Delete for everyone, every part (photos and text).
    Delete,
}

/// The follow-up a mailing is, stored in its content snapshot (`Content::follow_up`); its rules
/// are in `model::followup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The mailing whose posts it acts on.
    pub of: crate::model::ids::MailingId,
    pub action: Action,
    /// A delete that makes room for a corrected post (the edit window had closed): its report
    /// offers to send the corrected text, which the content carries, to the same groups.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repost: bool,
}

/// How many groups a canary start posts to before it checks their delivery.
pub const CANARY_POSTS: u32 = 3;

/// A canary start is on by default for more groups than this (`CANARY_MIN_GROUPS`).
pub const CANARY_MIN_GROUPS: usize = 20;

/// One message of a post, as sent to every group: a ledger row per (group, part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    /// The ledger's `part` number.
    pub number: u32,
    /// The image to send, or `None` for the text message.
    pub image: Option<crate::model::ids::ImageId>,
    /// The text (of a text message) or the caption (of an image), if any.
    pub text: Option<&'a str>,
}

impl Content {
    /// A text-only post.
    pub fn text_only(text: impl Into<String>) -> Content {
        Content {
            text: text.into(),
            ..Content::default()
        }
    }

    /// The content of a post: with a collage, the collage alone carrying the text as its
    /// caption when it fits; otherwise the images, then the text.
    pub fn with_images(
        text: impl Into<String>,
        images: Vec<crate::model::ids::ImageId>,
        collage: bool,
    ) -> Content {
        let text = text.into();
        let caption = collage && images.len() == 1 && text.chars().count() <= MAX_CAPTION_CHARS;
        Content {
            text,
            images,
            caption,
            canary: false,
            follow_up: None,
        }
    }

    /// The parts of the post in sending order. Numbering: part 0 always carries the text (a
    /// text message, or the captioned image) and goes last in its group; uncaptioned images are
    /// parts 1..=n in order, so a text-only mailing is exactly one part 0 per group as before.
    /// A follow-up uploads no image: its parts only name the messages it acts on, and an edit
    /// acts on the text part alone.
    pub fn parts(&self) -> Vec<Part<'_>> {
        let n = self.images.len();
        let uncaptioned = if self.caption { n.saturating_sub(1) } else { n };
        let mut parts: Vec<Part<'_>> = self.images[..uncaptioned]
            .iter()
            .enumerate()
            .map(|(i, id)| Part {
                number: i as u32 + 1,
                image: Some(*id),
                text: None,
            })
            .collect();
        parts.push(Part {
            number: 0,
            image: if self.caption {
                self.images.last().copied()
            } else {
                None
            },
            text: Some(&self.text),
        });
        if let Some(f) = self.follow_up {
            parts.iter_mut().for_each(|p| p.image = None);
            if f.action == Action::Edit {
                parts.retain(|p| p.number == 0);
            }
        }
        parts
    }

    /// The part with this number.
    pub fn part(&self, number: u32) -> Option<Part<'_>> {
        self.parts().into_iter().find(|p| p.number == number)
    }

    /// The ledger part numbers of one group, in sending order.
    pub fn part_numbers(&self) -> Vec<u32> {
        self.parts().iter().map(|p| p.number).collect()
    }
}

/// The order of a part within its group: images 1..=n first, the text part 0 last.
pub fn part_order(part: u32) -> u32 {
    if part == 0 {
        u32::MAX
    } else {
        part
    }
}

/// A mailing as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailing {
    pub id: MailingId,
    pub user_id: UserId,
    /// Where progress and the report go.
    pub chat_id: ChatId,
    pub profile_id: ProfileId,
    pub status: MailingStatus,
    pub content: Content,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The highest lease fencing number that has written to this mailing.
    pub fence: u64,
    pub cancel_requested: bool,
    pub progress_message_id: Option<i64>,
    /// Unix ms of the last progress edit.
    pub progress_at: i64,
    /// Why the mailing is paused, for the user.
    pub pause_reason: Option<String>,
    /// Unix ms of the last resume after a pause (0 = never): the first posts afterwards go at
    /// half pace.
    pub resumed_at: i64,
    /// Until when the start message may still be on its way (see [`Mailing::announcing`]);
    /// 0 once it is recorded or has failed, or when none is coming.
    pub announce_until: i64,
}

impl Mailing {
    /// Whether the mailing's start message is still on its way. Whoever starts a mailing hands
    /// it to the runners first and sends the start message after (so the first post never
    /// waits for Telegram); the start message becomes the progress message once recorded.
    /// Until then the engine keeps its own messages to the chat back (no progress message of
    /// its own, no report, no pause notice), so none of them overtakes the start message, or
    /// comes as a second progress message. Bounded by [`ANNOUNCE_WAIT_MS`]: a start message
    /// that never arrives holds nothing back for longer.
    pub fn announcing(&self, now: i64) -> bool {
        self.progress_message_id.is_none() && now < self.announce_until
    }
}

/// How long the engine keeps its messages back for a new mailing's start message, at most.
pub const ANNOUNCE_WAIT_MS: i64 = 10_000;

/// What a new mailing is made of.
#[derive(Debug, Clone)]
pub struct NewMailing {
    pub user_id: UserId,
    pub chat_id: ChatId,
    pub profile_id: ProfileId,
    pub content: Content,
    pub groups: Vec<GroupJid>,
    /// Groups of `groups` left out before the start (the pre-flight check), with the reason the
    /// report shows: their rows are born `failed` and are never sent.
    pub skipped: Vec<(GroupJid, String)>,
    pub now: i64,
    /// Until when the engine waits for the start message sent after the hand-over (see
    /// [`Mailing::announcing`]); 0 when none is coming.
    pub announce_until: i64,
}

/// Counts over a mailing's groups, for progress and the report. A group with several parts
/// counts once: failed if any part failed, else in doubt if any part is, else sent when every
/// part is sent, else left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u32,
    pub sent: u32,
    pub failed: u32,
    pub in_doubt: u32,
    /// pending + sending
    pub left: u32,
}

impl Tally {
    pub fn of(rows: &[Delivery]) -> Tally {
        let groups = group_outcomes(rows);
        let mut t = Tally {
            total: groups.len() as u32,
            ..Tally::default()
        };
        for g in &groups {
            match g.state {
                DeliveryState::Sent => t.sent += 1,
                DeliveryState::Failed => t.failed += 1,
                DeliveryState::InDoubt => t.in_doubt += 1,
                DeliveryState::Pending | DeliveryState::Sending => t.left += 1,
            }
        }
        t
    }

    pub fn done(&self) -> u32 {
        self.sent + self.failed
    }
}

/// One group's outcome over its parts (see [`Tally`]): the state, and the row that decided
/// it (its error is the group's reason).
#[derive(Debug, Clone, Copy)]
pub struct GroupOutcome<'a> {
    pub state: DeliveryState,
    pub row: &'a Delivery,
}

/// The outcome of every group of a mailing, in the order of `rows`' first appearance.
pub fn group_outcomes(rows: &[Delivery]) -> Vec<GroupOutcome<'_>> {
    let mut out: Vec<GroupOutcome<'_>> = Vec::new();
    let mut index: std::collections::HashMap<&GroupJid, usize> = Default::default();
    let rank = |s: DeliveryState| match s {
        DeliveryState::Failed => 4,
        DeliveryState::InDoubt => 3,
        DeliveryState::Pending | DeliveryState::Sending => 2,
        DeliveryState::Sent => 1,
    };
    for r in rows {
        let state = match r.state {
            DeliveryState::Sending => DeliveryState::Pending,
            s => s,
        };
        match index.get(&r.group) {
            Some(&i) => {
                if rank(state) > rank(out[i].state) {
                    out[i] = GroupOutcome { state, row: r };
                }
            }
            None => {
                index.insert(&r.group, out.len());
                out.push(GroupOutcome { state, row: r });
            }
        }
    }
    out
}

/// Messages still to send (pending, sending or in doubt parts): what an ETA counts.
pub fn sends_left(rows: &[Delivery]) -> usize {
    rows.iter()
        .filter(|r| {
            matches!(
                r.state,
                DeliveryState::Pending | DeliveryState::Sending | DeliveryState::InDoubt
            )
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_each_kind_of_post() {
        let plain = Content::text_only("hi");
        assert_eq!(plain.part_numbers(), vec![0]);
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"text":"hi"}"#);
        let old: Content = serde_json::from_str(r#"{"text":"hi"}"#).unwrap();
        assert_eq!(old, plain);

        let collage = Content::with_images("hi", vec![7], true);
        assert!(collage.caption);
        let parts = collage.parts();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].number, parts[0].image, parts[0].text),
            (0, Some(7), Some("hi"))
        );

        let long = "я".repeat(MAX_CAPTION_CHARS + 1);
        let collage_long = Content::with_images(long.clone(), vec![7], true);
        assert!(!collage_long.caption);
        assert_eq!(collage_long.part_numbers(), vec![1, 0]);

        let photos = Content::with_images("hi", vec![3, 4, 5], false);
        let parts = photos.parts();
        let got: Vec<_> = parts.iter().map(|p| (p.number, p.image, p.text)).collect();
        assert_eq!(
            got,
            vec![
                (1, Some(3), None),
                (2, Some(4), None),
                (3, Some(5), None),
                (0, None, Some("hi"))
            ]
        );
        let round: Content =
            serde_json::from_str(&serde_json::to_string(&photos).unwrap()).unwrap();
        assert_eq!(round, photos);
        let mut order = photos.part_numbers();
        order.sort_by_key(|p| part_order(*p));
        assert_eq!(order, vec![1, 2, 3, 0]);
    }

    fn row(group: u64, part: u32, state: DeliveryState) -> Delivery {
        Delivery {
            mailing_id: MailingId(1),
            group: GroupJid::parse(&format!("12036300000000{group}@g.us")).unwrap(),
            part,
            position: group as u32,
            state,
            attempts: 0,
            checks: 0,
            first_attempt_at: 0,
            next_attempt_at: 0,
            message_id: None,
            error: None,
            updated_at: 0,
        }
    }

    #[test]
    fn tally_counts_groups_not_parts() {
        use DeliveryState::*;
        let rows = vec![
            row(1, 1, Sent),
            row(1, 0, Sent),
            row(2, 1, Sent),
            row(2, 0, Pending),
            row(3, 1, Failed),
            row(3, 0, Sent),
            row(4, 1, InDoubt),
            row(4, 0, Pending),
        ];
        let t = Tally::of(&rows);
        assert_eq!(
            (t.total, t.sent, t.failed, t.in_doubt, t.left),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(sends_left(&rows), 3);
    }
}
