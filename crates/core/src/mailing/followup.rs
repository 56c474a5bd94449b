//! The engine's side of a follow-up (✏️ fix the text, 🗑 delete the post everywhere; the rules
//! are in `model::followup`): a follow-up row goes through the same steps as a post (armed
//! `sending` before the call, paced, recorded), but its call edits or deletes the message the
//! earlier mailing's row left in that group, and a row whose outcome is unknown is settled by
//! finding that message in the group's history.

use super::history::{read_back, CLOCK_SKEW_MS};
use super::outcome::{self, Event};
use super::{Cursor, EngineError, Step};
use crate::model::followup::{self, Action, FollowUp, Message, Seen, Target};
use crate::model::ledger::{Delivery, Mailing};
use crate::services::EngineServices;
use crate::wappi::{Sent, WappiCreds, WappiError};
use std::ops::ControlFlow;

/// Reads, once per drive, the messages of the mailing a follow-up acts on.
pub(super) async fn load_targets(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
) -> Result<(), EngineError> {
    if let (Some(f), None) = (m.content.follow_up, &cursor.targets) {
        let earlier = svc.db.deliveries(f.of).await?;
        cursor.targets = Some(followup::targets(&earlier));
    }
    Ok(())
}

/// The message row `i` of a follow-up acts on (`None` for a post). A row that cannot act is
/// recorded and ends the step: an edit after its message's edit window closed fails; a part
/// the earlier mailing never sent has nothing to delete and is done. Checked before the row is
/// armed; an armed row goes out as armed.
pub(super) async fn target_of(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    i: usize,
    fence: u64,
    now: i64,
) -> Result<ControlFlow<Step, Option<Target>>, EngineError> {
    let Some(f) = m.content.follow_up else {
        return Ok(ControlFlow::Continue(None));
    };
    let row = &cursor.rows()[i];
    let target = cursor
        .targets
        .as_ref()
        .and_then(|t| t.get(&(row.group.clone(), row.part)))
        .cloned();
    let window = svc.settings.engine.edit_window_ms;
    let event = match (&target, f.action) {
        (Some(_), _) if cursor.armed.is_some() => return Ok(ControlFlow::Continue(target)),
        (Some(t), Action::Edit) if now > followup::edit_deadline(t, window) => {
            Event::EditWindowClosed
        }
        (Some(_), _) => return Ok(ControlFlow::Continue(target)),
        (None, _) => Event::Sent(None),
    };
    let row = &mut cursor.rows_mut()[i];
    let change = outcome::apply(row, event, &svc.settings.engine, now);
    tracing::info!(event = "follow_up", outcome = change.label, mailing = m.id.0, group = %row.group, part = row.part, "nothing to call");
    svc.db.update_delivery(row, fence).await?;
    cursor.armed = None;
    Ok(ControlFlow::Break(Step::Continue))
}

/// The call of a follow-up row: the edit or the delete of its message. The answer's message id
/// is the target's when Wappi gives none.
pub(super) async fn call(
    svc: &EngineServices,
    creds: &WappiCreds,
    m: &Mailing,
    f: FollowUp,
    row: &Delivery,
    target: &Target,
) -> Result<Sent, WappiError> {
    let id = target.message_id.as_str();
    let sent = match f.action {
        Action::Edit => {
            svc.wappi
                .edit_message(creds, &row.group, id, &m.content.text)
                .await
        }
        Action::Delete => svc.wappi.delete_message(creds, &row.group, id).await,
    }?;
    Ok(Sent {
        message_id: sent.message_id.or_else(|| Some(id.to_string())),
        ..sent
    })
}

/// Settles an `in_doubt` follow-up row from its group's history, read back to before its
/// message was sent (see `followup::seen`): done, made again, or left in doubt.
#[allow(clippy::too_many_arguments)]
pub(super) async fn settle(
    svc: &EngineServices,
    m: &Mailing,
    f: FollowUp,
    creds: &WappiCreds,
    row: &mut Delivery,
    target: Option<&Target>,
    fence: u64,
    now: i64,
) -> Result<(), EngineError> {
    let cfg = &svc.settings.engine;
    let Some(target) = target else {
        // Only a row with a message is ever called, so only such a row can be in doubt.
        outcome::apply(row, Event::Sent(None), cfg, now);
        svc.db.update_delivery(row, fence).await?;
        return Ok(());
    };
    let history = read_back(svc, creds, &row.group, target.sent_at - CLOCK_SKEW_MS).await;
    let change = match &history {
        Ok(h) => {
            let messages = h.messages.iter().map(|msg| Message {
                id: &msg.id,
                body: &msg.body,
                caption: &msg.caption,
                deleted: msg.is_deleted,
            });
            let complete = h.partial.is_none();
            match followup::seen(
                f.action,
                &target.message_id,
                &m.content.text,
                messages,
                complete,
            ) {
                Seen::Done => outcome::apply(row, Event::Found(&target.message_id), cfg, now),
                Seen::NotDone => outcome::apply(row, Event::Absent, cfg, now),
                Seen::Unknown => {
                    let why = h.partial.as_deref().unwrap_or("the message was not found");
                    outcome::apply(row, Event::Uncovered(why), cfg, now)
                }
            }
        }
        Err(e) => outcome::apply(row, Event::Unverified(e), cfg, now),
    };
    if let Some(until) = change.backoff_until {
        svc.pacer.set_backoff(&m.profile_id, until).await?;
    }
    let pages = history.as_ref().map_or(0, |h| h.pages);
    tracing::info!(event = "settle", outcome = change.label, mailing = m.id.0, group = %row.group, part = row.part, pages, "in-doubt follow-up checked");
    svc.db.update_delivery(row, fence).await?;
    Ok(())
}
