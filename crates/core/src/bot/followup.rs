//! After the send, from the bot's side: ✏️ under a report asks for the corrected text and
//! previews the fix (or, once WhatsApp's edit window has closed everywhere, a delete followed
//! by a repost), 🗑 previews the delete; ✅ starts the follow-up as a mailing of its own (the
//! engine drives it: `mailing::followup`), and 🚀 under a repost's report makes the corrected
//! post the prepared one. A follow-up preview is numbered like a mailing's (its ✅ starts at
//! most once, and a newer preview voids it); what it will do is stored with it.

use crate::bot::content::MAX_TEXT_UTF16;
use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::DialogueState;
use crate::model::followup::{self, Action, FollowUp};
use crate::model::ids::MailingId;
use crate::model::ledger::MAX_CAPTION_CHARS;
use crate::model::ledger::{
    group_outcomes, Delivery, DeliveryState, Mailing, NewMailing, ANNOUNCE_WAIT_MS,
};
use crate::ports::GroupEntry;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, MessageEntity, ReplyMarkup};
use crate::texts;
use serde::{Deserialize, Serialize};

/// The digest a follow-up preview is stored under (what it does is in its plan, not in the
/// prepared post, which it does not read).
const DIGEST: &str = "follow-up";

/// What a follow-up preview's ✅ starts, stored with the preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Plan {
    of: i64,
    action: Action,
    #[serde(default)]
    repost: bool,
    /// The corrected text (a fix, or the post a repost will send).
    #[serde(default)]
    text: Option<String>,
}

