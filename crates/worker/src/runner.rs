//! `ProfileRunner`: the Durable Object that runs the mailings of one Wappi profile
//! (`RUNNER.idFromName(profile_id)`). It is the Cloudflare form of the server's per-profile
//! tokio task, driving the very same [`mailing::step`].
//!
//! - **Lease.** A Durable Object is already the single owner of its profile, so the lease is
//!   trivial; a fencing number is still kept: every activation (first alarm after a start, an
//!   eviction or a crash) takes `max(stored, mailing's) + 1`, stores it and writes it with
//!   `claim_mailing`, so ledger writes of an older activation are refused by D1.
//! - **Pacing and backoff** are this object's storage (`pace`: the core's `PaceState`, GCRA for
//!   the profile plus the per-chat window), checked and taken right before each Wappi call.
//! - **One message per alarm at the exact slot.** The engine answers `SleepUntil(t)` with the
//!   next pacing slot; the alarm is set to `t`. The row to send is marked `sending` in D1
//!   shortly before its slot (the engine's `ARM_LEAD_MS`).
//! - **No double across alarm retries and eviction.** What the engine keeps between steps (its
//!   `Cursor`) lives in memory only. A fresh object (evicted, restarted, or after a failed
//!   alarm) starts with a fresh cursor, so a row still `sending` in D1 is taken for a crash
//!   leftover: `in_doubt`, settled by reading the group's history before any resend.
//! - **Cancel** arrives as `POST /cancel`: the flag goes into storage and the alarm is moved
//!   to now, so it takes effect before the next send, also during a long backoff.
//!
//! Requests (from this Worker only): `POST /start {"mailing_id"}`, `POST /cancel
//! {"mailing_id"}`, `GET /status`.

use crate::counts::{self, Class, Invocation};
use crate::env::env_vars;
use crate::services;
use crate::settings::WorkerSettings;
use crate::store::Store;
use crate::telegram::FetchTelegram;
use crate::test_hooks::Hooks;
use crate::wire::RunnerCommand;
use groupcast_core::mailing::{self, Cursor, Step};
use groupcast_core::model::ids::{GroupJid, MailingId, ProfileId};
use groupcast_core::model::ledger::MailingStatus;
use groupcast_core::model::pacing::{self, PaceState};
use groupcast_core::model::pacing::{Pace, PacingConfig};
use groupcast_core::ports::{
    async_trait, Cancels, DbError, Heartbeats, Lease, Leases, Pacer, StateError,
};
use groupcast_core::services::EngineServices;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result};

/// Engine steps one alarm may run before it hands over to a fresh alarm (keeps one
/// invocation short even when many `in_doubt` rows are settled in a row).
const MAX_STEPS_PER_ALARM: u32 = 50;
/// After a failed step the runner tries again this much later.
const RETRY_AFTER_ERROR_MS: i64 = 1000;
/// Cancelled mailing ids kept in storage.
const KEEP_CANCELLED: usize = 32;

const KEY_MAILING: &str = "mailing";
const KEY_FENCE: &str = "fence";
const KEY_PACE: &str = "pace";
const KEY_CANCELLED: &str = "cancelled";
const KEY_HEARTBEAT: &str = "heartbeat";

/// What this object shares with its state adapter ([`DoState`]): storage plus in-memory
/// copies.
pub struct Shared {
    storage: Store,
    /// The pacing state, loaded from storage on first use.
    pace: RefCell<Option<PaceState>>,
    cancelled: RefCell<Option<Vec<i64>>>,
    /// The fence of the current activation (0 = none).
    fence: Cell<u64>,
    /// Set by `/cancel` during an alarm: keep stepping instead of sleeping.
    wake: Cell<bool>,
    /// The in-memory pacing state has slots not yet written to storage.
    pace_dirty: Cell<bool>,
}

impl Shared {
    async fn pace_state(&self) -> std::result::Result<PaceState, StateError> {
        if let Some(p) = self.pace.borrow().clone() {
            return Ok(p);
        }
        let p: PaceState = self
            .storage
            .get(KEY_PACE)
            .await
            .map_err(state_err)?
            .unwrap_or_default();
        *self.pace.borrow_mut() = Some(p.clone());
        Ok(p)
    }

    async fn save_pace(&self, p: PaceState) -> std::result::Result<(), StateError> {
        self.storage.put(KEY_PACE, &p).await.map_err(state_err)?;
        *self.pace.borrow_mut() = Some(p);
        self.pace_dirty.set(false);
        Ok(())
    }

