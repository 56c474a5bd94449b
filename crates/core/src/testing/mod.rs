//! In-memory implementations of every port, for tests of the core and as the reference that
//! other backends (SQLite, Redis, D1, Durable Objects) are held to: each fake follows the
//! documented semantics of its port in `ports.rs` (fencing, one active mailing per profile,
//! leases with a token and a fencing number, pacing through [`decide`](crate::model::pacing::decide)).
//!
//! - [`FakeClock`]: settable and advanceable unix-ms time, shared by every fake that records
//!   when something happened.
//! - [`FixedEntropy`]: deterministic bytes, so nonces and runs are reproducible.
//! - [`InMemDb`], [`MemoryState`]: the system of record and the coordination state (the
//!   latter is the core's own, the server's embedded state too).
//! - [`ScriptedWappi`]: records every call with the fake time, keeps the messages it delivered
//!   per chat (so `chat_messages` answers from them), and plays queued outcomes.
//! - [`RecordingTelegram`]: records sends and edits, hands out increasing message ids and
//!   answers "message is not modified" as the Bot API does.
//! - [`services`]: all of the above wired into the bot's [`Services`], plus handles to them
//!   ([`Fakes::engine`] gives the engine's bundle over the same ports).
//! - [`drive`] / [`drive_until`]: the tiny driver loop of the mailing engine under the fake
//!   clock (a sleep is a jump of the clock).
//!
//! - [`contract`]: the behaviour every backend must show: the store suite
//!   ([`db_contract_suite`], the mailing and image stores, run against SQLite and D1 too) and
//!   the coordination-state suite (run against the embedded and Redis states too).
//!
//! One file per fake: `clock.rs`, `db.rs`, `wappi.rs`, `telegram.rs`; the world that wires
//! them and the engine driver are here.
//!
//! Compiled for the crate's own tests and, with the `testing` feature, for other crates' tests.
//! Nothing here draws real randomness or does I/O, and only the [`contract`] suite (written
//! for real backends) reads the real clock.

use crate::config::CoreSettings;
use crate::crypto::TokenCipher;
use crate::mailing::{self, Cursor, EngineError, Step};
use crate::model::billing;
use crate::model::billing::{Invoice, Settlement, Stats};
use crate::model::ids::ImageId;
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, SeriesId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::{Delivery, DeliveryState, Mailing, MailingStatus, NewMailing};
use crate::model::pacing::pace::Preset;
use crate::model::secret::Secret;
use crate::ports::{
    async_trait, AuditStore, BillingStore, Clock, CollageChoice, ContentStore, DbError, Entropy,
    GroupEntry, GroupSet, HistoryStore, ImageMeta, ImageStore, Lease, MailingStore, NewImage,
    NewSeries, PastMailing, PhotoInput, RunOutcome, ScheduleStore, SentPhoto, Series, StoredImage,
    TelegramApi, TgFile, UpdateClaim, UpdateLog, UserRecord, UserStore, WappiApi,
};
use crate::services::{EngineServices, Ports, Services};
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup, TelegramError};
use crate::wappi::{
    ChatMessage, Dialog, MessagesPage, ProfileStatus, Sent, WappiCreds, WappiError,
};
use chrono::NaiveDate;
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

mod clock;
pub mod contract;
mod db;
mod telegram;
mod wappi;

pub use clock::*;
pub use contract::db_contract_suite;
pub use db::*;
pub use telegram::*;
pub use wappi::*;

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// Coordination state

/// The coordination state of test worlds is the core's own [`MemoryState`], set up
/// [reproducibly](MemoryState::reproducible): fences 1, 2, 3… with tokens [`lease_token`].
pub use crate::memory_state::{lease_token, MemoryState};

impl MemoryState {
    /// Makes each `pace` answer arrive this many ms after its decision (cycling through
    /// `delays`), like a Redis round trip on a busy machine: the slot is stamped with the
    /// caller's time, the caller sees the answer later.
    pub fn set_pace_round_trips(&self, clock: FakeClock, delays: Vec<i64>) {
        let mut next = 0usize;
        self.set_after_pace(move || {
            if !delays.is_empty() {
                clock.advance(delays[next % delays.len()]);
                next += 1;
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// A whole world

/// Handles to the fakes behind a [`Services`] built by [`services`].
#[derive(Clone)]
pub struct Fakes {
    pub clock: FakeClock,
    pub db: Arc<InMemDb>,
    pub state: Arc<MemoryState>,
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
        state: Arc::new(MemoryState::reproducible()),
        wappi: Arc::new(ScriptedWappi::new(clock.clone())),
        telegram: Arc::new(RecordingTelegram::new(clock.clone())),
        entropy: Arc::new(FixedEntropy::default()),
    };
    let ports = Ports {
        db: fakes.db.clone(),
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
        run_timer: None,
        figures: None,
    };
    let svc = Services::new(ports, fakes.state.clone());
    (svc, fakes)
}

impl Fakes {
    /// The engine's bundle over `svc`'s ports and these fakes' state, as a runner in the same
    /// process as the bot holds it.
    pub fn engine(&self, svc: &Services) -> EngineServices {
        EngineServices::new(svc.ports.clone(), self.state.clone())
    }
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
/// subscription running 30 days from now, at the `fast` pace (the operator's cadence, which
/// the engine tests time; a test of the user's pace sets its own).
pub async fn register_user(
    svc: &Ports,
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
    let fast = serde_json::to_string(&Preset::Fast.settings()).expect("a pace serialises");
    svc.db.set_pace(user, &fast).await.expect("set_pace");
    svc.db
        .get_user(user)
        .await
        .expect("get_user")
        .expect("just created")
}

/// Creates a mailing of `user` (progress to the user's chat) to `groups` with `text`, now.
pub async fn create_mailing(
    svc: &Ports,
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
            skipped: vec![],
            now: svc.now_ms(),
            announce_until: 0,
        })
        .await
        .expect("create_mailing")
}

/// Takes the profile's lease and claims the mailing with it, as a runner does.
pub async fn take_mailing(svc: &EngineServices, id: MailingId, ttl_ms: u64) -> Lease {
    let m = svc
        .db
        .get_mailing(id)
        .await
        .expect("get_mailing")
        .expect("the mailing exists");
    let lease = svc
        .leases
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
    svc: &EngineServices,
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
    svc: &EngineServices,
    clock: &FakeClock,
    id: MailingId,
    lease: &Lease,
    cursor: &mut Cursor,
    max_steps: usize,
    mut stop: impl FnMut() -> bool,
) -> Result<Step, EngineError> {
    for _ in 0..max_steps {
        if !svc
            .leases
            .renew_lease(lease, DRIVER_LEASE_TTL_MS, clock.now())
            .await?
        {
            return Ok(Step::LostLease);
        }
        let step = mailing::step(svc, id, lease, cursor).await?;
        match step {
            Step::Finished | Step::LostLease => return Ok(step),
            _ if stop() => return Ok(step),
            Step::SleepUntil(t) => {
                // A long sleep (a window, a cap) renews the lease on the way, as drivers do.
                while clock.now() + DRIVER_LEASE_TTL_MS as i64 / 3 < t {
                    clock.advance_to(clock.now() + DRIVER_LEASE_TTL_MS as i64 / 3);
                    if !svc
                        .leases
                        .renew_lease(lease, DRIVER_LEASE_TTL_MS, clock.now())
                        .await?
                    {
                        return Ok(Step::LostLease);
                    }
                }
                clock.advance_to(t)
            }
            Step::Continue => {}
        }
    }
    panic!("mailing {} not over after {max_steps} steps", id.0);
}
