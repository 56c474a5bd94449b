//! The Worker's entry points: the handlers of `fetch` (webhook, Robokassa, health, and the test
//! routes of [`crate::test_hooks`] when they are on), `queue` and `scheduled`, on the stateless
//! side's services (`crate::edge`). The top of the crate: only `lib.rs` uses it.

use crate::counts::{self, Invocation};
use crate::d1::D1Db;
use crate::edge::{edge, poke};
use crate::env;
use crate::http::{has_webhook_secret, text};
use crate::scheduler;
use crate::services;
use crate::settings::WorkerSettings;
use crate::telegram::FetchTelegram;
use crate::test_hooks;
use crate::wire::QueueTask;
use groupcast_core::mailing::scheduled;
use groupcast_core::model::ids::MailingId;
use groupcast_core::ports::UpdateClaim;
use groupcast_core::services::Services;
use groupcast_core::telegram::Update;
use groupcast_core::{bot, payments};
use worker::{Env, Headers, MessageExt, Method, Request, Response};

/// Updates are small; anything bigger is refused before parsing.
const MAX_UPDATE_BYTES: usize = 1 << 20;
/// Update ids older than this are forgotten by the Cron job (Telegram redelivers for far less).
const KEEP_UPDATES_MS: i64 = 7 * 86_400_000;
/// An update taken this long ago and never finished was cut off with its request: Telegram's
/// next redelivery of it is handled. Longer than any request here runs.
const STALE_CLAIM_MS: i64 = 120_000;

// ---------------------------------------------------------------------------------------------
// Handlers

pub async fn fetch(mut req: Request, env: Env) -> worker::Result<Response> {
    counts::invocation(Invocation::Fetch);
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
    counts::invocation(Invocation::QueueBatch);
    let db = D1Db::new(env::d1(&env)?, None);
    for msg in batch.messages()? {
        counts::invocation(Invocation::QueueMessage);
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

/// The Cron job: subscription reminders (and warnings that one ends before a scheduled run),
/// forgetting old update ids, recovery (every running mailing is handed to its runner again; a
/// runner already driving it only checks that its alarm is set), delivery audits of finished
/// mailings (`mailing::audit`), and a pass over the due
/// scheduled runs that re-arms the scheduler's alarm (in case it was lost).
pub async fn scheduled(env: Env) {
    counts::invocation(Invocation::Cron);
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
    match scheduled::warn_before_runs(&svc).await {
        Ok(n) if n > 0 => worker::console_log!("cron: {n} warnings before scheduled runs"),
        Ok(_) => {}
        Err(e) => worker::console_error!("cron: warnings before scheduled runs failed: {e}"),
    }
    match groupcast_core::mailing::audit::audit_due(&svc).await {
        Ok(n) if n > 0 => worker::console_log!("cron: {n} delivery audits"),
        Ok(_) => {}
        Err(e) => worker::console_error!("cron: delivery audits failed: {e}"),
    }
    match scheduler::fire(&env).await {
        Ok(Some(at)) => {
            if let Err(e) = services::wake(&env, at).await {
                worker::console_error!("cron: the scheduler's alarm not armed: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => worker::console_error!("cron: {e}"),
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
