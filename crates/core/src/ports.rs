//! The ports: every side effect the core needs, as small capability traits. Each runtime
//! implements them with its own adapters (`SqliteDb`, the embedded or Redis state, `HttpWappi`
//! on the server; D1, Durable Objects and `fetch` on Cloudflare).
//!
//! Traits are `async_trait` with `Send` futures natively and without on wasm32, where nothing
//! is `Send`. Implementations repeat the same pair of attributes:
//! `#[cfg_attr(not(target_arch = "wasm32"), async_trait)]` and
//! `#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]`.

use crate::model::billing::{Invoice, Settlement, Stats};
use crate::model::ids::{ChatId, GroupJid, ImageId, MailingId, ProfileId, SeriesId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::{Content, Delivery, Mailing, NewMailing, SendOutcome};
use crate::model::pacing::pace::{PaceSettings, Preset};
use crate::model::pacing::{Pace, PacingConfig};
use crate::model::schedule::Schedule;
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup, TelegramError};
use crate::wappi::{Dialog, GroupFacts, MessagesPage, ProfileStatus, Sent, WappiCreds, WappiError};
use chrono::NaiveDate;

pub use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
    /// The series' run for that date was already started, skipped or missed.
    #[error("this run of the series was already decided")]
    RunTaken,
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
    /// The account's pace as stored (JSON of `PaceSettings`); `None` = `DEFAULT_PACE`.
    pub pace: Option<String>,
    /// The user's time zone (IANA name); `None` = `DEFAULT_TZ`.
    pub tz: Option<String>,
    /// When WhatsApp was linked to the account's profile (unix ms); `None` = unknown.
    pub number_since: Option<i64>,
}

impl UserRecord {
    pub fn is_registered(&self) -> bool {
        self.wappi_token_enc.is_some() && self.profile_id.is_some()
    }

    /// The account's pace: as stored, or the `default` preset's when none is (or what is
    /// stored no longer reads).
    pub fn pace(&self, default: Preset) -> PaceSettings {
        self.pace
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| default.settings())
    }

    /// The user's time zone, or `default` when none is stored (or it no longer reads).
    pub fn zone(&self, default: chrono_tz::Tz) -> chrono_tz::Tz {
        self.tz
            .as_deref()
            .and_then(crate::model::zone::parse)
            .unwrap_or(default)
    }
}

/// A group saved in a user's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Stores the account's pace (JSON of `PaceSettings`).
    async fn set_pace(&self, id: UserId, pace: &str) -> Result<(), DbError>;
    /// Stores the user's time zone (an IANA name).
    async fn set_tz(&self, id: UserId, tz: &str) -> Result<(), DbError>;
    /// Stores when WhatsApp was linked to the account's profile (unix ms).
    async fn set_number_since(&self, id: UserId, at: i64) -> Result<(), DbError>;
    /// Records a new preview showing what `digest` sums up, with `skip` (what the preview
    /// leaves out, opaque here), and returns its number (the user's previous previews are void
    /// from now on).
    async fn begin_preview(&self, id: UserId, digest: &str, skip: &str) -> Result<u64, DbError>;
    /// Takes preview `seq` if it is the user's newest, not yet taken, and `digest` (what a
    /// mailing started now would send) is what it showed, and returns its `skip`. `Some`
    /// exactly once per preview: the check and the taking are one conditional write.
    async fn take_preview(
        &self,
        id: UserId,
        seq: u64,
        digest: &str,
    ) -> Result<Option<String>, DbError>;
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
    /// Saves `groups` as the user's set `name` (replacing a set of that name).
    async fn save_group_set(
        &self,
        user: UserId,
        name: &str,
        groups: &[GroupEntry],
        now: i64,
    ) -> Result<(), DbError>;
    /// The user's sets, by name.
    async fn group_sets(&self, user: UserId) -> Result<Vec<GroupSet>, DbError>;
    /// Deletes the user's set `name`; `false` when there was none.
    async fn delete_group_set(&self, user: UserId, name: &str) -> Result<bool, DbError>;
}

