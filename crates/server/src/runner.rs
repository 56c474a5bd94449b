//! The mailing runner of the self-hosted server: a supervisor that picks mailings from the
//! intake queue (and, as a reconciler, from the database, so a mailing the queue lost is never
//! forgotten) and drives each with a tokio task that holds the profile's lease and calls
//! [`mailing::step`] until the mailing is over.
//!
//! A waiting driver costs nothing until it is due: it sleeps until its step's time or its
//! lease's renewal, whichever comes first, and a cancel wakes it early. The cancels are found
//! by the supervisor, with one query for every mailing it drives ([`CANCEL_LOOK`]), not by
//! each driver polling its own flag, so thousands of mailings waiting out their pace cost one
//! look four times a second.

use groupcast_core::mailing::{self, Step};
use groupcast_core::model::ids::MailingId;
use groupcast_core::model::ledger::MailingStatus;
use groupcast_core::ports::{DbError, Heartbeats, IntakeConsumer, Lease};
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

pub struct Runner {
    /// What the drivers run on: the engine's bundle (leases, cancel flags, pacer).
    svc: EngineServices,
    /// The runners' end of the intake queue: items are acked when their driver ends, items of
    /// dead processes come back, and ours are given back on shutdown (where the backend keeps
    /// claims).
    queue: Arc<dyn IntakeConsumer>,
    heartbeats: Arc<dyn Heartbeats>,
    lease_ttl_ms: u64,
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
        id: String,
        cancelled: CancelLook,
    ) -> Arc<Runner> {
        let lease_ttl_ms = svc.settings.engine.lease_ttl_ms;
        Arc::new(Runner {
            svc,
            queue,
            heartbeats,
            lease_ttl_ms,
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
        while !*shutdown.borrow() {
            let now = tokio::time::Instant::now();
            self.tasks
                .lock()
                .expect("tasks lock")
                .retain(|_, d| !d.task.is_finished());
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
        // Take the profile's lease; another runner may hold it (it will release or expire).
        // Another process may hold it: try again a few times a lease, so a dead holder is
        // replaced soon after its lease runs out, and look at the database only now and then.
        let retry = Duration::from_millis((self.lease_ttl_ms / 4).clamp(100, 1000));
        let mut tries = 0u32;
        let lease = loop {
            if *shutdown.borrow() {
                return;
            }
            match svc
                .leases
                .acquire_lease(&profile, self.lease_ttl_ms, svc.now_ms())
                .await
            {
                Ok(Some(lease)) => break lease,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "lease backend unavailable"),
            }
            tokio::time::sleep(retry).await;
            tries += 1;
            if tries.is_multiple_of(10) {
                match svc.db.get_mailing(id).await {
                    Ok(Some(m)) if m.status == MailingStatus::Running => {}
                    _ => return,
                }
            }
        };
        match svc.db.claim_mailing(id, lease.fence).await {
            Ok(()) => {}
            Err(DbError::StaleFence) => {
                tracing::warn!(mailing = id.0, "a newer runner owns this mailing");
                let _ = svc.leases.release_lease(&lease).await;
                return;
            }
            Err(e) => {
                tracing::warn!(mailing = id.0, error = %e, "could not claim mailing");
                let _ = svc.leases.release_lease(&lease).await;
                return;
            }
        }
        tracing::info!(mailing = id.0, profile = %profile, fence = lease.fence, runner = %self.id, "driving mailing");
        let mut renewed_at = svc.now_ms();
        let mut cursor = mailing::Cursor::default();
        // At high rates a millisecond late per send is a visible loss of pace; at low rates it
        // is not worth a busy wait.
        let spin = svc.settings.pacing.profile_rate_per_sec > SPIN_ABOVE_RATE;
        let outcome = 'drive: loop {
            if *shutdown.borrow() {
                break "shutdown";
            }
            if !self.keep_lease(&lease, &mut renewed_at).await {
                break "lease lost";
            }
            match mailing::step(svc, id, &lease, &mut cursor).await {
                Ok(Step::Continue) => tokio::task::yield_now().await,
                Ok(Step::SleepUntil(t)) => {
                    let waited_from = tokio::time::Instant::now();
                    // With the slot already taken the checks were just made: only wait.
                    let held = cursor.holds_slot();
                    let mut vouched = held;
                    loop {
                        let now = svc.now_ms();
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
                                match svc
                                    .leases
                                    .renew_lease(&lease, self.lease_ttl_ms, svc.now_ms())
                                    .await
                                {
                                    Ok(true) => {
                                        renewed_at = svc.now_ms();
                                        cursor.vouch(renewed_at);
                                        vouched = true;
                                    }
                                    _ => break 'drive "lease lost",
                                }
                            }
                            tokio::task::yield_now().await;
                            continue;
                        }
                        if !held && !self.keep_lease(&lease, &mut renewed_at).await {
                            break 'drive "lease lost";
                        }
                        // Until the step is due or the lease wants renewing; a cancel (found
                        // by the supervisor) or the shutdown wakes the driver at once.
                        let renew_at = renewed_at + (self.lease_ttl_ms / 3) as i64;
                        let until = if held {
                            t - SPIN_MS
                        } else {
                            (t - SPIN_MS).min(renew_at)
                        };
                        let nap = Duration::from_millis((until - now).max(1) as u64);
                        tokio::select! {
                            _ = tokio::time::sleep(nap) => {}
                            _ = wake.notified() => break,
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
                Ok(Step::Finished) => break "finished",
                Ok(Step::LostLease) => break "lease lost",
                Err(e) => {
                    tracing::warn!(mailing = id.0, error = %e, "mailing step failed; retrying");
                    // Start again from what is stored: an unfinished write may have left the
                    // remembered rows ahead of the database (a `sending` row found then is
                    // settled like a crash leftover).
                    cursor = mailing::Cursor::default();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        tracing::info!(mailing = id.0, outcome, "driver stopped");
        if let Err(e) = svc.leases.release_lease(&lease).await {
            tracing::warn!(error = %e, "could not release lease");
        }
    }

    /// Drops this process's queue claim of a mailing (none on the embedded state).
    async fn ack(&self, id: MailingId) {
        if let Err(e) = self.queue.ack(id).await {
            tracing::warn!(mailing = id.0, error = %e, "could not ack queue item");
        }
    }

    /// Renews the lease when a third of its time has passed; `false` once it is lost.
    async fn keep_lease(&self, lease: &Lease, renewed_at: &mut i64) -> bool {
        let now = self.svc.now_ms();
        if now - *renewed_at < (self.lease_ttl_ms / 3) as i64 {
            return true;
        }
        match self
            .svc
            .leases
            .renew_lease(lease, self.lease_ttl_ms, now)
            .await
        {
            Ok(true) => {
                *renewed_at = now;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                // Keep going only while the lease cannot have expired yet.
                now - *renewed_at < self.lease_ttl_ms as i64 / 2
            }
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
