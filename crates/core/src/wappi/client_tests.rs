//! The client's request building and answer classification, over a scripted transport.

use super::*;
use crate::model::ids::ProfileId;
use crate::model::secret::Secret;
use std::collections::VecDeque;
use std::sync::Mutex;

const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
const GROUP: &str = "120363025246125486@g.us";

/// What the transport was asked to send (the token header included).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: HttpMethod,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    timeout: Duration,
}

/// Answers each call with the next scripted outcome and keeps what it was asked.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Result<HttpResponse, TransportError>>>,
    seen: Mutex<Vec<Seen>>,
}

#[async_trait]
impl HttpTransport for Script {
    async fn send(&self, r: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.seen.lock().unwrap().push(Seen {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r
                .body
                .map(|b| serde_json::from_slice(&b).expect("a JSON body")),
            timeout: r.timeout,
        });
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("an answer is scripted")
    }
}

fn client() -> WappiClient<Script> {
    WappiClient::new("http://127.0.0.1:9/ ", Duration::from_secs(3))
}

fn answer(c: &WappiClient<Script>, a: Result<HttpResponse, TransportError>) {
    c.transport.answers.lock().unwrap().push_back(a);
}

fn reply(c: &WappiClient<Script>, status: u16, body: &str) {
    answer(c, Ok(response(status, None, body)));
}

fn response(status: u16, retry_after_secs: Option<u64>, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        retry_after_secs,
        body: Ok(body.as_bytes().to_vec()),
        took: Duration::ZERO,
    }
}

fn failure(kind: TransportErrorKind, message: &str) -> TransportError {
    TransportError::new(kind, message, Duration::ZERO)
}

fn last(c: &WappiClient<Script>) -> Seen {
    c.transport.seen.lock().unwrap().last().cloned().unwrap()
}

fn creds() -> WappiCreds {
    WappiCreds {
        token: Secret::new(TOKEN),
        profile_id: ProfileId::parse("2f099bc3-478d").unwrap(),
    }
}

fn group() -> GroupJid {
    GroupJid::parse(GROUP).unwrap()
}

const SENT: &str = r#"{"status":"done","timestamp":1679823696,"time":"2023-03-26T12:41:36+03:00","message_id":"3EB0128AE55B5D222DD0","task_id":"a6f4c1f2-3b7e-4c1e-9a53-0b5d2f1e8c11"}"#;

#[tokio::test]
async fn a_text_send_is_a_json_post_with_the_raw_token() {
    let c = client();
    reply(&c, 200, SENT);
    let sent = c.send_text(&creds(), &group(), "Привет").await.unwrap();
    assert_eq!(sent.message_id.as_deref(), Some("3EB0128AE55B5D222DD0"));
    assert_eq!(
        last(&c),
        Seen {
            method: HttpMethod::Post,
            url: "http://127.0.0.1:9/api/sync/message/send?profile_id=2f099bc3-478d".into(),
            headers: vec![("authorization", TOKEN.into())],
            body: Some(json!({"body": "Привет", "recipient": GROUP})),
            timeout: Duration::from_secs(3),
        }
    );
}

#[tokio::test]
async fn an_image_goes_as_raw_base64_with_its_caption() {
    let c = client();
    reply(&c, 200, SENT);
    c.send_image(
        &creds(),
        &group(),
        "data:image/jpeg;base64,QUJD",
        Some("Фото"),
    )
    .await
    .unwrap();
    let seen = last(&c);
    assert!(seen
        .url
        .ends_with("/api/sync/message/img/send?profile_id=2f099bc3-478d"));
    assert_eq!(
        seen.body,
        Some(json!({"recipient": GROUP, "b64_file": "QUJD", "caption": "Фото"}))
    );
    reply(&c, 200, SENT);
    c.send_image(&creds(), &group(), "QUJD", None)
        .await
        .unwrap();
    assert_eq!(
        last(&c).body,
        Some(json!({"recipient": GROUP, "b64_file": "QUJD"}))
    );
}

