//! The Worker's entry points and the adapters they share: building [`Services`] from the
//! environment, the `State` port of the stateless side ([`EdgeState`]: intake through the
//! Queue, cancel through the runner), the clock and the random source, and the handlers of
//! `fetch`, `queue` and `scheduled`.

use crate::d1::D1Db;
use crate::settings::{SettingError, WorkerSettings};
use crate::telegram::FetchTelegram;
use crate::wappi::FetchWappi;
use crate::wire::{MailingTask, QueueTask, RunnerCommand};
use groupcast_core::crypto::TokenCipher;
use groupcast_core::ids::{GroupJid, MailingId, ProfileId};
use groupcast_core::ledger::MailingStatus;
use groupcast_core::long_work::{DeferError, Deferrer, LongJob};
use groupcast_core::ports::{
    async_trait, Clock, Entropy, Lease, MailingStore, Pace, PacingConfig, State, StateError,
    WappiApi,
};
use groupcast_core::services::Services;
use groupcast_core::telegram::Update;
use groupcast_core::wappi::{ChatMessage, Dialog, ProfileStatus, Sent, WappiCreds, WappiError};
use groupcast_core::{bot, payments};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use worker::{Env, Headers, MessageExt, Method, Request, RequestInit, Response, Storage};

/// Updates are small; anything bigger is refused before parsing.
const MAX_UPDATE_BYTES: usize = 1 << 20;
/// Update ids older than this are forgotten by the Cron job (Telegram redelivers for far less).
const KEEP_UPDATES_MS: i64 = 7 * 86_400_000;

/// `Date.now()`.
pub struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> i64 {
        worker::Date::now().as_millis() as i64
    }
}

/// `crypto.getRandomValues`.
pub struct JsEntropy;

impl Entropy for JsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("crypto.getRandomValues is available in workerd");
    }
}

/// Reads a var or a secret as text.
pub fn env_vars(env: &Env) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        env.var(name)
            .map(|v| v.to_string())
            .or_else(|_| env.secret(name).map(|v| v.to_string()))
            .ok()
    }
}

/// Builds the ports: D1, the given `State`, Telegram and Wappi over `fetch`.
pub fn services(
    env: &Env,
    settings: &WorkerSettings,
    state: Arc<dyn State>,
    hooks: Option<Hooks>,
) -> Result<Services, SettingError> {
    let cipher = TokenCipher::from_base64_key(settings.encryption_key.expose()).map_err(|e| {
        SettingError {
            var: "ENCRYPTION_KEY",
            problem: e.to_string(),
        }
    })?;
    let d1 = env.d1("DB").map_err(|_| SettingError {
        var: "DB",
        problem: "the D1 binding is missing from wrangler.toml".into(),
    })?;
    let wappi = FetchWappi::new(
        &settings.wappi_api_url,
        Duration::from_millis(settings.wappi_timeout_ms),
    );
    let svc = Services {
        db: Arc::new(D1Db::new(d1, hooks.clone())),
        state,
        telegram: Arc::new(FetchTelegram::new(
            &settings.telegram_api_url,
            settings.telegram_token.clone(),
        )),
        wappi: match hooks {
            Some(h) if h.crash_after.is_some() => Arc::new(HookedWappi {
                inner: wappi,
                hooks: h,
            }),
            _ => Arc::new(wappi),
        },
        clock: Arc::new(JsClock),
        entropy: Arc::new(JsEntropy),
        cipher: Arc::new(cipher),
        settings: Arc::new(settings.core.clone()),
        image_work: Arc::new(groupcast_core::ports::InlineImageWork),
        broadcaster: Some(Arc::new(crate::broadcast::WorkerBroadcaster::new(
            env.clone(),
        ))),
        // 🌅 goes to the queue; its consumer builds the collage.
        deferrer: Some(Arc::new(QueueDeferrer { env: env.clone() })),
    };
    Ok(svc)
}

// ---------------------------------------------------------------------------------------------
// Test hooks (only with GROUPCAST_TEST_HOOKS=1)

/// The "crash after a send" fault: after the runner's N-th successful Wappi send, the next
/// ledger write fails and the alarm throws, as if the isolate died in between.
#[derive(Clone)]
pub struct Hooks {
    crash_after: Option<u32>,
    storage: Rc<Storage>,
    pending: Rc<Cell<bool>>,
}

