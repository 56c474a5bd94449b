//! What the user sees of a mailing: the progress message (with its cancel button), the
//! pause notice, the end of a mailing and its report.

use super::{EngineError, Look, Step, ANNOUNCE_POLL_MS};
use crate::model::ids::MailingId;
use crate::model::lang::Lang;
use crate::model::ledger::{Delivery, DeliveryState, Mailing, MailingStatus, Tally};
use crate::services::{EngineServices, Ports};
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup};
use crate::texts::{self, ReportLine};

/// Sends or edits the progress message, at most every `progress_interval_ms`.
pub(super) async fn progress(
    svc: &EngineServices,
    m: &Mailing,
    rows: &[Delivery],
    look: Look,
    now: i64,
) -> Result<(), EngineError> {
    show_progress(svc, m, rows, look, now, false).await
}

/// [`progress`], also within the interval when `now_or_never` (a hold of the pace begins: the
/// mailing may sleep for hours, and the user must see why now).
pub(super) async fn show_progress(
    svc: &EngineServices,
    m: &Mailing,
    rows: &[Delivery],
    look: Look,
    now: i64,
    now_or_never: bool,
) -> Result<(), EngineError> {
    // Nothing before the start message: it is the progress message.
    if m.announcing(now) {
        return Ok(());
    }
    if !now_or_never
        && m.progress_message_id.is_some()
        && now - m.progress_at < svc.settings.engine.progress_interval_ms
    {
        return Ok(());
    }
    // Shed while Telegram is busy with the chat (the next step tries again), except the edit
    // that shows a hold: the mailing may sleep for hours after it.
    let must_show = now_or_never && m.progress_message_id.is_some();
    if !must_show && !svc.telegram.can_send_now(m.chat_id) {
        return Ok(());
    }
    let lang = look.lang;
    let text = progress_text(svc, m, rows, look, now);
    let keyboard = progress_keyboard(lang, m.id);
    let message_id = match m.progress_message_id {
        Some(mid) => {
            if let Err(e) = svc
                .telegram
                .edit_message_text(m.chat_id, MessageId(mid), &text, Some(&keyboard))
                .await
            {
                if !e.is_not_modified() {
                    tracing::warn!(mailing = m.id.0, error = %e, "progress edit failed");
                }
            }
            None
        }
        None => match svc
            .telegram
            .send_message(m.chat_id, &text, Some(&ReplyMarkup::Inline(keyboard)))
            .await
        {
            Ok(mid) => Some(mid.0),
            Err(e) => {
                tracing::warn!(mailing = m.id.0, error = %e, "progress message failed");
                None
            }
        },
    };
    // Counted from when Telegram got it, so edits are never closer than the interval.
    svc.db.set_progress(m.id, message_id, svc.now_ms()).await?;
    Ok(())
}

/// The progress message: the tally, the time left and, when nothing is due now, until when
/// the pause (Retry-After or backoff) before the next due row lasts.
fn progress_text(svc: &Ports, m: &Mailing, rows: &[Delivery], look: Look, now: i64) -> String {
    let lang = look.lang;
    let tally = Tally::of(rows);
    let eta = match look.forecast {
        Some(f) => ((f.finish_at - now).max(0) as u64).div_ceil(1000),
        None => svc.eta_secs(crate::model::ledger::sends_left(rows)),
    };
    if let Some(f) = look
        .forecast
        .filter(|f| f.next.hold.is_shown() && f.next.at > now)
    {
        let until = texts::when(lang, look.tz, f.next.at, now);
        return texts::held(lang, m.id.0, &tally, f.next.hold, &until, eta);
    }
    let due_now = rows
        .iter()
        .any(|r| r.state == DeliveryState::Pending && r.next_attempt_at <= now);
    let backoff = if due_now {
        None
    } else {
        rows.iter()
            .filter(|r| r.state == DeliveryState::Pending)
            .map(|r| r.next_attempt_at)
            .min()
            .filter(|t| *t > now + 1500)
    };
    texts::progress(
        lang,
        m.id.0,
        &tally,
        eta,
        backoff.map(|t| texts::clock_time(t, look.tz)).as_deref(),
    )
}

/// The ⏸ and ⛔ buttons under a progress message.
pub fn progress_keyboard(lang: Lang, id: MailingId) -> InlineKeyboardMarkup {
    use crate::telegram::callback::Callback;
    InlineKeyboardMarkup::rows(vec![vec![
        (
            texts::pause_button(lang),
            Callback::PauseMailing(id.0).data(),
        ),
        (
            texts::cancel_button(lang),
            Callback::CancelMailing(id.0).data(),
        ),
    ]])
}

/// The step to take instead of speaking to the user while the mailing's start message is
/// still on its way ([`Mailing::announcing`]): look again shortly.
pub(super) fn wait_for_start(m: &Mailing, now: i64) -> Option<Step> {
    m.announcing(now)
        .then_some(Step::SleepUntil(now + ANNOUNCE_POLL_MS))
}