/// A named, saved group list of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSet {
    pub name: String,
    pub groups: Vec<GroupEntry>,
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
    /// Writes a row's state fields (state, attempts, checks, first_attempt_at,
    /// next_attempt_at, message_id, error, updated_at), durably, if `fence` is still the mailing's fence.
    async fn update_delivery(&self, row: &Delivery, fence: u64) -> Result<(), DbError>;
    /// Changes the status; `finished_at` is set for final statuses. Fenced like rows.
    async fn set_mailing_status(
        &self,
        id: MailingId,
        status: crate::model::ledger::MailingStatus,
        reason: Option<&str>,
        fence: u64,
        now: i64,
    ) -> Result<(), DbError>;
    /// Marks a mailing cancelled by its user (checked by the runner before every send).
    async fn request_cancel(&self, id: MailingId) -> Result<(), DbError>;
    /// Whether the mailing's cancel flag is set (a missing mailing counts as cancelled): what
    /// the engine asks right before sending a row armed from the remembered mailing. Backends
    /// read the one column; the default reads the whole mailing.
    async fn cancel_requested(&self, id: MailingId) -> Result<bool, DbError> {
        Ok(self
            .get_mailing(id)
            .await?
            .is_none_or(|m| m.cancel_requested))
    }
    /// Resumes a paused mailing (status back to running, cancel flag untouched).
    async fn resume_mailing(&self, id: MailingId, now: i64) -> Result<bool, DbError>;
    /// Pauses a running mailing at the user's request, with the reason shown; `false` when it
    /// was not running. The runner sees it before its next post and stops driving it.
    async fn pause_mailing(&self, id: MailingId, reason: &str) -> Result<bool, DbError>;
    /// When each post of the profile's mailings since `since` began (a post: everything one
    /// group gets from one mailing, timed by its first attempt), oldest first.
    async fn recent_posts(&self, profile: &ProfileId, since: i64) -> Result<Vec<i64>, DbError>;
    async fn set_progress(
        &self,
        id: MailingId,
        message_id: Option<i64>,
        at: i64,
    ) -> Result<(), DbError>;
}

/// A scheduled series as stored: the post and groups as they were when it was scheduled (a
/// snapshot), the schedule, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub id: SeriesId,
    pub user_id: UserId,
    /// Where its runs report.
    pub chat_id: ChatId,
    pub profile_id: ProfileId,
    pub content: Content,
    pub groups: Vec<GroupJid>,
    pub schedule: Schedule,
    pub paused: bool,
    /// Runs due before this (unix ms) are never run: the time it was scheduled, and every
    /// resume after a pause.
    pub not_before: i64,
    /// The newest local date with a run decided (started, skipped or missed); the next run
    /// comes after it.
    pub last_date: Option<NaiveDate>,
    /// A due run the user was told waits for the account's active mailing (its local date).
    pub waiting_date: Option<NaiveDate>,
    /// When the next run is due as last computed (unix ms); `None`: no more runs. A hint for
    /// finding due series: the run itself is computed again when due.
    pub next_due_at: Option<i64>,
    pub created_at: i64,
}

/// A new series.
#[derive(Debug, Clone)]
pub struct NewSeries {
    pub user_id: UserId,
    pub chat_id: ChatId,
    pub profile_id: ProfileId,
    pub content: Content,
    pub groups: Vec<GroupJid>,
    pub schedule: Schedule,
    pub next_due_at: Option<i64>,
    pub now: i64,
}

/// How a series' run for one local date was decided. The pair (series, date) is unique in
/// the database: a run is decided once, whatever restarts, redelivered alarms or second
/// processes happen around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// It became a mailing.
    Started,
    /// The user skipped it (⏭).
    Skipped,
    /// Its time passed while the service was down (beyond the grace), or while the previous
    /// mailing still ran when the next run came due.
    Missed,
    /// The user had no active subscription when it came due.
    NoSubscription,
}

impl RunOutcome {
    /// The outcome whose [`code`](RunOutcome::code) is `code`.
    pub fn parse(code: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Started,
            RunOutcome::Skipped,
            RunOutcome::Missed,
            RunOutcome::NoSubscription,
        ]
        .into_iter()
        .find(|o| o.code() == code)
    }

    /// How the outcome is stored.
    pub fn code(self) -> &'static str {
        match self {
            RunOutcome::Started => "started",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Missed => "missed",
            RunOutcome::NoSubscription => "no_subscription",
        }
    }
}

