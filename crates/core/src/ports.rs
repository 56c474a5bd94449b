//! The ports: every side effect the core needs, as small capability traits. Each runtime
//! implements them with its own adapters (`SqliteDb`, `EmbeddedState`, `HttpWappi` on the
//! server; D1, Durable Objects and `fetch` on Cloudflare).
//!
//! Traits are `async_trait` with `Send` futures natively and without on wasm32, where nothing
//! is `Send`. Implementations repeat the same pair of attributes:
//! `#[cfg_attr(not(target_arch = "wasm32"), async_trait)]` and
//! `#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]`.

use crate::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use crate::ledger::{Delivery, Mailing, NewMailing};
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup, TelegramError};
use crate::texts::Lang;
use crate::wappi::{ChatMessage, Dialog, ProfileStatus, Sent, WappiCreds, WappiError};

pub use async_trait::async_trait;

/// `Send + Sync` natively; nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// Wall-clock time in unix milliseconds. The only way the core learns the time.
pub trait Clock: MaybeSendSync {
    fn now_ms(&self) -> i64;
}

/// Randomness (nonces, lease tokens). Not in the core itself so that tests can fix it.
pub trait Entropy: MaybeSendSync {
    fn fill(&self, buf: &mut [u8]);
}

// ---------------------------------------------------------------------------------------------
// Storage (system of record)

/// A storage failure, or a refused conditional write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The profile already has an active mailing.
    #[error("this profile already has an active mailing")]
    AlreadyActive,
    /// The write carried a fencing number older than the mailing's: another runner owns it.
    #[error("stale fencing token: the lease was lost")]
    StaleFence,
    #[error("not found")]
    NotFound,
    #[error("storage: {0}")]
    Backend(String),
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub lang: Lang,
    /// The Wappi token, encrypted (see `crypto`); `None` until registration is complete.
    pub wappi_token_enc: Option<String>,
    pub profile_id: Option<ProfileId>,
    /// Unix seconds; `0` = never subscribed.
    pub subscription_until: i64,
    /// The dialogue state, serialised (see `dialogue::DialogueState`).
    pub dialogue: String,
    pub created_at: i64,
}

impl UserRecord {
    pub fn is_registered(&self) -> bool {
        self.wappi_token_enc.is_some() && self.profile_id.is_some()
    }
}