#[tokio::test]
async fn reads_are_gets_with_their_query() {
    let c = client();
    reply(
        &c,
        200,
        r#"{"app_status":"open","authorized":true,"name":"Офис","profile_id":"2f099bc3-478d"}"#,
    );
    let status = c.get_status(&creds()).await.unwrap();
    assert!(status.is_ready());
    let seen = last(&c);
    assert_eq!((seen.method, seen.body), (HttpMethod::Get, None));
    assert!(seen
        .url
        .ends_with("/api/sync/get/status?profile_id=2f099bc3-478d"));

    reply(
        &c,
        200,
        r#"{"status":"done","dialogs":[{"id":"120363025246125486@g.us"},{"id":"79115576367@c.us"}]}"#,
    );
    let dialogs = c.list_chats(&creds(), 50, 100).await.unwrap();
    assert_eq!(dialogs.len(), 2);
    assert!(last(&c).url.ends_with(
        "/api/sync/chats/get?profile_id=2f099bc3-478d&limit=50&offset=100&show_all=false"
    ));

    reply(
        &c,
        200,
        r#"{"status":"done","messages":[{"id":"A1","fromMe":true,"time":1679823696,"body":"hi","type":"chat"}],"total_count":1}"#,
    );
    let page = c.chat_messages(&creds(), &group(), 20, 40).await.unwrap();
    let msgs = &page.messages;
    assert!(msgs[0].from_me && msgs[0].body == "hi" && msgs[0].time == 1_679_823_696);
    assert_eq!(page.total_count, Some(1));
    assert!(last(&c).url.ends_with(
        "/api/sync/messages/get?profile_id=2f099bc3-478d&chat_id=120363025246125486%40g.us&limit=20&offset=40&order=desc"
    ));
}