/// Scheduled series and the record of their runs.
///
/// Backends must keep these semantics (`db_contract_suite` checks them):
/// - `start_run` creates the run's record and its mailing in one transaction: `RunTaken` when
///   the run was already decided (nothing written), `AlreadyActive` when the profile has an
///   active mailing (nothing written);
/// - `record_run` decides a run without a mailing, `true` only the first time for the pair;
/// - `last_date` is the newest date of the series' decided runs;
/// - `due_series` lists series neither paused nor deleted whose `next_due_at` is at or before
///   the given time, soonest first; `user_series` lists a user's series that are not deleted
///   and have a next run (paused ones included), oldest first.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait ScheduleStore: MaybeSendSync {
    async fn create_series(&self, new: &NewSeries) -> Result<SeriesId, DbError>;
    /// The series, unless it was deleted.
    async fn get_series(&self, id: SeriesId) -> Result<Option<Series>, DbError>;
    async fn user_series(&self, user: UserId) -> Result<Vec<Series>, DbError>;
    async fn due_series(&self, before: i64, limit: u32) -> Result<Vec<Series>, DbError>;
    /// The soonest `next_due_at` of the series neither paused nor deleted.
    async fn earliest_due(&self) -> Result<Option<i64>, DbError>;
    async fn set_series_next(&self, id: SeriesId, next_due_at: Option<i64>) -> Result<(), DbError>;
    /// Pauses or resumes the user's series (a resume sets `not_before` to `now`); `false` when
    /// it is not the user's, deleted, or already so.
    async fn set_series_paused(
        &self,
        id: SeriesId,
        user: UserId,
        paused: bool,
        now: i64,
    ) -> Result<bool, DbError>;
    /// Deletes the user's series (its runs' records stay); `false` when there was none.
    async fn delete_series(&self, id: SeriesId, user: UserId) -> Result<bool, DbError>;
    /// Marks the run of `date` as waiting for the account's active mailing; `true` only the
    /// first time for that date (the user is told once).
    async fn set_series_waiting(&self, id: SeriesId, date: NaiveDate) -> Result<bool, DbError>;
    /// Decides the run of (`series`, `date`) without a mailing.
    async fn record_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        due_at: i64,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<bool, DbError>;
    /// Starts the run of (`series`, `date`): its record and its mailing (as `create_mailing`
    /// makes one) in one transaction.
    async fn start_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        due_at: i64,
        mailing: &NewMailing,
    ) -> Result<MailingId, DbError>;
    /// How the run of (`series`, `date`) was decided, and its mailing if it started.
    async fn run_of(
        &self,
        series: SeriesId,
        date: NaiveDate,
    ) -> Result<Option<(RunOutcome, Option<MailingId>)>, DbError>;
}

/// The delivery audit: which finished mailings are due one, taking one (once), and what the
/// audits saw of each group.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait AuditStore: MaybeSendSync {
    /// Mailings done or cancelled in `[since, until]` and not audited yet, oldest first.
    async fn mailings_to_audit(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<MailingId>, DbError>;
    /// Takes the audit of a mailing; `true` only the first time.
    async fn claim_audit(&self, id: MailingId, now: i64) -> Result<bool, DbError>;
    /// Records what an audit saw of a user's group: its `delivery_status`, and whether the
    /// post was delivered (a miss counts up, a delivery starts the count again).
    async fn record_group_delivery(
        &self,
        user: UserId,
        group: &GroupJid,
        status: &str,
        delivered: bool,
        now: i64,
    ) -> Result<(), DbError>;
    /// The user's groups whose latest audit found the post not delivered.
    async fn undelivering_groups(&self, user: UserId) -> Result<Vec<GroupJid>, DbError>;
}

/// A past mailing as `/history` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastMailing {
    pub mailing: Mailing,
    /// The scheduled series the mailing was a run of, if it was one.
    pub series: Option<SeriesId>,
}