/// A group saved in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub jid: GroupJid,
    pub name: Option<String>,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait UserStore: MaybeSendSync {
    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, DbError>;
    /// Creates the user if new (with `subscription_until` as given) and returns the row.
    async fn ensure_user(
        &self,
        id: UserId,
        lang: Lang,
        subscription_until: i64,
        now: i64,
    ) -> Result<UserRecord, DbError>;
    async fn save_credentials(
        &self,
        id: UserId,
        token_enc: &str,
        profile: &ProfileId,
    ) -> Result<(), DbError>;
    async fn set_lang(&self, id: UserId, lang: Lang) -> Result<(), DbError>;
    async fn set_dialogue(&self, id: UserId, dialogue: &str) -> Result<(), DbError>;
    async fn set_subscription_until(&self, id: UserId, until: i64) -> Result<(), DbError>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait ContentStore: MaybeSendSync {
    /// The mailing text in WhatsApp markup.
    async fn get_text(&self, user: UserId) -> Result<Option<String>, DbError>;
    async fn set_text(&self, user: UserId, text: &str, now: i64) -> Result<(), DbError>;
    async fn get_groups(&self, user: UserId) -> Result<Vec<GroupEntry>, DbError>;
    /// Replaces the whole list, in this order.
    async fn set_groups(&self, user: UserId, groups: &[GroupEntry]) -> Result<(), DbError>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait MailingStore: MaybeSendSync {
    /// Snapshots the content and creates one `pending` row per group, in one transaction.
    /// `DbError::AlreadyActive` when the profile has a running or paused mailing.
    async fn create_mailing(&self, new: &NewMailing) -> Result<MailingId, DbError>;
    async fn get_mailing(&self, id: MailingId) -> Result<Option<Mailing>, DbError>;
    /// The user's newest mailing.
    async fn latest_mailing(&self, user: UserId) -> Result<Option<Mailing>, DbError>;
    /// Every mailing in `running` state (to resume after a restart).
    async fn running_mailings(&self) -> Result<Vec<Mailing>, DbError>;
    /// Records that a runner holding `fence` now drives the mailing. Refused (`StaleFence`)
    /// when a newer fence already did.
    async fn claim_mailing(&self, id: MailingId, fence: u64) -> Result<(), DbError>;
    async fn deliveries(&self, id: MailingId) -> Result<Vec<Delivery>, DbError>;
    /// Writes a row's state fields (state, attempts, next_attempt_at, message_id, error,
    /// updated_at), durably, if `fence` is still the mailing's fence.
    async fn update_delivery(&self, row: &Delivery, fence: u64) -> Result<(), DbError>;
    /// Changes the status; `finished_at` is set for final statuses. Fenced like rows.
    async fn set_mailing_status(
        &self,
        id: MailingId,
        status: crate::ledger::MailingStatus,
        reason: Option<&str>,
        fence: u64,
        now: i64,
    ) -> Result<(), DbError>;
    /// Marks a mailing cancelled by its user (checked by the runner before every send).
    async fn request_cancel(&self, id: MailingId) -> Result<(), DbError>;
    /// Resumes a paused mailing (status back to running, cancel flag untouched).
    async fn resume_mailing(&self, id: MailingId) -> Result<bool, DbError>;
    async fn set_progress(
        &self,
        id: MailingId,
        message_id: Option<i64>,
        at: i64,
    ) -> Result<(), DbError>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait UpdateLog: MaybeSendSync {
    /// `true` the first time an `update_id` is seen (a unique row, never a high-water mark).
    async fn first_seen(&self, update_id: i64, now: i64) -> Result<bool, DbError>;
}

/// A Robokassa invoice (its id is the InvId).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: i64,
    pub user_id: UserId,
    pub plan_days: u32,
    pub amount_kopecks: i64,
    pub paid: bool,
    pub created_at: i64,
    /// The subscription end (unix s) the payment produced, once paid.
    pub extended_until: Option<i64>,
}

/// What recording a verified payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The invoice was pending: now paid, access extended to this end (unix s).
    Applied { until: i64 },
    /// The invoice was already paid (a replayed notification): nothing changed.
    AlreadyPaid { until: i64 },
}

/// Figures for the operator's `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub users: u64,
    pub active_subscriptions: u64,
    pub revenue_month_kopecks: i64,
    pub mailings_today: u64,
    pub messages_sent_today: u64,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait BillingStore: MaybeSendSync {
    /// A pending invoice for a plan, priced by the server.
    async fn create_invoice(
        &self,
        user: UserId,
        plan_days: u32,
        amount_kopecks: i64,
        now: i64,
    ) -> Result<Invoice, DbError>;
    async fn get_invoice(&self, id: i64) -> Result<Option<Invoice>, DbError>;
    /// Marks a pending invoice paid and extends its user's subscription from the later of now
    /// and the current end, in one transaction; on an already paid invoice changes nothing.
    async fn settle_invoice(
        &self,
        id: i64,
        out_sum_raw: &str,
        now: i64,
    ) -> Result<Settlement, DbError>;
    /// Adds days of access (operator grant); returns the new end (unix s).
    async fn grant_days(&self, user: UserId, days: u32, now: i64) -> Result<i64, DbError>;
    /// Users whose subscription ends within `window_secs` of `now_secs` or ended less than
    /// `grace_secs` ago: (user, language, subscription end).
    async fn subscriptions_ending(
        &self,
        now_secs: i64,
        window_secs: i64,
        grace_secs: i64,
    ) -> Result<Vec<(UserId, Lang, i64)>, DbError>;
    /// Records a reminder; `true` only the first time for (user, kind, until).
    async fn record_reminder(
        &self,
        user: UserId,
        kind: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, DbError>;
    async fn stats(&self, now: i64) -> Result<Stats, DbError>;
}

/// The system of record: D1 or SQLite.
pub trait Db: UserStore + ContentStore + MailingStore + UpdateLog + BillingStore {}
impl<T: UserStore + ContentStore + MailingStore + UpdateLog + BillingStore + ?Sized> Db for T {}

// ---------------------------------------------------------------------------------------------
// Coordination state (Redis-like): leases, cancel flags, pacing, backoff, health, intake queue

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state backend: {0}")]
    Backend(String),
}

/// A held lease on a profile: the random token proves ownership, the fencing number orders
/// holders over time (every ledger write carries it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub profile: ProfileId,
    pub token: String,
    pub fence: u64,
}

