//! In-memory implementations of every port, for tests of the core and as the reference that
//! other backends (SQLite, Redis, D1, Durable Objects) are held to: each fake follows the
//! documented semantics of its port in `ports.rs` (fencing, one active mailing per profile,
//! leases with a token and a fencing number, pacing through [`pacing::decide`]).
//!
//! - [`FakeClock`]: settable and advanceable unix-ms time, shared by every fake that records
//!   when something happened.
//! - [`FixedEntropy`]: deterministic bytes, so nonces and runs are reproducible.
//! - [`InMemDb`], [`InMemState`]: the system of record and the coordination state.
//! - [`ScriptedWappi`]: records every call with the fake time, keeps the messages it delivered
//!   per chat (so `chat_messages` answers from them), and plays queued outcomes.
//! - [`RecordingTelegram`]: records sends and edits, hands out increasing message ids and
//!   answers "message is not modified" as the Bot API does.
//! - [`services`]: all of the above wired into one [`Services`], plus handles to them.
//! - [`drive`] / [`drive_until`]: the tiny driver loop of the mailing engine under the fake
//!   clock (a sleep is a jump of the clock).
//!
//! Compiled for the crate's own tests and, with the `testing` feature, for other crates' tests.
//! Nothing here reads the real clock, draws real randomness or does I/O.

use crate::crypto::TokenCipher;
use crate::mailing::engine::{self, Cursor, EngineError, Step};
use crate::model::billing;
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use crate::model::ledger::{Delivery, DeliveryState, Mailing, MailingStatus, NewMailing};
use crate::model::pacing::{self, PaceState};
use crate::model::secret::Secret;
use crate::ports::{
    async_trait, BillingStore, Clock, CollageChoice, ContentStore, DbError, Entropy, GroupEntry,
    ImageId, ImageMeta, ImageStore, Invoice, Lease, MailingStore, NewImage, Pace, PacingConfig,
    PhotoInput, SentPhoto, Settlement, State, StateError, Stats, StoredImage, TelegramApi, TgFile,
    UpdateLog, UserRecord, UserStore, WappiApi,
};
use crate::services::{CoreSettings, Services};
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup, TelegramError};
use crate::texts::Lang;
use crate::wappi::{ChatMessage, Dialog, ProfileStatus, Sent, WappiCreds, WappiError};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// 2023-11-14 22:13:20 UTC: the time every test world starts at.
pub const T0: i64 = 1_700_000_000_000;

/// The token-encryption key of test worlds (bytes 0..32, base64).
pub const TEST_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The Wappi token [`register_user`] stores (encrypted) for every user.
pub const TEST_WAPPI_TOKEN: &str = "test-wappi-token-0123456789abcdef";

/// Locks a mutex, recovering it from a test that panicked while holding it, so that one failed
/// assertion does not turn every later call into a poison error.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Clock and entropy

/// Unix-ms time that only moves when a test moves it. Clones share the same time.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock::new(T0)
    }
}