/// Past mailings (`/history`) and what the delivery audit read back of each mailing's post
/// in each group (the CSV's delivery column).
///
/// Backends must keep these semantics (`db_contract_suite` checks them):
/// - `mailing_history` lists only the user's mailings, newest first, at most `limit`;
/// - `record_post_status` writes to the mailing's rows of that group (all its parts), and
///   changes nothing for a group the mailing does not have; a later status replaces an
///   earlier one;
/// - `post_statuses` lists the mailing's audited groups once each, in the mailing's order.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait HistoryStore: MaybeSendSync {
    /// The user's newest mailings, newest first, at most `limit`, each with its series.
    async fn mailing_history(&self, user: UserId, limit: u32) -> Result<Vec<PastMailing>, DbError>;
    /// Records the `delivery_status` the audit read back for the mailing's post in `group`.
    async fn record_post_status(
        &self,
        id: MailingId,
        group: &GroupJid,
        status: &str,
    ) -> Result<(), DbError>;
    /// The `delivery_status` of each audited group of the mailing.
    async fn post_statuses(&self, id: MailingId) -> Result<Vec<(GroupJid, String)>, DbError>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait UpdateLog: MaybeSendSync {
    /// Takes update `update_id` for handling (a unique row, never a high-water mark), storing
    /// its `payload` (the update as JSON) so that it can be taken again if the handling is cut
    /// off. A taken update that never finished is taken anew once its claim is older than
    /// `stale_before` (its handler died: a crash, a deploy, a shutdown that handed it back).
    async fn claim_update(
        &self,
        update_id: i64,
        payload: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<UpdateClaim, DbError>;
    /// Records that the handling of a taken update ended (whatever its outcome): from now on
    /// a redelivery of it is a duplicate.
    async fn finish_update(&self, update_id: i64, now: i64) -> Result<(), DbError>;
}

/// The answer of [`UpdateLog::claim_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateClaim {
    /// Ours to handle: new, or taken before and never finished by a handler now gone.
    Taken,
    /// Already handled: a redelivery, dropped.
    Handled,
    /// Taken recently and not finished: a handler is on it (or died moments ago; the claim
    /// goes stale at `stale_before` and the update is taken again then).
    InHand,
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

/// An image as stored: a normalised JPEG (at most 1600 px on the long side and 1 MB, so a row
/// stays well under D1's 2 MB limit). Rows never change once written, which is what lets a
/// mailing's content snapshot refer to images by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub id: ImageId,
    pub user_id: UserId,
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// A Telegram `file_id` that shows this image (the user's upload, or our collage preview),
    /// so previews are re-sent by id instead of uploaded again.
    pub tg_file_id: Option<String>,
    pub created_at: i64,
}

/// A stored image without its bytes (what lists and previews need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    pub id: ImageId,
    pub width: u32,
    pub height: u32,
    /// Length of the stored JPEG in bytes.
    pub size: u64,
    pub tg_file_id: Option<String>,
}

/// A new image row.
#[derive(Debug, Clone)]
pub struct NewImage<'a> {
    pub user_id: UserId,
    pub jpeg: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub tg_file_id: Option<&'a str>,
    pub now: i64,
}

/// The user's collage, if one was built from the current photo set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollageChoice {
    pub image: ImageMeta,
    /// The user pressed ✅ on the preview: mailings send the collage instead of the photos.
    pub confirmed: bool,
}

