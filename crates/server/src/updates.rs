//! Incoming Telegram updates: deduplicated by `update_id` (a unique row), then handed to a
//! per-user worker so that one user's updates are handled one at a time and in order, while
//! different users are served in parallel and the webhook can answer at once.

use groupcast_core::bot;
use groupcast_core::model::ids::UserId;
use groupcast_core::services::Services;
use groupcast_core::telegram::Update;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub struct Dispatcher {
    svc: Services,
    queues: Mutex<HashMap<UserId, mpsc::UnboundedSender<Update>>>,
}

impl Dispatcher {
    pub fn new(svc: Services) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            svc,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Records the update id; `Ok(false)` for a repeat, which is dropped.
    pub async fn accept(
        self: &Arc<Self>,
        update: Update,
    ) -> Result<bool, groupcast_core::ports::DbError> {
        if !self
            .svc
            .db
            .first_seen(update.update_id, self.svc.now_ms())
            .await?
        {
            tracing::debug!(update_id = update.update_id, "duplicate update ignored");
            return Ok(false);
        }
        crate::metrics::global().update_received();
        self.dispatch(update);
        Ok(true)
    }

    fn dispatch(self: &Arc<Self>, update: Update) {
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
            if let Err(e) = bot::handle_update(&self.svc, &update).await {
                tracing::warn!(update_id = update.update_id, error = %e, "update handling failed");
            }
        }
    }
}
