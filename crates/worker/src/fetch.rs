//! One outgoing HTTP call over `worker::Fetch`, with a timeout (an `AbortController` raced
//! against a timer: workerd's `fetch` has none of its own). The clients of Telegram and Wappi
//! are built on it; each request sent is counted by its destination (`crate::counts`).

use crate::counts::{self, Dest};
use futures_util::future::{select, Either};
use std::time::Duration;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// A received answer.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// A call that got no answer.
pub enum Failure {
    /// No answer within the timeout; the request may have been carried out.
    Timeout,
    /// The request could not be built (a bad URL or header): it was never sent.
    Build(String),
    /// The connection failed or broke; whether the request was carried out is unknown.
    Transport(String),
}

/// What goes in a request body.
pub enum Body {
    Json(String),
    Bytes {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// Sends one request to `dest` and reads the whole answer within `timeout`.
pub async fn call(
    dest: Dest,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Body>,
    timeout: Duration,
) -> Result<Reply, Failure> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v)
            .map_err(|_| Failure::Build(format!("header {k} rejected")))?;
    }
    let mut init = RequestInit::new();
    init.with_method(method);
    match body {
        Some(Body::Json(text)) => {
            h.set("content-type", "application/json")
                .map_err(|_| Failure::Build("content-type".into()))?;
            init.with_body(Some(wasm_bindgen::JsValue::from_str(&text)));
        }
        Some(Body::Bytes {
            content_type,
            bytes,
        }) => {
            h.set("content-type", &content_type)
                .map_err(|_| Failure::Build("content-type".into()))?;
            let array = js_sys::Uint8Array::from(bytes.as_slice());
            init.with_body(Some(array.into()));
        }
        None => {}
    }
    init.with_headers(h);
    let request = Request::new_with_init(url, &init)
        .map_err(|e| Failure::Build(format!("request not built: {e}")))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    counts::subrequest(dest);
    let exchange = async move {
        let fetch = Fetch::Request(request);
        let mut resp = fetch
            .send_with_signal(&signal)
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let status = resp.status_code();
        let retry_after = resp.headers().get("retry-after").ok().flatten();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Failure::Transport(format!("reading the answer: {e}")))?;
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    };
    let timer = Delay::from(timeout);
    match select(Box::pin(exchange), Box::pin(timer)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(Failure::Timeout)
        }
    }
}