/// Images of mailings: immutable image rows, a user's current photo set (ordered, capped by
/// the caller) and an optional collage built from it.
///
/// Backends (SQLite, D1) must keep these semantics (`db_contract_suite` checks them):
/// - `insert_image` writes a new row and never changes an existing one; ids increase;
/// - `add_to_photo_set` appends at the end in one statement and refuses (`Ok(None)`) when the
///   set already holds `max` images, so two concurrent adds can never exceed the cap;
/// - `clear_photo_set` empties the set *and* forgets the collage (it was built from the set);
/// - `delete_images_except` removes the user's image rows that are neither in `keep`, nor in
///   the photo set, nor the collage: the caller puts the images of the user's active mailing
///   in `keep`, so a running mailing never loses an image.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait ImageStore: MaybeSendSync {
    /// Stores a new image row and returns its id.
    async fn insert_image(&self, image: &NewImage<'_>) -> Result<ImageId, DbError>;
    /// One image with its bytes.
    async fn get_image(&self, id: ImageId) -> Result<Option<StoredImage>, DbError>;
    /// The user's photo set, in upload order.
    async fn photo_set(&self, user: UserId) -> Result<Vec<ImageMeta>, DbError>;
    /// Appends an image to the user's photo set if it holds fewer than `max`; returns the new
    /// count, or `None` (nothing changed) when the set is full.
    async fn add_to_photo_set(
        &self,
        user: UserId,
        image: ImageId,
        max: usize,
    ) -> Result<Option<usize>, DbError>;
    /// Empties the photo set and forgets the collage.
    async fn clear_photo_set(&self, user: UserId) -> Result<(), DbError>;
    /// The user's collage and whether it was confirmed.
    async fn collage(&self, user: UserId) -> Result<Option<CollageChoice>, DbError>;
    /// Sets (`Some((image, confirmed))`) or forgets (`None`) the user's collage.
    async fn set_collage(
        &self,
        user: UserId,
        collage: Option<(ImageId, bool)>,
        now: i64,
    ) -> Result<(), DbError>;
    /// Deletes the user's image rows not in `keep`, the photo set or the collage; returns how
    /// many were deleted.
    async fn delete_images_except(&self, user: UserId, keep: &[ImageId]) -> Result<usize, DbError>;
}

/// The system of record: D1 or SQLite.
pub trait Db:
    UserStore
    + ContentStore
    + MailingStore
    + ScheduleStore
    + AuditStore
    + HistoryStore
    + UpdateLog
    + BillingStore
    + ImageStore
{
}
impl<
        T: UserStore
            + ContentStore
            + MailingStore
            + ScheduleStore
            + AuditStore
            + HistoryStore
            + UpdateLog
            + BillingStore
            + ImageStore
            + ?Sized,
    > Db for T
{
}

// ---------------------------------------------------------------------------------------------
// Coordination state (Redis-like): leases, cancel flags, pacing, backoff, heartbeats, intake

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

// Each capability is its own trait, and each runtime implements only those it really has:
// the Worker's stateless side has cancel flags and the intake queue's producer end, its profile
// runner has leases, cancel flags, pacing and heartbeats, and the server's backends (embedded
// or Redis) have them all. The bundles of `crate::services` carry them one by one, so a part
// receives exactly the capabilities it uses.

/// Profile leases: at most one driver per Wappi profile at a time, with fencing numbers.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Leases: MaybeSendSync {
    /// Takes the profile's lease if free or expired (held while `now < taken + ttl_ms`). A
    /// new lease has a fresh token and a fence larger than every one handed out before.
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Option<Lease>, StateError>;
    /// Extends a lease still held; `false` if it was lost (expired, or taken over).
    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64, now: i64) -> Result<bool, StateError>;
    /// Releases a lease only if still held by this token.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError>;
    /// [`Leases::acquire_lease`], also telling how long another holder's lease can still last,
    /// so that a waiter sleeps until then instead of asking again and again. The default
    /// cannot tell.
    async fn try_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<LeaseTry, StateError> {
        Ok(match self.acquire_lease(profile, ttl_ms, now).await? {
            Some(lease) => LeaseTry::Taken(lease),
            None => LeaseTry::Held { free_in_ms: None },
        })
    }
    /// [`Leases::try_lease`] for many profiles at once, the answers in their order: how the
    /// tries of a process's waiting drivers go together. A backend across a network answers in
    /// one round trip; the default tries one profile after the other.
    async fn try_leases(
        &self,
        profiles: &[ProfileId],
        ttl_ms: u64,
        now: i64,
    ) -> Result<Vec<LeaseTry>, StateError> {
        let mut tries = Vec::with_capacity(profiles.len());
        for profile in profiles {
            tries.push(self.try_lease(profile, ttl_ms, now).await?);
        }
        Ok(tries)
    }
    /// [`Leases::renew_lease`] for many leases at once, the answers in their order: how one
    /// keeper renews every lease of a process. A backend across a network answers in one round
    /// trip; the default asks one lease after the other.
    async fn renew_leases(
        &self,
        leases: &[Lease],
        ttl_ms: u64,
        now: i64,
    ) -> Result<Vec<bool>, StateError> {
        let mut held = Vec::with_capacity(leases.len());
        for lease in leases {
            held.push(self.renew_lease(lease, ttl_ms, now).await?);
        }
        Ok(held)
    }
}

