//! The HTTP surface of the server (CONTRACT.md): the Telegram webhook, Robokassa's
//! notifications and landing pages, health and Prometheus metrics.
//! The webhook checks the secret header in constant time, records the `update_id`, hands the
//! update to the dispatcher and answers at once. The routes read only what [`Surface`] gives
//! them, so this module knows nothing of start-up.

use crate::db::SqliteDb;
use crate::metrics::{self, Metrics, Readings};
use crate::state::StateHandles;
use crate::updates::Dispatcher;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use groupcast_core::payments::{self, form_pairs};
use groupcast_core::secret::secret_matches;
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
            get(robokassa_result).post(robokassa_result),
        )
        .route(
            "/robokassa/success",
            get(robokassa_success).post(robokassa_success),
        )
        .route("/robokassa/fail", get(robokassa_fail).post(robokassa_fail))
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

/// The pairs of a Robokassa call: the query string, then a form body.
fn robokassa_params(query: Option<String>, body: &Bytes) -> Vec<(String, String)> {
    let mut pairs = form_pairs(query.as_deref().unwrap_or(""));
    pairs.extend(form_pairs(&String::from_utf8_lossy(body)));
    pairs
}

/// ResultURL: Robokassa's server-to-server notification, the only thing that marks an
/// invoice paid (see `payments::on_result`).
async fn robokassa_result(
    State(app): State<Arc<Surface>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let allowed = &app.robokassa_allowed_ips;
    if !allowed.is_empty() && !allowed.contains(&peer.ip()) {
        tracing::warn!(peer = %peer.ip(), "robokassa notification from an address not in ROBOKASSA_ALLOWED_IPS");
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    }
    let params = robokassa_params(query, &body);
    // The signature sent is as good as a password for a replay: never let it reach a log.
    for (_, v) in params
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("SignatureValue"))
    {
        crate::logging::register_transient(v);
    }
    let inv_id = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("InvId"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let reply = payments::on_result(&app.svc, &params).await;
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

fn landing(app: &Surface, query: Option<String>, body: &Bytes, success: bool) -> Response {
    let pairs = robokassa_params(query, body);
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
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    landing(&app, query, &body, true)
}

async fn robokassa_fail(
    State(app): State<Arc<Surface>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    landing(&app, query, &body, false)
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
