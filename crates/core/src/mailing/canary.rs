//! The canary start: a mailing marked `canary` posts to its first [`CANARY_POSTS`] groups,
//! waits `CANARY_WAIT_SECS` after the last of them, and reads their delivery back from each
//! group's history (`delivery_status` of our message). Only if every one was delivered (or
//! read) do the other groups get the post; otherwise the mailing pauses with what was seen,
//! and ▶️ sends the rest anyway (a resume after the canary posts ends the check).

use super::audit::read_status;
use super::report::{group_labels, pause};
use super::{Cursor, EngineError, Step};
use crate::model::ledger::{Delivery, DeliveryState, Mailing, CANARY_POSTS};
use crate::services::EngineServices;
use crate::texts;
use crate::wappi::WappiCreds;

/// What the canary asks of the step about to begin row `i`: nothing (`None`), or to end with
/// `Some(step)` (wait for the check, or the pause it ended in).
pub(super) async fn gate(
    svc: &EngineServices,
    m: &Mailing,
    creds: &WappiCreds,
    cursor: &mut Cursor,
    i: usize,
    fence: u64,
    now: i64,
) -> Result<Option<Step>, EngineError> {
    if !m.content.canary || cursor.canary_passed {
        return Ok(None);
    }
    let canaries = canaries(cursor.rows());
    if canaries
        .iter()
        .any(|r| r.position >= cursor.rows()[i].position)
    {
        return Ok(None);
    }
    let last = canaries
        .iter()
        .map(|r| r.first_attempt_at)
        .max()
        .unwrap_or(0);
    if m.resumed_at > last {
        // The user pressed ▶️ after the canary posts: go on.
        cursor.canary_passed = true;
        return Ok(None);
    }
    let due = last + svc.settings.engine.canary_wait_ms;
    let settled = |r: &&Delivery| matches!(r.state, DeliveryState::Sent | DeliveryState::Failed);
    if now < due || !canaries.iter().all(settled) {
        return Ok(Some(Step::SleepUntil(due.max(now + 1000))));
    }
    let mut seen = Vec::new();
    for row in &canaries {
        let status = delivery_status(svc, creds, row).await;
        seen.push((row.group.as_str().to_string(), status));
    }
    let undelivered: Vec<&(String, String)> = seen
        .iter()
        .filter(|(_, s)| !matches!(s.as_str(), "delivered" | "read"))
        .collect();
    tracing::info!(
        event = "canary",
        mailing = m.id.0,
        delivered = seen.len() - undelivered.len(),
        checked = seen.len(),
        "canary checked"
    );
    if undelivered.is_empty() {
        cursor.canary_passed = true;
        return Ok(None);
    }
    let l = cursor.look().lang;
    let labels = group_labels(
        svc,
        m.user_id,
        undelivered.iter().map(|(jid, _)| jid.as_str()),
    )
    .await;
    let lines: Vec<(String, String)> = labels
        .into_iter()
        .zip(undelivered.iter().map(|(_, status)| status.clone()))
        .collect();
    let reason = texts::canary_failed(l, seen.len() - undelivered.len(), seen.len(), &lines);
    pause(svc, m, l, fence, &reason).await.map(Some)
}

/// The canary posts: the text rows of the first [`CANARY_POSTS`] groups that are to get the
/// post (a group the pre-flight check left out was never going to).
fn canaries(rows: &[Delivery]) -> Vec<&Delivery> {
    let born_failed = |r: &Delivery| r.state == DeliveryState::Failed && r.attempts == 0;
    let mut out: Vec<&Delivery> = rows
        .iter()
        .filter(|r| r.part == 0 && !born_failed(r))
        .collect();
    out.sort_by_key(|r| r.position);
    out.truncate(CANARY_POSTS as usize);
    out
}

/// Our message's `delivery_status` in the group's history: `failed` for a post that did not
/// go out, `unknown` when the history cannot be read or does not show it.
async fn delivery_status(svc: &EngineServices, creds: &WappiCreds, row: &Delivery) -> String {
    if row.state != DeliveryState::Sent {
        return "failed".into();
    }
    let Some(id) = row.message_id.as_deref() else {
        return "unknown".into();
    };
    match read_status(svc, creds, &row.group, id).await {
        Ok(status) => status
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        Err(e) => {
            tracing::info!(group = row.group.as_str(), error = %e, "canary: history not read");
            "unknown".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::{GroupJid, MailingId};

    fn row(position: u32, part: u32, state: DeliveryState, attempts: u32) -> Delivery {
        Delivery {
            mailing_id: MailingId(1),
            group: GroupJid::parse(&format!("12036300000000{position:04}@g.us")).unwrap(),
            part,
            position,
            state,
            attempts,
            checks: 0,
            first_attempt_at: 0,
            next_attempt_at: 0,
            message_id: None,
            error: None,
            updated_at: 0,
        }
    }

    /// The canary posts are the text rows of the first three groups that were to get the
    /// post: a group the pre-flight check left out (born failed) is passed over, a group Wappi
    /// refused is not.
    #[test]
    fn the_canaries_are_the_first_three_groups_meant_to_get_the_post() {
        use DeliveryState::*;
        let rows = vec![
            row(0, 1, Sent, 1),
            row(0, 0, Sent, 1),
            row(1, 0, Failed, 0),
            row(2, 0, Failed, 2),
            row(3, 0, Pending, 0),
            row(4, 0, Pending, 0),
        ];
        let positions: Vec<u32> = canaries(&rows).iter().map(|r| r.position).collect();
        assert_eq!(positions, vec![0, 2, 3]);
    }
}