impl Ctx<'_> {
    /// ✏️ under a report: asks for the corrected text, saying until when it can be applied.
    pub(super) async fn ask_fix(&mut self, id: MailingId) -> Result<(), BotError> {
        let l = self.lang();
        let Some((m, rows)) = self.finished_post(id).await? else {
            return Ok(());
        };
        let groups = followup::groups(Action::Edit, &rows);
        let window = self.svc.settings.engine.edit_window_ms;
        let Some((first, last)) = followup::edit_window(&rows, window) else {
            self.say(&texts::followup::nothing_there(l, m.id.0, Action::Edit))
                .await?;
            return Ok(());
        };
        let now = self.svc.now_ms();
        let until = texts::when(l, self.zone(), if first > now { first } else { last }, now);
        self.set_state(&DialogueState::AwaitFix { of: m.id.0 })
            .await?;
        let ask = texts::followup::ask_fix(l, m.id.0, groups.len(), window, &until);
        self.say(&ask).await?;
        Ok(())
    }

    /// The corrected text arrived: the fix's preview, or the offer to delete and repost when
    /// the edit window has closed in every group.
    pub(super) async fn take_fix(
        &mut self,
        of: MailingId,
        text: &str,
        entities: &[MessageEntity],
    ) -> Result<(), BotError> {
        let l = self.lang();
        let Some(converted) = self.post_text(text, entities).await? else {
            return Ok(());
        };
        let Some((m, rows)) = self.finished_post(of).await? else {
            self.set_state(&DialogueState::Idle).await?;
            return Ok(());
        };
        let chars = converted.chars().count();
        if m.content.caption && chars > MAX_CAPTION_CHARS {
            self.say(&texts::followup::caption_too_long(
                l,
                chars,
                MAX_CAPTION_CHARS,
            ))
            .await?;
            return Ok(());
        }
        self.set_state(&DialogueState::Idle).await?;
        let window = self.svc.settings.engine.edit_window_ms;
        let now = self.svc.now_ms();
        let Some((first, last)) = followup::edit_window(&rows, window) else {
            self.say(&texts::followup::nothing_there(l, m.id.0, Action::Edit))
                .await?;
            return Ok(());
        };
        let tz = self.zone();
        if last <= now {
            let groups = followup::groups(Action::Delete, &rows).len();
            let closed_at = texts::when(l, tz, last, now);
            let preview =
                texts::followup::preview_repost(l, m.id.0, groups, &closed_at, &converted);
            let plan = Plan {
                of: m.id.0,
                action: Action::Delete,
                repost: true,
                text: Some(converted),
            };
            return self.show_follow_up(plan, &preview).await;
        }
        let targets = followup::targets(&rows);
        let closed = targets
            .iter()
            .filter(|((_, part), t)| *part == 0 && followup::edit_deadline(t, window) <= now)
            .count();
        let groups = followup::groups(Action::Edit, &rows).len();
        let eta = self.estimate(groups - closed, 1).await?;
        let until = texts::when(l, tz, if first > now { first } else { last }, now);
        let preview =
            texts::followup::preview_edit(l, m.id.0, groups, &converted, &until, closed, eta.secs);
        let plan = Plan {
            of: m.id.0,
            action: Action::Edit,
            repost: false,
            text: Some(converted),
        };
        self.show_follow_up(plan, &preview).await
    }

    /// 🗑 under a report: the delete's preview.
    pub(super) async fn ask_delete(&mut self, id: MailingId) -> Result<(), BotError> {
        let l = self.lang();
        let Some((m, rows)) = self.finished_post(id).await? else {
            return Ok(());
        };
        let groups = followup::groups(Action::Delete, &rows).len();
        if groups == 0 {
            self.say(&texts::followup::nothing_there(l, m.id.0, Action::Delete))
                .await?;
            return Ok(());
        }
        let parts = m.content.parts().len();
        let eta = self.estimate(groups, parts).await?;
        let preview = texts::followup::preview_delete(l, m.id.0, groups, eta.secs);
        let plan = Plan {
            of: m.id.0,
            action: Action::Delete,
            repost: false,
            text: None,
        };
        self.show_follow_up(plan, &preview).await
    }

    /// Stores `plan` as the user's newest preview and shows it with its ✅ / ❌ (a preview too
    /// long for one message goes as the text, then the frame).
    async fn show_follow_up(&mut self, plan: Plan, preview: &str) -> Result<(), BotError> {
        let l = self.lang();
        let stored = serde_json::to_string(&plan).unwrap_or_default();
        let seq = self
            .svc
            .db
            .begin_preview(self.user.id, DIGEST, &stored)
            .await?;
        let kb = InlineKeyboardMarkup::rows(vec![vec![
            (
                texts::followup::confirm(l, plan.action),
                Callback::ConfirmFollowUp(seq).data(),
            ),
            (texts::confirm_no(l), Callback::DeclineStart.data()),
        ]]);
        if preview.encode_utf16().count() > MAX_TEXT_UTF16 {
            let text = plan.text.as_deref().unwrap_or_default();
            for part in texts::split_utf16(text, MAX_TEXT_UTF16) {
                self.say(part).await?;
            }
            let frame = preview.replace(text, "⬆️");
            self.say_with(&frame, ReplyMarkup::Inline(kb)).await?;
            return Ok(());
        }
        self.say_with(preview, ReplyMarkup::Inline(kb)).await?;
        Ok(())
    }

    /// ✅ on follow-up preview `seq`: the fix or delete it showed starts as a mailing, once. A
    /// fix needs the subscription (it puts new text into the groups); a delete does not. The
    /// preview's buttons are taken away last, as for a mailing.
    pub(super) async fn start_follow_up(&mut self, seq: u64) -> Result<(), BotError> {
        let started = self.start_previewed_follow_up(seq).await;
        self.close_buttons().await;
        started
    }

    async fn start_previewed_follow_up(&mut self, seq: u64) -> Result<(), BotError> {
        let l = self.lang();
        let Some(stored) = self.svc.db.take_preview(self.user.id, seq, DIGEST).await? else {
            self.say(texts::followup::void(l)).await?;
            return Ok(());
        };
        let Ok(plan) = serde_json::from_str::<Plan>(&stored) else {
            self.say(texts::followup::void(l)).await?;
            return Ok(());
        };
        if plan.action == Action::Edit && !self.has_access() {
            self.say(&texts::need_subscription(l)).await?;
            return Ok(());
        }
        let Some((m, rows)) = self.finished_post(MailingId(plan.of)).await? else {
            return Ok(());
        };
        let f = FollowUp {
            of: m.id,
            action: plan.action,
            repost: plan.repost,
        };
        let groups = followup::groups(f.action, &rows);
        let now = self.svc.now_ms();
        let new = NewMailing {
            user_id: self.user.id,
            chat_id: self.chat,
            // The messages are the number's that sent them.
            profile_id: m.profile_id.clone(),
            content: followup::content(&m.content, f, plan.text.as_deref()),
            groups,
            skipped: Vec::new(),
            now,
            announce_until: now + ANNOUNCE_WAIT_MS,
        };
        let Some(id) = self.create_mailing(&new).await? else {
            return Ok(());
        };
        tracing::info!(
            event = "follow_up_started",
            mailing = id.0,
            of = m.id.0,
            action = ?f.action,
            groups = new.groups.len(),
            "follow-up started"
        );
        let eta = self
            .estimate(new.groups.len(), new.content.parts().len())
            .await?;
        let text = texts::followup::started(l, id.0, f.action, new.groups.len(), eta.secs);
        self.hand_over(id, &text).await
    }

    /// 🚀 under a repost's report: the corrected text and the groups the post was deleted from
    /// become the prepared post (the photo set is kept as it is), then the usual preview.
    pub(super) async fn repost(&mut self, id: MailingId) -> Result<(), BotError> {
        let l = self.lang();
        let m = self.svc.db.get_mailing(id).await?;
        let Some(m) = m
            .filter(|m| m.user_id == self.user.id && m.content.follow_up.is_some_and(|f| f.repost))
        else {
            self.say(texts::followup::unknown_mailing(l)).await?;
            return Ok(());
        };
        let rows = self.svc.db.deliveries(m.id).await?;
        let names = self.svc.db.get_groups(self.user.id).await?;
        let groups: Vec<GroupEntry> = group_outcomes(&rows)
            .into_iter()
            .filter(|g| g.state == DeliveryState::Sent)
            .map(|g| GroupEntry {
                jid: g.row.group.clone(),
                name: names
                    .iter()
                    .find(|n| n.jid == g.row.group)
                    .and_then(|n| n.name.clone()),
            })
            .collect();
        self.close_buttons().await;
        let now = self.svc.now_ms();
        self.svc
            .db
            .set_text(self.user.id, &m.content.text, now)
            .await?;
        self.svc.db.set_groups(self.user.id, &groups).await?;
        self.say(&texts::followup::repost_prepared(l, groups.len()))
            .await?;
        self.preview(None).await
    }

    /// The user's own finished post `id` and its ledger; `None` after telling the user why not
    /// (not theirs, a follow-up itself, still running).
    async fn finished_post(
        &self,
        id: MailingId,
    ) -> Result<Option<(Mailing, Vec<Delivery>)>, BotError> {
        let l = self.lang();
        let m = self.svc.db.get_mailing(id).await?;
        let Some(m) = m.filter(|m| m.user_id == self.user.id && m.content.follow_up.is_none())
        else {
            self.say(texts::followup::unknown_mailing(l)).await?;
            return Ok(None);
        };
        if m.status.is_active() {
            self.say(&texts::followup::still_running(l, m.id.0)).await?;
            return Ok(None);
        }
        let rows = self.svc.db.deliveries(m.id).await?;
        Ok(Some((m, rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_as_stored() {
        let plan = Plan {
            of: 9,
            action: Action::Delete,
            repost: true,
            text: Some("Цена 90".into()),
        };
        let stored = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&stored).unwrap(), plan);
    }
}