#[tokio::test]
async fn refusals_are_classified_by_status_and_body() {
    let c = client();
    answer(&c, Ok(response(429, Some(7), "")));
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(e, WappiError::RateLimited(7000));

    reply(
        &c,
        200,
        r#"{"detail":"Not authorized in whatsapp","status":"error"}"#,
    );
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(e, WappiError::NotAuthorized);

    reply(
        &c,
        400,
        r#"{"detail":"Profile not found","status":"error"}"#,
    );
    let e = c.get_status(&creds()).await.unwrap_err();
    assert_eq!(e, WappiError::ProfileNotFound);

    reply(&c, 502, "bad gateway");
    let e = c.list_chats(&creds(), 10, 0).await.unwrap_err();
    assert_eq!(e, WappiError::Temporary("HTTP 502: bad gateway".into()));
    // A send's 5xx may come after WhatsApp took the message: maybe sent, settle it.
    for status in [500, 502, 504] {
        reply(&c, status, "gateway");
        let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
        assert_eq!(e, WappiError::Unknown(format!("HTTP {status}: gateway")));
        assert_eq!(e.remedy(), crate::wappi::Remedy::Settle);
    }
    // A 503 with Retry-After still pauses the account.
    answer(&c, Ok(response(503, Some(4), "")));
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(e, WappiError::RateLimited(4000));

    // A read whose `status` is not `done` is a failure; a send only on `error`.
    reply(&c, 200, r#"{"status":"pending","detail":"wait"}"#);
    let e = c.get_status(&creds()).await.unwrap_err();
    assert_eq!(e, WappiError::Rejected("wait".into()));
    reply(&c, 200, r#"{"status":"pending"}"#);
    assert!(c.send_text(&creds(), &group(), "x").await.is_ok());
}

#[tokio::test]
async fn an_unreadable_success_is_unknown_for_a_send_and_temporary_for_a_read() {
    let c = client();
    reply(&c, 200, "<html>");
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(
        e,
        WappiError::Unknown("HTTP 200 with an unreadable answer".into())
    );
    reply(&c, 200, "<html>");
    let e = c.list_chats(&creds(), 10, 0).await.unwrap_err();
    assert_eq!(
        e,
        WappiError::Temporary("HTTP 200 with an unreadable answer".into())
    );
    // JSON of another shape: a send was still accepted, a read is retried.
    reply(&c, 200, r#"{"message_id": 5}"#);
    let sent = c.send_text(&creds(), &group(), "x").await.unwrap();
    assert!(sent.message_id.is_none());
    reply(&c, 200, r#"{"dialogs": 5}"#);
    let e = c.list_chats(&creds(), 10, 0).await.unwrap_err();
    assert!(
        matches!(&e, WappiError::Temporary(m) if m.starts_with("unexpected answer shape")),
        "{e:?}"
    );
}

#[tokio::test]
async fn transport_failures_by_whether_the_request_may_have_been_sent() {
    use TransportErrorKind::*;
    let cases: Vec<(TransportErrorKind, &str, WappiError, WappiError)> = vec![
        (
            Connect,
            "refused",
            WappiError::Temporary("connection failed: refused".into()),
            WappiError::Temporary("connection failed: refused".into()),
        ),
        (BadHeader, "", WappiError::BadToken, WappiError::BadToken),
        (
            NotBuilt,
            "bad url",
            WappiError::Rejected("request not built: bad url".into()),
            WappiError::Rejected("request not built: bad url".into()),
        ),
        (
            Timeout,
            "",
            WappiError::Unknown("timed out".into()),
            WappiError::Temporary("timed out".into()),
        ),
        (
            Lost,
            "reset",
            WappiError::Unknown("connection lost: reset".into()),
            WappiError::Temporary("connection lost: reset".into()),
        ),
    ];
    let c = client();
    for (kind, message, on_send, on_read) in cases {
        answer(&c, Err(failure(kind, message)));
        let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
        assert_eq!(e, on_send, "{kind:?} on a send");
        answer(&c, Err(failure(kind, message)));
        let e = c.get_status(&creds()).await.unwrap_err();
        assert_eq!(e, on_read, "{kind:?} on a read");
    }
}

#[tokio::test]
async fn a_lost_body_matters_only_after_a_success() {
    let c = client();
    let mut cut = response(200, None, "");
    cut.body = Err(failure(TransportErrorKind::Lost, "body"));
    answer(&c, Ok(cut));
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(e, WappiError::Unknown("connection lost: body".into()));
    let mut cut = response(503, Some(2), "");
    cut.body = Err(failure(TransportErrorKind::Lost, "body"));
    answer(&c, Ok(cut));
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(e, WappiError::RateLimited(2000));
}

#[tokio::test]
async fn the_token_never_reaches_an_error_text() {
    let c = client();
    reply(&c, 400, &format!(r#"{{"detail":"bad token {TOKEN}"}}"#));
    let e = c.send_text(&creds(), &group(), "x").await.unwrap_err();
    assert_eq!(e, WappiError::Rejected("bad token ***".into()));
    answer(&c, Err(failure(TransportErrorKind::Lost, TOKEN)));
    let e = c.get_status(&creds()).await.unwrap_err();
    assert_eq!(e, WappiError::Temporary("connection lost: ***".into()));
}

#[test]
fn error_replies() {
    let error = json!({"detail": "Not authorized in whatsapp", "status": "error"});
    let done = json!({"status": "done", "message_id": "3EB0128AE55B5D222DD0"});
    let status = json!({"app_status": "open", "authorized": true});
    let odd = json!({"status": "pending"});
    assert!(is_error_reply(&error, Kind::Send) && is_error_reply(&error, Kind::Read));
    assert!(!is_error_reply(&done, Kind::Send) && !is_error_reply(&done, Kind::Read));
    assert!(!is_error_reply(&status, Kind::Read));
    assert!(is_error_reply(&odd, Kind::Read) && !is_error_reply(&odd, Kind::Send));
}

#[test]
fn base64_prefix() {
    assert_eq!(raw_base64("data:image/png;base64,iVBOR"), "iVBOR");
    assert_eq!(raw_base64("iVBOR"), "iVBOR");
}

#[test]
fn retry_after_values() {
    let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
    let cases: &[(&str, u64)] = &[
        ("7", 7),
        (" 120 ", 120),
        ("0", 0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0),
        ("Thu, 22 Oct 2015 07:28:00 GMT", 86_400),
        ("soon", RETRY_AFTER_FALLBACK_SECS),
        ("", RETRY_AFTER_FALLBACK_SECS),
        ("-3", RETRY_AFTER_FALLBACK_SECS),
        ("Wed, 21 Foo 2015 07:28:30 GMT", RETRY_AFTER_FALLBACK_SECS),
        ("99999999999999999", RETRY_AFTER_MAX_SECS),
    ];
    for (value, want) in cases {
        assert_eq!(parse_retry_after(value, now), *want, "{value:?}");
    }
}

#[test]
fn http_dates() {
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
        Some(1_835_438_400)
    );
    assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
}

/// `contact/info` of a group, as the one app that uses it sees it (spec §2.8) with a whatsmeow
/// `GroupInfo` in `group`.
const GROUP_CONTACT: &str = r#"{"status":"done","timestamp":1720788635,"time":"2024-07-12T15:50:35+03:00",
    "profile":{"id":"120363025246125486@g.us","is_group":true,"picture":null,
    "group":{"JID":"120363025246125486@g.us","Name":"Квартиры СПб","IsAnnounce":false,
        "Participants":[
            {"JID":"79990001122@s.whatsapp.net","IsAdmin":true,"IsSuperAdmin":true},
            {"JID":"79115576367:3@s.whatsapp.net","IsAdmin":false,"IsSuperAdmin":false}]}},
    "uuid":"2f099bc3-478d"}"#;

#[tokio::test]
async fn group_info_reads_contact_info_of_the_group() {
    let c = client();
    reply(&c, 200, GROUP_CONTACT);
    let facts = c.group_info(&creds(), &group()).await.unwrap().unwrap();
    assert_eq!(facts.name.as_deref(), Some("Квартиры СПб"));
    assert_eq!(facts.announce, Some(false));
    assert_eq!(
        facts.participants,
        Some(vec!["79990001122".to_string(), "79115576367".into()])
    );
    assert_eq!(facts.admins, Some(vec!["79990001122".to_string()]));
    let seen = last(&c);
    assert_eq!((seen.method, seen.body), (HttpMethod::Get, None));
    assert_eq!(
        seen.url,
        "http://127.0.0.1:9/api/sync/contact/info?profile_id=2f099bc3-478d&user_id=120363025246125486%40g.us"
    );
    assert_eq!(seen.headers, vec![("authorization", TOKEN.to_string())]);
}

#[tokio::test]
async fn group_info_is_none_when_the_id_is_no_group() {
    let c = client();
    let none = [
        // Answers that say it is no group.
        (
            200,
            r#"{"status":"done","profile":{"id":"120363025246125486@g.us","is_group":false}}"#,
        ),
        (200, r#"{"status":"done","profile":null}"#),
        (200, r#"{"status":"done"}"#),
        (
            200,
            r#"{"status":"done","profile":{"id":"120363025246125486@g.us"}}"#,
        ),
        // Refusals that say the id resolves to nothing (the wording is unknown: spec §7.8).
        (400, r#"{"status":"error","detail":"Contact not found"}"#),
        (404, r#"{"status":"error","detail":"contact not found"}"#),
        (
            200,
            r#"{"status":"error","detail":"error: not found contact"}"#,
        ),
        (
            400,
            r#"{"status":"error","detail":"failed to get group info: that group does not exist"}"#,
        ),
        (
            400,
            r#"{"status":"error","detail":"you're not participating in that group"}"#,
        ),
        (400, r#"{"status":"error","detail":"invalid JID"}"#),
        (400, r#"{"status":"error","detail":"No such chat"}"#),
        (422, r#"{"error":"user not found"}"#),
    ];
    for (status, body) in none {
        reply(&c, status, body);
        assert_eq!(
            c.group_info(&creds(), &group()).await,
            Ok(None),
            "{status} {body}"
        );
    }
}

#[tokio::test]
async fn group_info_of_a_group_with_unknown_facts_is_some() {
    let c = client();
    for body in [
        // Said to be a group, nothing more: the facts are unknown, not "no group".
        r#"{"status":"done","profile":{"id":"120363025246125486@g.us","is_group":true}}"#,
        r#"{"status":"done","profile":{"is_group":true,"group":null}}"#,
        r#"{"status":"done","profile":{"is_group":true,"group":"odd"}}"#,
        // No flag, but a group object.
        r#"{"status":"done","profile":{"group":{}}}"#,
    ] {
        reply(&c, 200, body);
        assert_eq!(
            c.group_info(&creds(), &group()).await,
            Ok(Some(GroupFacts::default())),
            "{body}"
        );
    }
    // A flag that is not a bool does not decide; the group object does.
    reply(
        &c,
        200,
        r#"{"status":"done","profile":{"is_group":"yes","group":{"Name":"G"}}}"#,
    );
    let facts = c.group_info(&creds(), &group()).await.unwrap().unwrap();
    assert_eq!(facts.name.as_deref(), Some("G"));
}

#[tokio::test]
async fn group_info_failures_are_classified_as_the_other_reads() {
    let c = client();
    answer(&c, Ok(response(429, Some(7), "")));
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::RateLimited(7000))
    );
    reply(&c, 502, "bad gateway");
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::Temporary("HTTP 502: bad gateway".into()))
    );
    answer(&c, Err(failure(TransportErrorKind::Connect, "refused")));
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::Temporary("connection failed: refused".into()))
    );
    answer(&c, Err(failure(TransportErrorKind::Timeout, "")));
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::Temporary("timed out".into()))
    );
    reply(&c, 200, "<html>");
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::Temporary(
            "HTTP 200 with an unreadable answer".into()
        ))
    );
    reply(
        &c,
        200,
        r#"{"detail":"Not authorized in whatsapp","status":"error"}"#,
    );
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::NotAuthorized)
    );
    reply(
        &c,
        400,
        r#"{"detail":"Profile not found","status":"error"}"#,
    );
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::ProfileNotFound)
    );
    reply(&c, 401, r#"{"detail":"Unauthorized","status":"error"}"#);
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::BadToken)
    );
    reply(&c, 402, "");
    assert_eq!(
        c.group_info(&creds(), &group()).await,
        Err(WappiError::NotPaid)
    );
    // Refusals that do not say "no such group" stay errors: a path the service lacks, a
    // refusal about the token, a pending answer.
    let errors = [
        (404, "Not Found", "Not Found"),
        (404, "404 page not found", "404 page not found"),
        (
            400,
            r#"{"detail":"invalid token","status":"error"}"#,
            "invalid token",
        ),
        (
            400,
            r#"{"detail":"user_id is required","status":"error"}"#,
            "user_id is required",
        ),
        (200, r#"{"status":"pending","detail":"wait"}"#, "wait"),
    ];
    for (status, body, detail) in errors {
        reply(&c, status, body);
        assert_eq!(
            c.group_info(&creds(), &group()).await,
            Err(WappiError::Rejected(detail.into())),
            "{status} {body}"
        );
    }
}

#[test]
fn unresolved_details() {
    for yes in [
        "Contact not found",
        "error: not found contact",
        "that group does not exist",
        "you're not participating in that group",
        "Invalid JID",
        "no such chat",
        "user doesn't exist",
    ] {
        assert!(unresolved(yes), "{yes}");
    }
    for no in [
        "Not Found",
        "not found",
        "Profile not found",
        "invalid token",
        "invalid profile_id",
        "group is busy",
        "",
    ] {
        assert!(!unresolved(no), "{no}");
    }
}
