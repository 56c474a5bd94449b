//! A mailing from the bot's side: 🚀 shows the post with ✅ / ❌, ✅ snapshots it and hands
//! the mailing to the runner; ⛔ cancels, `/status` shows the progress or the report, and a
//! paused mailing is resumed from its button. Driving the mailing is the engine's (`mailing`).

use crate::bot::content::MAX_TEXT_UTF16;
use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::DialogueState;
use crate::bot::preflight::{Preflight, PreviewChoice};
use crate::mailing::AccountPace;
use crate::model::groups::Doubt;
use crate::model::ids::{GroupJid, MailingId};
use crate::model::ledger::{
    Content, MailingStatus, NewMailing, Tally, ANNOUNCE_WAIT_MS, CANARY_POSTS,
};
use crate::model::pacing::pace::{risk, warmup_cap};
use crate::ports::DbError;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;
use std::collections::HashMap;

impl Ctx<'_> {
    /// Why the prepared post cannot go out (now or scheduled), as a message: no text, no
    /// groups, no subscription. `None` when it can.
    pub(super) async fn post_blocker(&self) -> Result<Option<String>, BotError> {
        let l = self.lang();
        let text = self.svc.db.get_text(self.user.id).await?;
        if text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Ok(Some(texts::need_text(l)));
        }
        if self.svc.db.get_groups(self.user.id).await?.is_empty() {
            return Ok(Some(texts::need_groups(l)));
        }
        if !self.has_access() {
            return Ok(Some(texts::need_subscription(l)));
        }
        Ok(None)
    }

    /// Why a mailing cannot start now, as a message; `None` when it can.
    async fn start_blocker(&self) -> Result<Option<String>, BotError> {
        if let Some(why) = self.post_blocker().await? {
            return Ok(Some(why));
        }
        if let Some(m) = self.svc.db.latest_mailing(self.user.id).await? {
            if m.status.is_active() {
                return Ok(Some(texts::already_running(self.lang())));
            }
        }
        Ok(None)
    }

    /// 🚀: the post as the groups will get it, with ✅ / ❌ (or why it cannot start), after
    /// the pre-flight check of the groups (`preflight`): doubtful groups are named and left
    /// out unless included (➕), and a canary start is on for more than `CANARY_MIN_GROUPS`
    /// groups unless switched off (🐤); `choice` is (include doubtful,
    /// canary) from those buttons, `None` for the defaults. The preview gets the next number of
    /// the user, carried by its ✅, and is stored with its choices (see `start_mailing`).
    pub(super) async fn preview(&mut self, choice: Option<(bool, bool)>) -> Result<(), BotError> {
        let l = self.lang();
        self.set_state(&DialogueState::Idle).await?;
        if let Some(why) = self.start_blocker().await? {
            self.say(&why).await?;
            return Ok(());
        }
        let (content, groups) = self.prepared().await?;
        let phone = self.refresh_account().await?;
        let (check, names) = self.preflight(&groups, phone.as_deref()).await;
        let include_doubtful = choice.is_some_and(|c| c.0);
        let left_out = match include_doubtful {
            true => Vec::new(),
            false => check.doubtful.clone(),
        };
        let sending = groups.len() - left_out.len();
        let canary_min = self.svc.settings.canary_min_groups;
        let canary = choice.map_or(sending > canary_min, |c| c.1);
        let stored = PreviewChoice {
            skip: left_out,
            canary,
        };
        let seq = self
            .svc
            .db
            .begin_preview(
                self.user.id,
                &preview_digest(&content, &groups),
                &stored.store(),
            )
            .await?;
        let kb = preview_keyboard(
            l,
            seq,
            !check.doubtful.is_empty(),
            include_doubtful,
            canary,
            sending,
        );
        self.preview_images(&content).await?;
        let mut eta = self.estimate(sending, content.parts().len()).await?;
        if canary || sending > canary_min {
            eta.notes.push(texts::canary_note(l, canary, CANARY_POSTS));
        }
        if !check.doubtful.is_empty() || check.unknown > 0 {
            let note = self.preflight_note(&check, names, include_doubtful).await?;
            eta.notes.push(note);
        }
        let preview = texts::preview_post(l, &content, sending, &eta);
        if utf16_len(&preview) <= MAX_TEXT_UTF16 {
            self.say_with(&preview, ReplyMarkup::Inline(kb)).await?;
            return Ok(());
        }
        // Too long with the frame around it: the exact post on its own, then the frame.
        for part in texts::split_utf16(&content.text, MAX_TEXT_UTF16) {
            self.say(part).await?;
        }
        let frame = texts::preview_frame(l, &content, sending, &eta);
        self.say_with(&frame, ReplyMarkup::Inline(kb)).await?;
        Ok(())
    }

    /// The preview's lines about the pre-flight check, the doubtful groups named from the chat
    /// list, else as stored (a group the number left is no longer in the chat list).
    async fn preflight_note(
        &self,
        check: &Preflight,
        mut names: HashMap<GroupJid, String>,
        included: bool,
    ) -> Result<String, BotError> {
        for g in self.svc.db.get_groups(self.user.id).await? {
            if let Some(name) = g.name {
                names.entry(g.jid).or_insert(name);
            }
        }
        let named: Vec<(String, Doubt)> = check
            .doubtful
            .iter()
            .map(|(jid, why)| {
                (
                    texts::group_label(jid.as_str(), names.get(jid).map(String::as_str)),
                    *why,
                )
            })
            .collect();
        Ok(texts::preflight_note(
            self.lang(),
            &named,
            check.unknown,
            included,
        ))
    }

    /// How long a mailing to `groups` groups of `parts` messages each would take at the
    /// account's pace, when it would end, and the pace.
    pub(super) async fn estimate(
        &self,
        groups: usize,
        parts: usize,
    ) -> Result<texts::Estimate, BotError> {
        let l = self.lang();
        let account = AccountPace {
            pace: self.current_pace(),
            tz: self.zone(),
            number_since: self.user.number_since,
        };
        let now = self.svc.now_ms();
        let (secs, end) = match &self.user.profile_id {
            Some(profile) => {
                let posts = groups as u64;
                crate::mailing::estimate(self.svc, profile, &account, posts, groups * parts, now)
                    .await?
            }
            None => (self.svc.eta_secs(groups * parts), None),
        };
        let age = self.user.number_since.map(|t| now - t);
        let warmup = warmup_cap(age);
        let floor = self.svc.post_floor_ms();
        let mut notes = Vec::new();
        if let (Some(cap), Some(age)) = (warmup, age) {
            notes.push(texts::warmup_note(l, cap, age.max(0) / 86_400_000 + 1));
        }
        let risk = risk(&account.pace, groups, warmup, floor);
        notes.push(texts::risk_note(l, risk, warmup.is_some()));
        Ok(texts::Estimate {
            secs,
            finish: end.map(|t| texts::when(l, account.tz, t, now)),
            pace: texts::pace_summary(l, &account.pace, floor),
            notes,
        })
    }

    /// Reads the account's state from Wappi, best effort (a Wappi that does not answer keeps
    /// what was known): how long ago WhatsApp was linked to the number (for the warm-up cap),
    /// stored; and the number itself (digits), returned for the pre-flight check.
    async fn refresh_account(&mut self) -> Result<Option<String>, BotError> {
        let Some(creds) = self.svc.creds_of(&self.user) else {
            return Ok(None);
        };
        let Ok(status) = self.svc.wappi.get_status(&creds).await else {
            return Ok(None);
        };
        if let Some(at) = status.authorized_at_ms() {
            if self.user.number_since != Some(at) {
                self.svc.db.set_number_since(self.user.id, at).await?;
                self.user.number_since = Some(at);
            }
        }
        let phone = status
            .phone
            .map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>())
            .filter(|p| !p.is_empty());
        Ok(phone)
    }

    /// What a mailing started now would send, and to which groups.
    pub(super) async fn prepared(&self) -> Result<(Content, Vec<GroupJid>), BotError> {
        let text = self.svc.db.get_text(self.user.id).await?;
        let content = self.current_content(text.unwrap_or_default()).await?;
        let groups = self.svc.db.get_groups(self.user.id).await?;
        Ok((content, groups.into_iter().map(|g| g.jid).collect()))
    }

    /// ❌ on the preview.
    pub(super) async fn decline_start(&self) -> Result<(), BotError> {
        self.close_buttons().await;
        self.say_with(&texts::start_declined(self.lang()), self.main_keyboard())
            .await?;
        Ok(())
    }

    /// ✅ on preview `seq`: the mailing it showed is snapshotted and handed to the runner, if
    /// the preview is still the newest, nothing it showed changed since, and its ✅ was not
    /// taken before (one conditional write decides all three, so a second press or a
    /// redelivered update starts nothing). Otherwise the user is offered a fresh preview. The
    /// preview's buttons are taken away last: no Telegram call comes before the hand-over.
    pub(super) async fn start_mailing(&mut self, seq: u64) -> Result<(), BotError> {
        let started = self.start_previewed(seq).await;
        self.close_buttons().await;
        started
    }

    async fn start_previewed(&mut self, seq: u64) -> Result<(), BotError> {
        let l = self.lang();
        if let Some(why) = self.start_blocker().await? {
            self.say(&why).await?;
            return Ok(());
        }
        let Some(profile_id) = self.user.profile_id.clone() else {
            self.say(&texts::finish_registration_first(l)).await?;
            return Ok(());
        };
        // The snapshot: image rows never change, so later edits of the set do not reach it.
        let (content, groups) = self.prepared().await?;
        let digest = preview_digest(&content, &groups);
        let Some(choice) = self.svc.db.take_preview(self.user.id, seq, &digest).await? else {
            tracing::info!(user = self.user.id.0, seq, "void preview pressed");
            let kb = InlineKeyboardMarkup::rows(vec![vec![(
                texts::fresh_preview_button(l),
                Callback::FreshPreview.data(),
            )]]);
            self.say_with(&texts::preview_void(l), ReplyMarkup::Inline(kb))
                .await?;
            return Ok(());
        };
        let choice = PreviewChoice::load(&choice);
        let mut content = content;
        content.canary = choice.canary;
        let skipped: Vec<(GroupJid, String)> = choice
            .skip
            .into_iter()
            .map(|(jid, why)| (jid, texts::doubt_reason(l, why)))
            .collect();
        let sending = groups.len() - skipped.len();
        let now = self.svc.now_ms();
        let new = NewMailing {
            user_id: self.user.id,
            chat_id: self.chat,
            profile_id,
            content,
            groups: groups.clone(),
            skipped,
            now,
            announce_until: now + ANNOUNCE_WAIT_MS,
        };
        let Some(id) = self.create_mailing(&new).await? else {
            return Ok(());
        };
        tracing::info!(
            event = "mailing_started",
            mailing = id.0,
            user = self.user.id.0,
            groups = sending,
            "mailing started"
        );
        let parts = new.content.parts().len();
        let eta = self.estimate(sending, parts).await?;
        self.hand_over(id, &texts::started(l, id.0, sending, eta.secs))
            .await
    }

    /// Creates the mailing; `None` after telling the user that the account already has an
    /// active one.
    pub(super) async fn create_mailing(
        &self,
        new: &NewMailing,
    ) -> Result<Option<MailingId>, BotError> {
        match self.svc.db.create_mailing(new).await {
            Ok(id) => Ok(Some(id)),
            Err(DbError::AlreadyActive) => {
                self.say(&texts::already_running(self.lang())).await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Hands the mailing to the runners, then sends the start confirmation `text`, the
    /// progress message the runner keeps editing (see [`crate::mailing::scheduled::hand_over`]).
    pub(super) async fn hand_over(&self, id: MailingId, text: &str) -> Result<(), BotError> {
        let l = self.lang();
        crate::mailing::scheduled::hand_over(self.svc, id, self.chat, l, text).await?;
        Ok(())
    }

    /// ⛔ or the cancel button: the runner is asked to stop (it sends the report).
    pub(super) async fn cancel(&mut self, id: Option<MailingId>) -> Result<(), BotError> {
        let l = self.lang();
        let Some(m) = self.active_mailing(id).await? else {
            self.say(&texts::nothing_to_cancel(l)).await?;
            return Ok(());
        };
        self.svc.db.request_cancel(m.id).await?;
        self.svc.cancels.set_cancel(m.id).await?;
        if m.status == MailingStatus::Paused {
            // Nobody drives a paused mailing: hand it back to a runner, which ends it at once
            // (the cancel flag is checked before anything else) and sends the report.
            self.svc.db.resume_mailing(m.id, self.svc.now_ms()).await?;
            self.svc.intake.enqueue(m.id).await?;
        }
        tracing::info!(mailing = m.id.0, "cancel requested");
        self.say(&texts::cancelling(l, m.id.0)).await?;
        Ok(())
    }

    /// ⏸ or `/pause`: the running mailing stops before its next post (at most the one already
    /// on its way goes out) and waits for ▶️ / `/resume`.
    pub(super) async fn pause(&mut self, id: Option<MailingId>) -> Result<(), BotError> {
        let l = self.lang();
        let Some(m) = self.active_mailing(id).await? else {
            self.say(&texts::nothing_to_pause(l)).await?;
            return Ok(());
        };
        let reason = texts::paused_by_user(l);
        if !self.svc.db.pause_mailing(m.id, &reason).await? {
            self.say(&texts::nothing_to_pause(l)).await?;
            return Ok(());
        }
        tracing::info!(
            event = "mailing_paused",
            mailing = m.id.0,
            "paused by the user"
        );
        let kb = InlineKeyboardMarkup::rows(vec![vec![
            (
                texts::resume_button(l),
                Callback::ResumeMailing(m.id.0).data(),
            ),
            (
                texts::cancel_button(l),
                Callback::CancelMailing(m.id.0).data(),
            ),
        ]]);
        self.say_with(&texts::paused(l, m.id.0, &reason), ReplyMarkup::Inline(kb))
            .await?;
        Ok(())
    }

    /// `/resume`: the user's paused mailing, back to a runner.
    pub(super) async fn resume_latest(&mut self) -> Result<(), BotError> {
        match self.active_mailing(None).await? {
            Some(m) if m.status == MailingStatus::Paused => self.resume(m.id).await,
            _ => {
                self.say(&texts::nothing_to_resume(self.lang())).await?;
                Ok(())
            }
        }
    }

    /// The resume button of a paused mailing: back to a runner.
    pub(super) async fn resume(&mut self, id: MailingId) -> Result<(), BotError> {
        let l = self.lang();
        if let Some(m) = self.active_mailing(Some(id)).await? {
            if m.status == MailingStatus::Paused
                && self.svc.db.resume_mailing(m.id, self.svc.now_ms()).await?
            {
                self.close_buttons().await;
                self.svc.intake.enqueue(m.id).await?;
                self.say(&texts::resumed(l, m.id.0)).await?;
            }
        }
        Ok(())
    }

    /// `/status`: the latest mailing's progress, pause or report.
    pub(super) async fn status(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let Some(m) = self.svc.db.latest_mailing(self.user.id).await? else {
            self.say(&texts::no_mailings(l)).await?;
            return Ok(());
        };
        let rows = self.svc.db.deliveries(m.id).await?;
        let tally = Tally::of(&rows);
        let text = match m.status {
            MailingStatus::Running => {
                // What is left, at the account's pace (the plan the engine follows).
                let posts = crate::mailing::posts_left(&rows);
                let sends = crate::model::ledger::sends_left(&rows);
                let eta = self.estimate(posts, sends.div_ceil(posts.max(1))).await?;
                texts::progress(l, m.id.0, &tally, eta.secs, None)
            }
            MailingStatus::Paused => {
                texts::paused(l, m.id.0, m.pause_reason.as_deref().unwrap_or(""))
            }
            MailingStatus::Done | MailingStatus::Cancelled => {
                crate::mailing::report_text(
                    self.svc,
                    &m,
                    &rows,
                    l,
                    m.status == MailingStatus::Cancelled,
                )
                .await
            }
        };
        let kb = match m.status {
            MailingStatus::Running => Some(crate::mailing::progress_keyboard(l, m.id)),
            MailingStatus::Paused => None,
            MailingStatus::Done | MailingStatus::Cancelled => {
                crate::mailing::report_keyboard(l, &m, &rows)
            }
        };
        match kb {
            Some(kb) => self.say_with(&text, ReplyMarkup::Inline(kb)).await?,
            None => self.say(&text).await?,
        };
        Ok(())
    }
}

/// Sums up what a preview shows (the post and the groups, in order): equal digests, equal
/// mailings.
fn preview_digest(content: &Content, groups: &[GroupJid]) -> String {
    use sha2::{Digest, Sha256};
    let groups: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
    let json = serde_json::json!({ "content": content, "groups": groups });
    hex::encode(Sha256::digest(json.to_string().as_bytes()))
}

/// ✅ / ❌, 🕒, and the toggles of the preview's choices: ➕ / ➖ when the check doubts some
/// groups, 🐤 when there are more groups than the canary posts.
fn preview_keyboard(
    l: crate::model::lang::Lang,
    seq: u64,
    doubts: bool,
    include_doubtful: bool,
    canary: bool,
    sending: usize,
) -> InlineKeyboardMarkup {
    let with = |all: bool, canary: bool| Callback::PreviewWith { all, canary }.data();
    let mut rows = vec![
        vec![
            (texts::confirm_yes(l), Callback::ConfirmStart(seq).data()),
            (texts::confirm_no(l), Callback::DeclineStart.data()),
        ],
        vec![(
            texts::schedule::schedule_button(l),
            Callback::SchedulePrompt.data(),
        )],
    ];
    if doubts {
        rows.push(vec![match include_doubtful {
            false => (texts::include_doubtful_button(l), with(true, canary)),
            true => (texts::leave_out_doubtful_button(l), with(false, canary)),
        }]);
    }
    if sending > CANARY_POSTS as usize {
        rows.push(vec![match canary {
            true => (texts::canary_off_button(l), with(include_doubtful, false)),
            false => (texts::canary_on_button(l), with(include_doubtful, true)),
        }]);
    }
    InlineKeyboardMarkup::rows(rows)
}

/// A text's length as Telegram counts it.
fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}