impl Hooks {
    pub fn new(settings: &WorkerSettings, storage: Rc<Storage>) -> Hooks {
        Hooks {
            crash_after: settings.test_hooks.crash_after_send,
            storage,
            pending: Rc::new(Cell::new(false)),
        }
    }

    /// Counts a successful send (in the runner's storage) and arms the crash at the N-th.
    async fn after_send(&self) {
        let Some(n) = self.crash_after else { return };
        let crashed: Option<bool> = self.storage.get("test_crashed").await.ok().flatten();
        if crashed == Some(true) {
            return;
        }
        let count = self
            .storage
            .get::<u32>("test_sends")
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
            + 1;
        let _ = self.storage.put("test_sends", count).await;
        if count >= n {
            let _ = self.storage.put("test_crashed", true).await;
            self.pending.set(true);
        }
    }

    /// Whether a crash is armed (the ledger refuses writes until it is taken).
    pub fn crash_pending(&self) -> bool {
        self.pending.get()
    }

    /// Takes the armed crash.
    pub fn take_crash(&self) -> bool {
        self.pending.replace(false)
    }
}

/// Wappi with the crash hook counting successful sends.
struct HookedWappi {
    inner: FetchWappi,
    hooks: Hooks,
}

#[async_trait(?Send)]
impl WappiApi for HookedWappi {
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
        self.inner.get_status(creds).await
    }

    async fn send_text(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        body: &str,
    ) -> Result<Sent, WappiError> {
        let r = self.inner.send_text(creds, to, body).await;
        if r.is_ok() {
            self.hooks.after_send().await;
        }
        r
    }

    async fn send_image(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        b64: &str,
        caption: Option<&str>,
    ) -> Result<Sent, WappiError> {
        let r = self.inner.send_image(creds, to, b64, caption).await;
        if r.is_ok() {
            self.hooks.after_send().await;
        }
        r
    }

    async fn list_chats(
        &self,
        creds: &WappiCreds,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Dialog>, WappiError> {
        self.inner.list_chats(creds, limit, offset).await
    }

    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, WappiError> {
        self.inner.chat_messages(creds, chat, limit).await
    }
}

// ---------------------------------------------------------------------------------------------
// The State port outside the runner

/// What the webhook and the Cron job need of the `State` port: the intake queue is the
/// Cloudflare Queue (the send is awaited, never left to `waitUntil`), cancel goes to the
/// profile's runner at once. Pacing and leases belong to the runner alone.
pub struct EdgeState {
    env: Env,
}

fn not_here(what: &str) -> StateError {
    StateError::Backend(format!("{what} is done by the profile runner only"))
}

#[async_trait(?Send)]
impl State for EdgeState {
    async fn acquire_lease(
        &self,
        _: &ProfileId,
        _: u64,
        _: i64,
    ) -> Result<Option<Lease>, StateError> {
        Err(not_here("leasing"))
    }

    async fn renew_lease(&self, _: &Lease, _: u64, _: i64) -> Result<bool, StateError> {
        Err(not_here("leasing"))
    }

    async fn release_lease(&self, _: &Lease) -> Result<(), StateError> {
        Err(not_here("leasing"))
    }

    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        let db = D1Db::new(self.env.d1("DB").map_err(backend)?, None);
        let m = db
            .get_mailing(mailing)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))?
            .ok_or_else(|| StateError::Backend("cancel: no such mailing".into()))?;
        runner_call(&self.env, &m.profile_id, "cancel", mailing).await
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        let db = D1Db::new(self.env.d1("DB").map_err(backend)?, None);
        Ok(db
            .get_mailing(mailing)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))?
            .is_some_and(|m| m.cancel_requested))
    }

    async fn pace(
        &self,
        _: &ProfileId,
        _: &GroupJid,
        _: &PacingConfig,
        _: i64,
    ) -> Result<Pace, StateError> {
        Err(not_here("pacing"))
    }

    async fn pace_peek(
        &self,
        _: &ProfileId,
        _: &GroupJid,
        _: &PacingConfig,
        _: i64,
    ) -> Result<Pace, StateError> {
        Err(not_here("pacing"))
    }

    async fn set_backoff(&self, _: &ProfileId, _: i64) -> Result<(), StateError> {
        Err(not_here("pacing"))
    }

    async fn backoff_until(&self, _: &ProfileId) -> Result<Option<i64>, StateError> {
        Err(not_here("pacing"))
    }

    async fn heartbeat(&self, _: &str, _: i64) -> Result<(), StateError> {
        Ok(())
    }

    /// The runners' sign of life: the newest progress write of a running mailing.
    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError> {
        let db = D1Db::new(self.env.d1("DB").map_err(backend)?, None);
        db.newest_progress()
            .await
            .map_err(|e| StateError::Backend(e.to_string()))
    }

    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        self.env
            .queue("MAILING_QUEUE")
            .map_err(backend)?
            .send(MailingTask {
                mailing_id: mailing.0,
            })
            .await
            .map_err(backend)
    }

    async fn dequeue(&self) -> Result<Option<MailingId>, StateError> {
        Ok(None)
    }
}

