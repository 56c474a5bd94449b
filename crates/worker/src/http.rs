//! What the Worker's inbound routes share: a plain-text answer with a status, and the check of
//! Telegram's secret header (`X-Telegram-Bot-Api-Secret-Token`, compared in constant time),
//! which the webhook and the test routes ask for.

use groupcast_core::Secret;
use worker::{Request, Response};

/// A plain-text answer with this status.
pub fn text(status: u16, body: &str) -> worker::Result<Response> {
    Ok(Response::ok(body)?.with_status(status))
}

/// Whether the request carries Telegram's secret header with the configured webhook secret
/// (compared in constant time).
pub fn has_webhook_secret(req: &Request, secret: &Secret) -> worker::Result<bool> {
    let got = req
        .headers()
        .get("x-telegram-bot-api-secret-token")?
        .unwrap_or_default();
    Ok(groupcast_core::model::secret::secret_matches(
        secret.expose().as_bytes(),
        got.as_bytes(),
    ))
}