    /// Writes the slots taken since the last write (see [`DoState::pace`]).
    async fn flush_pace(&self) -> std::result::Result<(), StateError> {
        if !self.pace_dirty.get() {
            return Ok(());
        }
        let p = self.pace.borrow().clone().unwrap_or_default();
        self.save_pace(p).await
    }

    async fn cancelled(&self) -> std::result::Result<Vec<i64>, StateError> {
        if let Some(c) = self.cancelled.borrow().clone() {
            return Ok(c);
        }
        let c: Vec<i64> = self
            .storage
            .get(KEY_CANCELLED)
            .await
            .map_err(state_err)?
            .unwrap_or_default();
        *self.cancelled.borrow_mut() = Some(c.clone());
        Ok(c)
    }
}

fn state_err(e: worker::Error) -> StateError {
    StateError::Backend(format!("durable object storage: {e}"))
}

/// The coordination capabilities inside the runner (leases, cancel flags, pacing, its
/// heartbeat): everything is this object's own storage. New mailings do not come through it
/// (they arrive as `POST /start`).
pub struct DoState(pub Rc<Shared>);

#[async_trait(?Send)]
impl Leases for DoState {
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        _ttl_ms: u64,
        _now: i64,
    ) -> std::result::Result<Option<Lease>, StateError> {
        let stored: u64 = self
            .0
            .storage
            .get(KEY_FENCE)
            .await
            .map_err(state_err)?
            .unwrap_or(0);
        let fence = stored + 1;
        self.0
            .storage
            .put(KEY_FENCE, fence)
            .await
            .map_err(state_err)?;
        self.0.fence.set(fence);
        Ok(Some(Lease {
            profile: profile.clone(),
            token: format!("do-{fence}"),
            fence,
        }))
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        _ttl_ms: u64,
        _now: i64,
    ) -> std::result::Result<bool, StateError> {
        Ok(lease.fence == self.0.fence.get())
    }

    async fn release_lease(&self, _lease: &Lease) -> std::result::Result<(), StateError> {
        Ok(())
    }
}

#[async_trait(?Send)]
impl Cancels for DoState {
    async fn set_cancel(&self, mailing: MailingId) -> std::result::Result<(), StateError> {
        let mut list = self.0.cancelled().await?;
        if !list.contains(&mailing.0) {
            list.push(mailing.0);
            if list.len() > KEEP_CANCELLED {
                list.remove(0);
            }
            self.0
                .storage
                .put(KEY_CANCELLED, &list)
                .await
                .map_err(state_err)?;
        }
        *self.0.cancelled.borrow_mut() = Some(list);
        Ok(())
    }

    async fn is_cancelled(&self, mailing: MailingId) -> std::result::Result<bool, StateError> {
        Ok(self.0.cancelled().await?.contains(&mailing.0))
    }
}