/// Ends a mailing: final status (fenced), final progress, one report message. Not before
/// the start message is there: the report never overtakes it.
pub(super) async fn finish(
    svc: &EngineServices,
    m: &Mailing,
    rows: &[Delivery],
    lang: Lang,
    fence: u64,
    status: MailingStatus,
) -> Result<Step, EngineError> {
    let now = svc.now_ms();
    if let Some(step) = wait_for_start(m, now) {
        return Ok(step);
    }
    svc.db
        .set_mailing_status(m.id, status, None, fence, now)
        .await?;
    let tally = Tally::of(rows);
    let event = if status == MailingStatus::Cancelled {
        "mailing_cancelled"
    } else {
        "mailing_done"
    };
    tracing::info!(
        event,
        mailing = m.id.0,
        sent = tally.sent,
        failed = tally.failed,
        in_doubt = tally.in_doubt,
        left = tally.left,
        "mailing finished"
    );
    if let Some(mid) = m.progress_message_id {
        let text = texts::progress_final(lang, m.id.0, &tally);
        let _ = svc
            .telegram
            .edit_message_text(
                m.chat_id,
                MessageId(mid),
                &text,
                Some(&InlineKeyboardMarkup::default()),
            )
            .await;
    }
    let report = report_text(svc, m, rows, lang, status == MailingStatus::Cancelled).await;
    let keyboard = report_keyboard(lang, m, rows).map(ReplyMarkup::Inline);
    if let Err(e) = svc
        .telegram
        .send_message(m.chat_id, &report, keyboard.as_ref())
        .await
    {
        tracing::warn!(mailing = m.id.0, error = %e, "report message failed");
    }
    Ok(Step::Finished)
}

/// The report of a finished mailing (also shown by /status afterwards).
pub async fn report_text(
    svc: &Ports,
    m: &Mailing,
    rows: &[Delivery],
    lang: Lang,
    cancelled: bool,
) -> String {
    let names = svc.db.get_groups(m.user_id).await.unwrap_or_default();
    let name_of = |jid: &str| {
        names
            .iter()
            .find(|g| g.jid.as_str() == jid)
            .and_then(|g| g.name.as_deref())
    };
    let groups = crate::model::ledger::group_outcomes(rows);
    let lines = |state: DeliveryState| -> Vec<ReportLine<'_>> {
        groups
            .iter()
            .filter(|g| g.state == state)
            .map(|g| g.row)
            .map(|r| ReportLine {
                group: r.group.as_str(),
                name: name_of(r.group.as_str()),
                reason: r.error.as_deref().unwrap_or("—"),
            })
            .collect()
    };
    let (failed, in_doubt) = (lines(DeliveryState::Failed), lines(DeliveryState::InDoubt));
    let tally = Tally::of(rows);
    match m.content.follow_up {
        Some(f) => texts::followup::report(
            lang, m.id.0, f.action, &tally, cancelled, &failed, &in_doubt, f.repost,
        ),
        None => texts::report(lang, m.id.0, &tally, cancelled, &failed, &in_doubt),
    }
}

/// The buttons under a report: ✏️ and 🗑 acting on the post (also under a fix's report) once
/// some group got it; 🚀 under a repost's delete, to send the corrected post.
pub fn report_keyboard(lang: Lang, m: &Mailing, rows: &[Delivery]) -> Option<InlineKeyboardMarkup> {
    use crate::model::followup::Action;
    use crate::telegram::callback::Callback;
    if !rows.iter().any(|r| r.state == DeliveryState::Sent) {
        return None;
    }
    let post = match m.content.follow_up {
        None => m.id,
        Some(f) if f.action == Action::Edit => f.of,
        Some(f) if f.repost => {
            let repost = (
                texts::followup::repost_button(lang),
                Callback::Repost(m.id.0).data(),
            );
            return Some(InlineKeyboardMarkup::rows(vec![vec![repost]]));
        }
        Some(_) => return None,
    };
    Some(InlineKeyboardMarkup::rows(vec![vec![
        (
            texts::followup::fix_button(lang),
            Callback::FixPost(post.0).data(),
        ),
        (
            texts::followup::delete_button(lang),
            Callback::DeletePost(post.0).data(),
        ),
    ]]))
}

/// The user's label of each group (`texts::group_label`, named as stored in the user's list).
pub(super) async fn group_labels<'a>(
    svc: &Ports,
    user: crate::model::ids::UserId,
    groups: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let names = svc.db.get_groups(user).await.unwrap_or_default();
    groups
        .into_iter()
        .map(|jid| {
            let name = names
                .iter()
                .find(|g| g.jid.as_str() == jid)
                .and_then(|g| g.name.as_deref());
            texts::group_label(jid, name)
        })
        .collect()
}

/// Pauses a mailing whose account needs attention, and tells the user how to resume.
pub(super) async fn pause(
    svc: &EngineServices,
    m: &Mailing,
    lang: Lang,
    fence: u64,
    reason: &str,
) -> Result<Step, EngineError> {
    let now = svc.now_ms();
    svc.db
        .set_mailing_status(m.id, MailingStatus::Paused, Some(reason), fence, now)
        .await?;
    tracing::info!(
        event = "mailing_paused",
        mailing = m.id.0,
        reason,
        "mailing paused"
    );
    let keyboard = InlineKeyboardMarkup::rows(vec![vec![
        (
            texts::resume_button(lang),
            crate::telegram::callback::Callback::ResumeMailing(m.id.0).data(),
        ),
        (
            texts::cancel_button(lang),
            crate::telegram::callback::Callback::CancelMailing(m.id.0).data(),
        ),
    ]]);
    let _ = svc
        .telegram
        .send_message(
            m.chat_id,
            &texts::paused(lang, m.id.0, reason),
            Some(&ReplyMarkup::Inline(keyboard)),
        )
        .await;
    Ok(Step::Finished)
}