/// Long work goes on `MAILING_QUEUE` (the send is awaited before the webhook answers); the
/// consumer runs it.
pub struct QueueDeferrer {
    env: Env,
}

#[async_trait(?Send)]
impl Deferrer for QueueDeferrer {
    async fn defer(&self, job: LongJob) -> Result<(), DeferError> {
        let task = match job {
            LongJob::Collage(collage) => QueueTask::Collage { collage },
        };
        let queue = self
            .env
            .queue("MAILING_QUEUE")
            .map_err(|e| DeferError(e.to_string()))?;
        queue
            .send(task)
            .await
            .map_err(|e| DeferError(e.to_string()))
    }
}

fn backend(e: worker::Error) -> StateError {
    StateError::Backend(e.to_string())
}

/// `POST https://runner/{what}` `{"mailing_id"}` to the profile's runner.
async fn runner_call(
    env: &Env,
    profile: &ProfileId,
    what: &str,
    mailing: MailingId,
) -> Result<(), StateError> {
    let stub = env
        .durable_object("RUNNER")
        .and_then(|ns| ns.id_from_name(profile.as_str())?.get_stub())
        .map_err(backend)?;
    let body = serde_json::to_string(&RunnerCommand {
        mailing_id: mailing.0,
    })
    .map_err(|e| StateError::Backend(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let req = Request::new_with_init(&format!("https://runner/{what}"), &init).map_err(backend)?;
    let resp = stub.fetch_with_request(req).await.map_err(backend)?;
    if resp.status_code() == 200 {
        Ok(())
    } else {
        Err(StateError::Backend(format!(
            "runner answered {} to {what}",
            resp.status_code()
        )))
    }
}

/// Hands a running mailing to its profile's runner; a mailing that is not running is done.
async fn poke(env: &Env, db: &D1Db, id: MailingId) -> Result<(), StateError> {
    let Some(m) = db
        .get_mailing(id)
        .await
        .map_err(|e| StateError::Backend(e.to_string()))?
    else {
        return Ok(());
    };
    if m.status != MailingStatus::Running {
        return Ok(());
    }
    runner_call(env, &m.profile_id, "start", id).await
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// The settings and services of a stateless invocation.
fn edge(env: &Env) -> Result<(WorkerSettings, Services), SettingError> {
    let settings = WorkerSettings::load(&env_vars(env))?;
    let state = Arc::new(EdgeState { env: env.clone() });
    let svc = services(env, &settings, state, None)?;
    Ok((settings, svc))
}

fn text(status: u16, body: &str) -> worker::Result<Response> {
    Ok(Response::ok(body)?.with_status(status))
}

pub async fn fetch(mut req: Request, env: Env) -> worker::Result<Response> {
    let path = req.path();
    let method = req.method();
    let (settings, svc) = match edge(&env) {
        Ok(x) => x,
        Err(e) => {
            worker::console_error!("configuration: {e}");
            return text(500, &format!("configuration: {e}"));
        }
    };
    match (method, path.as_str()) {
        (Method::Post, "/telegram/webhook") => webhook(&mut req, &settings, &svc).await,
        (Method::Get | Method::Post, "/robokassa/result") => {
            robokassa_result(&mut req, &settings, &svc).await
        }
        (Method::Get | Method::Post, "/robokassa/success") => {
            landing(&mut req, &settings, true).await
        }
        (Method::Get | Method::Post, "/robokassa/fail") => {
            landing(&mut req, &settings, false).await
        }
        (Method::Get, "/healthz") => healthz(&env, &svc).await,
        #[cfg(feature = "contract")]
        (Method::Post, "/__test/db-contract") if settings.test_hooks.enabled => {
            let db = D1Db::new(env.d1("DB")?, None);
            let tag = format!("w{}", svc.now_ms());
            groupcast_core::testing::db_contract_suite(&db, &tag).await;
            text(200, "db contract passed")
        }
        (Method::Post, "/__test/queue") if settings.test_hooks.enabled => {
            test_queue(&mut req, &settings, &env).await
        }
        (Method::Post, "/__test/collage") if settings.test_hooks.enabled => {
            crate::test_hooks::collage(&mut req, &settings).await
        }
        _ => text(404, "not found"),
    }
}

async fn webhook(
    req: &mut Request,
    settings: &WorkerSettings,
    svc: &Services,
) -> worker::Result<Response> {
    if !has_webhook_secret(req, settings)? {
        worker::console_warn!("webhook call with a missing or wrong secret header");
        return text(401, "unauthorized");
    }
    let body = req.bytes().await?;
    if body.len() > MAX_UPDATE_BYTES {
        return text(413, "too large");
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            worker::console_warn!("webhook body is not an update: {e}");
            return text(400, "bad update");
        }
    };
    match svc.db.first_seen(update.update_id, svc.now_ms()).await {
        Ok(true) => {}
        Ok(false) => return text(200, "duplicate"),
        Err(e) => {
            // Not recorded: let Telegram deliver it again.
            worker::console_error!("could not record update: {e}");
            return text(503, "storage unavailable");
        }
    }
    if let Err(e) = bot::handle_update(svc, &update).await {
        worker::console_warn!("update {} handling failed: {e}", update.update_id);
    }
    text(200, "ok")
}

/// Whether the request carries Telegram's secret header with the configured webhook secret
/// (compared in constant time).
fn has_webhook_secret(req: &Request, settings: &WorkerSettings) -> worker::Result<bool> {
    let got = req
        .headers()
        .get("x-telegram-bot-api-secret-token")?
        .unwrap_or_default();
    Ok(groupcast_core::secret::secret_matches(
        settings.webhook_secret.expose().as_bytes(),
        got.as_bytes(),
    ))
}

/// Test hook (`GROUPCAST_TEST_HOOKS=1` only, and the webhook secret header): puts a message
/// (`{"mailing_id"}` or `{"collage"}`) on `MAILING_QUEUE` as is, so a test can deliver the
/// same task twice.
async fn test_queue(
    req: &mut Request,
    settings: &WorkerSettings,
    env: &Env,
) -> worker::Result<Response> {
    if !has_webhook_secret(req, settings)? {
        return text(401, "unauthorized");
    }
    let task: QueueTask = req.json().await?;
    env.queue("MAILING_QUEUE")?.send(task).await?;
    text(200, "queued")
}

/// The pairs of a Robokassa call: the query string, then a form body.
async fn robokassa_params(req: &mut Request) -> worker::Result<Vec<(String, String)>> {
    let url = req.url()?;
    let mut pairs = payments::form_pairs(url.query().unwrap_or(""));
    if req.method() == Method::Post {
        let body = req.text().await?;
        pairs.extend(payments::form_pairs(&body));
    }
    Ok(pairs)
}

async fn robokassa_result(
    req: &mut Request,
    settings: &WorkerSettings,
    svc: &Services,
) -> worker::Result<Response> {
    let allowed = &settings.robokassa_allowed_ips;
    if !allowed.is_empty() {
        let peer = req
            .headers()
            .get("cf-connecting-ip")?
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok());
        if !peer.is_some_and(|ip| allowed.contains(&ip)) {
            worker::console_warn!(
                "robokassa notification from an address not in ROBOKASSA_ALLOWED_IPS"
            );
            return text(403, "forbidden");
        }
    }
    let pairs = robokassa_params(req).await?;
    let reply = payments::on_result(svc, &pairs).await;
    let headers = Headers::new();
    headers.set("content-type", "text/plain; charset=utf-8")?;
    Ok(Response::ok(reply.body)?
        .with_status(reply.status)
        .with_headers(headers))
}

async fn landing(
    req: &mut Request,
    settings: &WorkerSettings,
    success: bool,
) -> worker::Result<Response> {
    let pairs = robokassa_params(req).await?;
    let bot_url = bot_link(settings).await;
    Response::from_html(payments::landing_page_for(
        &pairs,
        success,
        bot_url.as_deref(),
    ))
}

/// `https://t.me/<bot>` from getMe, if Telegram answers.
async fn bot_link(settings: &WorkerSettings) -> Option<String> {
    let me = FetchTelegram::new(&settings.telegram_api_url, settings.telegram_token.clone())
        .get_me()
        .await
        .ok()?;
    me.get("username")
        .and_then(|u| u.as_str())
        .map(|u| format!("https://t.me/{u}"))
}

async fn healthz(env: &Env, svc: &Services) -> worker::Result<Response> {
    let db = D1Db::new(env.d1("DB")?, None);
    let storage = db.ping().await.is_ok();
    let now = svc.now_ms();
    let heartbeat = svc.state.last_heartbeat().await;
    let state_ok = heartbeat.is_ok();
    let age = heartbeat
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map(|t| (now - t) as f64 / 1000.0);
    let ok = storage && state_ok;
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "storage": storage,
        "state": state_ok,
        "state_backend": "durable-objects",
        "runner_heartbeat_age_secs": age,
        "mode": "webhook",
        "version": env!("CARGO_PKG_VERSION"),
    });
    Ok(Response::from_json(&body)?.with_status(if ok { 200 } else { 503 }))
}

