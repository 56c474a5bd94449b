//! The mailing runner of the self-hosted server: a supervisor that picks mailings from the
//! intake queue (and, as a reconciler, from the database, so a mailing the queue lost is never
//! forgotten) and drives each with a tokio task that holds the profile's lease and calls
//! [`mailing::step`] until the mailing is over.
//!
//! A waiting driver costs nothing until it is due: it sleeps until its step's time, and a
//! cancel or the loss of its lease wakes it early. The cancels are found by the supervisor,
//! with one query for every mailing it drives ([`CANCEL_LOOK`]), not by each driver polling
//! its own flag, so thousands of mailings waiting out their pace cost one look four times a
//! second. The leases are renewed by the process's one [`LeaseKeeper`], all together, not by
//! each driver; a driver whose lease another process holds sleeps until that lease could
//! expire and is woken when it is released ([`LeaseWaits`]), instead of trying every second,
//! and the tries of many drivers go together ([`LeaseTries`]).

use crate::lease_keeper::{KeptLease, LeaseKeeper};
use crate::lease_tries::LeaseTries;
use crate::lease_waits::LeaseWaits;
use crate::state::{ReleaseFeed, Released};
use groupcast_core::mailing::{self, Step};
use groupcast_core::model::ids::MailingId;
use groupcast_core::model::ids::ProfileId;
use groupcast_core::model::ledger::MailingStatus;
use groupcast_core::ports::{DbError, Heartbeats, IntakeConsumer, Lease, LeaseTry};
use groupcast_core::services::EngineServices;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Claims of a process silent this long go back to the intake queue (a backend shared by
/// several processes; the embedded one keeps no claims).
const STALE_CLAIM_MS: u64 = 30_000;

/// How often the supervisor looks at the queue and the database.
const POLL: Duration = Duration::from_millis(100);
/// How often running mailings are re-read from the database (the reconciler), at most: with a
/// short lease the rescan comes at half the lease, so a takeover is bounded by the lease.
const RESCAN: Duration = Duration::from_secs(5);
/// A running mailing younger than this is left to the intake queue by the rescan.
const FRESH_MS: i64 = 10_000;
/// How often this runner writes its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often the supervisor looks for cancelled mailings among those it drives, and wakes
/// their drivers (which then stop before their next send).
const CANCEL_LOOK: Duration = Duration::from_millis(250);
/// The last milliseconds before a send slot, which a driver yields through rather than sleeps.
const SPIN_MS: i64 = 1;
/// Sends per second above which drivers yield through the last millisecond before a slot.
const SPIN_ABOVE_RATE: f64 = 10.0;
/// How often a driver waiting for a lease held elsewhere looks whether its mailing still runs
/// (it may have ended while another mailing of the profile holds the lease).
const STILL_RUNNING_LOOK: Duration = Duration::from_secs(30);

pub struct Runner {
    /// What the drivers run on: the engine's bundle (leases, cancel flags, pacer).
    svc: EngineServices,
    /// The runners' end of the intake queue: items are acked when their driver ends, items of
    /// dead processes come back, and ours are given back on shutdown (where the backend keeps
    /// claims).
    queue: Arc<dyn IntakeConsumer>,
    heartbeats: Arc<dyn Heartbeats>,
    /// News of leases released by the other processes (none on the embedded state).
    releases: Arc<dyn ReleaseFeed>,
    lease_ttl_ms: u64,
    /// Renews the leases of all this process's drivers.
    keeper: Arc<LeaseKeeper>,
    /// Sends the drivers' tries for leases together.
    tries: Arc<LeaseTries>,
    /// The drivers waiting for a lease held elsewhere.
    waits: Arc<LeaseWaits>,
    id: String,
    /// The mailings whose cancel was asked for, among the running ones.
    cancelled: CancelLook,
    tasks: Mutex<HashMap<MailingId, Driver>>,
}

/// One query for the running mailings whose cancel was asked for.
pub type CancelLook = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<MailingId>, DbError>> + Send>> + Send + Sync,
>;

/// A driver task and what wakes it early (a cancel).
struct Driver {
    task: JoinHandle<()>,
    wake: Arc<Notify>,
}

impl Runner {
    pub fn new(
        svc: EngineServices,
        queue: Arc<dyn IntakeConsumer>,
        heartbeats: Arc<dyn Heartbeats>,
        releases: Arc<dyn ReleaseFeed>,
        id: String,
        cancelled: CancelLook,
    ) -> Arc<Runner> {
        let lease_ttl_ms = svc.settings.engine.lease_ttl_ms;
        let keeper = LeaseKeeper::new(svc.leases.clone(), svc.clock.clone(), lease_ttl_ms);
        let tries = LeaseTries::new(svc.leases.clone(), svc.clock.clone(), lease_ttl_ms);
        Arc::new(Runner {
            svc,
            queue,
            heartbeats,
            releases,
            lease_ttl_ms,
            keeper,
            tries,
            waits: LeaseWaits::new(),
            id,
            cancelled,
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// Runs until `shutdown` turns true, then waits (at most `grace`) for drivers to stop.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut last_scan = None::<tokio::time::Instant>;
        let mut last_beat = None::<tokio::time::Instant>;
        let mut last_cancel_look = None::<tokio::time::Instant>;
        let rescan = RESCAN.min(Duration::from_millis(self.lease_ttl_ms / 2).max(POLL));
        // Listening for releases before any driver waits, so that none is missed.
        let follow = self
            .releases
            .release_feed()
            .map(|feed| tokio::spawn(Arc::clone(&self.waits).follow(feed)));
        let keeper = tokio::spawn(Arc::clone(&self.keeper).run());
        let tries = tokio::spawn(Arc::clone(&self.tries).run());
        while !*shutdown.borrow() {
            let now = tokio::time::Instant::now();
            if last_cancel_look.is_none_or(|t| now - t >= CANCEL_LOOK) {
                self.wake_cancelled().await;
                last_cancel_look = Some(now);
            }
            if last_beat.is_none_or(|t| now - t >= HEARTBEAT) {
                if let Err(e) = self.heartbeats.heartbeat(&self.id, self.svc.now_ms()).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                last_beat = Some(now);
            }
            loop {
                match self.queue.dequeue().await {
                    Ok(Some(id)) => {
                        if !self.ensure_driver(id, &shutdown) {
                            self.ack(id).await; // already driven here
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "intake queue unavailable");
                        break;
                    }
                }
            }
            if last_scan.is_none_or(|t| now - t >= rescan) {
                // A driver takes itself out when it ends (see `drive`); one that ended before
                // it was put in is forgotten here, not by a look at thousands at each poll.
                self.tasks
                    .lock()
                    .expect("tasks lock")
                    .retain(|_, d| !d.task.is_finished());
                match self.queue.requeue_stale(STALE_CLAIM_MS).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(requeued = n, "took back mailings of a silent runner")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "requeue of stale claims failed"),
                }
                // New mailings come through the queue; after the first scan (which resumes
                // everything left running) the scan is for those the queue lost, so it leaves
                // fresh ones to the queue and never races the bot that is starting them.
                let settled = if last_scan.is_none() {
                    i64::MAX
                } else {
                    self.svc.now_ms() - FRESH_MS
                };
                match self.svc.db.running_mailings().await {
                    Ok(list) => list
                        .iter()
                        // Once its start message is recorded a mailing is safe to take at
                        // any age (a dead driver's young mailing is taken over within the
                        // lease, not after the fresh period).
                        .filter(|m| m.created_at < settled || m.progress_message_id.is_some())
                        .for_each(|m| {
                            self.ensure_driver(m.id, &shutdown);
                        }),
                    Err(e) => tracing::warn!(error = %e, "could not list running mailings"),
                }
                last_scan = Some(now);
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
        let handles: Vec<_> = self
            .tasks
            .lock()
            .expect("tasks lock")
            .drain()
            .map(|(_, d)| d.task)
            .collect();
        let all = futures_join(handles);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("some mailing drivers did not stop in time");
        }
        keeper.abort();
        tries.abort();
        if let Some(follow) = follow {
            follow.abort();
        }
        // Unfinished work goes straight back to the queue for another process.
        if let Err(e) = self.queue.give_back().await {
            tracing::warn!(error = %e, "could not give queued mailings back");
        }
    }

    /// Wakes the drivers of this process whose mailing's cancel was asked for.
    async fn wake_cancelled(&self) {
        match (self.cancelled)().await {
            Ok(ids) if !ids.is_empty() => {
                let tasks = self.tasks.lock().expect("tasks lock");
                for id in ids {
                    if let Some(d) = tasks.get(&id) {
                        d.wake.notify_one();
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not look for cancelled mailings"),
        }
    }

    /// Starts a driver for the mailing unless one is already running in this process;
    /// `false` when one was.
    fn ensure_driver(self: &Arc<Self>, id: MailingId, shutdown: &watch::Receiver<bool>) -> bool {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        if tasks.get(&id).is_some_and(|d| !d.task.is_finished()) {
            return false;
        }
        let me = Arc::clone(self);
        let shutdown = shutdown.clone();
        let wake = Arc::new(Notify::new());
        let woken = Arc::clone(&wake);
        tasks.insert(
            id,
            Driver {
                task: tokio::spawn(async move { me.drive(id, shutdown, woken).await }),
                wake,
            },
        );
        true
    }

    /// Drives a mailing until it ends or this process must stop, then drops it from this
    /// process's queue claims.
    async fn drive(&self, id: MailingId, shutdown: watch::Receiver<bool>, wake: Arc<Notify>) {
        let stopping = shutdown.clone();
        self.drive_once(id, shutdown, &wake).await;
        // The entry is this task's: `ensure_driver` replaces only an ended one. Taken out now,
        // the ended task's memory goes at once.
        self.tasks.lock().expect("tasks lock").remove(&id);
        // On shutdown the claim stays, and is given back to the queue for another process.
        if !*stopping.borrow() {
            self.ack(id).await;
        }
    }

    async fn drive_once(&self, id: MailingId, mut shutdown: watch::Receiver<bool>, wake: &Notify) {
        let svc = &self.svc;
        let profile = match svc.db.get_mailing(id).await {
            Ok(Some(m)) if m.status == MailingStatus::Running => m.profile_id,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(mailing = id.0, error = %e, "could not load mailing");
                return;
            }
        };
        let Some((lease, taken_at)) = self.take_lease(id, &profile, &mut shutdown).await else {
            return;
        };
        match svc.db.claim_mailing(id, lease.fence).await {
            Ok(()) => {}
            Err(DbError::StaleFence) => {
                tracing::warn!(mailing = id.0, "a newer runner owns this mailing");
                self.release(&lease).await;
                return;
            }
            Err(e) => {
                tracing::warn!(mailing = id.0, error = %e, "could not claim mailing");
                self.release(&lease).await;
                return;
            }
        }
        tracing::info!(mailing = id.0, profile = %profile, fence = lease.fence, runner = %self.id, "driving mailing");
        let kept = self.keeper.keep(lease, taken_at);
        let outcome = self.drive_held(id, &kept, shutdown, wake).await;
        tracing::info!(mailing = id.0, outcome, "driver stopped");
        // No renewal may come after the release.
        let lease = kept.lease().clone();
        drop(kept);
        self.release(&lease).await;
    }

    /// Takes the profile's lease, with when it was asked for; `None` when this process must
    /// stop or the mailing no longer runs. While another runner holds the lease (it will
    /// release it or let it expire), sleeps until it could have expired, or until it is
    /// released (by a driver here or, through the feed, in another process), and looks at the
    /// database after a release and otherwise only now and then.
    async fn take_lease(
        &self,
        id: MailingId,
        profile: &ProfileId,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(Lease, i64)> {
        let svc = &self.svc;
        // When the backend cannot tell how long the lease lasts: a few tries a lease.
        let retry = Duration::from_millis((self.lease_ttl_ms / 4).clamp(100, 1000));
        let mut looked = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let mut released = self.waits.ticket(profile);
            let asked_at = svc.now_ms();
            let nap = match self.tries.try_lease(profile).await {
                Ok(LeaseTry::Taken(lease)) => return Some((lease, asked_at)),
                // A millisecond more: the backend's clock and ours tick apart.
                Ok(LeaseTry::Held {
                    free_in_ms: Some(ms),
                }) => Duration::from_millis(ms.saturating_add(1)),
                Ok(LeaseTry::Held { free_in_ms: None }) => retry,
                Err(e) => {
                    tracing::warn!(error = %e, "lease backend unavailable");
                    retry
                }
            };
            let freed = tokio::select! {
                _ = tokio::time::sleep(nap) => false,
                _ = released.released() => true,
                closed = shutdown.changed() => {
                    if closed.is_err() {
                        // No one can signal a shutdown any more: just wait.
                        tokio::time::sleep(nap).await;
                    }
                    false
                }
            };
            // A lease is most often released because its mailing ended: a read then spares
            // the claim's durable write.
            if freed || looked.elapsed() >= STILL_RUNNING_LOOK {
                match svc.db.get_mailing(id).await {
                    Ok(Some(m)) if m.status == MailingStatus::Running => {}
                    _ => return None,
                }
                looked = tokio::time::Instant::now();
            }
        }
    }

    /// Releases a lease and wakes the drivers of this process that wait for it.
    async fn release(&self, lease: &Lease) {
        if let Err(e) = self.svc.leases.release_lease(lease).await {
            tracing::warn!(error = %e, "could not release lease");
        }
        self.waits.released(&Released::Lease(lease.profile.clone()));
    }

    /// Steps the mailing while the lease holds; returns why it stopped.
    async fn drive_held(
        &self,
        id: MailingId,
        kept: &KeptLease,
        mut shutdown: watch::Receiver<bool>,
        wake: &Notify,
    ) -> &'static str {
        let svc = &self.svc;
        let lease = kept.lease();
        let mut cursor = mailing::Cursor::default();
        // At high rates a millisecond late per send is a visible loss of pace; at low rates it
        // is not worth a busy wait.
        let spin = svc.settings.pacing.profile_rate_per_sec > SPIN_ABOVE_RATE;
        loop {
            if *shutdown.borrow() {
                return "shutdown";
            }
            if !self.keep_lease(kept).await {
                return "lease lost";
            }
            match mailing::step(svc, id, lease, &mut cursor).await {
                Ok(Step::Continue) => tokio::task::yield_now().await,
                Ok(Step::SleepUntil(t)) => {
                    let waited_from = tokio::time::Instant::now();
                    // With the slot already taken the checks were just made: only wait.
                    let held = cursor.holds_slot();
                    let mut vouched = held;
                    loop {
                        let now = svc.now_ms();
                        if kept.is_lost() {
                            return "lease lost";
                        }
                        if now >= t || *shutdown.borrow() {
                            break;
                        }
                        if (spin || held) && t - now <= SPIN_MS {
                            // The timer wakes up to a millisecond late, and every late send
                            // pushes all later slots back: yield the last stretch instead. Check
                            // cancel and renew the lease now, before the slot, and vouch for both.
                            if !vouched {
                                if svc.cancels.is_cancelled(id).await.unwrap_or(false) {
                                    break;
                                }
                                let asked_at = svc.now_ms();
                                match svc
                                    .leases
                                    .renew_lease(lease, self.lease_ttl_ms, asked_at)
                                    .await
                                {
                                    Ok(true) => {
                                        kept.renewed(asked_at);
                                        cursor.vouch(svc.now_ms());
                                        vouched = true;
                                    }
                                    _ => return "lease lost",
                                }
                            }
                            tokio::task::yield_now().await;
                            continue;
                        }
                        if !held && !self.keep_lease(kept).await {
                            return "lease lost";
                        }
                        // Until the step is due; a cancel (found by the supervisor), the loss
                        // of the lease (found by the keeper) or the shutdown wakes the driver at
                        // once.
                        let nap = Duration::from_millis((t - SPIN_MS - now).max(1) as u64);
                        tokio::select! {
                            _ = tokio::time::sleep(nap) => {}
                            _ = wake.notified() => break,
                            _ = kept.lost() => {}
                            closed = shutdown.changed() => {
                                if closed.is_err() {
                                    // No one can signal a shutdown any more: just wait.
                                    tokio::time::sleep(nap).await;
                                }
                            }
                        }
                    }
                    crate::metrics::global().pacing_wait(waited_from.elapsed());
                }
                Ok(Step::Finished) => return "finished",
                Ok(Step::LostLease) => return "lease lost",
                Err(e) => {
                    tracing::warn!(mailing = id.0, error = %e, "mailing step failed; retrying");
                    // Start again from what is stored: an unfinished write may have left the
                    // remembered rows ahead of the database (a `sending` row found then is
                    // settled like a crash leftover).
                    cursor = mailing::Cursor::default();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Drops this process's queue claim of a mailing (none on the embedded state).
    async fn ack(&self, id: MailingId) {
        if let Err(e) = self.queue.ack(id).await {
            tracing::warn!(mailing = id.0, error = %e, "could not ack queue item");
        }
    }

    /// Whether the lease still holds: lost once the keeper or a renewal found it so. When the
    /// keeper has not renewed it for a third of its time (a late round, or Redis failing), the
    /// driver renews it itself and, if that fails, keeps going only while the lease cannot
    /// have expired yet.
    async fn keep_lease(&self, kept: &KeptLease) -> bool {
        if kept.is_lost() {
            return false;
        }
        let now = self.svc.now_ms();
        if kept.fresh(now, self.lease_ttl_ms) {
            return true;
        }
        match self
            .svc
            .leases
            .renew_lease(kept.lease(), self.lease_ttl_ms, now)
            .await
        {
            Ok(true) => {
                kept.renewed(now);
                true
            }
            Ok(false) => {
                kept.lose();
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                now - kept.renewed_at() < self.lease_ttl_ms as i64 / 2
            }
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