#[async_trait(?Send)]
impl Pacer for DoState {
    async fn pace(
        &self,
        _profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> std::result::Result<Pace, StateError> {
        let mut p = self.0.pace_state().await?;
        let pace = pacing::decide(&mut p, chat.as_str(), cfg, now);
        if pace == Pace::Go {
            // Taken in memory; written at the end of the alarm. A storage write here would make
            // the output gate hold the Wappi call that follows until it is confirmed, by a
            // varying few ms, which shortens the next gap by as much. Losing the last slot to
            // an eviction only matters within one interval, and an evicted runner first
            // settles its `sending` row by reading the chat.
            *self.0.pace.borrow_mut() = Some(p);
            self.0.pace_dirty.set(true);
        }
        Ok(pace)
    }

    async fn pace_peek(
        &self,
        _profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> std::result::Result<Pace, StateError> {
        let mut p = self.0.pace_state().await?;
        Ok(pacing::decide(&mut p, chat.as_str(), cfg, now))
    }

    async fn set_backoff(
        &self,
        _profile: &ProfileId,
        until: i64,
    ) -> std::result::Result<(), StateError> {
        let mut p = self.0.pace_state().await?;
        p.backoff_until = p.backoff_until.max(until);
        self.0.save_pace(p).await
    }

    async fn backoff_until(
        &self,
        _profile: &ProfileId,
    ) -> std::result::Result<Option<i64>, StateError> {
        Ok(Some(self.0.pace_state().await?.backoff_until).filter(|t| *t > 0))
    }
}

#[async_trait(?Send)]
impl Heartbeats for DoState {
    async fn heartbeat(&self, _runner: &str, now: i64) -> std::result::Result<(), StateError> {
        self.0
            .storage
            .put(KEY_HEARTBEAT, now)
            .await
            .map_err(state_err)
    }

    async fn last_heartbeat(&self) -> std::result::Result<Option<i64>, StateError> {
        self.0.storage.get(KEY_HEARTBEAT).await.map_err(state_err)
    }
}

/// The mailing being driven and what the engine keeps for it.
struct Drive {
    mailing: MailingId,
    lease: Lease,
    cursor: Cursor,
}

/// The services of this object, built on first use.
struct Built {
    svc: EngineServices,
    hooks: Hooks,
}

#[durable_object]
pub struct ProfileRunner {
    state: worker::State,
    env: Env,
    shared: Rc<Shared>,
    built: RefCell<Option<Rc<Built>>>,
    drive: RefCell<Option<Drive>>,
}

impl DurableObject for ProfileRunner {
    fn new(state: worker::State, env: Env) -> Self {
        let shared = Rc::new(Shared {
            storage: Store::new(state.storage()),
            pace: RefCell::new(None),
            cancelled: RefCell::new(None),
            fence: Cell::new(0),
            wake: Cell::new(false),
            pace_dirty: Cell::new(false),
        });
        ProfileRunner {
            state,
            env,
            shared,
            built: RefCell::new(None),
            drive: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        counts::invocation(Invocation::DoRequest(Class::Runner));
        let path = req.path();
        match (req.method(), path.as_str()) {
            (Method::Post, "/start") => {
                let cmd: RunnerCommand = req.json().await?;
                self.start(MailingId(cmd.mailing_id)).await?;
                Response::ok("started")
            }
            (Method::Post, "/cancel") => {
                let cmd: RunnerCommand = req.json().await?;
                DoState(self.shared.clone())
                    .set_cancel(MailingId(cmd.mailing_id))
                    .await
                    .map_err(|e| worker::Error::RustError(e.to_string()))?;
                self.shared.wake.set(true);
                if self.current().await? == Some(cmd.mailing_id) {
                    self.storage().set_alarm(0i64).await?;
                }
                Response::ok("cancelled")
            }
            (Method::Get, "/status") => {
                let alarm = self.storage().get_alarm().await?;
                Response::from_json(&serde_json::json!({
                    "mailing": self.current().await?,
                    "fence": self.storage().get::<u64>(KEY_FENCE).await?,
                    "alarm": alarm,
                    "heartbeat": self.storage().get::<i64>(KEY_HEARTBEAT).await?,
                }))
            }
            // Test hooks only (the route that asks is behind `GROUPCAST_TEST_HOOKS=1`): this
            // isolate's counters, see `crate::counts`.
            (Method::Get, "/counts") => Response::from_json(&counts::snapshot()),
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        counts::invocation(Invocation::DoAlarm(Class::Runner));
        let built = match self.built() {
            Ok(b) => b,
            Err(e) => {
                worker::console_error!("runner: {e}");
                return Response::ok("misconfigured");
            }
        };
        let Some(id) = self.current().await? else {
            return Response::ok("idle");
        };
        let svc = &built.svc;
        let held = self.drive.borrow_mut().take();
        let mut drive = match held {
            Some(d) if d.mailing.0 == id => d,
            _ => match self.activate(svc, MailingId(id)).await {
                Ok(Some(d)) => d,
                Ok(None) => {
                    self.forget(id).await?;
                    return Response::ok("nothing to run");
                }
                Err(e) => {
                    worker::console_error!("runner: activating mailing {id}: {e}");
                    self.storage().set_alarm(RETRY_AFTER_ERROR_MS).await?;
                    return Response::ok("retrying");
                }
            },
        };
        let result = self.drive(svc, &built.hooks, id, &mut drive).await;
        // Storage writes only now, after the sends: see `DoState::pace`.
        let state = DoState(self.shared.clone());
        let _ = state.heartbeat("runner", svc.now_ms()).await;
        if let Err(e) = self.shared.flush_pace().await {
            worker::console_error!("runner: saving the pacing state: {e}");
        }
        match result {
            Ok(Some(at)) => {
                *self.drive.borrow_mut() = Some(drive);
                self.alarm_at(at).await?;
                Response::ok("stepped")
            }
            Ok(None) => {
                self.forget(id).await?;
                Response::ok("finished")
            }
            Err(e) => {
                // Test hook: behave like an isolate that died between the Wappi call and the
                // ledger write. Nothing in memory survives; the alarm throws and is retried
                // by the platform (an alarm is set as well, in case).
                self.storage().set_alarm(RETRY_AFTER_ERROR_MS).await?;
                Err(e)
            }
        }
    }
}

impl ProfileRunner {
    /// Sets the alarm to this unix-ms time (now if it is past).
    async fn alarm_at(&self, at_ms: i64) -> Result<()> {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
        self.storage()
            .set_alarm(worker::ScheduledTime::new(date))
            .await
    }

    /// Steps the engine until it asks to sleep. `Ok(Some(t))`: set the alarm to unix ms `t`;
    /// `Ok(None)`: the mailing is over; `Err`: the crash test hook fired.
    async fn drive(
        &self,
        svc: &EngineServices,
        hooks: &Hooks,
        id: i64,
        drive: &mut Drive,
    ) -> Result<Option<i64>> {
        let mut steps = 0;
        loop {
            self.shared.wake.set(false);
            let step = mailing::step(svc, drive.mailing, &drive.lease, &mut drive.cursor).await;
            match step {
                Ok(Step::Continue) => {
                    steps += 1;
                    if steps >= MAX_STEPS_PER_ALARM {
                        return Ok(Some(svc.now_ms()));
                    }
                }
                Ok(Step::SleepUntil(t)) => {
                    if self.shared.wake.get() {
                        continue; // a cancel arrived while this step ran
                    }
                    return Ok(Some(t));
                }
                Ok(Step::Finished) | Ok(Step::LostLease) => return Ok(None),
                Err(e) => {
                    if let Some(crash) = hooks.take_crash() {
                        return Err(crash);
                    }
                    worker::console_error!("runner: mailing {id} step failed: {e}; retrying");
                    // Start again from what is stored: a `sending` row is then settled.
                    drive.cursor = Cursor::default();
                    return Ok(Some(svc.now_ms() + RETRY_AFTER_ERROR_MS));
                }
            }
        }
    }

    fn storage(&self) -> Store {
        Store::new(self.state.storage())
    }

    fn built(&self) -> std::result::Result<Rc<Built>, String> {
        if let Some(b) = self.built.borrow().as_ref() {
            return Ok(b.clone());
        }
        let settings = WorkerSettings::load(&env_vars(&self.env)).map_err(|e| e.to_string())?;
        let hooks = Hooks::new(&settings.test_hooks, Rc::new(self.storage()));
        let mut ports = services::ports(&self.env, &settings, Some(hooks.clone()))
            .map_err(|e| e.to_string())?;
        // A 429 on a progress edit or a report goes back to the engine at once (the next
        // progress edit tries again) instead of holding the alarm, and with it the posts.
        ports.telegram = Arc::new(
            FetchTelegram::new(&settings.telegram_api_url, settings.telegram_token.clone())
                .without_429_waits(),
        );
        let svc = EngineServices::new(ports, Arc::new(DoState(self.shared.clone())));
        let b = Rc::new(Built { svc, hooks });
        *self.built.borrow_mut() = Some(b.clone());
        Ok(b)
    }

    async fn current(&self) -> Result<Option<i64>> {
        self.storage().get(KEY_MAILING).await
    }

    /// Takes a mailing to drive: remembers it and makes sure an alarm is due. A mailing
    /// already being driven only gets its alarm checked (a repeated queue message is harmless).
    async fn start(&self, id: MailingId) -> Result<()> {
        let current = self.current().await?;
        if current != Some(id.0) {
            self.storage().put(KEY_MAILING, id.0).await?;
            self.drive.borrow_mut().take();
        }
        if self.storage().get_alarm().await?.is_none() {
            self.storage().set_alarm(0i64).await?;
        }
        Ok(())
    }

    /// Drops a mailing that is over (unless a newer one took its place meanwhile).
    async fn forget(&self, id: i64) -> Result<()> {
        if self.current().await? == Some(id) {
            self.storage().delete(KEY_MAILING).await?;
        }
        self.drive.borrow_mut().take();
        Ok(())
    }

    /// A new activation: a fence above every earlier one, claimed in D1. `None` when the
    /// mailing is no longer running.
    async fn activate(
        &self,
        svc: &EngineServices,
        id: MailingId,
    ) -> std::result::Result<Option<Drive>, DbError> {
        let Some(m) = svc.db.get_mailing(id).await? else {
            return Ok(None);
        };
        if m.status != MailingStatus::Running {
            return Ok(None);
        }
        let stored: u64 = self
            .storage()
            .get(KEY_FENCE)
            .await
            .map_err(|e| DbError::Backend(e.to_string()))?
            .unwrap_or(0);
        let fence = stored.max(m.fence) + 1;
        self.storage()
            .put(KEY_FENCE, fence)
            .await
            .map_err(|e| DbError::Backend(e.to_string()))?;
        svc.db.claim_mailing(id, fence).await?;
        self.shared.fence.set(fence);
        worker::console_log!("runner: driving mailing {} with fence {fence}", id.0);
        Ok(Some(Drive {
            mailing: id,
            lease: Lease {
                profile: m.profile_id,
                token: format!("do-{fence}"),
                fence,
            },
            cursor: Cursor::default(),
        }))
    }
}
