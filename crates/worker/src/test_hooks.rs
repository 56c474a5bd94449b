//! Everything that exists only for the tests, all off unless `GROUPCAST_TEST_HOOKS=1`:
//!
//! - **Settings** ([`TestHooks`]): the master switch and the faults asked for, read from the
//!   vars with the other settings (`crate::settings` keeps them in `WorkerSettings::test_hooks`).
//! - **The "crash after a send" fault** (`GROUPCAST_TEST_CRASH_AFTER_SEND=N`, wasm32 only):
//!   `Hooks` counts the runner's successful Wappi sends (through the Wappi wrapper of
//!   `hooked_wappi`) in the runner's storage; after the N-th, the next ledger write fails
//!   (`before_ledger_write`, called by `D1Db`) and the runner's alarm throws
//!   (`Hooks::take_crash`), as if the isolate died between the Wappi call and the ledger write.
//! - **The `/__test/*` routes** (`route`, wasm32 only; dispatched by `app::fetch` when the
//!   hooks are on): `POST /__test/queue` puts a task on `MAILING_QUEUE` as is, so a test can
//!   deliver the same task twice; `POST /__test/collage?n=N` is the collage benchmark (below);
//!   `GET /__test/counts?profile=P` answers the resource counters of `crate::counts`, this
//!   isolate's and those of profile P's runner (the cost benchmark,
//!   `groupcast-worker-bench counts`, reads them before and after a mailing);
//!   `POST /__test/db-contract`, in a build with the `contract` feature only, runs the core's
//!   storage contract (`groupcast_core::testing::db_contract_suite`) against the real D1.
//!   The first three also need the webhook secret header.
//!
//! The collage benchmark builds the collage of the photos in the body N times with
//! `groupcast_core::collage::build_collage` (default options) and answers JSON:
//! `{"builds", "photos", "width", "height", "bytes", "quality", "memory_before_bytes",
//! "memory_after_bytes"}`. The body is the photos one after another, each preceded by its length
//! as 4 bytes little-endian ([`split_photos`]): the cheapest format to cut without copying.
//! Time is measured by the caller, from outside: inside Workers `Date.now()` does not advance
//! during pure computation, so the benchmark times the round trip of `?n=0` (body read and split
//! only) against `?n=K` and divides the difference by K. Memory is the wasm linear memory size,
//! which never shrinks: after the builds it is the peak of the module's memory so far (request
//! bodies of earlier calls included).
//!
//! The pure parts (settings, body splitting) build natively and are tested here.

use crate::bindings::{GROUPCAST_TEST_CRASH_AFTER_SEND, GROUPCAST_TEST_HOOKS};
use groupcast_core::config::{Lookup, SettingError};

/// Fault injection for the Worker-specific end-to-end tests; all off unless
/// `GROUPCAST_TEST_HOOKS=1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// `GROUPCAST_TEST_HOOKS=1`: also enables the `/__test/*` routes.
    pub enabled: bool,
    /// The runner's alarm throws once, right after its N-th successful Wappi send (counted
    /// per runner in its storage) and before the ledger records it
    /// (`GROUPCAST_TEST_CRASH_AFTER_SEND`).
    pub crash_after_send: Option<u32>,
}

impl TestHooks {
    /// Reads the hooks from the vars; without the master switch every hook stays off.
    pub fn from_vars(src: &Lookup<'_>) -> Result<TestHooks, SettingError> {
        if !src.flag(GROUPCAST_TEST_HOOKS)? {
            return Ok(TestHooks::default());
        }
        let crash_after_send = match src.get(GROUPCAST_TEST_CRASH_AFTER_SEND) {
            None => None,
            Some(_) => Some(src.parse(GROUPCAST_TEST_CRASH_AFTER_SEND, 0, "a whole number")?),
        };
        Ok(TestHooks {
            enabled: true,
            crash_after_send,
        })
    }
}

/// Most builds one call may ask for.
pub const MAX_BUILDS: u32 = 50;

