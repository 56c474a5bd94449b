//! Ban signals: how a number looks just before or just after WhatsApp restricts it. At the
//! first one the account's mailing is paused with the reason and ▶️ (the engine's `pause`),
//! and after the resume its first posts go at half pace (`slot::HALF_PACE_POSTS`).
//!
//! - A run of posts that failed for good: [`BREAKER_RUN`] in a row (refusals, or errors until
//!   the attempts ran out). A post to be tried again counts neither way.
//! - WhatsApp reporting `temporary ban` as the delivery status of our post: read from the
//!   group's newest history after every [`CHECK_EVERY`]th post, at every pace but `fast` (the
//!   operator's bare cadence, whose posts follow one another too closely for an extra read). A
//!   read that fails is no signal (the sends will meet the trouble themselves).
//! - "Not authorized" pauses the mailing where the send's outcome is recorded (`outcome`).

use super::slot::posts_done_and_left;
use super::{Cursor, EngineError};
use crate::model::lang::Lang;
use crate::model::ledger::DeliveryState;
use crate::model::pacing::pace::Preset;
use crate::services::EngineServices;
use crate::texts;
use crate::wappi::WappiCreds;

/// Posts in a row that failed for good before the mailing is paused.
pub(super) const BREAKER_RUN: u32 = 5;

/// Every this many posts the delivery status of the last one is read back.
pub(super) const CHECK_EVERY: u64 = 10;

/// How many of the group's newest messages the check reads.
const CHECK_MESSAGES: u32 = 5;

/// After row `i` was recorded: the ban signal it completes, as the reason to pause with.
pub(super) async fn signal(
    svc: &EngineServices,
    creds: &WappiCreds,
    cursor: &mut Cursor,
    i: usize,
    lang: Lang,
) -> Result<Option<String>, EngineError> {
    match cursor.rows()[i].state {
        DeliveryState::Failed => cursor.failed_in_a_row += 1,
        DeliveryState::Sent => cursor.failed_in_a_row = 0,
        _ => {}
    }
    if cursor.failed_in_a_row >= BREAKER_RUN {
        return Ok(Some(texts::breaker(lang, cursor.failed_in_a_row)));
    }
    let rows = cursor.rows();
    let row = &rows[i];
    let post_complete = rows.get(i + 1).is_none_or(|next| next.group != row.group);
    let (done, _) = posts_done_and_left(rows);
    let fast = cursor
        .pace
        .as_ref()
        .is_none_or(|a| a.pace.preset() == Some(Preset::Fast));
    if fast || row.state != DeliveryState::Sent || !post_complete || done % CHECK_EVERY != 0 {
        return Ok(None);
    }
    let banned = match svc
        .wappi
        .chat_messages(creds, &row.group, CHECK_MESSAGES, 0)
        .await
    {
        Ok(page) => page
            .messages
            .iter()
            .any(|m| m.from_me && m.is_temporary_ban()),
        Err(e) => {
            tracing::info!(group = %row.group, error = %e, "delivery status check failed; no signal");
            false
        }
    };
    Ok(banned.then(|| texts::temporary_ban(lang)))
}
