//! Incoming Telegram updates. Each is taken for handling with a durable claim (its id a unique
//! row, never a high-water mark, with the update kept beside it) and marked finished once
//! handled, so the seen-record and the handling agree: a crash, a deploy or a shutdown in
//! between leaves the update to be taken again from the database, never dropped as a duplicate
//! of itself.
//!
//! Taken updates go to a per-user worker, so that one user's updates are handled one at a time
//! and in order, while different users are served in parallel and the webhook can answer at
//! once. A cancel ([`bot::is_urgent`]) does not queue: it is carried out the moment it arrives,
//! whatever the user's earlier updates are still doing.

use crate::db::SqliteDb;
use groupcast_core::bot;
use groupcast_core::model::ids::UserId;
use groupcast_core::ports::{DbError, UpdateClaim};
use groupcast_core::services::Services;
use groupcast_core::telegram::Update;
use groupcast_core::Secret;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// A claim this old whose update never finished belongs to a handler that is gone (a process
/// killed mid-update): the update is taken again. Long enough for the slowest handling (an
/// import paging through Wappi, an album of large photos).
pub const STALE_CLAIM_MS: i64 = 10 * 60_000;

/// How many left-over updates one sweep takes.
const TAKE_BACK_BATCH: usize = 100;

/// What binds a stored update payload to its update id, so a payload copied to another row
/// does not decrypt.
fn payload_aad(update_id: i64) -> Vec<u8> {
    format!("groupcast:update:{update_id}").into_bytes()
}

pub struct Dispatcher {
    svc: Services,
    db: Arc<SqliteDb>,
    queues: Mutex<HashMap<UserId, mpsc::UnboundedSender<Update>>>,
    /// Updates taken by this process and not yet finished: waited for, then handed back, at a
    /// shutdown.
    in_hand: Mutex<HashSet<i64>>,
    /// Woken whenever `in_hand` becomes empty.
    idle: Notify,
    /// Set once the shutdown's grace is over: queued updates are left to be handed back.
    closing: AtomicBool,
}

impl Dispatcher {
    pub fn new(svc: Services, db: Arc<SqliteDb>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            svc,
            db,
            queues: Mutex::new(HashMap::new()),
            in_hand: Mutex::new(HashSet::new()),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
        })
    }

    /// Takes the update for handling; `Ok(false)` when it was handled already or is in a
    /// handler's hands (a redelivery), and it is dropped.
    pub async fn accept(self: &Arc<Self>, update: Update) -> Result<bool, DbError> {
        // Encrypted at rest: the update may be a message holding a Wappi token being
        // registered, which must never sit in the database in clear.
        let json = serde_json::to_string(&update)
            .map_err(|e| DbError::Backend(format!("update {}: {e}", update.update_id)))?;
        let payload = self.svc.cipher.encrypt(
            &Secret::new(json),
            &payload_aad(update.update_id),
            self.svc.nonce(),
        );
        let now = self.svc.now_ms();
        let claim = self
            .svc
            .db
            .claim_update(update.update_id, &payload, now, now - STALE_CLAIM_MS)
            .await?;
        if claim != UpdateClaim::Taken {
            tracing::debug!(
                update_id = update.update_id,
                ?claim,
                "repeated update ignored"
            );
            return Ok(false);
        }
        crate::metrics::global().update_received();
        self.dispatch(update);
        Ok(true)
    }

    /// Takes and dispatches the updates that were taken but never finished with a claim older
    /// than `stale_before` (a killed process's, or handed back at a shutdown), oldest first.
    /// Returns how many.
    pub async fn take_back(self: &Arc<Self>, stale_before: i64) -> Result<usize, DbError> {
        let now = self.svc.now_ms();
        let left = self
            .db
            .take_unfinished_updates(stale_before, now, TAKE_BACK_BATCH)
            .await?;
        let mut taken = 0;
        for (id, payload) in left {
            if self.in_hand.lock().expect("in_hand lock").contains(&id) {
                continue; // our own, still being handled
            }
            let json = self
                .svc
                .cipher
                .decrypt(&payload, &payload_aad(id))
                .map_err(|e| e.to_string());
            match json
                .and_then(|j| serde_json::from_str::<Update>(j.expose()).map_err(|e| e.to_string()))
            {
                Ok(update) => {
                    self.dispatch(update);
                    taken += 1;
                }
                Err(e) => {
                    tracing::warn!(update_id = id, error = %e, "left-over update unreadable, dropped");
                    self.svc.db.finish_update(id, now).await?;
                }
            }
        }
        if taken > 0 {
            tracing::info!(taken, "took back updates left unfinished");
        }
        Ok(taken)
    }

    /// At a shutdown: lets the updates in hand finish for up to `grace`, then stops taking
    /// queued ones and hands every unfinished one back, for the next process to take.
    pub async fn shut_down(&self, grace: Duration) {
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.in_hand.lock().expect("in_hand lock").is_empty() {
                    return;
                }
                idle.await;
            }
        };
        let finished = tokio::time::timeout(grace, drained).await.is_ok();
        self.closing.store(true, Ordering::SeqCst);
        if finished {
            return;
        }
        let left: Vec<i64> = self
            .in_hand
            .lock()
            .expect("in_hand lock")
            .iter()
            .copied()
            .collect();
        let n = left.len();
        match self.db.release_updates(left).await {
            Ok(()) => tracing::info!(handed_back = n, "unfinished updates handed back"),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand updates back; they are taken again once stale")
            }
        }
    }

    fn dispatch(self: &Arc<Self>, update: Update) {
        self.in_hand
            .lock()
            .expect("in_hand lock")
            .insert(update.update_id);
        if bot::is_urgent(&update) {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.handle(update).await });
            return;
        }
        let key = bot::sender(&update).unwrap_or(UserId(0));
        let mut queues = self.queues.lock().expect("queues lock");
        let update = match queues.get(&key) {
            Some(tx) => match tx.send(update) {
                Ok(()) => return,
                Err(mpsc::error::SendError(u)) => u,
            },
            None => update,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(update).expect("receiver alive");
        queues.insert(key, tx);
        let me = Arc::clone(self);
        tokio::spawn(async move { me.work(key, rx).await });
    }

    async fn work(self: Arc<Self>, key: UserId, mut rx: mpsc::UnboundedReceiver<Update>) {
        loop {
            let update = match rx.try_recv() {
                Ok(u) => u,
                Err(_) => {
                    // Leave only when nothing is queued, under the lock `dispatch` sends under,
                    // so no update can slip in between.
                    let mut queues = self.queues.lock().expect("queues lock");
                    match rx.try_recv() {
                        Ok(u) => u,
                        Err(_) => {
                            queues.remove(&key);
                            return;
                        }
                    }
                }
            };
            self.handle(update).await;
        }
    }

    /// Handles one taken update and records it finished, whatever the outcome (an update that
    /// fails is told to the user, not retried forever).
    async fn handle(&self, update: Update) {
        if self.closing.load(Ordering::SeqCst) {
            return; // handed back at the shutdown
        }
        let id = update.update_id;
        if let Err(e) = bot::handle_update(&self.svc, &update).await {
            tracing::warn!(update_id = id, error = %e, "update handling failed");
        }
        if let Err(e) = self.svc.db.finish_update(id, self.svc.now_ms()).await {
            tracing::warn!(update_id = id, error = %e, "could not record the update as handled; it may be handled again");
        }
        let mut in_hand = self.in_hand.lock().expect("in_hand lock");
        in_hand.remove(&id);
        if in_hand.is_empty() {
            self.idle.notify_waiters();
        }
    }
}