/// Cuts a body of length-prefixed photos (`u32` little-endian length, then the bytes, repeated)
/// into the photos. `None` when a length runs past the end.
pub fn split_photos(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut photos = Vec::new();
    while !body.is_empty() {
        let (len, rest) = body.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (photo, rest) = rest.split_at(len);
        photos.push(photo);
        body = rest;
    }
    Some(photos)
}

/// The number of builds asked for by the query string (`n=K`, default 1, at most
/// [`MAX_BUILDS`]); `None` when `n` is not a number.
pub fn builds_asked(query: &str) -> Option<u32> {
    match groupcast_core::payments::form_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "n")
    {
        None => Some(1),
        Some((_, v)) => v.parse::<u32>().ok().map(|n| n.min(MAX_BUILDS)),
    }
}

#[cfg(target_arch = "wasm32")]
pub use fault::{before_ledger_write, hooked_wappi, Hooks};
#[cfg(target_arch = "wasm32")]
pub use route::route;

/// The "crash after a send" fault.
#[cfg(target_arch = "wasm32")]
mod fault {
    use super::TestHooks;
    use crate::store::Store;
    use groupcast_core::model::ids::GroupJid;
    use groupcast_core::ports::{async_trait, DbError, WappiApi};
    use groupcast_core::wappi::{
        Dialog, GroupFacts, MessagesPage, ProfileStatus, Sent, WappiCreds, WappiError,
    };
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;

    /// The "crash after a send" fault of one runner: after its N-th successful Wappi send,
    /// the next ledger write fails and the alarm throws, as if the isolate died in between.
    #[derive(Clone)]
    pub struct Hooks {
        crash_after: Option<u32>,
        storage: Rc<Store>,
        pending: Rc<Cell<bool>>,
    }

    impl Hooks {
        pub fn new(hooks: &TestHooks, storage: Rc<Store>) -> Hooks {
            Hooks {
                crash_after: hooks.crash_after_send,
                storage,
                pending: Rc::new(Cell::new(false)),
            }
        }

        /// Counts a successful send (in the runner's storage) and arms the crash at the N-th.
        async fn after_send(&self) {
            let Some(n) = self.crash_after else { return };
            let crashed: Option<bool> = self.storage.get("test_crashed").await.ok().flatten();
            if crashed == Some(true) {
                return;
            }
            let count = self
                .storage
                .get::<u32>("test_sends")
                .await
                .ok()
                .flatten()
                .unwrap_or(0)
                + 1;
            let _ = self.storage.put("test_sends", count).await;
            if count >= n {
                let _ = self.storage.put("test_crashed", true).await;
                self.pending.set(true);
            }
        }

        /// Whether a crash is armed (the ledger refuses writes until it is taken).
        fn crash_pending(&self) -> bool {
            self.pending.get()
        }

        /// Takes the armed crash: the error the runner's alarm throws, `None` when no crash
        /// is armed.
        pub fn take_crash(&self) -> Option<worker::Error> {
            if !self.pending.replace(false) {
                return None;
            }
            worker::console_log!("runner: test hook crash after a send");
            Some(worker::Error::RustError(
                "test hook: crash after send".into(),
            ))
        }
    }

    /// Called by `D1Db` before it records a send: refuses the write while a crash is armed.
    pub fn before_ledger_write(hooks: Option<&Hooks>) -> Result<(), DbError> {
        if hooks.is_some_and(Hooks::crash_pending) {
            return Err(DbError::Backend(
                "test hook: simulated crash before the ledger write".into(),
            ));
        }
        Ok(())
    }