/// What a try for a profile's lease found (see [`Leases::try_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseTry {
    /// The caller holds the lease now.
    Taken(Lease),
    /// Another holder's. Unless released, it lasts at least `free_in_ms` more (by the
    /// backend's clock); `None` when the backend cannot tell.
    Held { free_in_ms: Option<u64> },
}

impl LeaseTry {
    /// The lease, if the try took it: [`Leases::acquire_lease`]'s answer.
    pub fn taken(self) -> Option<Lease> {
        match self {
            LeaseTry::Taken(lease) => Some(lease),
            LeaseTry::Held { .. } => None,
        }
    }
}

/// Cancel flags of mailings: set by the bot, read by the engine before every send.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Cancels: MaybeSendSync {
    /// Flags the mailing as cancelled (idempotent).
    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError>;
    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError>;
}

/// The pacer: the profile's send rate, the per-chat burst and the profile's backoff.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Pacer: MaybeSendSync {
    /// Asks to send to `chat` on `profile` at `now`: checks the profile backoff, the profile
    /// rate and the per-chat burst, and takes the slot atomically when all allow it.
    async fn pace(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError>;
    /// The same question as [`Pacer::pace`], taking nothing: lets the engine record its
    /// intent durably first and take the slot right before the call, so the time a disk
    /// write takes never shortens the gap between two sends.
    async fn pace_peek(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError>;
    /// Pauses every send of the profile until `until` (429 / Retry-After). An earlier end
    /// never shortens a later one.
    async fn set_backoff(&self, profile: &ProfileId, until: i64) -> Result<(), StateError>;
    /// The end of the profile's latest pause set by [`Pacer::set_backoff`]; `None` (or a time
    /// in the past) when it is not paused. The engine makes no call at all from a paused profile, not even
    /// the history reads that settle `in_doubt` rows.
    async fn backoff_until(&self, profile: &ProfileId) -> Result<Option<i64>, StateError>;
}

/// The producer end of the intake queue (`mailing_tasks_queue`): where the bot hands a
/// started or resumed mailing to the runners.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Intake: MaybeSendSync {
    /// Puts the mailing at the tail of the queue. A mailing queued twice is two entries (the
    /// runner ignores one it already drives).
    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError>;
}

/// The runners' end of the intake queue, where runners poll for work.
///
/// Delivery is at least once. A backend shared by several processes keeps a *claim* on every
/// mailing it hands out, until the taker [acks](IntakeConsumer::ack) it; claims of a taker
/// that stops are given back ([`IntakeConsumer::give_back`] on a graceful stop,
/// [`IntakeConsumer::requeue_stale`] once it fell silent). A backend whose queue lives and
/// dies with the one process that consumes it hands mailings over outright and keeps no
/// claims: `ack` answers `false`, `give_back` and `requeue_stale` answer `0`, all truthfully.
/// Either way the lease and the ledger make a second delivery harmless, and a runner's rescan
/// of the database finds what a queue lost.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait IntakeConsumer: MaybeSendSync {
    /// Takes the mailing at the head of the queue (FIFO), if any; never waits.
    async fn dequeue(&self) -> Result<Option<MailingId>, StateError>;
    /// Done with a mailing this consumer took: drops one claim of it. `false` when this
    /// consumer held none (never taken here, already acked, given back meanwhile, or a backend
    /// that keeps no claims).
    async fn ack(&self, mailing: MailingId) -> Result<bool, StateError>;
    /// Gives every mailing this consumer took and has not acked back to the head of the
    /// queue, in the order taken, at once (a graceful stop, after the drivers ended, so that
    /// another process resumes them without waiting). Returns how many came back.
    async fn give_back(&self) -> Result<u64, StateError>;
    /// The visibility timeout: the claims of every other consumer that showed no sign of life
    /// (a dequeue, a heartbeat, a call of this) for `older_than_ms` go back to the head of the
    /// queue, oldest first. This consumer counts as alive. Returns how many came back.
    async fn requeue_stale(&self, older_than_ms: u64) -> Result<u64, StateError>;
    /// How many mailings wait in the queue (claimed ones not counted), if the backend can
    /// tell (for metrics).
    async fn queue_depth(&self) -> Result<Option<u64>, StateError>;
}

