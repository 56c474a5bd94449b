//! The server's [`Broadcaster`]: delivers an operator broadcast to every bot user from a tokio
//! task, away from the update that confirmed it.
//!
//! Pacing is the Telegram client's: every send waits for its chat's gate (about one message a
//! second) and the global gate (30 a second), both shared with everything else the bot sends,
//! and a 429 holds the chat back for its `retry_after` before the client repeats the request.
//! A few sends run at once, so one chat that is held back does not stall the others. A chat
//! still refused after that is counted as failed, as is one that blocked the bot. The operator
//! gets "sent N, failed M" at the end. A broadcast lives in memory only: one cut short by a
//! restart is not resumed (the operator sees no report and can send it again).

use crate::db::SqliteDb;
use crate::metrics::{self, BroadcastOutcome};
use crate::telegram::HttpTelegram;
use groupcast_core::model::ids::ChatId;
use groupcast_core::ports::async_trait;
use groupcast_core::ports::DeferError;
use groupcast_core::ports::TelegramApi;
use groupcast_core::ports::{BroadcastJob, Broadcaster};
use groupcast_core::telegram::TelegramError;
use groupcast_core::texts;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Sends in flight at once.
const PARALLEL: usize = 4;
/// How many times a chat still answering 429 after the client's own retries is tried again.
const EXTRA_TRIES: u32 = 2;
/// A `retry_after` longer than this is not waited for: the chat counts as failed.
const MAX_WAIT_SECS: u64 = 300;

pub struct ServerBroadcaster {
    telegram: Arc<HttpTelegram>,
    db: Arc<SqliteDb>,
}

impl ServerBroadcaster {
    pub fn new(telegram: Arc<HttpTelegram>, db: Arc<SqliteDb>) -> Arc<ServerBroadcaster> {
        Arc::new(ServerBroadcaster { telegram, db })
    }

    /// Delivers `job` to every user and reports to the operator; returns (sent, failed).
    pub async fn deliver(&self, job: &BroadcastJob) -> (u64, u64) {
        let users = match self.db.user_ids().await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "broadcast: could not list users");
                Vec::new()
            }
        };
        let gate = Arc::new(Semaphore::new(PARALLEL));
        let mut tasks = tokio::task::JoinSet::new();
        for user in users {
            let permit = Arc::clone(&gate).acquire_owned().await;
            let telegram = Arc::clone(&self.telegram);
            let text = job.text.clone();
            tasks.spawn(async move {
                let ok = send_one(&telegram, ChatId(user.0), &text).await;
                drop(permit);
                ok
            });
        }
        let (mut sent, mut failed) = (0u64, 0u64);
        while let Some(done) = tasks.join_next().await {
            if done.unwrap_or(false) {
                sent += 1;
            } else {
                failed += 1;
            }
        }
        tracing::info!(sent, failed, "broadcast finished");
        let report = texts::broadcast::report(job.lang, sent, failed);
        if let Err(e) = self
            .telegram
            .send_message(job.operator_chat, &report, None)
            .await
        {
            tracing::warn!(error = %e, "broadcast report not delivered");
        }
        (sent, failed)
    }
}

/// One user's copy; `true` once Telegram took it.
async fn send_one(telegram: &HttpTelegram, chat: ChatId, text: &str) -> bool {
    let mut tries = 0;
    loop {
        match telegram.send_message(chat, text, None).await {
            Ok(_) => {
                metrics::global().broadcast_message(BroadcastOutcome::Sent);
                tracing::info!(chat = chat.0, outcome = "sent", "broadcast message");
                return true;
            }
            // The client already held the chat back and repeated; wait out the latest
            // `retry_after` (the chat's gate enforces it too) and try a little more.
            Err(TelegramError::RetryAfter(secs))
                if tries < EXTRA_TRIES && secs <= MAX_WAIT_SECS =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            Err(e) => {
                metrics::global().broadcast_message(BroadcastOutcome::Failed);
                tracing::info!(chat = chat.0, outcome = "failed", error = %e, "broadcast message");
                return false;
            }
        }
    }
}

#[async_trait]
impl Broadcaster for ServerBroadcaster {
    async fn start(&self, job: BroadcastJob) -> Result<(), DeferError> {
        let me = ServerBroadcaster {
            telegram: Arc::clone(&self.telegram),
            db: Arc::clone(&self.db),
        };
        tokio::spawn(async move {
            me.deliver(&job).await;
        });
        Ok(())
    }
}
