//! The HTTP surface of the server (CONTRACT.md): the Telegram webhook and health.
//! The webhook checks the secret header in constant time, records the `update_id`, hands the
//! update to the dispatcher and answers at once.

use crate::app::App;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use groupcast_core::telegram::Update;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Updates are small; anything bigger is refused before parsing.
const MAX_UPDATE_BYTES: usize = 1 << 20;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/telegram/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_UPDATE_BYTES))
        .with_state(app)
}

/// Compares a received secret with the expected one without leaking where they differ.
pub fn secret_matches(expected: &[u8], got: &[u8]) -> bool {
    expected.len() == got.len() && bool::from(expected.ct_eq(got))
}

async fn webhook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(expected) = app.settings.webhook_secret.as_ref() else {
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

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let storage = app.db.ping().await.is_ok();
    let now = app.svc.now_ms();
    let heartbeat = app.svc.state.last_heartbeat().await;
    let state_ok = heartbeat.is_ok();
    let age = heartbeat.ok().flatten().map(|t| (now - t) as f64 / 1000.0);
    let ok = storage && state_ok;
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "storage": storage,
        "state": state_ok,
        "state_backend": "embedded",
        "runner_heartbeat_age_secs": age,
        "mode": if app.settings.public_url.is_some() { "webhook" } else { "polling" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::secret_matches;

    #[test]
    fn secret_compare() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abc", b"abd"));
        assert!(!secret_matches(b"abc", b"ab"));
        assert!(!secret_matches(b"abc", b""));
    }
}