/// The queue consumer, acking message by message: a `{"mailing_id"}` pokes that mailing's
/// runner; a `{"collage"}` builds and previews the collage (the core's `run_collage_job`,
/// which does nothing for a job already done). A failure is retried on that message only.
pub async fn queue(batch: worker::MessageBatch<serde_json::Value>, env: Env) -> worker::Result<()> {
    let db = D1Db::new(env.d1("DB")?, None);
    for msg in batch.messages()? {
        let task: QueueTask = match serde_json::from_value(msg.body().clone()) {
            Ok(t) => t,
            Err(e) => {
                worker::console_error!("queue: dropping a message of unknown shape: {e}");
                msg.ack();
                continue;
            }
        };
        let done = match &task {
            QueueTask::Mailing(m) => poke(&env, &db, MailingId(m.mailing_id))
                .await
                .map_err(|e| format!("mailing {}: {e}", m.mailing_id)),
            QueueTask::Collage { collage } => match edge(&env) {
                Ok((_, svc)) => match bot::run_collage_job(&svc, collage).await {
                    Ok(outcome) => {
                        worker::console_log!(
                            "queue: collage job of user {}: {outcome:?}",
                            collage.user_id
                        );
                        Ok(())
                    }
                    Err(e) => Err(format!("collage of user {}: {e}", collage.user_id)),
                },
                Err(e) => Err(format!("configuration: {e}")),
            },
        };
        match done {
            Ok(()) => msg.ack(),
            Err(e) => {
                worker::console_error!("queue: {e}; retrying");
                msg.retry();
            }
        }
    }
    Ok(())
}

/// The Cron job: subscription reminders, forgetting old update ids, and recovery: every
/// running mailing is handed to its runner again (a runner already driving it only checks
/// that its alarm is set).
pub async fn scheduled(env: Env) {
    let (_, svc) = match edge(&env) {
        Ok(x) => x,
        Err(e) => {
            worker::console_error!("configuration: {e}");
            return;
        }
    };
    match payments::send_due_reminders(&svc).await {
        Ok(n) if n > 0 => worker::console_log!("cron: {n} subscription reminders sent"),
        Ok(_) => {}
        Err(e) => worker::console_error!("cron: reminders failed: {e}"),
    }
    let Ok(d1) = env.d1("DB") else { return };
    let db = D1Db::new(d1, None);
    if let Err(e) = db.prune_updates(svc.now_ms() - KEEP_UPDATES_MS).await {
        worker::console_error!("cron: pruning update ids failed: {e}");
    }
    match svc.db.running_mailings().await {
        Ok(list) => {
            for m in list {
                if let Err(e) = poke(&env, &db, m.id).await {
                    worker::console_error!("cron: recovery of mailing {}: {e}", m.id.0);
                }
            }
        }
        Err(e) => worker::console_error!("cron: listing running mailings failed: {e}"),
    }
}