/// Runners' signs of life (for `/healthz` and metrics).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Heartbeats: MaybeSendSync {
    /// Records that `runner` is alive at `now`.
    async fn heartbeat(&self, runner: &str, now: i64) -> Result<(), StateError>;
    /// The newest heartbeat of any runner (unix ms).
    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError>;
}

/// Every capability at once: what a backend of the server (embedded or Redis) and the
/// in-memory state of tests offer. Nothing in the core receives it whole; it names the bound
/// of code that takes a complete backend (start-up, the contract suite).
pub trait StateBackend: Leases + Cancels + Pacer + Intake + IntakeConsumer + Heartbeats {}
impl<T: Leases + Cancels + Pacer + Intake + IntakeConsumer + Heartbeats + ?Sized> StateBackend
    for T
{
}

// ---------------------------------------------------------------------------------------------
// Outside services

/// The part of a Bot API `File` the core uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TgFile {
    /// `None` when Telegram cannot serve the file (too big).
    pub file_path: Option<String>,
    pub file_size: Option<u64>,
}

/// The photo of a `sendPhoto`.
#[derive(Debug, Clone, Copy)]
pub enum PhotoInput<'a> {
    /// A file already on Telegram's servers.
    FileId(&'a str),
    /// A JPEG to upload (multipart/form-data).
    Jpeg(&'a [u8]),
}

/// What a `sendPhoto` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPhoto {
    pub message_id: MessageId,
    /// The `file_id` of the largest size of the sent photo.
    pub file_id: String,
}

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
    /// `getFile`: where a file can be downloaded from and how large it is.
    async fn get_file(&self, file_id: &str) -> Result<TgFile, TelegramError>;
    /// Downloads a file by the `file_path` that [`TelegramApi::get_file`] returned (files are
    /// at most 20 MB through the Bot API).
    async fn download_file(&self, file_path: &str) -> Result<Vec<u8>, TelegramError>;
    /// `sendPhoto`, by `file_id` or by uploading JPEG bytes; returns the new message and the
    /// `file_id` of the largest size Telegram made of it.
    async fn send_photo(
        &self,
        chat: ChatId,
        photo: PhotoInput<'_>,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError>;
    /// `sendDocument`: uploads `bytes` as the file `file_name` (multipart/form-data), with an
    /// optional caption; returns the new message.
    async fn send_document(
        &self,
        chat: ChatId,
        file_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<MessageId, TelegramError>;
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
    /// `POST /api/sync/message/edit {message_id, body}`: the new text of a message sent
    /// before (of a text message, or the caption of an image); `group` is where it is.
    async fn edit_message(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
        message_id: &str,
        body: &str,
    ) -> Result<Sent, WappiError>;
    /// `POST /api/sync/message/delete {message_id}`: deletes a message sent before, for
    /// everyone; `group` is where it is.
    async fn delete_message(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
        message_id: &str,
    ) -> Result<Sent, WappiError>;
    /// `GET /api/sync/chats/get` (one page)
    async fn list_chats(
        &self,
        creds: &WappiCreds,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Dialog>, WappiError>;
    /// `GET /api/sync/contact/info?user_id=<group>`: what Wappi tells of one group;
    /// `Ok(None)` when the id does not resolve to a group.
    async fn group_info(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
    ) -> Result<Option<GroupFacts>, WappiError>;
    /// `GET /api/sync/messages/get`: one page of the chat's history, newest first, `offset`
    /// messages back from the newest (0 = the newest page).
    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
        offset: u32,
    ) -> Result<MessagesPage, WappiError>;
}

/// Image work that takes real CPU time: decoding, resizing and encoding a photo or a collage
/// (tens to hundreds of ms). A runtime runs it where it cannot hold up the sends of running
/// mailings (the server: tokio's blocking pool); [`InlineImageWork`] runs it in place.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait ImageWork: MaybeSendSync {
    /// [`crate::collage::normalise_photo`].
    async fn normalise(
        &self,
        photo: Vec<u8>,
        max_side: u32,
        max_bytes: usize,
    ) -> Result<Vec<u8>, crate::collage::CollageError>;
    /// [`crate::collage::build_collage`].
    async fn collage(
        &self,
        photos: Vec<Vec<u8>>,
        opts: crate::collage::CollageOptions,
    ) -> Result<crate::collage::Collage, crate::collage::CollageError>;
}

