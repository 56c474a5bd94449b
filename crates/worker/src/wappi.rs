//! `FetchWappi`: the core's [`WappiClient`] over `worker::Fetch`. The client (request
//! building, error classification, decoding) lives in `groupcast_core::wappi::client`; this
//! module only sends a request through [`crate::fetch`] and reports what came back. `fetch`
//! cannot tell a refused connection from a broken one, so every failure after the request was
//! built counts as "may have been sent".

use crate::counts::Dest;
use crate::fetch::{self, Body, Failure};
use groupcast_core::ports::async_trait;
use groupcast_core::wappi::client::{
    parse_retry_after, HttpMethod, HttpRequest, HttpResponse, HttpTransport, TransportError,
    TransportErrorKind, WappiClient,
};
use std::time::Duration;
use worker::Method;

/// The Wappi HTTP client of the Worker: `FetchWappi::new(base_url, timeout)`.
pub type FetchWappi = WappiClient<FetchTransport>;

/// Sends Wappi requests with `fetch`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchTransport;

#[async_trait(?Send)]
impl HttpTransport for FetchTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let started = now_ms();
        let took = || Duration::from_millis(now_ms().saturating_sub(started));
        let method = match request.method {
            HttpMethod::Get => Method::Get,
            HttpMethod::Post => Method::Post,
        };
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let body = request.body.map(|bytes| Body::Bytes {
            content_type: "application/json".into(),
            bytes,
        });
        match fetch::call(
            Dest::Wappi,
            method,
            &request.url,
            &headers,
            body,
            request.timeout,
        )
        .await
        {
            Ok(reply) => Ok(HttpResponse {
                status: reply.status,
                retry_after_secs: reply
                    .retry_after
                    .as_deref()
                    .map(|v| parse_retry_after(v, (now_ms() / 1000) as i64)),
                body: Ok(reply.body),
                took: took(),
            }),
            Err(f) => {
                let (kind, message) = match f {
                    Failure::Build(s) if s.starts_with("header") => {
                        (TransportErrorKind::BadHeader, s)
                    }
                    Failure::Build(s) => (
                        TransportErrorKind::NotBuilt,
                        s.trim_start_matches("request not built: ").to_string(),
                    ),
                    Failure::Timeout => (TransportErrorKind::Timeout, String::new()),
                    Failure::Transport(s) => (TransportErrorKind::Lost, s),
                };
                Err(TransportError::new(kind, message, took()))
            }
        }
    }
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
