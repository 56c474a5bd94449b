//! The HTTP surface of the server (CONTRACT.md): the Telegram webhook, Robokassa's
//! notifications and landing pages, health and Prometheus metrics.
//! The webhook checks the secret header in constant time, records the `update_id`, hands the
//! update to the dispatcher and answers at once. The routes read only what [`Surface`] gives
//! them, so this module knows nothing of start-up.
//!
//! Robokassa's routes take at most [`payments::MAX_CALL_BYTES`] (16 KiB) in
//! [`payments::MAX_CALL_FIELDS`] (64) fields: a declared `Content-Length` over the limit is
//! refused before a byte of the body is read, a body that turns out longer when read stops
//! being read there (`DefaultBodyLimit` on those routes), and only then is the form decoded.
//! Within these limits decoding, sorting the `Shp_*` fields and hashing take microseconds, so
//! they run on the runtime's threads; nothing bigger ever gets that far.

use crate::db::SqliteDb;
use crate::metrics::{self, Metrics, Readings};
use crate::state::StateHandles;
use crate::updates::Dispatcher;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use groupcast_core::model::secret::secret_matches;
use groupcast_core::payments::{self, CallRefusal};
use groupcast_core::services::Services;
use groupcast_core::telegram::Update;
use groupcast_core::Secret;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Updates are small; anything bigger is refused before parsing.
const MAX_UPDATE_BYTES: usize = 1 << 20;

/// What the routes read.
pub struct Surface {
    /// `TELEGRAM_WEBHOOK_SECRET`; without it every webhook call is refused.
    pub webhook_secret: Option<Secret>,
    /// `ROBOKASSA_ALLOWED_IPS`; empty = any address may notify.
    pub robokassa_allowed_ips: Vec<IpAddr>,
    /// Updates come by webhook (`PUBLIC_URL` set), not by polling (for `/healthz`).
    pub webhook_mode: bool,
    /// `https://t.me/<bot>` once learnt (for the payment pages).
    pub bot_url: Arc<OnceLock<String>>,
    pub svc: Services,
    pub db: Arc<SqliteDb>,
    /// The state backend's queue depth, heartbeats and health (metrics and `/healthz`).
    pub state: StateHandles,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: &'static Metrics,
}

pub fn router(app: Arc<Surface>) -> Router {
    Router::new()
        .route("/telegram/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/robokassa/result",
            get(robokassa_result)
                .post(robokassa_result)
                .layer(robokassa_body_limit()),
        )
        .route(
            "/robokassa/success",
            get(robokassa_success)
                .post(robokassa_success)
                .layer(robokassa_body_limit()),
        )
        .route(
            "/robokassa/fail",
            get(robokassa_fail)
                .post(robokassa_fail)
                .layer(robokassa_body_limit()),
        )
        .layer(DefaultBodyLimit::max(MAX_UPDATE_BYTES))
        .with_state(app)
}

async fn webhook(State(app): State<Arc<Surface>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(expected) = app.webhook_secret.as_ref() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let got = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !secret_matches(expected.expose().as_bytes(), got) {
        tracing::warn!("webhook call with a missing or wrong secret header");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "webhook body is not an update");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    match app.dispatcher.accept(update).await {
        Ok(_) => StatusCode::OK.into_response(),
        // Not recorded: let Telegram deliver it again.
        Err(e) => {
            tracing::error!(error = %e, "could not record update");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The body limit of Robokassa's routes (it replaces the router's, set further out).
fn robokassa_body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(payments::MAX_CALL_BYTES)
}

/// The pairs of a Robokassa call (the query string's, then the form body's), or the answer
/// that refuses it undecoded: over the size limit by its `Content-Length` (nothing of the body
/// read) or as read, or over the field limit.
async fn robokassa_params(
    route: &'static str,
    peer: IpAddr,
    query: Option<String>,
    req: Request,
) -> Result<Vec<(String, String)>, Response> {
    let query = query.unwrap_or_default();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Err(refusal) = payments::check_call_size(query.len(), declared) {
        let bytes = declared.map(|d| d.saturating_add(query.len() as u64));
        return Err(refused(route, peer, refusal, bytes));
    }
    let body = match Bytes::from_request(req, &()).await {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(refused(route, peer, CallRefusal::TooLarge, None));
        }
        Err(e) => {
            tracing::warn!(route, %peer, error = %e, "robokassa call body unreadable");
            return Err((StatusCode::BAD_REQUEST, "unreadable body").into_response());
        }
    };
    let bytes = (query.len() + body.len()) as u64;
    payments::call_pairs(&query, &body).map_err(|r| refused(route, peer, r, Some(bytes)))
}