    /// The Wappi port of the services: `wappi` itself, or wrapped to count successful sends
    /// when the crash is asked for.
    pub fn hooked_wappi<W: WappiApi + 'static>(
        wappi: W,
        hooks: Option<Hooks>,
    ) -> Arc<dyn WappiApi> {
        match hooks {
            Some(h) if h.crash_after.is_some() => Arc::new(HookedWappi {
                inner: wappi,
                hooks: h,
            }),
            _ => Arc::new(wappi),
        }
    }

    /// Wappi with the crash hook counting successful sends.
    struct HookedWappi<W> {
        inner: W,
        hooks: Hooks,
    }

    #[async_trait(?Send)]
    impl<W: WappiApi> WappiApi for HookedWappi<W> {
        async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
            self.inner.get_status(creds).await
        }

        async fn send_text(
            &self,
            creds: &WappiCreds,
            to: &GroupJid,
            body: &str,
        ) -> Result<Sent, WappiError> {
            let r = self.inner.send_text(creds, to, body).await;
            if r.is_ok() {
                self.hooks.after_send().await;
            }
            r
        }

        async fn send_image(
            &self,
            creds: &WappiCreds,
            to: &GroupJid,
            b64: &str,
            caption: Option<&str>,
        ) -> Result<Sent, WappiError> {
            let r = self.inner.send_image(creds, to, b64, caption).await;
            if r.is_ok() {
                self.hooks.after_send().await;
            }
            r
        }

        async fn edit_message(
            &self,
            creds: &WappiCreds,
            group: &GroupJid,
            message_id: &str,
            body: &str,
        ) -> Result<Sent, WappiError> {
            let r = self
                .inner
                .edit_message(creds, group, message_id, body)
                .await;
            if r.is_ok() {
                self.hooks.after_send().await;
            }
            r
        }

        async fn delete_message(
            &self,
            creds: &WappiCreds,
            group: &GroupJid,
            message_id: &str,
        ) -> Result<Sent, WappiError> {
            let r = self.inner.delete_message(creds, group, message_id).await;
            if r.is_ok() {
                self.hooks.after_send().await;
            }
            r
        }

        async fn list_chats(
            &self,
            creds: &WappiCreds,
            limit: u32,
            offset: u32,
        ) -> Result<Vec<Dialog>, WappiError> {
            self.inner.list_chats(creds, limit, offset).await
        }

        async fn group_info(
            &self,
            creds: &WappiCreds,
            group: &GroupJid,
        ) -> Result<Option<GroupFacts>, WappiError> {
            self.inner.group_info(creds, group).await
        }

        async fn chat_messages(
            &self,
            creds: &WappiCreds,
            chat: &GroupJid,
            limit: u32,
            offset: u32,
        ) -> Result<MessagesPage, WappiError> {
            self.inner.chat_messages(creds, chat, limit, offset).await
        }
    }
}

/// The `/__test/*` routes.
#[cfg(target_arch = "wasm32")]
mod route {
    use super::{builds_asked, split_photos};
    use crate::env;
    use crate::http::{has_webhook_secret, text};
    use crate::wire::QueueTask;
    use groupcast_core::collage::{build_collage, CollageOptions};
    use groupcast_core::services::Services;
    use groupcast_core::Secret;
    use worker::{Env, Method, Request, Response};

    /// Serves a `/__test/*` request; the caller has checked that the hooks are on. Anything
    /// else answers 404 like an unknown route.
    pub async fn route(
        req: &mut Request,
        env: &Env,
        webhook_secret: &Secret,
        svc: &Services,
    ) -> worker::Result<Response> {
        #[cfg(not(feature = "contract"))]
        let _ = svc;
        let path = req.path();
        match (req.method(), path.as_str()) {
            #[cfg(feature = "contract")]
            (Method::Post, "/__test/db-contract") => {
                let tag = format!("w{}", svc.now_ms());
                groupcast_core::testing::db_contract_suite(&*svc.db, &tag).await;
                text(200, "db contract passed")
            }
            (Method::Post, "/__test/queue") => queue(req, webhook_secret, env).await,
            (Method::Post, "/__test/collage") => collage(req, webhook_secret).await,
            (Method::Get, "/__test/counts") => counts(req, webhook_secret, env).await,
            _ => text(404, "not found"),
        }
    }

    /// `POST /__test/queue` (with the webhook secret header): puts a message (`{"mailing_id"}`
    /// or `{"collage"}`) on `MAILING_QUEUE` as is, so a test can deliver the same task twice.
    async fn queue(
        req: &mut Request,
        webhook_secret: &Secret,
        env: &Env,
    ) -> worker::Result<Response> {
        if !has_webhook_secret(req, webhook_secret)? {
            return text(401, "unauthorized");
        }
        let task: QueueTask = req.json().await?;
        env::send_to_queue(env, task).await?;
        text(200, "queued")
    }