impl FakeClock {
    pub fn new(now_ms: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the time; stepping backwards is allowed (tests of clock steps).
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward (or back, for a negative `ms`).
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the time to `t` unless it is already later.
    pub fn advance_to(&self, t: i64) {
        self.0.fetch_max(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }
}

/// Deterministic "randomness": every `fill` gives the next bytes of a splitmix64 stream
/// from a fixed seed, so two fills differ (fresh nonces) but every run is the same.
#[derive(Debug)]
pub struct FixedEntropy {
    seed: u64,
    counter: AtomicU64,
}

impl Default for FixedEntropy {
    fn default() -> Self {
        FixedEntropy::new(0x6772_6f75_7063_6173) // "groupcas"
    }
}

impl FixedEntropy {
    pub fn new(seed: u64) -> Self {
        FixedEntropy {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    /// How many times `fill` was called.
    pub fn fills(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Entropy for FixedEntropy {
    fn fill(&self, buf: &mut [u8]) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let mut state = self.seed ^ splitmix64(n);
        for chunk in buf.chunks_mut(8) {
            state = splitmix64(state);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The system of record

/// One fenced ledger write that was accepted, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryWrite {
    pub fence: u64,
    pub row: Delivery,
}

/// The in-memory `Db`: users, content, mailings with their ledger, update ids and billing,
/// behind one mutex (every call is one transaction).
///
/// Semantics, as every backend must have them:
/// - at most one active (running or paused) mailing per profile: `create_mailing` and a
///   status change back to active answer `AlreadyActive`;
/// - a new mailing has fence 0; `claim_mailing` raises it (equal is fine, lower is
///   `StaleFence`); row writes and status changes carry a fence and are refused with
///   `StaleFence` unless it is the mailing's current one; a missing mailing or row is
///   `NotFound`;
/// - a group listed twice gets one row; positions are dense in list order.
#[derive(Default)]
pub struct InMemDb {
    inner: Mutex<DbInner>,
}

#[derive(Default)]
struct DbInner {
    users: BTreeMap<UserId, UserRecord>,
    texts: HashMap<UserId, String>,
    groups: HashMap<UserId, Vec<GroupEntry>>,
    mailings: BTreeMap<MailingId, Mailing>,
    rows: BTreeMap<MailingId, Vec<Delivery>>,
    last_mailing: i64,
    updates: HashSet<i64>,
    invoices: BTreeMap<i64, (Invoice, Option<i64>)>,
    last_invoice: i64,
    reminders: HashSet<(UserId, String, i64)>,
    images: BTreeMap<ImageId, StoredImage>,
    photo_sets: HashMap<UserId, Vec<ImageId>>,
    collages: HashMap<UserId, (ImageId, bool)>,
    /// Per user: the newest preview's number and its digest (`None` once taken).
    previews: HashMap<UserId, (u64, Option<String>)>,
    /// How many times `get_image` was called (the engine reads each image once per drive).
    image_reads: usize,
    /// How many of the next `update_delivery` calls fail with a backend error.
    fail_update_delivery: usize,
    writes: Vec<DeliveryWrite>,
    refused_writes: Vec<DeliveryWrite>,
}

impl DbInner {
    fn other_active(&self, profile: &ProfileId, except: Option<MailingId>) -> bool {
        self.mailings
            .values()
            .any(|m| &m.profile_id == profile && m.status.is_active() && Some(m.id) != except)
    }

    /// `Ok(())` when `fence` is the mailing's fence.
    fn check_fence(&self, id: MailingId, fence: u64) -> Result<(), DbError> {
        match self.mailings.get(&id) {
            None => Err(DbError::NotFound),
            Some(m) if m.fence != fence => Err(DbError::StaleFence),
            Some(_) => Ok(()),
        }
    }

    fn user_mut(&mut self, id: UserId) -> Result<&mut UserRecord, DbError> {
        self.users.get_mut(&id).ok_or(DbError::NotFound)
    }
}

impl InMemDb {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DbInner> {
        lock(&self.inner)
    }

    /// A mailing as stored (panics if there is none: a test bug).
    pub fn mailing(&self, id: MailingId) -> Mailing {
        self.lock()
            .mailings
            .get(&id)
            .cloned()
            .expect("no such mailing")
    }

    /// A mailing's ledger rows, in sending order.
    pub fn rows(&self, id: MailingId) -> Vec<Delivery> {
        self.lock().rows.get(&id).cloned().unwrap_or_default()
    }

    /// The row of `group` in mailing `id` (panics if there is none).
    pub fn row(&self, id: MailingId, group: &GroupJid) -> Delivery {
        self.rows(id)
            .into_iter()
            .find(|r| &r.group == group)
            .expect("no such row")
    }

    pub fn user(&self, id: UserId) -> Option<UserRecord> {
        self.lock().users.get(&id).cloned()
    }

    /// Every accepted `update_delivery`, in order.
    pub fn delivery_writes(&self) -> Vec<DeliveryWrite> {
        self.lock().writes.clone()
    }

    /// Every `update_delivery` refused with `StaleFence`, in order.
    pub fn refused_writes(&self) -> Vec<DeliveryWrite> {
        self.lock().refused_writes.clone()
    }

    /// Makes the next `n` `update_delivery` calls fail with a backend error (a lost
    /// connection, a crash between the Wappi call and the ledger write).
    pub fn fail_update_delivery(&self, n: usize) {
        self.lock().fail_update_delivery = n;
    }

    /// How many mailings exist.
    pub fn mailing_count(&self) -> usize {
        self.lock().mailings.len()
    }

    /// How many times `get_image` was called.
    pub fn image_reads(&self) -> usize {
        self.lock().image_reads
    }

    /// How many image rows exist.
    pub fn image_count(&self) -> usize {
        self.lock().images.len()
    }
}

fn image_meta(img: &StoredImage) -> ImageMeta {
    ImageMeta {
        id: img.id,
        width: img.width,
        height: img.height,
        size: img.jpeg.len() as u64,
        tg_file_id: img.tg_file_id.clone(),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ImageStore for InMemDb {
    async fn insert_image(&self, image: &NewImage<'_>) -> Result<ImageId, DbError> {
        let mut inner = self.lock();
        let id = inner.images.keys().next_back().map_or(1, |last| last + 1);
        inner.images.insert(
            id,
            StoredImage {
                id,
                user_id: image.user_id,
                jpeg: image.jpeg.to_vec(),
                width: image.width,
                height: image.height,
                tg_file_id: image.tg_file_id.map(str::to_string),
                created_at: image.now,
            },
        );
        Ok(id)
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<StoredImage>, DbError> {
        let mut inner = self.lock();
        inner.image_reads += 1;
        Ok(inner.images.get(&id).cloned())
    }

    async fn photo_set(&self, user: UserId) -> Result<Vec<ImageMeta>, DbError> {
        let inner = self.lock();
        Ok(inner
            .photo_sets
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.images.get(id).map(image_meta))
            .collect())
    }

    async fn add_to_photo_set(
        &self,
        user: UserId,
        image: ImageId,
        max: usize,
    ) -> Result<Option<usize>, DbError> {
        let mut inner = self.lock();
        let set = inner.photo_sets.entry(user).or_default();
        if set.len() >= max {
            return Ok(None);
        }
        set.push(image);
        Ok(Some(set.len()))
    }

    async fn clear_photo_set(&self, user: UserId) -> Result<(), DbError> {
        let mut inner = self.lock();
        inner.photo_sets.remove(&user);
        inner.collages.remove(&user);
        Ok(())
    }

    async fn collage(&self, user: UserId) -> Result<Option<CollageChoice>, DbError> {
        let inner = self.lock();
        Ok(inner.collages.get(&user).and_then(|(id, confirmed)| {
            inner.images.get(id).map(|img| CollageChoice {
                image: image_meta(img),
                confirmed: *confirmed,
            })
        }))
    }

    async fn set_collage(
        &self,
        user: UserId,
        collage: Option<(ImageId, bool)>,
        _now: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        match collage {
            Some(c) => inner.collages.insert(user, c),
            None => inner.collages.remove(&user),
        };
        Ok(())
    }

    async fn delete_images_except(&self, user: UserId, keep: &[ImageId]) -> Result<usize, DbError> {
        let mut inner = self.lock();
        let mut kept: HashSet<ImageId> = keep.iter().copied().collect();
        kept.extend(inner.photo_sets.get(&user).into_iter().flatten().copied());
        kept.extend(inner.collages.get(&user).map(|(id, _)| *id));
        let before = inner.images.len();
        inner
            .images
            .retain(|id, img| img.user_id != user || kept.contains(id));
        Ok(before - inner.images.len())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl UserStore for InMemDb {
    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, DbError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn ensure_user(
        &self,
        id: UserId,
        lang: Lang,
        subscription_until: i64,
        now: i64,
    ) -> Result<UserRecord, DbError> {
        let mut inner = self.lock();
        let user = inner.users.entry(id).or_insert_with(|| UserRecord {
            id,
            lang,
            wappi_token_enc: None,
            profile_id: None,
            subscription_until,
            dialogue: String::new(),
            created_at: now,
        });
        Ok(user.clone())
    }

    async fn save_credentials(
        &self,
        id: UserId,
        token_enc: &str,
        profile: &ProfileId,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        let user = inner.user_mut(id)?;
        user.wappi_token_enc = Some(token_enc.to_string());
        user.profile_id = Some(profile.clone());
        Ok(())
    }

    async fn set_lang(&self, id: UserId, lang: Lang) -> Result<(), DbError> {
        self.lock().user_mut(id)?.lang = lang;
        Ok(())
    }

    async fn set_dialogue(&self, id: UserId, dialogue: &str) -> Result<(), DbError> {
        self.lock().user_mut(id)?.dialogue = dialogue.to_string();
        Ok(())
    }

    async fn set_subscription_until(&self, id: UserId, until: i64) -> Result<(), DbError> {
        self.lock().user_mut(id)?.subscription_until = until;
        Ok(())
    }

    async fn begin_preview(&self, id: UserId, digest: &str) -> Result<u64, DbError> {
        let mut inner = self.lock();
        inner.user_mut(id)?;
        let p = inner.previews.entry(id).or_insert((0, None));
        *p = (p.0 + 1, Some(digest.to_string()));
        Ok(p.0)
    }

    async fn take_preview(&self, id: UserId, seq: u64, digest: &str) -> Result<bool, DbError> {
        let mut inner = self.lock();
        match inner.previews.get_mut(&id) {
            Some((n, d)) if *n == seq && d.as_deref() == Some(digest) => {
                *d = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ContentStore for InMemDb {
    async fn get_text(&self, user: UserId) -> Result<Option<String>, DbError> {
        Ok(self.lock().texts.get(&user).cloned())
    }

    async fn set_text(&self, user: UserId, text: &str, _now: i64) -> Result<(), DbError> {
        self.lock().texts.insert(user, text.to_string());
        Ok(())
    }

    async fn get_groups(&self, user: UserId) -> Result<Vec<GroupEntry>, DbError> {
        Ok(self.lock().groups.get(&user).cloned().unwrap_or_default())
    }

    async fn set_groups(&self, user: UserId, groups: &[GroupEntry]) -> Result<(), DbError> {
        // A repeated group keeps its first place (and name).
        let mut seen = HashSet::new();
        let list: Vec<GroupEntry> = groups
            .iter()
            .filter(|g| seen.insert(g.jid.clone()))
            .cloned()
            .collect();
        self.lock().groups.insert(user, list);
        Ok(())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl MailingStore for InMemDb {
    async fn create_mailing(&self, new: &NewMailing) -> Result<MailingId, DbError> {
        let mut inner = self.lock();
        if inner.other_active(&new.profile_id, None) {
            return Err(DbError::AlreadyActive);
        }
        inner.last_mailing += 1;
        let id = MailingId(inner.last_mailing);
        inner.mailings.insert(
            id,
            Mailing {
                id,
                user_id: new.user_id,
                chat_id: new.chat_id,
                profile_id: new.profile_id.clone(),
                status: MailingStatus::Running,
                content: new.content.clone(),
                created_at: new.now,
                finished_at: None,
                fence: 0,
                cancel_requested: false,
                progress_message_id: None,
                progress_at: 0,
                pause_reason: None,
            },
        );
        let mut seen = HashSet::new();
        let parts = new.content.part_numbers();
        let rows = new
            .groups
            .iter()
            .filter(|g| seen.insert((*g).clone()))
            .enumerate()
            .flat_map(|(position, g)| {
                parts.iter().map(move |part| Delivery {
                    mailing_id: id,
                    group: g.clone(),
                    part: *part,
                    position: position as u32,
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_attempt_at: 0,
                    message_id: None,
                    error: None,
                    updated_at: new.now,
                })
            })
            .collect();
        inner.rows.insert(id, rows);
        Ok(id)
    }

    async fn get_mailing(&self, id: MailingId) -> Result<Option<Mailing>, DbError> {
        Ok(self.lock().mailings.get(&id).cloned())
    }

    async fn latest_mailing(&self, user: UserId) -> Result<Option<Mailing>, DbError> {
        Ok(self
            .lock()
            .mailings
            .values()
            .rev()
            .find(|m| m.user_id == user)
            .cloned())
    }

    async fn running_mailings(&self) -> Result<Vec<Mailing>, DbError> {
        Ok(self
            .lock()
            .mailings
            .values()
            .filter(|m| m.status == MailingStatus::Running)
            .cloned()
            .collect())
    }

    async fn claim_mailing(&self, id: MailingId, fence: u64) -> Result<(), DbError> {
        let mut inner = self.lock();
        let m = inner.mailings.get_mut(&id).ok_or(DbError::NotFound)?;
        if fence < m.fence {
            return Err(DbError::StaleFence);
        }
        m.fence = fence;
        Ok(())
    }

    async fn deliveries(&self, id: MailingId) -> Result<Vec<Delivery>, DbError> {
        let mut rows = self.lock().rows.get(&id).cloned().unwrap_or_default();
        rows.sort_by(|a, b| (a.position, a.part, &a.group).cmp(&(b.position, b.part, &b.group)));
        Ok(rows)
    }

    async fn update_delivery(&self, row: &Delivery, fence: u64) -> Result<(), DbError> {
        let mut inner = self.lock();
        if inner.fail_update_delivery > 0 {
            inner.fail_update_delivery -= 1;
            return Err(DbError::Backend("injected failure: update_delivery".into()));
        }
        if let Err(e) = inner.check_fence(row.mailing_id, fence) {
            if e == DbError::StaleFence {
                inner.refused_writes.push(DeliveryWrite {
                    fence,
                    row: row.clone(),
                });
            }
            return Err(e);
        }
        let stored = inner
            .rows
            .get_mut(&row.mailing_id)
            .and_then(|rows| {
                rows.iter_mut()
                    .find(|r| r.group == row.group && r.part == row.part)
            })
            .ok_or(DbError::NotFound)?;
        stored.state = row.state;
        stored.attempts = row.attempts;
        stored.next_attempt_at = row.next_attempt_at;
        stored.message_id = row.message_id.clone();
        stored.error = row.error.clone();
        stored.updated_at = row.updated_at;
        let written = stored.clone();
        inner.writes.push(DeliveryWrite {
            fence,
            row: written,
        });
        Ok(())
    }

    async fn set_mailing_status(
        &self,
        id: MailingId,
        status: MailingStatus,
        reason: Option<&str>,
        fence: u64,
        now: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        inner.check_fence(id, fence)?;
        let profile = inner.mailings[&id].profile_id.clone();
        if status.is_active() && inner.other_active(&profile, Some(id)) {
            return Err(DbError::AlreadyActive);
        }
        let m = inner.mailings.get_mut(&id).expect("checked above");
        m.status = status;
        m.pause_reason = reason.map(str::to_string);
        m.finished_at =
            matches!(status, MailingStatus::Cancelled | MailingStatus::Done).then_some(now);
        Ok(())
    }

    async fn request_cancel(&self, id: MailingId) -> Result<(), DbError> {
        self.lock()
            .mailings
            .get_mut(&id)
            .ok_or(DbError::NotFound)?
            .cancel_requested = true;
        Ok(())
    }

    async fn resume_mailing(&self, id: MailingId) -> Result<bool, DbError> {
        let mut inner = self.lock();
        let Some(m) = inner.mailings.get(&id) else {
            return Ok(false);
        };
        if m.status != MailingStatus::Paused {
            return Ok(false);
        }
        let profile = m.profile_id.clone();
        if inner.other_active(&profile, Some(id)) {
            return Err(DbError::AlreadyActive);
        }
        let m = inner.mailings.get_mut(&id).expect("checked above");
        m.status = MailingStatus::Running;
        m.pause_reason = None;
        Ok(true)
    }

    async fn set_progress(
        &self,
        id: MailingId,
        message_id: Option<i64>,
        at: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        let m = inner.mailings.get_mut(&id).ok_or(DbError::NotFound)?;
        if message_id.is_some() {
            m.progress_message_id = message_id;
        }
        m.progress_at = at;
        Ok(())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl UpdateLog for InMemDb {
    async fn first_seen(&self, update_id: i64, _now: i64) -> Result<bool, DbError> {
        Ok(self.lock().updates.insert(update_id))
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl BillingStore for InMemDb {
    async fn create_invoice(
        &self,
        user: UserId,
        plan_days: u32,
        amount_kopecks: i64,
        now: i64,
    ) -> Result<Invoice, DbError> {
        let mut inner = self.lock();
        inner.last_invoice += 1;
        let invoice = Invoice {
            id: inner.last_invoice,
            user_id: user,
            plan_days,
            amount_kopecks,
            paid: false,
            created_at: now,
            extended_until: None,
        };
        inner.invoices.insert(invoice.id, (invoice.clone(), None));
        Ok(invoice)
    }

    async fn get_invoice(&self, id: i64) -> Result<Option<Invoice>, DbError> {
        Ok(self.lock().invoices.get(&id).map(|(i, _)| i.clone()))
    }

    async fn settle_invoice(
        &self,
        id: i64,
        _out_sum_raw: &str,
        now: i64,
    ) -> Result<Settlement, DbError> {
        let mut inner = self.lock();
        let (invoice, _) = inner.invoices.get(&id).cloned().ok_or(DbError::NotFound)?;
        if invoice.paid {
            return Ok(Settlement::AlreadyPaid {
                until: invoice.extended_until.unwrap_or(0),
            });
        }
        let user = inner.user_mut(invoice.user_id)?;
        let until = billing::extend(user.subscription_until, now / 1000, invoice.plan_days);
        user.subscription_until = until;
        let entry = inner.invoices.get_mut(&id).expect("read above");
        entry.0.paid = true;
        entry.0.extended_until = Some(until);
        entry.1 = Some(now);
        Ok(Settlement::Applied { until })
    }

    async fn grant_days(&self, user: UserId, days: u32, now: i64) -> Result<i64, DbError> {
        let mut inner = self.lock();
        let user = inner.user_mut(user)?;
        user.subscription_until = billing::extend(user.subscription_until, now / 1000, days);
        Ok(user.subscription_until)
    }

    async fn subscriptions_ending(
        &self,
        now_secs: i64,
        window_secs: i64,
        grace_secs: i64,
    ) -> Result<Vec<(UserId, Lang, i64)>, DbError> {
        Ok(self
            .lock()
            .users
            .values()
            .filter(|u| {
                u.subscription_until > 0
                    && u.subscription_until <= now_secs + window_secs
                    && u.subscription_until > now_secs - grace_secs
            })
            .map(|u| (u.id, u.lang, u.subscription_until))
            .collect())
    }

    async fn record_reminder(
        &self,
        user: UserId,
        kind: &str,
        until: i64,
        _now: i64,
    ) -> Result<bool, DbError> {
        Ok(self
            .lock()
            .reminders
            .insert((user, kind.to_string(), until)))
    }

    async fn stats(&self, now: i64) -> Result<Stats, DbError> {
        let inner = self.lock();
        let secs = now / 1000;
        let day = billing::day_start(secs) * 1000;
        let month = billing::month_start(secs) * 1000;
        Ok(Stats {
            users: inner.users.len() as u64,
            active_subscriptions: inner
                .users
                .values()
                .filter(|u| u.subscription_until > secs)
                .count() as u64,
            revenue_month_kopecks: inner
                .invoices
                .values()
                .filter(|(i, paid_at)| i.paid && paid_at.is_some_and(|t| t >= month))
                .map(|(i, _)| i.amount_kopecks)
                .sum(),
            mailings_today: inner
                .mailings
                .values()
                .filter(|m| m.created_at >= day)
                .count() as u64,
            messages_sent_today: inner
                .rows
                .values()
                .flatten()
                .filter(|r| r.state == DeliveryState::Sent && r.updated_at >= day)
                .count() as u64,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Coordination state

/// The in-memory `State`: leases (deterministic 32-hex-digit tokens derived from the fence,
/// see [`lease_token`]; fencing numbers counting up from 1), cancel flags, pacing through [`pacing::decide`], heartbeats and the
/// intake queue. Every decision uses the `now` it is given, never another clock.
#[derive(Default)]
pub struct InMemState {
    inner: Mutex<StateInner>,
}

#[derive(Default)]
struct StateInner {
    leases: HashMap<ProfileId, HeldLease>,
    last_fence: u64,
    cancelled: HashSet<MailingId>,
    pacing: HashMap<ProfileId, PaceState>,
    heartbeats: HashMap<String, i64>,
    queue: VecDeque<MailingId>,
    /// Simulated round trips of `pace` (see [`InMemState::set_pace_round_trips`]).
    pace_round_trips: Option<(FakeClock, Vec<i64>, usize)>,
}

#[derive(Debug, Clone)]
struct HeldLease {
    token: String,
    fence: u64,
    expires_at: i64,
}

impl HeldLease {
    fn is(&self, lease: &Lease) -> bool {
        self.token == lease.token && self.fence == lease.fence
    }
}

impl InMemState {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, StateInner> {
        lock(&self.inner)
    }

    /// Makes each `pace` answer arrive this many ms after its decision (cycling through
    /// `delays`), like a Redis round trip on a busy machine: the slot is stamped with the
    /// caller's time, the caller sees the answer later.
    pub fn set_pace_round_trips(&self, clock: FakeClock, delays: Vec<i64>) {
        self.lock().pace_round_trips = Some((clock, delays, 0));
    }

    /// Drops the profile's lease as if it had expired (a runner that stalled or died).
    pub fn expire_lease(&self, profile: &ProfileId) {
        self.lock().leases.remove(profile);
    }

    /// The (token, fence) of the lease held on the profile, if any (expired or not).
    pub fn lease_of(&self, profile: &ProfileId) -> Option<(String, u64)> {
        self.lock()
            .leases
            .get(profile)
            .map(|l| (l.token.clone(), l.fence))
    }

    /// Sets the cancel flag without an `await` (for hooks that run inside a fake call).
    pub fn cancel_now(&self, mailing: MailingId) {
        self.lock().cancelled.insert(mailing);
    }

    /// The profile's pacing state.
    pub fn pace_state(&self, profile: &ProfileId) -> PaceState {
        self.lock().pacing.get(profile).cloned().unwrap_or_default()
    }

    /// The intake queue, front first.
    pub fn queued(&self) -> Vec<MailingId> {
        self.lock().queue.iter().copied().collect()
    }
}

/// The token [`InMemState`] hands out with fence `fence`: random-looking (as long as a real
/// one) but reproducible.
pub fn lease_token(fence: u64) -> String {
    format!("{:016x}{:016x}", splitmix64(fence), splitmix64(!fence))
}

fn expiry(now: i64, ttl_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl State for InMemState {
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Option<Lease>, StateError> {
        let mut inner = self.lock();
        if inner
            .leases
            .get(profile)
            .is_some_and(|held| now < held.expires_at)
        {
            return Ok(None);
        }
        inner.last_fence += 1;
        let fence = inner.last_fence;
        let token = lease_token(fence);
        inner.leases.insert(
            profile.clone(),
            HeldLease {
                token: token.clone(),
                fence,
                expires_at: expiry(now, ttl_ms),
            },
        );
        Ok(Some(Lease {
            profile: profile.clone(),
            token,
            fence,
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64, now: i64) -> Result<bool, StateError> {
        let mut inner = self.lock();
        match inner.leases.get_mut(&lease.profile) {
            Some(held) if held.is(lease) && now < held.expires_at => {
                held.expires_at = expiry(now, ttl_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        let mut inner = self.lock();
        if inner
            .leases
            .get(&lease.profile)
            .is_some_and(|held| held.is(lease))
        {
            inner.leases.remove(&lease.profile);
        }
        Ok(())
    }

    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        self.lock().cancelled.insert(mailing);
        Ok(())
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        Ok(self.lock().cancelled.contains(&mailing))
    }

    async fn pace(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        let mut inner = self.lock();
        let state = inner.pacing.entry(profile.clone()).or_default();
        let pace = pacing::decide(state, chat.as_str(), cfg, now);
        if let Some((clock, delays, next)) = &mut inner.pace_round_trips {
            if !delays.is_empty() {
                clock.advance(delays[*next % delays.len()]);
                *next += 1;
            }
        }
        Ok(pace)
    }

    async fn pace_peek(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        let mut state = self.lock().pacing.get(profile).cloned().unwrap_or_default();
        Ok(pacing::decide(&mut state, chat.as_str(), cfg, now))
    }

    async fn set_backoff(&self, profile: &ProfileId, until: i64) -> Result<(), StateError> {
        let mut inner = self.lock();
        let state = inner.pacing.entry(profile.clone()).or_default();
        state.backoff_until = state.backoff_until.max(until);
        Ok(())
    }

    async fn backoff_until(&self, profile: &ProfileId) -> Result<Option<i64>, StateError> {
        Ok(self.lock().pacing.get(profile).map(|s| s.backoff_until))
    }

    async fn heartbeat(&self, runner: &str, now: i64) -> Result<(), StateError> {
        self.lock().heartbeats.insert(runner.to_string(), now);
        Ok(())
    }

    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError> {
        Ok(self.lock().heartbeats.values().copied().max())
    }

    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        self.lock().queue.push_back(mailing);
        Ok(())
    }

    async fn dequeue(&self) -> Result<Option<MailingId>, StateError> {
        Ok(self.lock().queue.pop_front())
    }
}

// ---------------------------------------------------------------------------------------------
// Wappi

/// Which Wappi endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WappiMethod {
    GetStatus,
    SendText,
    SendImage,
    ListChats,
    ChatMessages,
}

/// One recorded Wappi call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WappiCall {
    /// Fake time when the call was made (before any latency).
    pub at: i64,
    pub method: WappiMethod,
    pub profile: ProfileId,
    /// The recipient or the chat read (sends and `chat_messages`).
    pub to: Option<GroupJid>,
    /// The text or caption sent.
    pub text: Option<String>,
    /// The base64 of an image sent (`SendImage` only).
    pub image: Option<String>,
    /// Whether the message reached the chat (sends only).
    pub delivered: bool,
    /// The error the call answered, if it failed.
    pub error: Option<WappiError>,
}

impl WappiCall {
    pub fn is_send(&self) -> bool {
        matches!(self.method, WappiMethod::SendText | WappiMethod::SendImage)
    }
}

/// What the next send does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendScript {
    /// Delivered; the call answers with a message id.
    Deliver,
    /// Not delivered; the call answers this error (429, 5xx, refused, not authorized…).
    Fail(WappiError),
    /// Delivered, but the answer is lost: the call answers this error (normally
    /// [`WappiError::Unknown`]) although the message is in the chat.
    DeliverThenFail(WappiError),
}

impl SendScript {
    /// Delivered, answered with `WappiError::Unknown` (a timeout after the request went out).
    pub fn unknown_but_delivered() -> Self {
        SendScript::DeliverThenFail(WappiError::Unknown(
            "timed out after the request was sent".into(),
        ))
    }

    /// Not delivered, answered with `WappiError::Unknown`.
    pub fn unknown_not_delivered() -> Self {
        SendScript::Fail(WappiError::Unknown("connection reset".into()))
    }
}

type SendHook = Box<dyn Fn(usize, &GroupJid) + Send + Sync>;

struct StoredMessage {
    from: ProfileId,
    msg: ChatMessage,
}

#[derive(Default)]
struct WappiInner {
    calls: Vec<WappiCall>,
    sends: VecDeque<SendScript>,
    sends_to: HashMap<GroupJid, VecDeque<SendScript>>,
    statuses: VecDeque<Result<ProfileStatus, WappiError>>,
    reads: VecDeque<WappiError>,
    list_errors: VecDeque<WappiError>,
    chats: Vec<Dialog>,
    history: HashMap<GroupJid, Vec<StoredMessage>>,
    last_message: u64,
    latency_ms: i64,
}

/// A scripted Wappi. Sends are delivered unless a queued [`SendScript`] says otherwise (a
/// script for the recipient wins over the general queue). Delivered messages are kept per
/// chat, so `chat_messages` answers from what really "arrived", newest first, with `fromMe`
/// set for the calling profile.
pub struct ScriptedWappi {
    clock: FakeClock,
    inner: Mutex<WappiInner>,
    on_send: Mutex<Option<SendHook>>,
}

impl ScriptedWappi {
    pub fn new(clock: FakeClock) -> Self {
        ScriptedWappi {
            clock,
            inner: Mutex::new(WappiInner::default()),
            on_send: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WappiInner> {
        lock(&self.inner)
    }

    /// Queues the outcome of the next send (to any recipient without its own script).
    pub fn script_send(&self, outcome: SendScript) {
        self.lock().sends.push_back(outcome);
    }

    /// Queues the outcome of the next send to `to`.
    pub fn script_send_to(&self, to: &GroupJid, outcome: SendScript) {
        self.lock()
            .sends_to
            .entry(to.clone())
            .or_default()
            .push_back(outcome);
    }

    /// Queues the answer of the next `get_status` (the default is a connected number).
    pub fn script_status(&self, answer: Result<ProfileStatus, WappiError>) {
        self.lock().statuses.push_back(answer);
    }

    /// Makes the next `chat_messages` call fail with `e`.
    pub fn fail_next_read(&self, e: WappiError) {
        self.lock().reads.push_back(e);
    }

    /// Makes the next `list_chats` call fail with `e`.
    pub fn fail_next_list(&self, e: WappiError) {
        self.lock().list_errors.push_back(e);
    }

    /// The dialogs `list_chats` pages through.
    pub fn set_chats(&self, chats: Vec<Dialog>) {
        self.lock().chats = chats;
    }

    /// Every call advances the fake clock by this much (the time a request takes).
    pub fn set_latency(&self, ms: i64) {
        self.lock().latency_ms = ms;
    }

    /// Runs `hook(send_index, recipient)` inside every send call, after it is recorded and
    /// before it answers (to look at the ledger at that moment, or to cancel mid-send).
    pub fn on_send(&self, hook: impl Fn(usize, &GroupJid) + Send + Sync + 'static) {
        *lock(&self.on_send) = Some(Box::new(hook));
    }

    /// Puts a message into a chat without a recorded call: a send by a process that died
    /// before it could record it, or a message of another member (`from` another profile).
    pub fn inject_message(&self, chat: &GroupJid, from: &ProfileId, body: &str, at_ms: i64) {
        let mut inner = self.lock();
        inner.last_message += 1;
        let id = format!("wamid.{}", inner.last_message);
        Self::store(&mut inner, chat, from, id, body, at_ms);
    }

    fn store(
        inner: &mut WappiInner,
        chat: &GroupJid,
        from: &ProfileId,
        id: String,
        body: &str,
        at_ms: i64,
    ) {
        inner
            .history
            .entry(chat.clone())
            .or_default()
            .push(StoredMessage {
                from: from.clone(),
                msg: ChatMessage {
                    id,
                    from_me: false,
                    time: at_ms.div_euclid(1000),
                    body: body.to_string(),
                    caption: String::new(),
                    kind: "chat".into(),
                },
            });
    }

    /// Every call, in order.
    pub fn calls(&self) -> Vec<WappiCall> {
        self.lock().calls.clone()
    }

    /// The send calls (text and image), in order.
    pub fn sends(&self) -> Vec<WappiCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.is_send())
            .cloned()
            .collect()
    }

    /// The send calls to one recipient.
    pub fn sends_to(&self, to: &GroupJid) -> Vec<WappiCall> {
        self.sends()
            .into_iter()
            .filter(|c| c.to.as_ref() == Some(to))
            .collect()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: WappiMethod) -> Vec<WappiCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The messages of a chat from `profile`, oldest first (bodies).
    pub fn delivered_to(&self, chat: &GroupJid, profile: &ProfileId) -> Vec<String> {
        self.lock()
            .history
            .get(chat)
            .map(|h| {
                h.iter()
                    .filter(|m| &m.from == profile)
                    .map(|m| m.msg.body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record(&self, call: WappiCall) {
        let latency = {
            let mut inner = self.lock();
            inner.calls.push(call);
            inner.latency_ms
        };
        if latency > 0 {
            self.clock.advance(latency);
        }
    }

    async fn send(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        text: &str,
        image: Option<&str>,
        method: WappiMethod,
    ) -> Result<Sent, WappiError> {
        let at = self.clock.now();
        let (index, result, delivered) = {
            let mut inner = self.lock();
            let script = inner
                .sends_to
                .get_mut(to)
                .and_then(VecDeque::pop_front)
                .or_else(|| inner.sends.pop_front())
                .unwrap_or(SendScript::Deliver);
            let delivered = matches!(script, SendScript::Deliver | SendScript::DeliverThenFail(_));
            let mut message_id = None;
            if delivered {
                inner.last_message += 1;
                let id = format!("wamid.{}", inner.last_message);
                Self::store(&mut inner, to, &creds.profile_id, id.clone(), text, at);
                if image.is_some() {
                    // An image message: no body, the text is its caption.
                    if let Some(last) = inner.history.get_mut(to).and_then(|h| h.last_mut()) {
                        last.msg.kind = "image".into();
                        last.msg.caption = std::mem::take(&mut last.msg.body);
                    }
                }
                message_id = Some(id);
            }
            let result = match script {
                SendScript::Deliver => Ok(Sent {
                    message_id,
                    task_id: None,
                }),
                SendScript::Fail(e) | SendScript::DeliverThenFail(e) => Err(e),
            };
            let index = inner.calls.iter().filter(|c| c.is_send()).count();
            (index, result, delivered)
        };
        self.record(WappiCall {
            at,
            method,
            profile: creds.profile_id.clone(),
            to: Some(to.clone()),
            text: Some(text.to_string()),
            image: image.map(str::to_string),
            delivered,
            error: result.as_ref().err().cloned(),
        });
        if let Some(hook) = lock(&self.on_send).as_ref() {
            hook(index, to);
        }
        result
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl WappiApi for ScriptedWappi {
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
        let at = self.clock.now();
        let answer = self.lock().statuses.pop_front().unwrap_or_else(|| {
            Ok(ProfileStatus {
                app_status: Some("open".into()),
                authorized: true,
                name: Some("Test".into()),
                phone: Some("79990001122".into()),
                profile_id: Some(creds.profile_id.to_string()),
            })
        });
        self.record(WappiCall {
            at,
            method: WappiMethod::GetStatus,
            profile: creds.profile_id.clone(),
            to: None,
            text: None,
            image: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }

    async fn send_text(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        body: &str,
    ) -> Result<Sent, WappiError> {
        self.send(creds, to, body, None, WappiMethod::SendText)
            .await
    }

    async fn send_image(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        b64: &str,
        caption: Option<&str>,
    ) -> Result<Sent, WappiError> {
        self.send(
            creds,
            to,
            caption.unwrap_or(""),
            Some(b64),
            WappiMethod::SendImage,
        )
        .await
    }

    async fn list_chats(
        &self,
        creds: &WappiCreds,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Dialog>, WappiError> {
        let at = self.clock.now();
        let answer = {
            let mut inner = self.lock();
            match inner.list_errors.pop_front() {
                Some(e) => Err(e),
                None => Ok(inner
                    .chats
                    .iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .cloned()
                    .collect()),
            }
        };
        self.record(WappiCall {
            at,
            method: WappiMethod::ListChats,
            profile: creds.profile_id.clone(),
            to: None,
            text: None,
            image: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }

    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, WappiError> {
        let at = self.clock.now();
        let answer = {
            let mut inner = self.lock();
            match inner.reads.pop_front() {
                Some(e) => Err(e),
                None => Ok(inner
                    .history
                    .get(chat)
                    .map(|h| {
                        h.iter()
                            .rev()
                            .take(limit as usize)
                            .map(|m| ChatMessage {
                                from_me: m.from == creds.profile_id,
                                ..m.msg.clone()
                            })
                            .collect()
                    })
                    .unwrap_or_default()),
            }
        };
        self.record(WappiCall {
            at,
            method: WappiMethod::ChatMessages,
            profile: creds.profile_id.clone(),
            to: Some(chat.clone()),
            text: None,
            image: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }
}

// ---------------------------------------------------------------------------------------------
// Telegram

/// One recorded (successful) Telegram call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TgCall {
    Send {
        at: i64,
        chat: ChatId,
        id: MessageId,
        text: String,
        markup: Option<ReplyMarkup>,
    },
    Edit {
        at: i64,
        chat: ChatId,
        id: MessageId,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    EditMarkup {
        at: i64,
        chat: ChatId,
        id: MessageId,
        markup: InlineKeyboardMarkup,
    },
    Answer {
        at: i64,
        id: String,
        text: Option<String>,
    },
    /// A `sendPhoto`: `photo` is the file id sent, or `upload:<n bytes>` for an upload.
    Photo {
        at: i64,
        chat: ChatId,
        id: MessageId,
        photo: String,
        caption: Option<String>,
    },
    GetFile {
        at: i64,
        file_id: String,
    },
    Download {
        at: i64,
        path: String,
    },
}

impl TgCall {
    pub fn at(&self) -> i64 {
        match self {
            TgCall::Send { at, .. }
            | TgCall::Edit { at, .. }
            | TgCall::EditMarkup { at, .. }
            | TgCall::Answer { at, .. }
            | TgCall::Photo { at, .. }
            | TgCall::GetFile { at, .. }
            | TgCall::Download { at, .. } => *at,
        }
    }

    /// The text of a send or an edit.
    pub fn text(&self) -> Option<&str> {
        match self {
            TgCall::Send { text, .. } | TgCall::Edit { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A message as the chat shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TgMessage {
    pub text: String,
    pub keyboard: InlineKeyboardMarkup,
}

#[derive(Default)]
struct TgInner {
    calls: Vec<TgCall>,
    last_id: i64,
    messages: HashMap<(ChatId, MessageId), TgMessage>,
    failures: VecDeque<TelegramError>,
    busy: bool,
    /// Files `getFile` knows: file id → (file path, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Downloads that fail (by file id).
    failing_downloads: HashSet<String>,
}

/// A Telegram that records what the bot says. Message ids count up from 1001. Edits follow
/// the Bot API: an unknown message is "message to edit not found", the same text and keyboard
/// again is "message is not modified", and `editMessageText` without a keyboard removes it.
pub struct RecordingTelegram {
    clock: FakeClock,
    inner: Mutex<TgInner>,
}

fn not_found() -> TelegramError {
    TelegramError::Api {
        code: 400,
        description: "Bad Request: message to edit not found".into(),
    }
}

fn not_modified() -> TelegramError {
    TelegramError::Api {
        code: 400,
        description: "Bad Request: message is not modified: specified new message content and reply markup are exactly the same".into(),
    }
}

impl RecordingTelegram {
    pub fn new(clock: FakeClock) -> Self {
        RecordingTelegram {
            clock,
            inner: Mutex::new(TgInner {
                last_id: 1000,
                ..TgInner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TgInner> {
        lock(&self.inner)
    }

    /// Makes the next send or edit fail with `e` (not recorded).
    pub fn fail_next(&self, e: TelegramError) {
        self.lock().failures.push_back(e);
    }

    /// Registers a file that `get_file` and `download_file` serve.
    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        let mut inner = self.lock();
        let path = format!("photos/file_{}.jpg", inner.files.len() + 1);
        inner.files.insert(file_id.to_string(), (path, bytes));
    }

    /// Makes downloads of this file fail (a network error).
    pub fn fail_download(&self, file_id: &str) {
        self.lock().failing_downloads.insert(file_id.to_string());
    }

    /// The `sendPhoto` calls to a chat: (photo, caption).
    pub fn photos_sent(&self, chat: ChatId) -> Vec<(String, Option<String>)> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Photo {
                    chat: c,
                    photo,
                    caption,
                    ..
                } if *c == chat => Some((photo.clone(), caption.clone())),
                _ => None,
            })
            .collect()
    }

    /// What `can_send_now` answers for every chat (`true` by default).
    pub fn set_busy(&self, busy: bool) {
        self.lock().busy = busy;
    }

    /// A message the bot sent earlier (outside the test), e.g. one whose button gets pressed.
    pub fn seed_message(
        &self,
        chat: ChatId,
        text: &str,
        keyboard: InlineKeyboardMarkup,
    ) -> MessageId {
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: text.into(),
                keyboard,
            },
        );
        id
    }

    pub fn calls(&self) -> Vec<TgCall> {
        self.lock().calls.clone()
    }

    /// The texts sent to `chat` (new messages only), in order.
    pub fn sent_texts(&self, chat: ChatId) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Send { chat: c, text, .. } if *c == chat => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last message sent to `chat` (text and markup).
    pub fn last_sent(&self, chat: ChatId) -> Option<(MessageId, String, Option<ReplyMarkup>)> {
        self.lock().calls.iter().rev().find_map(|c| match c {
            TgCall::Send {
                chat: c,
                id,
                text,
                markup,
                ..
            } if *c == chat => Some((*id, text.clone(), markup.clone())),
            _ => None,
        })
    }

    /// The text edits of one message: (time, text).
    pub fn edits_of(&self, chat: ChatId, id: MessageId) -> Vec<(i64, String)> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Edit {
                    at,
                    chat: c,
                    id: i,
                    text,
                    ..
                } if *c == chat && *i == id => Some((*at, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// A message as it shows now.
    pub fn message(&self, chat: ChatId, id: MessageId) -> Option<TgMessage> {
        self.lock().messages.get(&(chat, id)).cloned()
    }

    fn take_failure(&self) -> Result<(), TelegramError> {
        match self.lock().failures.pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl TelegramApi for RecordingTelegram {
    async fn send_message(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<&ReplyMarkup>,
    ) -> Result<MessageId, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        let keyboard = match markup {
            Some(ReplyMarkup::Inline(k)) => k.clone(),
            _ => InlineKeyboardMarkup::default(),
        };
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: text.into(),
                keyboard,
            },
        );
        inner.calls.push(TgCall::Send {
            at,
            chat,
            id,
            text: text.into(),
            markup: markup.cloned(),
        });
        Ok(id)
    }

    async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<(), TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        let keyboard = markup.cloned().unwrap_or_default();
        let shown = inner
            .messages
            .get_mut(&(chat, message))
            .ok_or_else(not_found)?;
        if shown.text == text && shown.keyboard == keyboard {
            return Err(not_modified());
        }
        *shown = TgMessage {
            text: text.into(),
            keyboard,
        };
        inner.calls.push(TgCall::Edit {
            at,
            chat,
            id: message,
            text: text.into(),
            markup: markup.cloned(),
        });
        Ok(())
    }

    async fn edit_message_reply_markup(
        &self,
        chat: ChatId,
        message: MessageId,
        markup: &InlineKeyboardMarkup,
    ) -> Result<(), TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        let shown = inner
            .messages
            .get_mut(&(chat, message))
            .ok_or_else(not_found)?;
        if &shown.keyboard == markup {
            return Err(not_modified());
        }
        shown.keyboard = markup.clone();
        inner.calls.push(TgCall::EditMarkup {
            at,
            chat,
            id: message,
            markup: markup.clone(),
        });
        Ok(())
    }

    async fn answer_callback_query(
        &self,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError> {
        let at = self.clock.now();
        self.lock().calls.push(TgCall::Answer {
            at,
            id: id.into(),
            text: text.map(str::to_string),
        });
        Ok(())
    }

    fn can_send_now(&self, _chat: ChatId) -> bool {
        !self.lock().busy
    }

    async fn get_file(&self, file_id: &str) -> Result<TgFile, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.calls.push(TgCall::GetFile {
            at,
            file_id: file_id.into(),
        });
        match inner.files.get(file_id) {
            Some((path, bytes)) => Ok(TgFile {
                file_path: Some(path.clone()),
                file_size: Some(bytes.len() as u64),
            }),
            None => Err(TelegramError::Api {
                code: 400,
                description: "Bad Request: invalid file_id".into(),
            }),
        }
    }

    async fn download_file(&self, file_path: &str) -> Result<Vec<u8>, TelegramError> {
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.calls.push(TgCall::Download {
            at,
            path: file_path.into(),
        });
        let found = inner
            .files
            .iter()
            .find(|(_, (path, _))| path == file_path)
            .map(|(id, (_, bytes))| (id.clone(), bytes.clone()));
        match found {
            Some((id, _)) if inner.failing_downloads.contains(&id) => Err(TelegramError::Network(
                "file download: connection reset".into(),
            )),
            Some((_, bytes)) => Ok(bytes),
            None => Err(TelegramError::Api {
                code: 404,
                description: "Not Found".into(),
            }),
        }
    }

    async fn send_photo(
        &self,
        chat: ChatId,
        photo: PhotoInput<'_>,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        let (shown, file_id) = match photo {
            PhotoInput::FileId(f) => (f.to_string(), f.to_string()),
            PhotoInput::Jpeg(bytes) => {
                let file_id = format!("uploaded-{}", id.0);
                let path = format!("photos/upload_{}.jpg", id.0);
                inner.files.insert(file_id.clone(), (path, bytes.to_vec()));
                (format!("upload:{}", bytes.len()), file_id)
            }
        };
        let keyboard = match markup {
            Some(ReplyMarkup::Inline(k)) => k.clone(),
            _ => InlineKeyboardMarkup::default(),
        };
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: caption.unwrap_or_default().into(),
                keyboard,
            },
        );
        inner.calls.push(TgCall::Photo {
            at,
            chat,
            id,
            photo: shown,
            caption: caption.map(str::to_string),
        });
        Ok(SentPhoto {
            message_id: id,
            file_id,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A whole world

/// Handles to the fakes behind a [`Services`] built by [`services`].
#[derive(Clone)]
pub struct Fakes {
    pub clock: FakeClock,
    pub db: Arc<InMemDb>,
    pub state: Arc<InMemState>,
    pub wappi: Arc<ScriptedWappi>,
    pub telegram: Arc<RecordingTelegram>,
    pub entropy: Arc<FixedEntropy>,
}

/// Fresh fakes at [`T0`] wired into a `Services` with `settings` and the [`TEST_KEY_B64`] key.
pub fn services(settings: CoreSettings) -> (Services, Fakes) {
    let clock = FakeClock::new(T0);
    let fakes = Fakes {
        clock: clock.clone(),
        db: Arc::new(InMemDb::new()),
        state: Arc::new(InMemState::new()),
        wappi: Arc::new(ScriptedWappi::new(clock.clone())),
        telegram: Arc::new(RecordingTelegram::new(clock.clone())),
        entropy: Arc::new(FixedEntropy::default()),
    };
    let svc = Services {
        db: fakes.db.clone(),
        state: fakes.state.clone(),
        telegram: fakes.telegram.clone(),
        wappi: fakes.wappi.clone(),
        clock: Arc::new(clock),
        entropy: fakes.entropy.clone(),
        cipher: Arc::new(
            TokenCipher::from_base64_key(TEST_KEY_B64).expect("the test key is valid"),
        ),
        settings: Arc::new(settings),
        image_work: Arc::new(crate::ports::InlineImageWork),
        broadcaster: None,
        deferrer: None,
    };
    (svc, fakes)
}

/// A group id: `1203630<n, 11 digits>@g.us`.
pub fn jid(n: u64) -> GroupJid {
    GroupJid::parse(&format!("1203630{n:011}@g.us")).expect("a valid group id")
}

/// `n` distinct group ids.
pub fn jids(n: u64) -> Vec<GroupJid> {
    (1..=n).map(jid).collect()
}

pub fn profile(s: &str) -> ProfileId {
    ProfileId::parse(s).expect("a valid profile id")
}

/// Creates a registered user (Wappi token [`TEST_WAPPI_TOKEN`] encrypted, `profile`) with a
/// subscription running 30 days from now.
pub async fn register_user(
    svc: &Services,
    user: UserId,
    profile: &ProfileId,
    lang: Lang,
) -> UserRecord {
    let now = svc.now_ms();
    svc.db
        .ensure_user(user, lang, now / 1000 + 30 * billing::DAY_SECS, now)
        .await
        .expect("ensure_user");
    let enc = svc.encrypt_token(user, &Secret::new(TEST_WAPPI_TOKEN));
    svc.db
        .save_credentials(user, &enc, profile)
        .await
        .expect("save_credentials");
    svc.db
        .get_user(user)
        .await
        .expect("get_user")
        .expect("just created")
}

/// Creates a mailing of `user` (progress to the user's chat) to `groups` with `text`, now.
pub async fn create_mailing(
    svc: &Services,
    user: UserId,
    profile: &ProfileId,
    groups: &[GroupJid],
    text: &str,
) -> MailingId {
    svc.db
        .create_mailing(&NewMailing {
            user_id: user,
            chat_id: ChatId::from(user),
            profile_id: profile.clone(),
            content: crate::model::ledger::Content::text_only(text),
            groups: groups.to_vec(),
            now: svc.now_ms(),
        })
        .await
        .expect("create_mailing")
}

/// Takes the profile's lease and claims the mailing with it, as a runner does.
pub async fn take_mailing(svc: &Services, id: MailingId, ttl_ms: u64) -> Lease {
    let m = svc
        .db
        .get_mailing(id)
        .await
        .expect("get_mailing")
        .expect("the mailing exists");
    let lease = svc
        .state
        .acquire_lease(&m.profile_id, ttl_ms, svc.now_ms())
        .await
        .expect("acquire_lease")
        .expect("the profile's lease is free");
    svc.db
        .claim_mailing(id, lease.fence)
        .await
        .expect("claim_mailing");
    lease
}

/// The lease time-to-live [`drive`] renews its lease with before every step.
pub const DRIVER_LEASE_TTL_MS: u64 = 60_000;

/// Steps the engine until the mailing is over (`Finished` or `LostLease`), sleeping by moving
/// `clock` to each `SleepUntil` time. Like the server's runner it renews its lease before every
/// step (for [`DRIVER_LEASE_TTL_MS`]) and stops with `LostLease` once that fails. Panics after
/// `max_steps` steps (a driver that never ends is a bug to see, not to wait for).
pub async fn drive(
    svc: &Services,
    clock: &FakeClock,
    id: MailingId,
    lease: &Lease,
    cursor: &mut Cursor,
    max_steps: usize,
) -> Result<Step, EngineError> {
    drive_until(svc, clock, id, lease, cursor, max_steps, || false).await
}

/// Like [`drive`], but also stops (without sleeping) after the first step once `stop()`
/// holds, returning that step.
pub async fn drive_until(
    svc: &Services,
    clock: &FakeClock,
    id: MailingId,
    lease: &Lease,
    cursor: &mut Cursor,
    max_steps: usize,
    mut stop: impl FnMut() -> bool,
) -> Result<Step, EngineError> {
    for _ in 0..max_steps {
        if !svc
            .state
            .renew_lease(lease, DRIVER_LEASE_TTL_MS, clock.now())
            .await?
        {
            return Ok(Step::LostLease);
        }
        let step = engine::step(svc, id, lease, cursor).await?;
        match step {
            Step::Finished | Step::LostLease => return Ok(step),
            _ if stop() => return Ok(step),
            Step::SleepUntil(t) => clock.advance_to(t),
            Step::Continue => {}
        }
    }
    panic!("mailing {} not over after {max_steps} steps", id.0);
}

// ---------------------------------------------------------------------------------------------
// The contract of the mailing store

/// Previews: numbered per user, only the newest one with an unchanged digest is taken, once.
async fn preview_contract(db: &dyn crate::ports::Db) {
    let user = UserId(910_000_002);
    db.ensure_user(user, Lang::En, 0, T0).await.unwrap();
    // Nothing shown yet: not even number 0 (an unnumbered old button) is taken.
    assert!(!db.take_preview(user, 0, "a").await.unwrap());
    assert_eq!(db.begin_preview(user, "a").await.unwrap(), 1);
    assert_eq!(db.begin_preview(user, "b").await.unwrap(), 2);
    assert!(!db.take_preview(user, 1, "a").await.unwrap(), "superseded");
    assert!(
        !db.take_preview(user, 2, "a").await.unwrap(),
        "changed since"
    );
    assert!(db.take_preview(user, 2, "b").await.unwrap());
    assert!(!db.take_preview(user, 2, "b").await.unwrap(), "taken once");
    assert_eq!(db.begin_preview(user, "b").await.unwrap(), 3);
    assert!(db.take_preview(user, 3, "b").await.unwrap());
    assert_eq!(
        db.begin_preview(UserId(910_000_003), "a").await,
        Err(DbError::NotFound)
    );
}

/// Checks that a `Db` backend keeps the mailing-store rules the engine relies on; panics on the
/// first deviation. Run it on a fresh database; `tag` (letters and digits) keeps its profile
/// ids apart from anything else stored. Covered: snapshot and rows of a new mailing, one
/// active mailing per profile, claiming and fenced writes (`StaleFence`, `NotFound`), status
/// changes with `finished_at` and pause reasons, resume, cancel requests, progress and the
/// update-id set.
pub async fn db_contract_suite(db: &dyn crate::ports::Db, tag: &str) {
    use crate::model::ledger::Content;
    preview_contract(db).await;
    let prof_a = profile(&format!("contract-a-{tag}"));
    let prof_b = profile(&format!("contract-b-{tag}"));
    let user = UserId(910_000_001);
    db.ensure_user(user, Lang::En, 0, T0)
        .await
        .expect("ensure_user");
    let new = |prof: &ProfileId, groups: Vec<GroupJid>| NewMailing {
        user_id: user,
        chat_id: ChatId::from(user),
        profile_id: prof.clone(),
        content: Content::text_only("*Sale* today"),
        groups,
        now: T0,
    };

    // A new mailing: running, fence 0, one pending row per distinct group, in list order.
    let id = db
        .create_mailing(&new(&prof_a, vec![jid(3), jid(1), jid(2), jid(1)]))
        .await
        .expect("create");
    let m = db.get_mailing(id).await.unwrap().expect("stored");
    assert_eq!(
        (m.status, m.fence, m.created_at, m.finished_at),
        (MailingStatus::Running, 0, T0, None)
    );
    assert_eq!(
        (
            m.cancel_requested,
            m.progress_message_id,
            m.pause_reason.as_deref()
        ),
        (false, None, None)
    );
    assert_eq!(m.content.text, "*Sale* today");
    let rows = db.deliveries(id).await.unwrap();
    let got: Vec<(GroupJid, u32, u32, DeliveryState)> = rows
        .iter()
        .map(|r| (r.group.clone(), r.part, r.position, r.state))
        .collect();
    let pending = DeliveryState::Pending;
    assert_eq!(
        got,
        vec![
            (jid(3), 0, 0, pending),
            (jid(1), 0, 1, pending),
            (jid(2), 0, 2, pending)
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r.attempts == 0 && r.next_attempt_at == 0 && r.message_id.is_none()));
    assert_eq!(
        db.latest_mailing(user).await.unwrap().map(|m| m.id),
        Some(id)
    );
    assert!(db
        .running_mailings()
        .await
        .unwrap()
        .iter()
        .any(|m| m.id == id));
    assert_eq!(db.get_mailing(MailingId(i64::MAX)).await.unwrap(), None);

    // One active mailing per profile; another profile is free.
    assert_eq!(
        db.create_mailing(&new(&prof_a, vec![jid(9)])).await,
        Err(DbError::AlreadyActive)
    );
    let other = db
        .create_mailing(&new(&prof_b, vec![jid(9)]))
        .await
        .expect("another profile");
    assert_ne!(other, id);

    // Claims only go up; writes need the current fence.
    db.claim_mailing(id, 5).await.expect("claim");
    db.claim_mailing(id, 5)
        .await
        .expect("re-claim with the same fence");
    assert_eq!(db.claim_mailing(id, 4).await, Err(DbError::StaleFence));
    assert_eq!(
        db.claim_mailing(MailingId(i64::MAX), 1).await,
        Err(DbError::NotFound)
    );
    let mut row = rows[0].clone();
    row.state = DeliveryState::Sending;
    row.attempts = 1;
    row.updated_at = T0 + 1;
    db.update_delivery(&row, 5).await.expect("fenced write");
    let mut stale = row.clone();
    stale.state = DeliveryState::Sent;
    assert_eq!(
        db.update_delivery(&stale, 4).await,
        Err(DbError::StaleFence)
    );
    assert_eq!(
        db.deliveries(id).await.unwrap()[0],
        row,
        "a refused write changes nothing"
    );
    row.state = DeliveryState::Sent;
    row.message_id = Some("wamid.1".into());
    db.update_delivery(&row, 5).await.expect("fenced write");
    assert_eq!(db.deliveries(id).await.unwrap()[0], row);
    db.claim_mailing(id, 6).await.expect("a newer runner");
    assert_eq!(
        db.update_delivery(&row, 5).await,
        Err(DbError::StaleFence),
        "the old fence is stale now"
    );
    let mut missing = row.clone();
    missing.group = jid(99);
    assert_eq!(
        db.update_delivery(&missing, 6).await,
        Err(DbError::NotFound)
    );

    // Status changes: fenced; a paused mailing still holds its profile; resume once.
    let now = T0 + 10;
    assert_eq!(
        db.set_mailing_status(id, MailingStatus::Paused, Some("why"), 5, now)
            .await,
        Err(DbError::StaleFence)
    );
    db.set_mailing_status(id, MailingStatus::Paused, Some("why"), 6, now)
        .await
        .expect("pause");
    let m = db.get_mailing(id).await.unwrap().unwrap();
    assert_eq!(
        (m.status, m.pause_reason.as_deref(), m.finished_at),
        (MailingStatus::Paused, Some("why"), None)
    );
    assert!(!db
        .running_mailings()
        .await
        .unwrap()
        .iter()
        .any(|m| m.id == id));
    assert_eq!(
        db.create_mailing(&new(&prof_a, vec![jid(9)])).await,
        Err(DbError::AlreadyActive)
    );
    assert!(db.resume_mailing(id).await.unwrap());
    assert!(
        !db.resume_mailing(id).await.unwrap(),
        "only a paused mailing resumes"
    );
    let m = db.get_mailing(id).await.unwrap().unwrap();
    assert_eq!((m.status, m.pause_reason), (MailingStatus::Running, None));

    // Cancel request and progress.
    db.request_cancel(id).await.expect("cancel");
    assert!(db.get_mailing(id).await.unwrap().unwrap().cancel_requested);
    assert_eq!(
        db.request_cancel(MailingId(i64::MAX)).await,
        Err(DbError::NotFound)
    );
    db.set_progress(id, Some(77), T0 + 20).await.unwrap();
    db.set_progress(id, None, T0 + 30).await.unwrap();
    let m = db.get_mailing(id).await.unwrap().unwrap();
    assert_eq!(
        (m.progress_message_id, m.progress_at),
        (Some(77), T0 + 30),
        "None keeps the message id"
    );

    // A final status frees the profile.
    db.set_mailing_status(id, MailingStatus::Done, None, 6, now)
        .await
        .expect("done");
    let m = db.get_mailing(id).await.unwrap().unwrap();
    assert_eq!((m.status, m.finished_at), (MailingStatus::Done, Some(now)));
    let next = db
        .create_mailing(&new(&prof_a, vec![jid(9)]))
        .await
        .expect("the profile is free again");
    assert_eq!(
        db.latest_mailing(user).await.unwrap().map(|m| m.id),
        Some(next)
    );

    // Update ids are a set, not a high-water mark.
    assert!(db.first_seen(5, T0).await.unwrap());
    assert!(db.first_seen(3, T0).await.unwrap());
    assert!(!db.first_seen(5, T0).await.unwrap());

    image_contract(db, tag).await;
}

/// The `ImageStore` part of [`db_contract_suite`]: immutable rows with their bytes, an
/// ordered and capped photo set, the collage, deletion that spares what is still used, and a
/// mailing with image parts (rows per part, content snapshot round trip).
async fn image_contract(db: &dyn crate::ports::Db, tag: &str) {
    use crate::model::ledger::Content;
    let user = UserId(910_000_002);
    let other = UserId(910_000_003);
    for u in [user, other] {
        db.ensure_user(u, Lang::Ru, 0, T0)
            .await
            .expect("ensure_user");
    }
    let jpeg = |n: u8| -> Vec<u8> {
        (0..=255u8)
            .cycle()
            .take(3000 + n as usize)
            .map(|b| b ^ n)
            .collect()
    };
    let insert = |u: UserId, bytes: Vec<u8>, file: Option<&'static str>| async move {
        db.insert_image(&NewImage {
            user_id: u,
            jpeg: &bytes,
            width: 1600,
            height: 1200,
            tg_file_id: file,
            now: T0,
        })
        .await
        .expect("insert_image")
    };
    let a = insert(user, jpeg(1), Some("AgACa")).await;
    let b = insert(user, jpeg(2), None).await;
    assert!(b > a, "ids increase");
    let stored = db.get_image(a).await.unwrap().expect("stored");
    assert_eq!(
        (stored.user_id, stored.jpeg, stored.width, stored.height),
        (user, jpeg(1), 1600, 1200),
        "bytes come back exactly"
    );
    assert_eq!(stored.tg_file_id.as_deref(), Some("AgACa"));
    assert_eq!(db.get_image(i64::MAX).await.unwrap(), None);

    // The set keeps upload order and its cap.
    assert!(db.photo_set(user).await.unwrap().is_empty());
    assert_eq!(db.add_to_photo_set(user, b, 2).await.unwrap(), Some(1));
    assert_eq!(db.add_to_photo_set(user, a, 2).await.unwrap(), Some(2));
    let c = insert(user, jpeg(3), None).await;
    assert_eq!(db.add_to_photo_set(user, c, 2).await.unwrap(), None, "full");
    let set = db.photo_set(user).await.unwrap();
    let got: Vec<(ImageId, u64)> = set.iter().map(|i| (i.id, i.size)).collect();
    assert_eq!(
        got,
        vec![(b, jpeg(2).len() as u64), (a, jpeg(1).len() as u64)]
    );
    assert!(
        db.photo_set(other).await.unwrap().is_empty(),
        "sets are per user"
    );

    // The collage.
    assert_eq!(db.collage(user).await.unwrap(), None);
    let col = insert(user, jpeg(4), Some("AgACcollage")).await;
    db.set_collage(user, Some((col, false)), T0).await.unwrap();
    let choice = db.collage(user).await.unwrap().expect("collage");
    assert_eq!((choice.image.id, choice.confirmed), (col, false));
    assert_eq!(choice.image.tg_file_id.as_deref(), Some("AgACcollage"));
    db.set_collage(user, Some((col, true)), T0).await.unwrap();
    assert!(db.collage(user).await.unwrap().unwrap().confirmed);

    // A mailing of the photos: a row per (group, part); the snapshot comes back whole.
    let content = Content::with_images("Photos", vec![b, a], false);
    let id = db
        .create_mailing(&NewMailing {
            user_id: user,
            chat_id: ChatId::from(user),
            profile_id: profile(&format!("contract-img-{tag}")),
            content: content.clone(),
            groups: vec![jid(7), jid(5), jid(7)],
            now: T0,
        })
        .await
        .expect("create");
    assert_eq!(db.get_mailing(id).await.unwrap().unwrap().content, content);
    let mut rows: Vec<(GroupJid, u32, u32)> = db
        .deliveries(id)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.group.clone(), r.part, r.position))
        .collect();
    rows.sort_by_key(|(_, part, position)| (*position, *part));
    assert_eq!(
        rows,
        vec![
            (jid(7), 0, 0),
            (jid(7), 1, 0),
            (jid(7), 2, 0),
            (jid(5), 0, 1),
            (jid(5), 1, 1),
            (jid(5), 2, 1),
        ]
    );

    // Clearing forgets the set and the collage; deletion spares `keep`, the set and the
    // collage, and other users' images.
    let theirs = insert(other, jpeg(5), None).await;
    db.clear_photo_set(user).await.unwrap();
    assert!(db.photo_set(user).await.unwrap().is_empty());
    assert_eq!(db.collage(user).await.unwrap(), None);
    let d = insert(user, jpeg(6), None).await;
    db.add_to_photo_set(user, d, 10).await.unwrap();
    assert_eq!(
        db.delete_images_except(user, &[a]).await.unwrap(),
        3,
        "b, c, col"
    );
    for (img, kept) in [
        (a, true),
        (b, false),
        (c, false),
        (col, false),
        (d, true),
        (theirs, true),
    ] {
        assert_eq!(
            db.get_image(img).await.unwrap().is_some(),
            kept,
            "image {img}"
        );
    }
}

#[cfg(test)]
mod tests;
