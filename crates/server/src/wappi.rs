//! `HttpWappi`: the core's [`WappiClient`] over reqwest. The client (request building, error
//! classification, decoding) lives in `groupcast_core::wappi::client`; this module is only the
//! transport: it sends a request, reads the answer, and tells transport failures apart by
//! whether the request may have left (a refused connection did not; a timeout or a dropped
//! connection may have). On the way it registers the token with the log redactor and records
//! the call's latency in the metrics.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use groupcast_core::ports::async_trait;
use groupcast_core::wappi::client::{
    parse_retry_after, HttpMethod, HttpRequest, HttpResponse, HttpTransport, TransportError,
    TransportErrorKind, WappiClient,
};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;

/// Default time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a whole call, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The Wappi HTTP client of the server: `HttpWappi::new(base_url, timeout)`.
pub type HttpWappi = WappiClient<ReqwestTransport>;

/// Sends Wappi requests with reqwest.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl Default for ReqwestTransport {
    /// Connections must open within [`CONNECT_TIMEOUT`]; each request brings its own timeout.
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("groupcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the reqwest client builds with static settings");
        ReqwestTransport { client }
    }
}

#[async_trait]
impl HttpTransport for ReqwestTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let started = Instant::now();
        let result = self.exchange(request, started).await;
        crate::metrics::global().wappi_call(started.elapsed());
        result
    }
}

impl ReqwestTransport {
    async fn exchange(
        &self,
        request: HttpRequest,
        started: Instant,
    ) -> Result<HttpResponse, TransportError> {
        let method = match request.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
        };
        let mut req = self
            .client
            .request(method, &request.url)
            .timeout(request.timeout);
        for (name, value) in &request.headers {
            let name = HeaderName::from_static(name);
            if name == AUTHORIZATION {
                // Known to the log redactor from its first use on (see `logging`).
                crate::logging::register(value);
            }
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                TransportError::new(
                    TransportErrorKind::BadHeader,
                    format!("header {name}"),
                    started.elapsed(),
                )
            })?;
            value.set_sensitive(name == AUTHORIZATION);
            req = req.header(name, value);
        }
        if let Some(body) = request.body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| failure(e, started))?;
        let status = resp.status().as_u16();
        let retry_after_secs = resp
            .headers()
            .get(RETRY_AFTER)
            .map(|v| parse_retry_after(v.to_str().unwrap_or(""), unix_now()));
        let body = match resp.bytes().await {
            Ok(b) => Ok(b.to_vec()),
            Err(e) => Err(failure(e, started)),
        };
        Ok(HttpResponse {
            status,
            retry_after_secs,
            body,
            took: started.elapsed(),
        })
    }
}

/// Classifies a reqwest failure by where it happened; the message has no URL (its query
/// holds the profile id) and no header.
fn failure(e: reqwest::Error, started: Instant) -> TransportError {
    let e = e.without_url();
    let kind = if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_builder() {
        TransportErrorKind::NotBuilt
    } else if e.is_timeout() {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Lost
    };
    TransportError::new(kind, describe(&e), started.elapsed())
}

/// The error and its causes, one line (reqwest's top message alone is vague).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::model::ids::GroupJid;
    use groupcast_core::ports::WappiApi;
    use groupcast_core::wappi::{WappiCreds, WappiError};
    use std::io::{Read, Write};

    const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

    fn creds() -> WappiCreds {
        WappiCreds {
            token: groupcast_core::Secret::new(TOKEN),
            profile_id: groupcast_core::ProfileId::parse("2f099bc3-478d").unwrap(),
        }
    }

    fn group() -> GroupJid {
        GroupJid::parse("120363025246125486@g.us").unwrap()
    }

    #[tokio::test]
    async fn refused_connection_is_temporary_even_for_a_send() {
        // Bind then drop a listener: the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let wappi = HttpWappi::new(&format!("http://127.0.0.1:{port}/"), REQUEST_TIMEOUT);
        match wappi.send_text(&creds(), &group(), "hi").await {
            Err(WappiError::Temporary(msg)) => {
                assert!(msg.starts_with("connection failed"), "{msg}");
                assert!(!msg.contains("0123456789abcdef") && !msg.contains("profile_id"));
            }
            other => panic!("expected Temporary, got {other:?}"),
        }
    }

    /// One raw HTTP exchange on a local socket: returns what the client sent.
    fn serve_once(listener: std::net::TcpListener, answer: &'static str) -> String {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then the body announced by Content-Length.
        loop {
            let n = stream.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if seen.len() >= end + 4 + length {
                    break;
                }
            }
        }
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8(seen).unwrap()
    }

    #[tokio::test]
    async fn a_request_goes_out_as_json_with_the_token_and_retry_after_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            serve_once(
                listener,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
        });
        let wappi = HttpWappi::new(&url, Duration::from_secs(5));
        let err = wappi.send_text(&creds(), &group(), "hi").await.unwrap_err();
        assert_eq!(err, WappiError::RateLimited(3000));
        let seen = server.join().unwrap();
        assert!(
            seen.starts_with("POST /api/sync/message/send?profile_id=2f099bc3-478d HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(
            seen.contains(&format!("authorization: {TOKEN}\r\n")),
            "{seen}"
        );
        assert!(
            seen.contains("content-type: application/json\r\n"),
            "{seen}"
        );
        assert!(
            seen.ends_with(r#"{"body":"hi","recipient":"120363025246125486@g.us"}"#),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_unknown_for_a_send() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let wappi = HttpWappi::new(&url, Duration::from_millis(300));
        let err = wappi.send_text(&creds(), &group(), "hi").await.unwrap_err();
        assert!(
            matches!(&err, WappiError::Unknown(m) if m.starts_with("timed out")),
            "{err:?}"
        );
        drop(listener);
    }
}