    /// `GET /__test/counts?profile=P` (with the webhook secret header): this isolate's
    /// counters (`edge`, read first) and those of profile P's runner (`runner`, asked with
    /// `GET https://runner/counts`), and whether the two are the same counters
    /// (`same_isolate`: the runner saw the edge's read, see `crate::counts`).
    async fn counts(req: &Request, webhook_secret: &Secret, env: &Env) -> worker::Result<Response> {
        if !has_webhook_secret(req, webhook_secret)? {
            return text(401, "unauthorized");
        }
        let edge = crate::counts::snapshot();
        let query = req.url()?.query().unwrap_or("").to_string();
        let Some((_, profile)) = groupcast_core::payments::form_pairs(&query)
            .into_iter()
            .find(|(k, _)| k == "profile")
        else {
            return text(400, "profile=P is needed");
        };
        let stub = env::profile_runner(env, &profile)?;
        let mut resp =
            env::call_object(&stub, Request::new("https://runner/counts", Method::Get)?).await?;
        let runner: std::collections::BTreeMap<String, u64> = resp.json().await?;
        let edge_reads = edge.0.get("counts_reads").copied().unwrap_or(0);
        let same_isolate = runner.get("counts_reads") == Some(&(edge_reads + 1));
        Response::from_json(&serde_json::json!({
            "edge": edge,
            "runner": runner,
            "same_isolate": same_isolate,
        }))
    }

    /// The wasm linear memory size in bytes (64 KiB pages).
    fn memory_bytes() -> u64 {
        core::arch::wasm32::memory_size::<0>() as u64 * 65_536
    }

    /// `POST /__test/collage?n=N` (with the webhook secret header; see the module docs).
    async fn collage(req: &mut Request, webhook_secret: &Secret) -> worker::Result<Response> {
        if !has_webhook_secret(req, webhook_secret)? {
            return text(401, "unauthorized");
        }
        let Some(builds) = builds_asked(req.url()?.query().unwrap_or("")) else {
            return text(400, "n must be a number");
        };
        let body = req.bytes().await?;
        let Some(photos) = split_photos(&body) else {
            return text(400, "the body is not length-prefixed photos");
        };
        let memory_before = memory_bytes();
        let opts = CollageOptions::default();
        let mut last = None;
        for _ in 0..builds {
            match build_collage(&photos, &opts) {
                Ok(c) => last = Some(c),
                Err(e) => return text(422, &format!("collage failed: {e}")),
            }
        }
        let body = serde_json::json!({
            "builds": builds,
            "photos": photos.len(),
            "width": last.as_ref().map(|c| c.width),
            "height": last.as_ref().map(|c| c.height),
            "bytes": last.as_ref().map(|c| c.jpeg.len()),
            "quality": last.as_ref().map(|c| c.quality),
            "memory_before_bytes": memory_before,
            "memory_after_bytes": memory_bytes(),
        });
        Response::from_json(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(photos: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for p in photos {
            body.extend_from_slice(&(p.len() as u32).to_le_bytes());
            body.extend_from_slice(p);
        }
        body
    }

    #[test]
    fn splits_length_prefixed_photos() {
        let body = framed(&[b"abc", b"", b"de"]);
        assert_eq!(
            split_photos(&body),
            Some(vec![&b"abc"[..], &b""[..], &b"de"[..]])
        );
        assert_eq!(split_photos(&[]), Some(vec![]));
    }

    #[test]
    fn refuses_a_truncated_body() {
        let body = framed(&[b"abcdef"]);
        assert_eq!(split_photos(&body[..body.len() - 1]), None);
        assert_eq!(split_photos(&[1, 0]), None);
    }

    #[test]
    fn reads_the_number_of_builds() {
        assert_eq!(builds_asked(""), Some(1));
        assert_eq!(builds_asked("n=0"), Some(0));
        assert_eq!(builds_asked("x=1&n=3"), Some(3));
        assert_eq!(builds_asked("n=9999"), Some(MAX_BUILDS));
        assert_eq!(builds_asked("n=many"), None);
    }
}