/// The answer of the pacer at the moment of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Send now; the slot has been taken.
    Go,
    /// Not before this unix-ms time (pacing or a profile backoff).
    WaitUntil(i64),
}

/// Pacing limits, per CONTRACT.md (`PROFILE_RATE_PER_SEC`, `CHAT_BURST`, `CHAT_BURST_WINDOW_SECS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingConfig {
    pub profile_rate_per_sec: f64,
    pub chat_burst: u32,
    pub chat_window_ms: u64,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            profile_rate_per_sec: 1.0,
            chat_burst: 12,
            chat_window_ms: 2000,
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait State: MaybeSendSync {
    /// Takes the profile's lease if free or expired.
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Option<Lease>, StateError>;
    /// Extends a lease still held; `false` if it was lost.
    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64, now: i64) -> Result<bool, StateError>;
    /// Releases a lease only if still held by this token.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError>;

    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError>;
    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError>;

    /// Asks to send to `chat` on `profile` at `now`: checks the profile backoff, the profile
    /// rate and the per-chat burst, and takes the slot atomically when all allow it.
    async fn pace(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError>;
    /// The same question as [`State::pace`], taking nothing: lets the engine record its
    /// intent durably first and take the slot right before the call, so the time a disk
    /// write takes never shortens the gap between two sends.
    async fn pace_peek(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError>;
    /// Pauses every send of the profile until `until` (429 / Retry-After).
    async fn set_backoff(&self, profile: &ProfileId, until: i64) -> Result<(), StateError>;

    /// Records that a runner is alive.
    async fn heartbeat(&self, runner: &str, now: i64) -> Result<(), StateError>;
    /// The newest heartbeat of any runner (unix ms).
    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError>;

    /// The intake queue (`mailing_tasks_queue`): mailings waiting for a runner.
    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError>;
    async fn dequeue(&self) -> Result<Option<MailingId>, StateError>;
}

// ---------------------------------------------------------------------------------------------
// Outside services

/// The Telegram Bot API calls the core makes.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait TelegramApi: MaybeSendSync {
    async fn send_message(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<&ReplyMarkup>,
    ) -> Result<MessageId, TelegramError>;
    async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<(), TelegramError>;
    /// Replaces only the inline keyboard (an empty one removes the buttons).
    async fn edit_message_reply_markup(
        &self,
        chat: ChatId,
        message: MessageId,
        markup: &InlineKeyboardMarkup,
    ) -> Result<(), TelegramError>;
    async fn answer_callback_query(
        &self,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError>;
    /// Whether a message to `chat` would go out now without waiting for our own Telegram
    /// pacing. Progress edits are skipped (and retried at the next step) when it would not, so
    /// that a busy bot never slows a mailing down for a progress bar.
    fn can_send_now(&self, _chat: ChatId) -> bool {
        true
    }
}

/// The Wappi calls the core makes (`specs/wappi.md`).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait WappiApi: MaybeSendSync {
    /// `GET /api/sync/get/status`
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError>;
    /// `POST /api/sync/message/send`
    async fn send_text(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        body: &str,
    ) -> Result<Sent, WappiError>;
    /// `POST /api/sync/message/img/send` (raw base64, optional caption)
    async fn send_image(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        b64: &str,
        caption: Option<&str>,
    ) -> Result<Sent, WappiError>;
    /// `GET /api/sync/chats/get` (one page)
    async fn list_chats(
        &self,
        creds: &WappiCreds,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Dialog>, WappiError>;
    /// `GET /api/sync/messages/get`, newest first
    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, WappiError>;
}
