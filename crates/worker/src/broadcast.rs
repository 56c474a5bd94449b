//! The operator's `/broadcast` on the Worker: [`WorkerBroadcaster`] (the core's `Broadcaster`
//! port) and [`BroadcastRunner`], the Durable Object that delivers one broadcast.
//!
//! A fetch cannot keep working after it answers, so ✅ hands the job to a fresh
//! `BroadcastRunner` (`BROADCAST.idFromName(<random job id>)`) and awaits its `POST /start`,
//! which stores the job and the list of recipients (every user in D1) and sets its alarm.
//! Each alarm then sends a batch of at most [`PER_ALARM`] messages, one every [`GAP_MS`]
//! (25 a second overall, under Telegram's 30), and sets the next alarm at the next slot.
//!
//! - **Per chat:** every user gets one message, so the 1-a-second-per-chat limit only matters
//!   for a repeat after a 429: a `retry_after` (up to [`MAX_WAIT_SECS`]) puts the chat on a
//!   hold list, and the others go on meanwhile; the chat is tried again once its time has
//!   passed ([`EXTRA_TRIES`] times at most), then counts as failed.
//! - **No double:** the cursor is stored before each send, so a retried or evicted alarm
//!   carries on after the last chat it attempted (a crash in the middle of one send can lose
//!   that one message; it is never sent twice).
//! - **The end:** "sent N, failed M" goes to the operator (`texts::broadcast::report`), once.

use crate::counts::{self, Class, Invocation};
use crate::env::{self, env_vars};
use crate::settings::WorkerSettings;
use crate::store::Store;
use crate::telegram::FetchTelegram;
use groupcast_core::model::ids::ChatId;
use groupcast_core::model::lang::Lang;
use groupcast_core::ports::DeferError;
use groupcast_core::ports::{async_trait, TelegramApi};
use groupcast_core::ports::{BroadcastJob, Broadcaster};
use groupcast_core::telegram::TelegramError;
use groupcast_core::texts::{self};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result};

/// Time between two broadcast sends: 25 a second, below Telegram's 30 with room for the bot's
/// other messages.
pub const GAP_MS: i64 = 40;
/// Sends per alarm (about a second of work per invocation).
const PER_ALARM: usize = 25;
/// A chat answering 429 is tried again this many times (each after its `retry_after`).
const EXTRA_TRIES: u32 = 3;
/// A `retry_after` longer than this is not waited for: the chat counts as failed.
const MAX_WAIT_SECS: u64 = 300;

const KEY_JOB: &str = "job";
const KEY_USERS: &str = "users";
const KEY_CURSOR: &str = "cursor";
const KEY_HELD: &str = "held";
const KEY_COUNTS: &str = "counts";
const KEY_NEXT_AT: &str = "next_at";
const KEY_DONE: &str = "done";

/// The job as stored and as sent to `POST /start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredJob {
    operator_chat: i64,
    lang: Lang,
    text: String,
}

/// A chat held back by a long 429: retried at `due_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    chat: i64,
    due_ms: i64,
    tries: u32,
}

/// Sent and failed so far.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    sent: u64,
    failed: u64,
}

/// The `Broadcaster` port: starts a [`BroadcastRunner`] for the job and returns once it has
/// stored the job.
pub struct WorkerBroadcaster {
    env: Env,
}

impl WorkerBroadcaster {
    pub fn new(env: Env) -> WorkerBroadcaster {
        WorkerBroadcaster { env }
    }
}

#[async_trait(?Send)]
impl Broadcaster for WorkerBroadcaster {
    async fn start(&self, job: BroadcastJob) -> std::result::Result<(), DeferError> {
        let err = |e: worker::Error| DeferError(format!("broadcast runner: {e}"));
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(|e| DeferError(e.to_string()))?;
        let name: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let stub = env::broadcast_runner(&self.env, &name).map_err(err)?;
        let body = serde_json::to_string(&StoredJob {
            operator_chat: job.operator_chat.0,
            lang: job.lang,
            text: job.text,
        })
        .map_err(|e| DeferError(e.to_string()))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
        let req = Request::new_with_init("https://broadcast/start", &init).map_err(err)?;
        let resp = env::call_object(&stub, req).await.map_err(err)?;
        if resp.status_code() == 200 {
            Ok(())
        } else {
            Err(DeferError(format!(
                "broadcast runner answered {}",
                resp.status_code()
            )))
        }
    }
}

/// One broadcast's delivery (see the module docs).
#[durable_object]
pub struct BroadcastRunner {
    state: worker::State,
    env: Env,
}

