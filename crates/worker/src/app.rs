//! The Worker's entry points: the handlers of `fetch` (webhook, Robokassa, health, and the test
//! routes of [`crate::test_hooks`] when they are on), `queue` and `scheduled`, and the
//! coordination capabilities of the stateless side ([`EdgeState`]: intake through the Queue,
//! cancel through the profile's runner). The top of the crate: only `lib.rs` uses it.

use crate::d1::D1Db;
use crate::env::{self, env_vars};
use crate::http::{has_webhook_secret, text};
use crate::services;
use crate::settings::{SettingError, WorkerSettings};
use crate::telegram::FetchTelegram;
use crate::test_hooks;
use crate::wire::{MailingTask, QueueTask, RunnerCommand};
use groupcast_core::model::ids::{MailingId, ProfileId};
use groupcast_core::model::ledger::MailingStatus;
use groupcast_core::ports::{async_trait, Cancels, Intake, MailingStore, StateError, UpdateClaim};
use groupcast_core::services::Services;
use groupcast_core::telegram::Update;
use groupcast_core::{bot, payments};
use std::sync::Arc;
use worker::{Env, Headers, MessageExt, Method, Request, RequestInit, Response};

/// Updates are small; anything bigger is refused before parsing.
const MAX_UPDATE_BYTES: usize = 1 << 20;
/// Update ids older than this are forgotten by the Cron job (Telegram redelivers for far less).
const KEEP_UPDATES_MS: i64 = 7 * 86_400_000;
/// An update taken this long ago and never finished was cut off with its request: Telegram's
/// next redelivery of it is handled. Longer than any request here runs.
const STALE_CLAIM_MS: i64 = 120_000;

// ---------------------------------------------------------------------------------------------
// The coordination capabilities outside the runner

/// What the bot needs on the stateless side, and all it has: the intake queue's producer end
/// is the Cloudflare Queue (the send is awaited, never left to `waitUntil`; its consumer is
/// [`queue`], pushed to), cancel goes to the profile's runner at once. Leases, pacing and
/// heartbeats belong to the runner alone; `/healthz` reads the runners' sign of life from D1.
pub struct EdgeState {
    env: Env,
}

#[async_trait(?Send)]
impl Cancels for EdgeState {
    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        let db = D1Db::new(env::d1(&self.env).map_err(backend)?, None);
        let m = db
            .get_mailing(mailing)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))?
            .ok_or_else(|| StateError::Backend("cancel: no such mailing".into()))?;
        runner_call(&self.env, &m.profile_id, "cancel", mailing).await
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        let db = D1Db::new(env::d1(&self.env).map_err(backend)?, None);
        Ok(db
            .get_mailing(mailing)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))?
            .is_some_and(|m| m.cancel_requested))
    }
}

#[async_trait(?Send)]
impl Intake for EdgeState {
    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        env::mailing_queue(&self.env)
            .map_err(backend)?
            .send(MailingTask {
                mailing_id: mailing.0,
            })
            .await
            .map_err(backend)
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
    let stub = env::profile_runner(env, profile.as_str()).map_err(backend)?;
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
    let ports = services::ports(env, &settings, None)?;
    let svc = Services::new(ports, Arc::new(EdgeState { env: env.clone() }));
    Ok((settings, svc))
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
        (_, p) if p.starts_with("/__test/") && settings.test_hooks.enabled => {
            test_hooks::route(&mut req, &env, &settings.webhook_secret, &svc).await
        }
        _ => text(404, "not found"),
    }
}

async fn webhook(
    req: &mut Request,
    settings: &WorkerSettings,
    svc: &Services,
) -> worker::Result<Response> {
    if !has_webhook_secret(req, &settings.webhook_secret)? {
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
    // Taken, handled, then recorded finished: a request cut off in between (a deploy, an
    // isolate reset) leaves the update unfinished, and Telegram's redelivery (it got no 200)
    // is handled once the claim is stale instead of being dropped as a duplicate.
    let now = svc.now_ms();
    match svc
        .db
        .claim_update(update.update_id, "", now, now - STALE_CLAIM_MS)
        .await
    {
        Ok(UpdateClaim::Taken) => {}
        Ok(UpdateClaim::Handled) => return text(200, "duplicate"),
        // Another request is on it (or died moments ago): Telegram tries again later.
        Ok(UpdateClaim::InHand) => return text(503, "in hand"),
        Err(e) => {
            // Not recorded: let Telegram deliver it again.
            worker::console_error!("could not record update: {e}");
            return text(503, "storage unavailable");
        }
    }
    if let Err(e) = bot::handle_update(svc, &update).await {
        worker::console_warn!("update {} handling failed: {e}", update.update_id);
    }
    if let Err(e) = svc.db.finish_update(update.update_id, svc.now_ms()).await {
        worker::console_warn!("update {} not recorded as handled: {e}", update.update_id);
    }
    text(200, "ok")
}

/// The pairs of a Robokassa call (the query string's, then a form body's), or the answer that
/// refuses it undecoded: over [`payments::MAX_CALL_BYTES`] by its `Content-Length` (nothing
/// of the body read) or as read (reading stops there), or over
/// [`payments::MAX_CALL_FIELDS`]. Within the limits the decoding and the signature check take
/// microseconds.
async fn robokassa_params(
    req: &mut Request,
    route: &str,
) -> worker::Result<Result<Vec<(String, String)>, Response>> {
    let url = req.url()?;
    let query = url.query().unwrap_or("");
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Err(refusal) = payments::check_call_size(query.len(), declared) {
        return refused(route, refusal).map(Err);
    }
    let body = if req.method() == Method::Post {
        match body_within(req, payments::MAX_CALL_BYTES - query.len()).await? {
            Some(body) => body,
            None => return refused(route, payments::CallRefusal::TooLarge).map(Err),
        }
    } else {
        Vec::new()
    };
    match payments::call_pairs(query, &body) {
        Ok(pairs) => Ok(Ok(pairs)),
        Err(refusal) => refused(route, refusal).map(Err),
    }
}

/// The request's body, read until it passes `limit` bytes (then `None`): a body without a
/// declared length is never read whole.
async fn body_within(req: &mut Request, limit: usize) -> worker::Result<Option<Vec<u8>>> {
    use futures_util::StreamExt;
    if req.inner().body().is_none() {
        return Ok(Some(Vec::new()));
    }
    let mut stream = req.stream()?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk?);
        if body.len() > limit {
            return Ok(None);
        }
    }
    Ok(Some(body))
}

/// The answer to a call refused before decoding, and the operator's one line about it (what
/// was wrong, never what was sent).
fn refused(route: &str, refusal: payments::CallRefusal) -> worker::Result<Response> {
    worker::console_warn!(
        "robokassa call refused: {route}: {} (limit {})",
        refusal.text(),
        refusal.limit()
    );
    text(refusal.status(), refusal.text())
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
    let pairs = match robokassa_params(req, "/robokassa/result").await? {
        Ok(pairs) => pairs,
        Err(refusal) => return Ok(refusal),
    };
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
    let route = if success {
        "/robokassa/success"
    } else {
        "/robokassa/fail"
    };
    let pairs = match robokassa_params(req, route).await? {
        Ok(pairs) => pairs,
        Err(refusal) => return Ok(refusal),
    };
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
    let db = D1Db::new(env::d1(env)?, None);
    let storage = db.ping().await.is_ok();
    let now = svc.now_ms();
    // The runners' sign of life: the newest progress write of a running mailing.
    let heartbeat = db.newest_progress().await;
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
    let db = D1Db::new(env::d1(&env)?, None);
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
    let Ok(d1) = env::d1(&env) else { return };
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