/// Runs image work on the calling task (the Worker, where each request is its own isolate
/// turn, and tests).
pub struct InlineImageWork;

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ImageWork for InlineImageWork {
    async fn normalise(
        &self,
        photo: Vec<u8>,
        max_side: u32,
        max_bytes: usize,
    ) -> Result<Vec<u8>, crate::collage::CollageError> {
        crate::collage::normalise_photo(&photo, max_side, max_bytes)
    }

    async fn collage(
        &self,
        photos: Vec<Vec<u8>>,
        opts: crate::collage::CollageOptions,
    ) -> Result<crate::collage::Collage, crate::collage::CollageError> {
        InlineImageWork::build(&photos, &opts)
    }
}

impl InlineImageWork {
    /// [`crate::collage::build_collage`] over owned photos.
    pub fn build(
        photos: &[Vec<u8>],
        opts: &crate::collage::CollageOptions,
    ) -> Result<crate::collage::Collage, crate::collage::CollageError> {
        let refs: Vec<&[u8]> = photos.iter().map(Vec::as_slice).collect();
        crate::collage::build_collage(&refs, opts)
    }
}

// ---------------------------------------------------------------------------------------------
// Work handed off to the runtime
//
// The server builds a collage in place (on tokio's blocking pool, see `ImageWork`); the
// Cloudflare Worker must answer the webhook quickly, so it puts the job on its Queue and the
// queue consumer runs the same core step ([`crate::bot::run_collage_job`]). The seam is
// [`Ports::deferrer`](crate::services::Ports::deferrer): `None` runs the work inline,
// `Some` hands it to the runtime's [`Deferrer`]. A confirmed `/broadcast` always goes to the
// runtime's [`Broadcaster`].

/// 🌅 pressed: build the user's collage from the photo set and preview it in `chat_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollageJob {
    pub user_id: i64,
    pub chat_id: i64,
    /// When 🌅 was pressed (unix ms). A collage built at or after this time already answers
    /// the job, so a second delivery of the same job does nothing.
    pub requested_at: i64,
}

/// The job could not be handed off (the user is told something went wrong).
#[derive(Debug, thiserror::Error)]
#[error("handing off long work failed: {0}")]
pub struct DeferError(pub String);

/// The runtime's timer of scheduled runs: told when a run is due, so that it looks then (the
/// server's scheduler loop, the Worker's scheduler alarm). Being told late or never only delays
/// a run until the timer's next regular look.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait RunTimer: MaybeSendSync {
    async fn wake_at(&self, at_ms: i64) -> Result<(), StateError>;
}

/// The runtime's side of long work (the collage): accepts a job durably (the call returns once it is queued) and runs it
/// later, away from the update that asked for it.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Deferrer: MaybeSendSync {
    async fn defer(&self, job: CollageJob) -> Result<(), DeferError>;
}

/// A confirmed broadcast, handed to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastJob {
    /// Where the final report goes.
    pub operator_chat: ChatId,
    /// The operator's language (of the report).
    pub lang: Lang,
    /// The message, sent as plain text.
    pub text: String,
}

/// The runtime's side: hands the job to its background delivery and returns once it is
/// handed over (the server spawns a task; the Worker awaits its broadcast Durable Object,
/// which stores the job and sets its alarm).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Broadcaster: MaybeSendSync {
    async fn start(&self, job: BroadcastJob) -> Result<(), DeferError>;
}

/// The engine's figures, told as they happen, for a runtime that keeps metrics
/// ([`Ports::figures`](crate::services::Ports::figures); `None` keeps none).
pub trait Figures: MaybeSendSync {
    /// One send attempt to a group ended so.
    fn send(&self, outcome: SendOutcome);
}
