//! The mailing engine: what a driver (a tokio task on the server, a Durable Object alarm on
//! the Worker) calls to move a mailing forward.
//!
//! [`step`] runs one step at a time over the ledger. A step sends at most one message (or
//! settles one `in_doubt` row) and says when the next step is due. The server drives it from a
//! tokio task per profile; the Worker from a Durable Object alarm. Nothing here sleeps or
//! spawns, so the same code runs on both and under a fake clock.
//!
//! Exactly-once per group rests on three rules: a row is written `sending` (durably, fenced)
//! before the Wappi call; a row found `sending` at the next step is a crash leftover and becomes
//! `in_doubt`; an `in_doubt` row is resent only after the group's recent history shows our
//! text is not there.
//!
//! The wing: `engine` orders a step; `slot` waits for and takes the pacing slot; `outcome`
//! holds every change of a delivery row (pure); `settle` reconciles `in_doubt` rows through
//! the chat history; `breaker` pauses at a ban signal; `canary` holds a canary start until the
//! first groups' delivery is seen; `report` tells the user (progress,
//! pause, the final report); `scheduled` turns a series' due run into a mailing; `audit` reads
//! a finished mailing's delivery back; `followup` edits or deletes an earlier mailing's posts
//! (a mailing whose rows aim at those messages); `history` reads a group's history back for
//! `settle` and `followup`.

use crate::model::ids::ImageId;
use crate::model::lang::Lang;
use crate::model::ledger::{Delivery, Mailing};
use crate::model::pacing::pace::PaceSettings;
use crate::ports::{DbError, StateError};
use crate::wappi::WappiCreds;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::Arc;

pub mod audit;
mod breaker;
mod canary;
pub mod engine;
mod followup;
mod history;
mod outcome;
mod report;
pub mod scheduled;
mod settle;
mod slot;

pub use engine::step;
pub use report::{progress_keyboard, report_keyboard, report_text};
pub use slot::estimate;

/// Posts a mailing has still to begin (one per group); `rows` in sending order.
pub fn posts_left(rows: &[Delivery]) -> usize {
    slot::posts_done_and_left(rows).1 as usize
}

/// What the driver does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Step again right away.
    Continue,
    /// Step again at this unix-ms time (or earlier if a cancel arrives).
    SleepUntil(i64),
    /// The mailing is over (done, cancelled or paused): stop driving it.
    Finished,
    /// Another runner owns the mailing now (stale fence): stop at once, write nothing.
    LostLease,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// `in_doubt` rows that could not be settled keep this `next_attempt_at`: final, reported.
pub const UNSETTLED: i64 = i64::MAX;

/// How long before its pacing slot a row is marked `sending`, so the durable write is done
/// by the time the slot opens and never delays the send (or shortens the next gap).
pub const ARM_LEAD_MS: i64 = 250;

/// How long before its time a row's pacing slot is taken (see [`Cursor::holds_slot`]).
pub const PRE_PACE_MS: i64 = 2;

/// How fresh a driver's own cancel check and lease renewal must be for a step to skip them.
pub const VOUCH_MS: i64 = 5;

/// How soon a step kept back for the start message (see [`Mailing::announcing`]) looks again.
///
/// [`Mailing::announcing`]: crate::model::ledger::Mailing::announcing
pub const ANNOUNCE_POLL_MS: i64 = 100;

/// What a driver keeps between the steps of one mailing while it holds the lease. It is lost
/// with the process, which is exactly what makes a `sending` row found without it a crash
/// leftover.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The mailing as last read.
    mailing: Option<Mailing>,
    /// The ledger as last written: while the lease is held this driver is its only writer.
    rows: Option<Vec<Delivery>>,
    /// The user's credentials and language.
    account: Option<(Option<WappiCreds>, Lang)>,
    /// The row this driver marked `sending` and is waiting to send at its pacing slot.
    armed: Option<usize>,
    /// When this driver last started a Wappi send (see `slot::min_gap_ms`).
    last_call_at: Option<i64>,
    /// The pacing slot already taken for the armed row: the call goes out at this time.
    slot: Option<i64>,
    /// When the driver last checked the cancel flag and renewed the lease itself (see
    /// [`Cursor::vouch`]).
    vouched_at: Option<i64>,
    /// The base64 of each image part, read and encoded once per drive of the mailing (not
    /// once per group); `None` when the image is no longer stored.
    images: HashMap<ImageId, Option<Arc<str>>>,
    /// The account's pace and the user's time zone, read once per drive.
    pace: Option<AccountPace>,
    /// The plan's last answer for the next post (what holds it, when the mailing ends).
    forecast: Option<slot::Forecast>,
    /// When the next call is planned to go (the plan's post time or the pacer's slot, as first
    /// decided, never moved by a late wake-up); what the send's log line reports it against.
    aim: Option<i64>,
    /// Posts of this drive that failed for good one after another (see `breaker`).
    failed_in_a_row: u32,
    /// The canary start's check passed (or was waived by a resume) in this drive.
    canary_passed: bool,
    /// A follow-up's targets: the messages of the mailing it acts on, read once per drive.
    targets: Option<settle::Targets>,
    /// A pause decided while the start message was still on its way: the next step makes it
    /// before anything else (see `engine::pause_after_start`).
    owed_pause: Option<String>,
}

/// What the plan of an account's posts reads of the account, once per drive.
#[derive(Debug, Clone)]
pub struct AccountPace {
    pub pace: PaceSettings,
    pub tz: Tz,
    /// When WhatsApp was linked to the number (for the warm-up cap); `None` = unknown.
    pub number_since: Option<i64>,
}

/// How the user sees the mailing: their language and zone, and the plan's last forecast.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Look {
    pub lang: Lang,
    pub tz: Tz,
    pub forecast: Option<slot::Forecast>,
}

impl Cursor {
    /// The driver has just (at `now`) seen the cancel flag unset and renewed the lease: the
    /// next step, if within [`VOUCH_MS`], sends an armed row without asking again, so those
    /// round trips happen before the slot instead of between the slot and the send.
    pub fn vouch(&mut self, now: i64) {
        self.vouched_at = Some(now);
    }

    /// The pacing slot of the armed row is taken: the driver only waits for it, the checks
    /// were made just before (so the call leaves at the slot, not a round trip later).
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
    }

    /// How the user sees the mailing now (a step loads the account before anything reads it).
    fn look(&self) -> Look {
        let lang = self.account.as_ref().map(|a| a.1).unwrap_or_default();
        let tz = self.pace.as_ref().map_or(chrono_tz::UTC, |p| p.tz);
        Look {
            lang,
            tz,
            forecast: self.forecast,
        }
    }

    /// The ledger as remembered (a step loads it before anything reads it).
    fn rows(&self) -> &[Delivery] {
        self.rows.as_deref().expect("the ledger is loaded first")
    }

    fn rows_mut(&mut self) -> &mut [Delivery] {
        self.rows
            .as_deref_mut()
            .expect("the ledger is loaded first")
    }
}

#[cfg(test)]
mod tests;