impl DurableObject for BroadcastRunner {
    fn new(state: worker::State, env: Env) -> Self {
        BroadcastRunner { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        counts::invocation(Invocation::DoRequest(Class::Broadcast));
        let path = req.path();
        match (req.method(), path.as_str()) {
            (Method::Post, "/start") => {
                let job: StoredJob = req.json().await?;
                self.start(job).await?;
                Response::ok("started")
            }
            (Method::Get, "/status") => {
                let s = self.storage();
                let counts: Counts = s.get(KEY_COUNTS).await?.unwrap_or_default();
                Response::from_json(&serde_json::json!({
                    "cursor": s.get::<usize>(KEY_CURSOR).await?,
                    "sent": counts.sent,
                    "failed": counts.failed,
                    "done": s.get::<bool>(KEY_DONE).await?.unwrap_or(false),
                }))
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        counts::invocation(Invocation::DoAlarm(Class::Broadcast));
        if let Err(e) = self.deliver_some().await {
            // Thrown, so workerd retries the alarm; the stored cursor prevents doubles.
            worker::console_error!("broadcast: {e}");
            return Err(e);
        }
        Response::ok("ok")
    }
}

impl BroadcastRunner {
    fn storage(&self) -> Store {
        Store::new(self.state.storage())
    }

    /// Stores the job and its recipients and sets the alarm; a repeat does nothing.
    async fn start(&self, job: StoredJob) -> Result<()> {
        let s = self.storage();
        if s.get::<StoredJob>(KEY_JOB).await?.is_some() {
            return Ok(());
        }
        let users = user_ids(&self.env).await?;
        worker::console_log!("broadcast: {} recipients", users.len());
        s.put(KEY_USERS, &users).await?;
        s.put(KEY_CURSOR, 0usize).await?;
        s.put(KEY_HELD, Vec::<Held>::new()).await?;
        s.put(KEY_COUNTS, Counts::default()).await?;
        s.put(KEY_NEXT_AT, 0i64).await?;
        s.put(KEY_JOB, &job).await?;
        s.set_alarm(0i64).await
    }

    /// One alarm's batch: up to [`PER_ALARM`] sends at the pace, then the next alarm or the
    /// report.
    async fn deliver_some(&self) -> Result<()> {
        let s = self.storage();
        let Some(job) = s.get::<StoredJob>(KEY_JOB).await? else {
            return Ok(());
        };
        if s.get::<bool>(KEY_DONE).await?.unwrap_or(false) {
            return Ok(());
        }
        let settings = WorkerSettings::load(&env_vars(&self.env))
            .map_err(|e| worker::Error::RustError(format!("configuration: {e}")))?;
        let client =
            || FetchTelegram::new(&settings.telegram_api_url, settings.telegram_token.clone());
        let telegram = client().without_429_waits();
        let users: Vec<i64> = s.get(KEY_USERS).await?.unwrap_or_default();
        let mut cursor: usize = s.get(KEY_CURSOR).await?.unwrap_or(0);
        let mut held: Vec<Held> = s.get(KEY_HELD).await?.unwrap_or_default();
        let mut counts: Counts = s.get(KEY_COUNTS).await?.unwrap_or_default();
        let mut next_at: i64 = s.get(KEY_NEXT_AT).await?.unwrap_or(0);
        for _ in 0..PER_ALARM {
            let now = now_ms();
            // A held chat whose time has come goes first, then the next user in the list.
            let (chat, tries) = if let Some(i) = held.iter().position(|h| h.due_ms <= now) {
                let h = held.remove(i);
                (h.chat, h.tries)
            } else if cursor < users.len() {
                cursor += 1;
                (users[cursor - 1], 0)
            } else {
                break;
            };
            // Recorded before the send: a retried alarm never sends to this chat again.
            s.put(KEY_CURSOR, cursor).await?;
            s.put(KEY_HELD, &held).await?;
            if next_at > now {
                worker::Delay::from(Duration::from_millis((next_at - now) as u64)).await;
            }
            let outcome = telegram.send_message(ChatId(chat), &job.text, None).await;
            next_at = now_ms() + GAP_MS;
            match outcome {
                Ok(_) => counts.sent += 1,
                Err(TelegramError::RetryAfter(secs))
                    if tries < EXTRA_TRIES && secs <= MAX_WAIT_SECS =>
                {
                    held.push(Held {
                        chat,
                        due_ms: now_ms() + secs.max(1) as i64 * 1000,
                        tries: tries + 1,
                    });
                }
                Err(e) => {
                    worker::console_log!("broadcast: chat {chat} failed: {e}");
                    counts.failed += 1;
                }
            }
            s.put(KEY_HELD, &held).await?;
            s.put(KEY_COUNTS, counts).await?;
            s.put(KEY_NEXT_AT, next_at).await?;
        }
        if cursor < users.len() {
            return self.alarm_at(next_at).await;
        }
        if let Some(due) = held.iter().map(|h| h.due_ms).min() {
            return self.alarm_at(due.max(next_at)).await;
        }
        // The report may wait out a 429 like any other message of the bot.
        self.report(&client(), &job, counts).await
    }

    /// "sent N, failed M" to the operator, once.
    async fn report(&self, telegram: &FetchTelegram, job: &StoredJob, c: Counts) -> Result<()> {
        self.storage().put(KEY_DONE, true).await?;
        worker::console_log!("broadcast finished: sent {}, failed {}", c.sent, c.failed);
        let text = texts::broadcast::report(job.lang, c.sent, c.failed);
        if let Err(e) = telegram
            .send_message(ChatId(job.operator_chat), &text, None)
            .await
        {
            worker::console_warn!("broadcast report not delivered: {e}");
        }
        Ok(())
    }

    /// Sets the alarm to this unix-ms time (now if it is past).
    async fn alarm_at(&self, at_ms: i64) -> Result<()> {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
        self.storage()
            .set_alarm(worker::ScheduledTime::new(date))
            .await
    }
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// Every user of the bot (the recipients), in id order.
async fn user_ids(env: &Env) -> Result<Vec<i64>> {
    #[derive(Deserialize)]
    struct Row {
        id: i64,
    }
    let result = env::d1(env)?
        .prepare("SELECT id FROM users ORDER BY id")
        .all()
        .await?;
    crate::d1::count(std::slice::from_ref(&result));
    if let Some(e) = result.error() {
        return Err(worker::Error::RustError(format!("listing users: {e}")));
    }
    Ok(result.results::<Row>()?.into_iter().map(|r| r.id).collect())
}