/// The answer to a call refused before decoding, and the operator's one line about it (what
/// was wrong, never what was sent).
fn refused(route: &str, peer: IpAddr, refusal: CallRefusal, bytes: Option<u64>) -> Response {
    let (reason, limit) = (refusal.text(), refusal.limit());
    match bytes {
        Some(bytes) => {
            tracing::warn!(route, %peer, reason, bytes, limit, "robokassa call refused")
        }
        None => tracing::warn!(route, %peer, reason, limit, "robokassa call refused"),
    }
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        reason,
    )
        .into_response()
}

/// ResultURL: Robokassa's server-to-server notification, the only thing that marks an
/// invoice paid (see `payments::on_result`).
async fn robokassa_result(
    State(app): State<Arc<Surface>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let allowed = &app.robokassa_allowed_ips;
    if !allowed.is_empty() && !allowed.contains(&peer.ip()) {
        tracing::warn!(peer = %peer.ip(), "robokassa notification from an address not in ROBOKASSA_ALLOWED_IPS");
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    }
    let params = match robokassa_params("/robokassa/result", peer.ip(), query, req).await {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let inv_id = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("InvId"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let reply = payments::on_result(&app.svc, &params).await;
    // A signature that verified is as good as a password for a replay: keep it out of every
    // log line. An unverified one is any text its sender chose (a word of the logs, a group's
    // name): on the list, it would blank that word out of every later line.
    if let Some(signature) = &reply.verified_signature {
        crate::logging::register_transient(signature.expose());
    }
    tracing::info!(
        inv_id,
        status = reply.status,
        outcome = if reply.status == 200 {
            "accepted"
        } else {
            "refused"
        },
        "robokassa callback"
    );
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        reply.body,
    )
        .into_response()
}

async fn landing(
    app: &Surface,
    route: &'static str,
    peer: IpAddr,
    query: Option<String>,
    req: Request,
    success: bool,
) -> Response {
    let pairs = match robokassa_params(route, peer, query, req).await {
        Ok(pairs) => pairs,
        Err(refusal) => return refusal,
    };
    Html(payments::landing_page_for(
        &pairs,
        success,
        app.bot_url.get().map(String::as_str),
    ))
    .into_response()
}

/// SuccessURL and FailURL: pages for the payer's browser; they never change anything.
async fn robokassa_success(
    State(app): State<Arc<Surface>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    landing(&app, "/robokassa/success", peer.ip(), query, req, true).await
}

async fn robokassa_fail(
    State(app): State<Arc<Surface>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    landing(&app, "/robokassa/fail", peer.ip(), query, req, false).await
}

/// Prometheus text exposition (see `metrics`): the counters, and gauges read now.
async fn metrics(State(app): State<Arc<Surface>>) -> Response {
    let readings = Readings {
        mailings: app.db.mailing_status_counts().await.unwrap_or_default(),
        queue_depth: app.state.queue.queue_depth().await.ok().flatten(),
        heartbeat_age_secs: app
            .state
            .heartbeats
            .last_heartbeat()
            .await
            .ok()
            .flatten()
            .map(|beat| (app.svc.now_ms() - beat).max(0) as f64 / 1000.0),
    };
    (
        [("content-type", metrics::CONTENT_TYPE)],
        metrics::render(app.metrics.registry(), &readings),
    )
        .into_response()
}

async fn healthz(State(app): State<Arc<Surface>>) -> Response {
    let storage = app.db.ping().await.is_ok();
    let backend_ok = app.state.health.ping().await.is_ok();
    let now = app.svc.now_ms();
    let heartbeat = app.state.heartbeats.last_heartbeat().await;
    let state_ok = heartbeat.is_ok() && backend_ok;
    let age = heartbeat.ok().flatten().map(|t| (now - t) as f64 / 1000.0);
    let ok = storage && state_ok;
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "storage": storage,
        "state": state_ok,
        "state_backend": app.state.health.backend(),
        "runner_heartbeat_age_secs": age,
        "mode": if app.webhook_mode { "webhook" } else { "polling" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
