//! A local fake of Wappi (`specs/wappi.md`) for end-to-end tests: an axum server on
//! `127.0.0.1:0` that answers the eight calls groupcast makes (`get/status`, `message/send`,
//! `message/img/send`, `message/edit`, `message/delete`, `chats/get`, `messages/get`,
//! `contact/info`) with the shapes of the spec, records every request it receives, stores every accepted send in the chat so that
//! `messages/get` shows it, and injects faults on demand (5xx, 429 with `Retry-After`, delays,
//! "not authorized", and a connection dropped before or after the message was delivered).
//!
//! Groups are modelled per profile: a group the account is in (listed by `chats/get` with a
//! whatsmeow-`GroupInfo`-shaped `group` object), a group it has left (unlisted, still resolved
//! by `contact/info`, without the account among the participants), and announcement-only
//! groups where the account may or may not post. Our posts carry a `delivery_status` that
//! moves over time along a [`DeliveryPlan`] (`pending` → `delivered` → `read`, or an end in
//! `undelivered` / `error`), per profile or per group.
//!
//! Where the spec is silent the fake makes a choice and says so in the item's doc comment;
//! assumptions are marked "assumption", and behaviours the spec does not describe at all (made
//! up so a test can stage a scenario: a 5xx after the message went out, a send whose message
//! shows up late, chatter that buries our post, history without paging, `null` fields, what
//! happens to a post into a group the account cannot post in, the timings of delivery states)
//! are marked "invented" (`INVENTED:` where a whole behaviour is made up).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One request as the fake received it, and what the fake did with it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The URL path, e.g. `/api/sync/message/send`.
    pub path: String,
    /// The `profile_id` query parameter (empty when missing).
    pub profile_id: String,
    /// The raw `Authorization` header (empty when missing).
    pub token: String,
    /// The body's `recipient`, as sent.
    pub recipient: Option<String>,
    /// The body's `body` (text sends).
    pub body_text: Option<String>,
    pub caption: Option<String>,
    /// Length of the body's `b64_file`.
    pub b64_len: Option<usize>,
    pub b64: Option<String>,
    /// The `chat_id` query parameter (`messages/get`).
    pub chat_id: Option<String>,
    /// The `user_id` query parameter (`contact/info`).
    pub user_id: Option<String>,
    /// The id given to the stored message, for delivered sends.
    pub message_id: Option<String>,
    /// When the request arrived.
    pub at: Instant,
    /// When the request arrived, unix milliseconds.
    pub at_ms: i64,
    pub outcome: Outcome,
}

impl Request {
    /// A `message/send` or `message/img/send` call.
    pub fn is_send(&self) -> bool {
        is_send_path(&self.path)
    }

    /// A `message/edit` that was carried out (whatever its answer).
    pub fn is_edit(&self) -> bool {
        self.path == EDIT_PATH && matches!(self.outcome, Outcome::Changed { .. })
    }

    /// A `message/delete` that was carried out (whatever its answer).
    pub fn is_delete(&self) -> bool {
        self.path == DELETE_PATH && matches!(self.outcome, Outcome::Changed { .. })
    }

    /// The message was stored in the chat (whether or not the answer reached the client) and
    /// reaches its members: not a send accepted into a group the account cannot post in
    /// ([`Outcome::AcceptedNotDelivered`]).
    pub fn is_delivered(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Delivered | Outcome::DeliveredThenDropped | Outcome::DeliveredThenRefused(_)
        )
    }
}

/// What the fake did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A send: stored in the chat and answered `status: done` (possibly after a delay).
    Delivered,
    /// A send: stored in the chat, then the connection was dropped without an answer.
    DeliveredThenDropped,
    /// A send: stored in the chat, then answered with this HTTP status (a 502/504 of a gateway
    /// that timed out while WhatsApp took the message; see [`Fault::AcceptThenStatus`]).
    DeliveredThenRefused(u16),
    /// The connection was dropped without an answer and nothing was stored.
    Dropped,
    /// INVENTED (Wappi's real answer is unknown): a send into a group the account has left
    /// ([`FakeWappi::leave_group`]) or may not post in ([`FakeWappi::set_announce`]). It is
    /// answered like a delivered one (`status: done`, a `message_id`; or whatever fault was
    /// queued for it) and shows in the chat's `messages/get` with the
    /// [undeliverable plan](FakeWappi::set_undeliverable_plan) (`error` by default), but it
    /// never reaches the group: not counted by [`FakeWappi::deliveries`].
    AcceptedNotDelivered,
    /// An edit or a delete (`message/edit`, `message/delete`) carried out on the stored message;
    /// `answered` is false when the answer was then dropped or replaced by an error status.
    Changed { answered: bool },
    /// A read answered normally (`get/status` also when the profile is not authorized).
    Answered,
    /// An error answer (HTTP status, and the `detail` or raw body); nothing was stored.
    Refused { http: u16, detail: String },
}

/// A fault to inject into one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and this raw body, doing nothing.
    Status(u16, String),
    /// HTTP 429, `Retry-After: <secs>`, body `{"detail":"Too many requests","status":"error"}`.
    RateLimit { retry_after_secs: u64 },
    /// Carry the request out, then drop the connection without answering: the client sees a
    /// broken connection after its request was sent (outcome unknown to it).
    DropAfterAccept,
    /// Drop the connection without answering and without carrying the request out.
    DropBeforeAccept,
    /// Carry the request out, then hold the answer this long (longer than the client's
    /// timeout makes a timeout whose send did happen).
    Delay(Duration),
    /// `200 {"detail":"Not authorized in whatsapp","status":"error"}`, doing nothing.
    NotAuthorized,
    /// Invented (the spec says nothing of it, but a gateway in front of a slow synchronous
    /// send does it): carry the send out, then answer this HTTP status (502, 504, …) with
    /// `{"detail":"Bad Gateway","status":"error"}`. The history shows the message.
    AcceptThenStatus(u16),
    /// Invented: a send whose effect is late. The message enters the chat's history only
    /// `visible_after` the request arrived (its `time` is then), and the answer comes
    /// `answer_after` the request arrived (longer than the client's timeout makes a timeout
    /// while Wappi is still carrying the send out).
    Slow {
        visible_after: Duration,
        answer_after: Duration,
    },
}

/// A running fake. Dropping it stops accepting connections.
pub struct FakeWappi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    state: Mutex<Inner>,
    /// Woken after every recorded request.
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    profiles: HashMap<String, Profile>,
    requests: Vec<Request>,
    send_faults: VecDeque<Fault>,
    read_faults: VecDeque<Fault>,
    /// Per profile: 429s still to give, and their `Retry-After`.
    storms: HashMap<String, (usize, u64)>,
    random: Option<RandomFaults>,
    min_gaps: HashMap<String, Duration>,
    strict_recipients: bool,
    /// Chat id → how many messages of other members follow each of our posts there.
    chatter: HashMap<String, usize>,
    /// Invented: `messages/get` ignores `offset` (always the newest page).
    no_history_paging: bool,
    /// Invented: other members' messages carry `null` in `caption`, `senderName` and `isRead`.
    null_fields: bool,
    /// Chat id → the delivery plan of our posts sent there from now on (wins over the
    /// profile's plan).
    group_delivery: HashMap<String, DeliveryPlan>,
    /// The delivery plan of a post into a group the account cannot post in (`None`: the
    /// default, [`DeliveryPlan::undeliverable`]).
    undeliverable: Option<DeliveryPlan>,
}

/// A message in a chat, and when it becomes visible in the history (unix ms).
#[derive(Clone)]
struct Stored {
    visible_at_ms: i64,
    msg: Value,
    /// Our posts: how `delivery_status` moves from `visible_at_ms` on (others' messages keep
    /// the one in `msg`).
    plan: Option<DeliveryPlan>,
}

/// How the `delivery_status` of one of our posts moves after the send. The value set is the
/// spec's (`pending`, `delivered`, `read`, `undelivered`, `temporary ban`, `error`: wappi.md §4,
/// next-capabilities.md §2 row 9); INVENTED: the timings, and that `messages/get` shows the
/// status of the moment it is asked (Wappi documents no timeline).
///
/// A plan is a list of steps `(after, status)`: from `after` past the moment the message
/// entered the chat on, the post shows `status`; before the first step it shows `pending`.
/// The plan of a post is fixed when it is sent: changing a plan changes the posts sent after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPlan {
    steps: Vec<(Duration, String)>,
}

impl Default for DeliveryPlan {
    /// `delivered` at once, never `read`: what an ordinary post shows.
    fn default() -> Self {
        DeliveryPlan::delivered_after(Duration::ZERO)
    }
}

impl DeliveryPlan {
    /// `pending`, then `delivered` from `after` on.
    pub fn delivered_after(after: Duration) -> Self {
        DeliveryPlan::pending_forever().step(after, "delivered")
    }

    /// `pending` for ever (a post WhatsApp never hands over: the silent drop of
    /// next-capabilities.md §1 row 3).
    pub fn pending_forever() -> Self {
        DeliveryPlan { steps: Vec::new() }
    }

    /// `status` from the start, with no `pending` phase (what
    /// [`FakeWappi::set_delivery_status`] sets).
    pub fn fixed(status: &str) -> Self {
        DeliveryPlan::pending_forever().step(Duration::ZERO, status)
    }

    /// `pending`, then `status` from `after` on: an end such as `undelivered` or `error`.
    pub fn ends_in(status: &str, after: Duration) -> Self {
        DeliveryPlan::pending_forever().step(after, status)
    }

    /// INVENTED default for a post into a group the account cannot post in: `error` at once.
    pub fn undeliverable() -> Self {
        DeliveryPlan::fixed("error")
    }

    /// Adds `read` from `after` (measured from the send, like every step) on.
    pub fn read_after(self, after: Duration) -> Self {
        self.step(after, "read")
    }

    /// Adds a step: `status` from `after` past the send on (a later step wins).
    pub fn step(mut self, after: Duration, status: &str) -> Self {
        self.steps.push((after, status.to_string()));
        self.steps.sort_by_key(|(at, _)| *at);
        self
    }

    /// The status shown `elapsed` after the message entered the chat.
    pub fn status_at(&self, elapsed: Duration) -> &str {
        self.steps
            .iter()
            .rev()
            .find(|(at, _)| *at <= elapsed)
            .map_or("pending", |(_, s)| s.as_str())
    }
}

struct RandomFaults {
    rng: StdRng,
    p_5xx: f64,
    p_drop_after_accept: f64,
}

struct Profile {
    token: String,
    authorized: bool,
    /// `get/status` `authorized_at` (the spec's production sample unless a test sets it).
    authorized_at: String,
    /// How the `delivery_status` of our posts sent from now on moves (`delivered` at once
    /// unless a test sets another plan or a fixed status such as `temporary ban`).
    delivery: DeliveryPlan,
    name: String,
    phone: String,
    groups: Vec<Group>,
    /// Chat id → messages, oldest first (by the time they became visible).
    messages: HashMap<String, Vec<Stored>>,
    last_delivery: Option<Instant>,
}

/// A group a profile is or was in.
struct Group {
    jid: String,
    name: String,
    /// The account left the group (or was removed): not listed, not among the participants.
    left: bool,
    /// `IsAnnounce`: only admins may post.
    announce: bool,
    /// The account is an admin of the group.
    admin: bool,
}

impl Group {
    /// Whether a post of the account reaches the group.
    fn postable(&self) -> bool {
        !self.left && (!self.announce || self.admin)
    }
}

/// The answer to give, and what to do after recording the request.
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<u64>,
    then: Then,
}

enum Then {
    Answer,
    Delay(Duration),
    Drop,
    /// Answer this HTTP status after carrying the send out.
    Status(u16),
}

/// The largest request body accepted (axum's default of 2 MB is too small for images).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Two personal chats every profile has, so that group filtering is exercised
/// (the first one is the spec's Example 3).
const PERSONAL: [(&str, &str, &str, &str); 2] = [
    ("79115576367@c.us", "Макс Моряк ⚓", "Flood", "В кино"),
    ("79602041980@c.us", "Анна", "Anna", ""),
];

impl FakeWappi {
    /// Starts the fake on `127.0.0.1:0`, on the current tokio runtime.
    pub async fn start() -> FakeWappi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        let app = Router::new()
            .fallback(handle)
            // Base64 images are large; the real limit is unknown (spec §7.4).
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let listener = DroppableListener(listener);
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await;
        });
        FakeWappi {
            addr,
            shared,
            server,
        }
    }

    /// The base URL to give the client, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // --- accounts -----------------------------------------------------------------------------

    /// Adds a profile (authorized, with two personal chats and no group), or replaces the token
    /// of an existing one.
    pub fn add_profile(&self, profile_id: &str, token: &str) {
        let mut st = self.state();
        let n = st.profiles.len() as u64;
        st.profiles
            .entry(profile_id.to_string())
            .and_modify(|p| p.token = token.to_string())
            .or_insert_with(|| Profile {
                token: token.to_string(),
                authorized: true,
                authorized_at: "2026-08-07T02:40:35.189138+03:00".into(),
                delivery: DeliveryPlan::default(),
                name: format!("Fake {profile_id}"),
                phone: format!("7900{:07}", 1_000_000 + n),
                groups: Vec::new(),
                messages: HashMap::new(),
                last_delivery: None,
            });
    }

    /// The `delivery_status` the history shows for our posts sent from now on, from the start
    /// and for ever (the spec's value set: `pending`, `delivered`, `read`, `undelivered`,
    /// `temporary ban`, `error`): [`DeliveryPlan::fixed`] as the profile's plan.
    pub fn set_delivery_status(&self, profile_id: &str, status: &str) {
        self.set_delivery_plan(profile_id, DeliveryPlan::fixed(status));
    }

    /// How the `delivery_status` of the profile's posts sent from now on moves over time
    /// (default: [`DeliveryPlan::default`], `delivered` at once). A group's own plan
    /// ([`set_group_delivery`](Self::set_group_delivery)) wins over it.
    pub fn set_delivery_plan(&self, profile_id: &str, plan: DeliveryPlan) {
        if let Some(p) = self.state().profiles.get_mut(profile_id) {
            p.delivery = plan;
        }
    }

    /// How the `delivery_status` of posts sent to `jid` from now on (any profile) moves over
    /// time, in place of the profile's plan: e.g. [`DeliveryPlan::pending_forever`], or
    /// [`DeliveryPlan::ends_in`] `undelivered` / `error`. A post the account cannot make there
    /// follows the [undeliverable plan](Self::set_undeliverable_plan) instead.
    pub fn set_group_delivery(&self, jid: &str, plan: DeliveryPlan) {
        self.state()
            .group_delivery
            .insert(normalize_chat(jid), plan);
    }

    /// Drops the plan of [`set_group_delivery`](Self::set_group_delivery): posts sent to `jid`
    /// from now on follow their profile's plan again.
    pub fn clear_group_delivery(&self, jid: &str) {
        self.state().group_delivery.remove(&normalize_chat(jid));
    }

    /// INVENTED: the delivery plan of a post into a group the account has left or may not post
    /// in (see [`Outcome::AcceptedNotDelivered`]). Default [`DeliveryPlan::undeliverable`]:
    /// `error` at once; [`DeliveryPlan::pending_forever`] stages the silent drop instead.
    pub fn set_undeliverable_plan(&self, plan: DeliveryPlan) {
        self.state().undeliverable = Some(plan);
    }

    /// What `get/status` says of when WhatsApp was linked to the profile (RFC 3339).
    pub fn set_authorized_at(&self, profile_id: &str, at: &str) {
        if let Some(p) = self.state().profiles.get_mut(profile_id) {
            p.authorized_at = at.to_string();
        }
    }

    /// Whether WhatsApp is connected on the profile. When not, sends answer
    /// `200 {"detail":"Not authorized in whatsapp","status":"error"}` (as do `chats/get` and
    /// `messages/get`: assumption), and `get/status` answers `authorized: false,
    /// app_status: "close"`.
    pub fn set_authorized(&self, profile_id: &str, authorized: bool) {
        if let Some(p) = self.state().profiles.get_mut(profile_id) {
            p.authorized = authorized;
        }
    }

    /// Adds a group the profile is a member of (listed by `chats/get`), or renames one it
    /// has; a group it had left it is in again. A new group is not announcement-only and the
    /// account is no admin there. Besides the account, the group has two other members
    /// (INVENTED numbers `7998…` and `7997…` derived from the jid, the first its creator and
    /// super admin): see [`group_phones`](Self::group_phones).
    pub fn add_group(&self, profile_id: &str, jid: &str, name: &str) {
        if let Some(p) = self.state().profiles.get_mut(profile_id) {
            match p.groups.iter_mut().find(|g| g.jid == jid) {
                Some(g) => {
                    g.name = name.to_string();
                    g.left = false;
                }
                None => p.groups.push(Group {
                    jid: jid.to_string(),
                    name: name.to_string(),
                    left: false,
                    announce: false,
                    admin: false,
                }),
            }
        }
    }

    /// The account has left the group `jid` (or was removed): `chats/get` no longer lists it,
    /// `contact/info` still resolves it with the account's phone not among the participants,
    /// and sends to it are accepted but never delivered (INVENTED, see
    /// [`Outcome::AcceptedNotDelivered`]). [`add_group`](Self::add_group) joins it again.
    /// Nothing happens for a group the profile never had.
    pub fn leave_group(&self, profile_id: &str, jid: &str) {
        self.with_group(profile_id, jid, |g| g.left = true);
    }

    /// Makes the group `jid` announcement-only (`only_admins`, the `IsAnnounce` flag) or not,
    /// and the account an admin of it or not (`IsAdmin` of its participant entry). A send the
    /// account may not make (announcement-only, not an admin) is accepted but never delivered
    /// (INVENTED, see [`Outcome::AcceptedNotDelivered`]). Nothing happens for a group the
    /// profile does not have.
    pub fn set_announce(
        &self,
        profile_id: &str,
        jid: &str,
        only_admins: bool,
        account_is_admin: bool,
    ) {
        self.with_group(profile_id, jid, |g| {
            g.announce = only_admins;
            g.admin = account_is_admin;
        });
    }

    /// The phone numbers the participant list of group `jid` holds for `profile_id`, in order
    /// (the creator, the account unless it left, one more member); empty for a group the
    /// profile does not have.
    pub fn group_phones(&self, profile_id: &str, jid: &str) -> Vec<String> {
        let st = self.state();
        let Some(p) = st.profiles.get(profile_id) else {
            return Vec::new();
        };
        p.groups
            .iter()
            .find(|g| g.jid == jid)
            .map(|g| {
                p.participants(g)
                    .into_iter()
                    .map(|(phone, ..)| phone)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The phone of a profile as `get/status` reports it.
    pub fn phone(&self, profile_id: &str) -> Option<String> {
        self.state()
            .profiles
            .get(profile_id)
            .map(|p| p.phone.clone())
    }

    /// Changes the group `jid` of a profile, if it has it.
    fn with_group(&self, profile_id: &str, jid: &str, change: impl FnOnce(&mut Group)) {
        let mut st = self.state();
        let group = st
            .profiles
            .get_mut(profile_id)
            .and_then(|p| p.groups.iter_mut().find(|g| g.jid == jid));
        if let Some(g) = group {
            change(g);
        }
    }

    /// When on, sends to a chat the profile does not have (not a group added with
    /// [`add_group`](Self::add_group), not a personal chat, not a bare phone number) are
    /// refused with `400 {"detail":"chat not found","status":"error"}` (assumption: the real
    /// answer is unknown). Off by default: every recipient is accepted.
    pub fn set_strict_recipients(&self, on: bool) {
        self.state().strict_recipients = on;
    }

    // --- faults -------------------------------------------------------------------------------

    /// Queues a fault for the next send (`message/send` or `message/img/send`, any profile,
    /// after the profile and token checks). Queued faults are used one per send, in order.
    pub fn push_fault(&self, fault: Fault) {
        self.state().send_faults.push_back(fault);
    }

    /// Queues a fault for the next read (`get/status`, `chats/get`, `messages/get`,
    /// `contact/info`).
    pub fn push_read_fault(&self, fault: Fault) {
        self.state().read_faults.push_back(fault);
    }

    /// Every send without a queued fault fails at random: with probability `p_5xx` an HTTP
    /// 500, 502 or 503 (no `Retry-After`), else with probability `p_drop_after_accept` a
    /// [`Fault::DropAfterAccept`]. The same seed gives the same draws for the same sequence of
    /// sends.
    pub fn set_random_faults(&self, seed: u64, p_5xx: f64, p_drop_after_accept: f64) {
        self.state().random = Some(RandomFaults {
            rng: StdRng::seed_from_u64(seed),
            p_5xx,
            p_drop_after_accept,
        });
    }

    /// Answers 429 with `Retry-After: retry_after_secs` to the next `count` sends of `profile_id`
    /// (queued one-shot faults go first).
    pub fn set_rate_limit_storm(&self, profile_id: &str, count: usize, retry_after_secs: u64) {
        self.state()
            .storms
            .insert(profile_id.to_string(), (count, retry_after_secs));
    }

    /// Refuses with 429 a send of `profile_id` that comes less than `gap` after the profile's
    /// previous delivered send (`Retry-After` = the rest of the gap, rounded up to whole
    /// seconds). `None` stops enforcing. Nothing is enforced by default: the real limits are
    /// unknown (spec §3).
    pub fn set_min_gap(&self, profile_id: &str, gap: Option<Duration>) {
        let mut st = self.state();
        match gap {
            Some(g) => st.min_gaps.insert(profile_id.to_string(), g),
            None => st.min_gaps.remove(profile_id),
        };
    }

    /// Invented (a busy group): after each of our posts to `jid`, `n` messages of other members
    /// enter the chat at once, so our post sinks below the newest `n`. `0` stops it.
    pub fn set_chatter_after_post(&self, jid: &str, n: usize) {
        self.state().chatter.insert(normalize_chat(jid), n);
    }

    /// Invented (an API without paging): `messages/get` ignores `offset` and always answers
    /// the newest page.
    pub fn set_history_paging(&self, on: bool) {
        self.state().no_history_paging = !on;
    }

    /// Invented: other members' messages in `messages/get` carry `null` in `caption`,
    /// `senderName` and `isRead` (the spec's Example 4 has `null` only in poll fields).
    pub fn set_null_fields_in_history(&self, on: bool) {
        self.state().null_fields = on;
    }

    /// Removes every queued fault, storm, random mode and enforced gap.
    pub fn clear_faults(&self) {
        let mut st = self.state();
        st.send_faults.clear();
        st.read_faults.clear();
        st.storms.clear();
        st.random = None;
        st.min_gaps.clear();
    }

    // --- what happened ------------------------------------------------------------------------

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// The sends that were stored in a chat (including [`Fault::DropAfterAccept`]), in order.
    pub fn deliveries(&self) -> Vec<Request> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.is_delivered())
            .cloned()
            .collect()
    }

    /// The edits carried out, in order (`chat_id`: the chat, `message_id`, `body_text`: the
    /// new text).
    pub fn edits(&self) -> Vec<Request> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.is_edit())
            .cloned()
            .collect()
    }

    /// The deletes carried out, in order (`chat_id`, `message_id`).
    pub fn deletes(&self) -> Vec<Request> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.is_delete())
            .cloned()
            .collect()
    }

    /// What `messages/get` would show of a chat's message now: (body or caption, isEdited,
    /// isDeleted); `None` when the fake holds no such message.
    pub fn message(&self, profile_id: &str, message_id: &str) -> Option<(String, bool, bool)> {
        let st = self.state();
        let profile = st.profiles.get(profile_id)?;
        profile.messages.values().flatten().find_map(|m| {
            (m.msg["id"] == message_id).then(|| {
                let text = |k: &str| m.msg[k].as_str().unwrap_or_default().to_string();
                let shown = if m.msg["type"] == "image" {
                    text("caption")
                } else {
                    text("body")
                };
                (
                    shown,
                    m.msg["isEdited"].as_bool().unwrap_or(false),
                    m.msg["isDeleted"].as_bool().unwrap_or(false),
                )
            })
        })
    }

    /// The deliveries to one chat (`…@g.us`, `…@c.us` or a bare phone number).
    pub fn deliveries_to(&self, jid: &str) -> Vec<Request> {
        let want = normalize_chat(jid);
        self.deliveries()
            .into_iter()
            .filter(|r| r.recipient.as_deref().map(normalize_chat).as_deref() == Some(&want))
            .collect()
    }

    /// How many messages each chat received (keys normalised: a bare phone gets `@c.us`).
    pub fn delivery_count_by_recipient(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.deliveries() {
            if let Some(to) = &r.recipient {
                *out.entry(normalize_chat(to)).or_insert(0) += 1;
            }
        }
        out
    }

    /// Every send request of a profile, whatever its outcome, in order.
    pub fn sends_for_profile(&self, profile_id: &str) -> Vec<Request> {
        let st = self.state();
        st.requests
            .iter()
            .filter(|r| r.is_send() && r.profile_id == profile_id)
            .cloned()
            .collect()
    }

    /// The smallest time between two consecutive delivered sends of a profile, in ms
    /// (`None` with fewer than two deliveries).
    pub fn min_gap_ms(&self, profile_id: &str) -> Option<i64> {
        self.delivery_gaps(profile_id).into_iter().min()
    }

    /// Pairs of consecutive delivered sends of one profile closer than `min_gap`:
    /// `(profile_id, gap in ms)` for each, over all profiles.
    pub fn gap_violations(&self, min_gap: Duration) -> Vec<(String, i64)> {
        let profiles: Vec<String> = self.state().profiles.keys().cloned().collect();
        let limit = min_gap.as_millis() as i64;
        let mut out = Vec::new();
        for p in profiles {
            for gap in self.delivery_gaps(&p) {
                if gap < limit {
                    out.push((p.clone(), gap));
                }
            }
        }
        out
    }

    fn delivery_gaps(&self, profile_id: &str) -> Vec<i64> {
        let st = self.state();
        let times: Vec<Instant> = st
            .requests
            .iter()
            .filter(|r| r.is_delivered() && r.profile_id == profile_id)
            .map(|r| r.at)
            .collect();
        times
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_millis() as i64)
            .collect()
    }

    /// Waits (up to `timeout`) for `n` deliveries meant to go at `rate` a second, then measures
    /// their pacing (what the benchmarks print).
    pub async fn pacing(&self, n: usize, rate: f64, timeout: Duration) -> Result<Pacing, String> {
        self.wait_for_deliveries(n, timeout).await?;
        let sends = self.deliveries();
        let span = (sends[n - 1].at_ms - sends[0].at_ms) as f64 / 1000.0;
        let min_gap = sends
            .windows(2)
            .map(|p| p[1].at_ms - p[0].at_ms)
            .min()
            .unwrap_or(0);
        Ok(Pacing {
            ideal: n as f64 / rate,
            actual: span + 1.0 / rate,
            min_gap,
            doubles: sends.len() - self.delivery_count_by_recipient().len(),
        })
    }

    /// Waits until at least `n` sends have been delivered, or fails after `timeout`.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_until(timeout, |st| {
            st.requests.iter().filter(|r| r.is_delivered()).count() >= n
        })
        .await
        .map_err(|got| format!("fake wappi: {got}; wanted {n} deliveries within {timeout:?}"))
    }

    /// Waits until at least `n` requests (of any kind) have arrived, or fails after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_until(timeout, |st| st.requests.len() >= n)
            .await
            .map_err(|got| format!("fake wappi: {got}; wanted {n} requests within {timeout:?}"))
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Inner) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.state()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let st = self.state();
                let delivered = st.requests.iter().filter(|r| r.is_delivered()).count();
                return Err(format!(
                    "{} requests, {delivered} deliveries",
                    st.requests.len()
                ));
            }
        }
    }
}

impl Drop for FakeWappi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// --- the server --------------------------------------------------------------------------------

/// The single handler: records the request, lets [`Inner::process`] decide, then answers,
/// waits, or drops the connection.
async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    // Wappi parses the body as JSON whatever the Content-Type (spec §1).
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let b64 = field("b64_file");
    let mut req = Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        profile_id: query.get("profile_id").cloned().unwrap_or_default(),
        token: headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        recipient: field("recipient"),
        body_text: field("body"),
        caption: field("caption"),
        b64_len: b64.as_ref().map(String::len),
        b64,
        chat_id: query.get("chat_id").cloned(),
        user_id: query.get("user_id").cloned(),
        message_id: None,
        at,
        at_ms: unix_ms(),
        outcome: Outcome::Answered,
    };
    let reply = {
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let reply = st.process(&mut req, &method, &query, json.as_ref());
        st.requests.push(req);
        reply
    };
    shared.changed.notify_waiters();
    match reply.then {
        Then::Answer | Then::Status(_) => {}
        Then::Delay(d) => tokio::time::sleep(d).await,
        Then::Drop => conn.drop_connection(),
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        reply.body,
    )
        .into_response();
    if let Some(secs) = reply.retry_after {
        resp.headers_mut().insert(RETRY_AFTER, secs.into());
    }
    resp
}

impl Inner {
    fn process(
        &mut self,
        req: &mut Request,
        method: &Method,
        query: &HashMap<String, String>,
        json: Option<&Value>,
    ) -> Reply {
        let path = req.path.clone();
        let known = [
            "/api/sync/get/status",
            "/api/sync/chats/get",
            "/api/sync/messages/get",
            "/api/sync/contact/info",
        ];
        if !is_send_path(&path) && !is_change_path(&path) && !known.contains(&path.as_str()) {
            return refuse(req, 404, "Not Found");
        }
        let Some(profile) = self.profiles.get(&req.profile_id) else {
            return refuse(req, 400, "Profile not found");
        };
        // Assumption: the spec does not say how a wrong token is answered (§7.2); 401 it is.
        if profile.token != req.token {
            return refuse(req, 401, "Unauthorized");
        }
        if is_send_path(&path) || is_change_path(&path) {
            if method != Method::POST {
                return refuse(req, 405, "Method Not Allowed");
            }
            match is_send_path(&path) {
                true => self.send(req, json),
                false => self.change(req, json),
            }
        } else {
            self.read(req, query)
        }
    }

    /// `message/send` and `message/img/send`.
    fn send(&mut self, req: &mut Request, json: Option<&Value>) -> Reply {
        let pid = req.profile_id.clone();
        let fault = self
            .send_faults
            .pop_front()
            .or_else(|| self.storm_fault(&pid))
            .or_else(|| self.random_fault());
        let (then, visible_after_ms) = match carried_out(req, fault) {
            Ok(effect) => effect,
            Err(reply) => return reply,
        };
        let chatter = self.chatter_after(json);
        let null_fields = self.null_fields;
        let strict = self.strict_recipients;
        let min_gap = self.min_gaps.get(&pid).copied();
        let group_delivery = self.group_delivery.clone();
        let undeliverable = self
            .undeliverable
            .clone()
            .unwrap_or_else(DeliveryPlan::undeliverable);
        let profile = self.profiles.get_mut(&pid).expect("checked by process");
        if let (Some(gap), Some(last)) = (min_gap, profile.last_delivery) {
            let since = req.at.saturating_duration_since(last);
            if since < gap {
                let wait = (gap - since).as_millis().div_ceil(1000).max(1) as u64;
                return rate_limited(req, wait);
            }
        }
        if !profile.authorized {
            return refuse(req, 200, "Not authorized in whatsapp");
        }
        // Assumption: malformed bodies get 400 with a `detail` (the real codes are unknown).
        let Some(json) = json.filter(|j| j.is_object()) else {
            return refuse(req, 400, "body must be a JSON object");
        };
        let recipient = match json.get("recipient").and_then(Value::as_str).map(str::trim) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => return refuse(req, 400, "recipient is required"),
        };
        let image = req.path.ends_with("/img/send");
        if let Err(detail) = check_body(json, image) {
            return refuse(req, 400, detail);
        }
        let chat = normalize_chat(&recipient);
        if strict && !profile.has_chat(&chat) && !is_phone(&recipient) {
            return refuse(req, 400, "chat not found");
        }

        // INVENTED: a post into a group the account left or may not post in is taken like any
        // other, but never reaches the group (see `Outcome::AcceptedNotDelivered`).
        let reaches = profile
            .groups
            .iter()
            .find(|g| g.jid == chat)
            .is_none_or(Group::postable);
        let plan = match reaches {
            false => undeliverable,
            true => group_delivery
                .get(&chat)
                .cloned()
                .unwrap_or_else(|| profile.delivery.clone()),
        };

        let visible_at_ms = req.at_ms + visible_after_ms;
        let now = visible_at_ms / 1000;
        let message_id = message_id();
        let message = our_message(profile, &chat, &message_id, now, image, json);
        let chat_log = profile.messages.entry(chat.clone()).or_default();
        chat_log.push(Stored {
            visible_at_ms,
            msg: message,
            plan: Some(plan),
        });
        // Nobody answers a post that never arrived.
        for k in 0..chatter * usize::from(reaches) {
            chat_log.push(Stored {
                visible_at_ms,
                msg: member_message(&chat, k, now, null_fields),
                plan: None,
            });
        }
        profile.last_delivery = Some(req.at);
        req.message_id = Some(message_id.clone());
        if let Then::Status(code) = then {
            req.outcome = match reaches {
                true => Outcome::DeliveredThenRefused(code),
                false => Outcome::AcceptedNotDelivered,
            };
            let body = json!({"detail": "Bad Gateway", "status": "error"});
            return Reply {
                status: code,
                body: body.to_string(),
                retry_after: None,
                then: Then::Answer,
            };
        }
        req.outcome = match then {
            _ if !reaches => Outcome::AcceptedNotDelivered,
            Then::Drop => Outcome::DeliveredThenDropped,
            _ => Outcome::Delivered,
        };
        let body = json!({
            "status": "done",
            "timestamp": now,
            "time": moscow_time(now),
            "message_id": message_id,
            "task_id": uuid_v4(),
        });
        Reply {
            status: 200,
            body: body.to_string(),
            retry_after: None,
            then,
        }
    }

    /// `message/edit {message_id, body}` and `message/delete {message_id}` on one of the
    /// profile's own messages. The request bodies are the spec's; INVENTED: the answer (`status:
    /// done` with the `message_id`), the refusal of an unknown or foreign id (400, `message not
    /// found`), that an edit of an image changes its caption, that a deleted message stays in
    /// `messages/get` with `isDeleted: true` and no text, and that edits are not held to
    /// WhatsApp's edit window (the client keeps to it). Faults apply as to sends; a `Slow` one
    /// makes the change visible at once (whatever its `visible_after`) and holds the answer.
    fn change(&mut self, req: &mut Request, json: Option<&Value>) -> Reply {
        let pid = req.profile_id.clone();
        let fault = self.send_faults.pop_front();
        let (then, _) = match carried_out(req, fault) {
            Ok(effect) => effect,
            Err(reply) => return reply,
        };
        let profile = self.profiles.get_mut(&pid).expect("checked by process");
        if !profile.authorized {
            return refuse(req, 200, "Not authorized in whatsapp");
        }
        let Some(json) = json.filter(|j| j.is_object()) else {
            return refuse(req, 400, "body must be a JSON object");
        };
        let Some(id) = json
            .get("message_id")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return refuse(req, 400, "message_id is required");
        };
        let edit = req.path == EDIT_PATH;
        let body = json.get("body").and_then(Value::as_str).map(str::to_string);
        if edit && body.as_deref().is_none_or(|b| b.trim().is_empty()) {
            return refuse(req, 400, "body is required");
        }
        req.message_id = Some(id.clone());
        let found = profile.messages.iter_mut().find_map(|(chat, log)| {
            log.iter_mut()
                .find(|m| m.plan.is_some() && m.msg["id"] == id.as_str())
                .map(|m| (chat.clone(), m))
        });
        let Some((chat, stored)) = found else {
            return refuse(req, 400, "message not found");
        };
        req.chat_id = Some(chat);
        let msg = &mut stored.msg;
        match (edit, body) {
            (true, Some(text)) => {
                let field = if msg["type"] == "image" {
                    "caption"
                } else {
                    "body"
                };
                msg[field] = Value::from(text);
                msg["isEdited"] = Value::from(true);
            }
            _ => {
                msg["isDeleted"] = Value::from(true);
                msg["body"] = Value::from("");
                msg["caption"] = Value::from("");
            }
        }
        let now = req.at_ms / 1000;
        req.outcome = Outcome::Changed {
            answered: matches!(then, Then::Answer | Then::Delay(_)),
        };
        if let Then::Status(code) = then {
            let body = json!({"detail": "Bad Gateway", "status": "error"});
            return Reply {
                status: code,
                body: body.to_string(),
                retry_after: None,
                then: Then::Answer,
            };
        }
        let body = json!({
            "status": "done",
            "timestamp": now,
            "time": moscow_time(now),
            "message_id": id,
        });
        Reply {
            status: 200,
            body: body.to_string(),
            retry_after: None,
            then,
        }
    }

    /// `get/status`, `chats/get`, `messages/get`, `contact/info`.
    fn read(&mut self, req: &mut Request, query: &HashMap<String, String>) -> Reply {
        let mut then = Then::Answer;
        match self.read_faults.pop_front() {
            Some(Fault::Status(code, body)) => return raw_refusal(req, code, body),
            Some(Fault::RateLimit { retry_after_secs }) => {
                return rate_limited(req, retry_after_secs)
            }
            Some(Fault::NotAuthorized) => return refuse(req, 200, "Not authorized in whatsapp"),
            Some(Fault::DropBeforeAccept | Fault::DropAfterAccept) => return dropped(req),
            Some(Fault::AcceptThenStatus(code)) => return refuse(req, code, "Bad Gateway"),
            Some(
                Fault::Delay(d)
                | Fault::Slow {
                    answer_after: d, ..
                },
            ) => then = Then::Delay(d),
            None => {}
        }
        let profile = &self.profiles[&req.profile_id];
        let now = unix_secs();
        let num = |k: &str| query.get(k).and_then(|v| v.parse::<usize>().ok());
        let body = match req.path.as_str() {
            "/api/sync/get/status" => {
                // No `status` key: its presence means an error (spec §2.9).
                json!({
                    "app_status": if profile.authorized { "open" } else { "close" },
                    "authorized": profile.authorized,
                    "authorized_at": profile.authorized_at,
                    "logouted_at": "2026-08-03T09:06:44.904385+03:00",
                    "payment_expired_at": "2026-12-20T00:00:00Z",
                    "name": profile.name,
                    "phone": profile.phone,
                    "profile_id": req.profile_id,
                    "platform": "wz",
                })
            }
            _ if !profile.authorized => return refuse(req, 200, "Not authorized in whatsapp"),
            "/api/sync/chats/get" => {
                // Assumption: without `limit` every dialog is listed.
                let all = profile.dialogs();
                let offset = num("offset").unwrap_or(0);
                let limit = num("limit").unwrap_or(all.len());
                let page: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
                json!({"status": "done", "timestamp": now, "time": moscow_time(now), "dialogs": page})
            }
            "/api/sync/contact/info" => {
                let Some(user) = query.get("user_id").filter(|c| !c.trim().is_empty()) else {
                    return refuse(req, 400, "user_id is required");
                };
                let id = normalize_chat(user);
                match profile.groups.iter().find(|g| g.jid == id) {
                    // OBSERVED shape (spec §2.8): `profile.is_group`, `profile.group.Name`,
                    // `profile.picture`, `profile.id`; the rest of `group` as in `chats/get`.
                    Some(g) => json!({
                        "status": "done", "timestamp": now, "time": moscow_time(now),
                        "profile": {
                            "id": id, "is_group": true, "picture": "",
                            "group": profile.group_object(g),
                        },
                        "uuid": req.profile_id,
                    }),
                    // INVENTED: the answer for an unknown group id (detail text and 400).
                    None if id.ends_with("@g.us") => return refuse(req, 400, "Contact not found"),
                    // INVENTED: a person is found, with a `contact` like `chats/get`'s.
                    None => {
                        let person = PERSONAL.iter().find(|p| p.0 == id);
                        let full = person.map_or("", |p| p.1);
                        json!({
                            "status": "done", "timestamp": now, "time": moscow_time(now),
                            "profile": {
                                "id": id, "is_group": false, "picture": "",
                                "contact": {"Found": person.is_some(), "FirstName": full,
                                            "FullName": full, "PushName": person.map_or("", |p| p.2),
                                            "BusinessName": ""},
                            },
                            "uuid": req.profile_id,
                        })
                    }
                }
            }
            _ => {
                let Some(chat) = query.get("chat_id").filter(|c| !c.trim().is_empty()) else {
                    return refuse(req, 400, "chat_id is required");
                };
                let visible = unix_ms();
                let mut list: Vec<Value> = profile
                    .messages
                    .get(&normalize_chat(chat))
                    .map(|m| m.iter().filter(|s| s.visible_at_ms <= visible))
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_of(visible))
                    .collect();
                let total = list.len();
                if query.get("order").map(String::as_str) != Some("asc") {
                    list.reverse();
                }
                let offset = match self.no_history_paging {
                    true => 0,
                    false => num("offset").unwrap_or(0),
                };
                let limit = num("limit").unwrap_or(400);
                let page: Vec<Value> = list.into_iter().skip(offset).take(limit).collect();
                json!({
                    "status": "done", "timestamp": now, "time": moscow_time(now),
                    "messages": page, "total_count": total, "uuid": req.profile_id,
                })
            }
        };
        req.outcome = Outcome::Answered;
        Reply {
            status: 200,
            body: body.to_string(),
            retry_after: None,
            then,
        }
    }

    /// How many messages of others follow a post to the body's recipient.
    fn chatter_after(&self, json: Option<&Value>) -> usize {
        let to = json
            .and_then(|j| j.get("recipient"))
            .and_then(Value::as_str)
            .map(normalize_chat);
        to.and_then(|c| self.chatter.get(&c).copied()).unwrap_or(0)
    }

    fn storm_fault(&mut self, profile_id: &str) -> Option<Fault> {
        let (left, secs) = self.storms.get_mut(profile_id)?;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        Some(Fault::RateLimit {
            retry_after_secs: *secs,
        })
    }

    fn random_fault(&mut self) -> Option<Fault> {
        let r = self.random.as_mut()?;
        let draw: f64 = r.rng.gen();
        if draw < r.p_5xx {
            let code = [500, 502, 503][r.rng.gen_range(0..3)];
            let body = json!({"detail": "Internal Server Error", "status": "error"}).to_string();
            Some(Fault::Status(code, body))
        } else if draw < r.p_5xx + r.p_drop_after_accept {
            Some(Fault::DropAfterAccept)
        } else {
            None
        }
    }
}

impl Profile {
    /// A chat the profile has or had (a group it left included: sends to it are accepted).
    fn has_chat(&self, chat: &str) -> bool {
        self.groups.iter().any(|g| g.jid == chat) || PERSONAL.iter().any(|p| p.0 == chat)
    }

    /// The participants of a group: `(phone, is admin, is super admin)` for its creator, the
    /// account (unless it left) and one more member. INVENTED numbers for the others.
    fn participants(&self, g: &Group) -> Vec<(String, bool, bool)> {
        let [creator, member] = others_in(&g.jid);
        let mut out = vec![(creator, true, true)];
        if !g.left {
            out.push((self.phone.clone(), g.admin, false));
        }
        out.push((member, false, false));
        out
    }

    /// A group as Wappi's `group` object (of a `chats/get` dialog and of `contact/info`).
    /// `Name` and `Participants[].JID` / `IsAdmin` are OBSERVED in one client
    /// (next-capabilities.md §2 row 3); the other keys are whatsmeow's `GroupInfo`, which the
    /// object is INFERRED to be (row 3a), with INVENTED values.
    fn group_object(&self, g: &Group) -> Value {
        let participants: Vec<Value> = self
            .participants(g)
            .into_iter()
            .map(|(phone, admin, superadmin)| {
                json!({
                    "JID": format!("{phone}@s.whatsapp.net"),
                    "LID": "",
                    "IsAdmin": admin || superadmin,
                    "IsSuperAdmin": superadmin,
                    "DisplayName": "",
                    "Error": 0,
                    "AddRequest": null,
                })
            })
            .collect();
        let [creator, _] = others_in(&g.jid);
        json!({
            "JID": g.jid,
            "OwnerJID": format!("{creator}@s.whatsapp.net"),
            "Name": g.name,
            "NameSetAt": "2024-03-01T10:00:00+03:00",
            "Topic": "",
            "IsLocked": false,
            "IsAnnounce": g.announce,
            "IsEphemeral": false,
            "IsParent": false,
            "IsDefaultSubGroup": false,
            "IsJoinApprovalRequired": false,
            "GroupCreated": "2024-03-01T10:00:00+03:00",
            "Participants": participants,
        })
    }

    /// `chats/get` dialogs: the first personal chat, the groups the account is in (not those
    /// it left) in the order added, the other personal chat. Only `id`, `contact` and `chat`
    /// are confirmed by the spec; `name` is added for groups and people alike (assumption);
    /// a group's dialog carries its `group` object (see [`Profile::group_object`]).
    fn dialogs(&self) -> Vec<Value> {
        let person = |(id, full, push, status): (&str, &str, &str, &str)| {
            json!({
                "id": id,
                "name": full,
                "contact": {"Found": true, "FirstName": full, "FullName": full,
                            "PushName": push, "BusinessName": ""},
                "chat": {"VerifiedName": null, "Status": status},
            })
        };
        let mut out = vec![person(PERSONAL[0])];
        out.extend(self.groups.iter().filter(|g| !g.left).map(|g| {
            json!({
                "id": g.jid,
                "name": g.name,
                "contact": {"Found": false, "FirstName": "", "FullName": g.name,
                            "PushName": "", "BusinessName": ""},
                "chat": {"VerifiedName": null, "Status": ""},
                "group": self.group_object(g),
            })
        }));
        out.push(person(PERSONAL[1]));
        out
    }
}

impl Stored {
    /// The message as `messages/get` shows it at `now_ms`: our post with the status its plan
    /// has reached by then.
    fn as_of(&self, now_ms: i64) -> Value {
        let mut msg = self.msg.clone();
        if let Some(plan) = &self.plan {
            let elapsed = Duration::from_millis((now_ms - self.visible_at_ms).max(0) as u64);
            msg["delivery_status"] = Value::from(plan.status_at(elapsed));
        }
        msg
    }
}

/// The creator (super admin) and one more member of a group besides the account: INVENTED
/// numbers `7998…` and `7997…` made of the last seven digits of the jid.
fn others_in(jid: &str) -> [String; 2] {
    let digits: Vec<u8> = jid.bytes().filter(u8::is_ascii_digit).collect();
    let tail = &digits[digits.len().saturating_sub(7)..];
    let n: u64 = std::str::from_utf8(tail)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    [format!("7998{n:07}"), format!("7997{n:07}")]
}

/// The body of a send is what the call needs: a text, or raw base64 (assumption: malformed
/// bodies get 400 with a `detail`; the real codes are unknown).
fn check_body(json: &Value, image: bool) -> Result<(), &'static str> {
    if image {
        match json.get("b64_file").and_then(Value::as_str) {
            None | Some("") => return Err("b64_file is required"),
            Some(b) if b.starts_with("data:") => {
                return Err("b64_file must be raw base64, without a data: prefix")
            }
            Some(b) if base64::engine::general_purpose::STANDARD.decode(b).is_err() => {
                return Err("b64_file is not valid base64")
            }
            Some(_) => {}
        }
    } else if json
        .get("body")
        .and_then(Value::as_str)
        .is_none_or(|b| b.trim().is_empty())
    {
        return Err("body is required");
    }
    Ok(())
}

/// Our post as `messages/get` shows it (Example 4's shape).
fn our_message(
    profile: &Profile,
    chat: &str,
    message_id: &str,
    now: i64,
    image: bool,
    json: &Value,
) -> Value {
    let text = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    json!({
        "id": message_id,
        "type": if image { "image" } else { "chat" },
        "from": format!("{}@c.us", profile.phone),
        "to": chat,
        "fromMe": true,
        "senderName": profile.name,
        "time": now,
        "body": if image { String::new() } else { text("body") },
        "stanzaId": "",
        "chatId": chat,
        "isForwarded": false,
        "isReply": false,
        "caption": if image { text("caption") } else { String::new() },
        "isRead": false,
        // Replaced by the plan's status of the moment when read (`Stored::as_of`).
        "delivery_status": "pending",
        "s3Info": {},
        "poll_votes": null,
        "poll_options": null,
        "poll_select_count": 0,
        "isEdited": false,
        "isFromAPI": true,
        "isDeleted": false,
        "isPinned": false
    })
}

/// Message `k` of another member of `chat` at unix second `time`, in the shape of Example 4;
/// with `nulls`, `caption`, `senderName` and `isRead` are `null` (invented).
fn member_message(chat: &str, k: usize, time: i64, nulls: bool) -> Value {
    let mut msg = json!({
        "id": message_id(),
        "type": "chat",
        "from": format!("7999{:07}@c.us", k),
        "to": chat,
        "fromMe": false,
        "senderName": format!("Участник {k}"),
        "time": time,
        "body": format!("Сообщение участника {k}"),
        "stanzaId": "",
        "chatId": chat,
        "isForwarded": false,
        "isReply": false,
        "caption": "",
        "isRead": false,
        "delivery_status": "delivered",
        "s3Info": {},
        "poll_votes": null,
        "poll_options": null,
        "poll_select_count": 0,
        "isEdited": false,
        "isFromAPI": false,
        "isDeleted": false,
        "isPinned": false
    });
    if nulls {
        for key in ["caption", "senderName", "isRead"] {
            msg[key] = Value::Null;
        }
    }
    msg
}

/// What a queued fault does to a send or a change: refused before anything is carried out
/// (`Err`: the answer), or carried out and then answered as `Then` says, the message showing
/// this many ms after the request (a `Slow` send).
fn carried_out(req: &mut Request, fault: Option<Fault>) -> Result<(Then, i64), Reply> {
    Ok(match fault {
        Some(Fault::Status(code, body)) => return Err(raw_refusal(req, code, body)),
        Some(Fault::RateLimit { retry_after_secs }) => {
            return Err(rate_limited(req, retry_after_secs))
        }
        Some(Fault::NotAuthorized) => return Err(refuse(req, 200, "Not authorized in whatsapp")),
        Some(Fault::DropBeforeAccept) => return Err(dropped(req)),
        Some(Fault::DropAfterAccept) => (Then::Drop, 0),
        Some(Fault::Delay(d)) => (Then::Delay(d), 0),
        Some(Fault::AcceptThenStatus(code)) => (Then::Status(code), 0),
        Some(Fault::Slow {
            visible_after,
            answer_after,
        }) => (Then::Delay(answer_after), visible_after.as_millis() as i64),
        None => (Then::Answer, 0),
    })
}

fn refuse(req: &mut Request, http: u16, detail: &str) -> Reply {
    req.outcome = Outcome::Refused {
        http,
        detail: detail.to_string(),
    };
    let body = json!({"detail": detail, "status": "error"}).to_string();
    Reply {
        status: http,
        body,
        retry_after: None,
        then: Then::Answer,
    }
}

fn raw_refusal(req: &mut Request, http: u16, body: String) -> Reply {
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.clone());
    req.outcome = Outcome::Refused { http, detail };
    Reply {
        status: http,
        body,
        retry_after: None,
        then: Then::Answer,
    }
}

fn rate_limited(req: &mut Request, retry_after_secs: u64) -> Reply {
    let mut reply = refuse(req, 429, "Too many requests");
    reply.retry_after = Some(retry_after_secs);
    reply
}

fn dropped(req: &mut Request) -> Reply {
    req.outcome = Outcome::Dropped;
    Reply {
        status: 500,
        body: String::new(),
        retry_after: None,
        then: Then::Drop,
    }
}

const EDIT_PATH: &str = "/api/sync/message/edit";
const DELETE_PATH: &str = "/api/sync/message/delete";

fn is_change_path(path: &str) -> bool {
    path == EDIT_PATH || path == DELETE_PATH
}

fn is_send_path(path: &str) -> bool {
    path == "/api/sync/message/send" || path == "/api/sync/message/img/send"
}

fn is_phone(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A chat id as stored: a bare phone number becomes `<digits>@c.us`; anything else is kept.
fn normalize_chat(s: &str) -> String {
    let s = s.trim();
    if is_phone(s) {
        format!("{s}@c.us")
    } else {
        s.to_string()
    }
}

/// 20 uppercase hex digits in the `3EB0…` form of the spec.
fn message_id() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("3EB0{hex}")
}

fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unix_secs() -> i64 {
    unix_ms() / 1000
}

/// Unix seconds as Wappi writes `time`: ISO-8601 at Moscow's fixed `+03:00`.
fn moscow_time(unix: i64) -> String {
    let t = unix + 3 * 3600;
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+03:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// --- dropping a connection ---------------------------------------------------------------------

/// A TCP listener whose connections can be broken from inside a handler: each accepted stream
/// carries a switch that the handler reaches through `ConnectInfo<Conn>`. Once thrown, every
/// read and write on the stream fails, so hyper abandons the connection without writing the
/// response and closes the socket: the client sees the connection closed after its request
/// was sent, with no answer (reqwest: a request error that is not a connect error), at once
/// rather than after its timeout.
struct DroppableListener(TcpListener);

/// What a handler knows of its connection: the peer and the switch that breaks it.
#[derive(Clone, Debug)]
struct Conn {
    #[allow(dead_code)]
    peer: SocketAddr,
    dropped: Arc<AtomicBool>,
}

impl Conn {
    fn drop_connection(&self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

struct DroppableStream {
    inner: TcpStream,
    dropped: Arc<AtomicBool>,
}

impl Listener for DroppableListener {
    type Io = DroppableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, peer)) => {
                    let _ = inner.set_nodelay(true);
                    let dropped = Arc::new(AtomicBool::new(false));
                    let conn = Conn {
                        peer,
                        dropped: dropped.clone(),
                    };
                    return (DroppableStream { inner, dropped }, conn);
                }
                // Out of file descriptors and the like: wait a little, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        let peer = self.0.local_addr()?;
        Ok(Conn {
            peer,
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, DroppableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, DroppableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl DroppableStream {
    fn broken(&self) -> Option<io::Error> {
        self.dropped.load(Ordering::SeqCst).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "fake wappi: connection dropped",
            )
        })
    }
}

impl AsyncRead for DroppableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DroppableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::ports::WappiApi;
    use groupcast_core::wappi::{WappiCreds, WappiError};
    use groupcast_core::{GroupJid, ProfileId, Secret};
    use groupcast_server::wappi::HttpWappi;

    const PROFILE: &str = "2f099bc3-478d";
    const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
    const GROUP: &str = "120363025246125486@g.us";

    fn creds_of(profile: &str, token: &str) -> WappiCreds {
        WappiCreds {
            token: Secret::new(token),
            profile_id: ProfileId::parse(profile).unwrap(),
        }
    }

    fn group(jid: &str) -> GroupJid {
        GroupJid::parse(jid).unwrap()
    }

    async fn setup() -> (FakeWappi, HttpWappi, WappiCreds) {
        let fake = FakeWappi::start().await;
        fake.add_profile(PROFILE, TOKEN);
        fake.add_group(PROFILE, GROUP, "Квартиры СПб");
        let client = HttpWappi::new(&fake.url(), Duration::from_secs(2));
        (fake, client, creds_of(PROFILE, TOKEN))
    }

    #[test]
    fn moscow_times() {
        assert_eq!(moscow_time(1_679_823_696), "2023-03-26T12:41:36+03:00");
        assert_eq!(moscow_time(0), "1970-01-01T03:00:00+03:00");
        assert_eq!(moscow_time(1_835_438_400), "2028-02-29T15:00:00+03:00");
        let id = message_id();
        assert_eq!(id.len(), 20);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert_eq!(uuid_v4().len(), 36);
    }

    #[tokio::test]
    async fn status_ok_not_authorized_bad_profile_bad_token() {
        let (fake, client, creds) = setup().await;
        let st = client.get_status(&creds).await.unwrap();
        assert!(st.is_ready());
        assert_eq!(st.profile_id.as_deref(), Some(PROFILE));

        fake.set_authorized(PROFILE, false);
        let st = client.get_status(&creds).await.unwrap();
        assert!(!st.authorized && !st.is_ready());
        assert_eq!(st.app_status.as_deref(), Some("close"));
        let err = client
            .send_text(&creds, &group(GROUP), "hi")
            .await
            .unwrap_err();
        assert_eq!(err, WappiError::NotAuthorized);

        let unknown = creds_for("deadbeef-0000");
        assert_eq!(
            client.get_status(&unknown).await.unwrap_err(),
            WappiError::ProfileNotFound
        );
        let wrong = creds_of(PROFILE, "ffffffffffffffffffffffffffffffffffffffff");
        assert_eq!(
            client.get_status(&wrong).await.unwrap_err(),
            WappiError::BadToken
        );

        let outcomes: Vec<Outcome> = fake.requests().into_iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes[0], Outcome::Answered);
        assert!(
            matches!(&outcomes[3], Outcome::Refused { http: 400, detail } if detail == "Profile not found")
        );
        assert!(matches!(&outcomes[4], Outcome::Refused { http: 401, .. }));
        assert!(fake.deliveries().is_empty());
    }

    fn creds_for(profile: &str) -> WappiCreds {
        creds_of(profile, TOKEN)
    }

    #[tokio::test]
    async fn text_send_is_recorded_and_listed_in_the_chat() {
        let (fake, client, creds) = setup().await;
        let sent = client
            .send_text(&creds, &group(GROUP), "*Сдаю* квартиру")
            .await
            .unwrap();
        let id = sent.message_id.clone().unwrap();
        assert_eq!(id.len(), 20);
        assert_eq!(sent.task_id.as_deref().map(str::len), Some(36));

        let d = fake.deliveries();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "/api/sync/message/send");
        assert_eq!(d[0].profile_id, PROFILE);
        assert_eq!(d[0].token, TOKEN);
        assert_eq!(d[0].recipient.as_deref(), Some(GROUP));
        assert_eq!(d[0].body_text.as_deref(), Some("*Сдаю* квартиру"));
        assert_eq!(d[0].message_id.as_deref(), Some(id.as_str()));
        assert_eq!(fake.delivery_count_by_recipient()[GROUP], 1);

        client
            .send_text(&creds, &group(GROUP), "second")
            .await
            .unwrap();
        let msgs = client
            .chat_messages(&creds, &group(GROUP), 10, 0)
            .await
            .unwrap()
            .messages;
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].body, "second", "newest first");
        assert_eq!(msgs[1].id, id);
        assert!(msgs[1].from_me && msgs[1].kind == "chat" && msgs[1].time > 1_600_000_000);
        assert_eq!(
            client
                .chat_messages(&creds, &group(GROUP), 1, 0)
                .await
                .unwrap()
                .messages
                .len(),
            1
        );
        assert_eq!(fake.sends_for_profile(PROFILE).len(), 2);
        assert!(fake.min_gap_ms(PROFILE).unwrap() >= 0);
    }

    #[tokio::test]
    async fn image_send_and_body_validation() {
        let (fake, client, creds) = setup().await;
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG fake image");
        client
            .send_image(&creds, &group(GROUP), &b64, Some("caption"))
            .await
            .unwrap();
        let msgs = client
            .chat_messages(&creds, &group(GROUP), 5, 0)
            .await
            .unwrap()
            .messages;
        assert_eq!(
            (msgs[0].kind.as_str(), msgs[0].caption.as_str()),
            ("image", "caption")
        );
        assert_eq!(fake.deliveries()[0].b64_len, Some(b64.len()));
        let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 3 * 1024 * 1024]);
        client
            .send_image(&creds, &group(GROUP), &big, None)
            .await
            .unwrap();
        assert_eq!(fake.deliveries()[1].b64_len, Some(big.len()));

        // Straight HTTP, to send what HttpWappi never would.
        let http = reqwest::Client::new();
        let post = |path: &str, body: Value| {
            http.post(format!("{}{path}?profile_id={PROFILE}", fake.url()))
                .header("Authorization", TOKEN)
                .body(body.to_string())
                .send()
        };
        let bad = [
            (
                "/api/sync/message/img/send",
                json!({"recipient": GROUP, "b64_file": format!("data:image/png;base64,{b64}")}),
            ),
            (
                "/api/sync/message/img/send",
                json!({"recipient": GROUP, "b64_file": "not base64!"}),
            ),
            (
                "/api/sync/message/send",
                json!({"recipient": GROUP, "body": ""}),
            ),
            ("/api/sync/message/send", json!({"body": "no recipient"})),
        ];
        for (path, body) in bad {
            let resp = post(path, body.clone()).await.unwrap();
            assert_eq!(resp.status().as_u16(), 400, "{body}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["status"], "error");
        }
        assert_eq!(fake.deliveries().len(), 2);
        // A bare phone is a personal chat.
        let resp = post(
            "/api/sync/message/send",
            json!({"recipient": "79115576367", "body": "hi"}),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(fake.deliveries_to("79115576367@c.us").len(), 1);
    }

    #[tokio::test]
    async fn chats_are_paged_and_contain_the_groups() {
        let (fake, client, creds) = setup().await;
        fake.add_group(PROFILE, "120363000000000001@g.us", "Second");
        let all = client.list_chats(&creds, 100, 0).await.unwrap();
        assert_eq!(all.len(), 4);
        let groups: Vec<String> = all
            .iter()
            .filter_map(|d| d.group())
            .map(|g| g.to_string())
            .collect();
        assert_eq!(groups, [GROUP, "120363000000000001@g.us"]);
        assert_eq!(all[1].display_name(), "Квартиры СПб");
        let page = client.list_chats(&creds, 2, 2).await.unwrap();
        assert_eq!(
            page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [all[2].id.as_str(), all[3].id.as_str()]
        );
        assert!(client.list_chats(&creds, 2, 4).await.unwrap().is_empty());
        // POST is accepted too.
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/api/sync/chats/get?profile_id={PROFILE}&limit=1",
                fake.url()
            ))
            .header("Authorization", TOKEN)
            .body(r#"{"filter":[]}"#)
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["dialogs"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn late_sends_chatter_paging_and_nulls() {
        let (fake, client, creds) = setup().await;
        let to = group(GROUP);
        fake.push_fault(Fault::Slow {
            visible_after: Duration::from_millis(300),
            answer_after: Duration::from_millis(400),
        });
        fake.set_chatter_after_post(GROUP, 3);
        fake.set_null_fields_in_history(true);
        client.send_text(&creds, &to, "slow").await.unwrap();
        // Answered after 400 ms; visible from 300 ms: already there.
        let page = client.chat_messages(&creds, &to, 2, 0).await.unwrap();
        assert_eq!(page.total_count, Some(4));
        assert_eq!(page.messages.len(), 2, "nulls do not break the page");
        assert!(page.messages.iter().all(|m| !m.from_me));
        let older = client.chat_messages(&creds, &to, 2, 2).await.unwrap();
        assert_eq!(older.messages[1].body, "slow", "ours sank below the newest");
        fake.set_history_paging(false);
        let same = client.chat_messages(&creds, &to, 2, 2).await.unwrap();
        assert!(same.messages.iter().all(|m| !m.from_me), "offset ignored");
    }

    #[tokio::test]
    async fn rate_limit_and_5xx_are_classified() {
        let (fake, client, creds) = setup().await;
        let to = group(GROUP);
        fake.push_fault(Fault::RateLimit {
            retry_after_secs: 7,
        });
        fake.push_fault(Fault::Status(
            500,
            r#"{"detail":"boom","status":"error"}"#.into(),
        ));
        fake.push_fault(Fault::Status(502, "<html>bad gateway</html>".into()));
        assert_eq!(
            client.send_text(&creds, &to, "a").await.unwrap_err(),
            WappiError::RateLimited(7000)
        );
        // A send's 5xx is "maybe sent" (settled through the history, not retried blind).
        assert!(matches!(
            client.send_text(&creds, &to, "a").await,
            Err(WappiError::Unknown(_))
        ));
        assert!(matches!(
            client.send_text(&creds, &to, "a").await,
            Err(WappiError::Unknown(_))
        ));
        // 502 after the message went out: the history shows it.
        fake.push_fault(Fault::AcceptThenStatus(502));
        assert!(matches!(
            client.send_text(&creds, &to, "late").await,
            Err(WappiError::Unknown(_))
        ));
        let history = client.chat_messages(&creds, &to, 5, 0).await.unwrap();
        assert_eq!(history.messages[0].body, "late");
        fake.push_fault(Fault::NotAuthorized);
        assert_eq!(
            client.send_text(&creds, &to, "a").await.unwrap_err(),
            WappiError::NotAuthorized
        );
        client.send_text(&creds, &to, "a").await.unwrap();
        assert_eq!(fake.deliveries().len(), 2);

        fake.set_rate_limit_storm(PROFILE, 2, 3);
        for _ in 0..2 {
            assert_eq!(
                client.send_text(&creds, &to, "b").await.unwrap_err(),
                WappiError::RateLimited(3000)
            );
        }
        client.send_text(&creds, &to, "b").await.unwrap();
        let http: Vec<Option<u16>> = fake
            .sends_for_profile(PROFILE)
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Refused { http, .. } => Some(*http),
                _ => None,
            })
            .collect();
        assert_eq!(
            http,
            [
                Some(429),
                Some(500),
                Some(502),
                None,
                Some(200),
                None,
                Some(429),
                Some(429),
                None
            ]
        );

        // Reads time out or break as Temporary.
        fake.push_read_fault(Fault::DropAfterAccept);
        assert!(matches!(
            client.get_status(&creds).await,
            Err(WappiError::Temporary(_))
        ));
    }

    #[tokio::test]
    async fn drop_after_accept_is_unknown_but_delivered() {
        let (fake, client, creds) = setup().await;
        fake.push_fault(Fault::DropAfterAccept);
        let err = client
            .send_text(&creds, &group(GROUP), "maybe")
            .await
            .unwrap_err();
        assert!(matches!(err, WappiError::Unknown(_)), "{err:?}");
        let d = fake.deliveries_to(GROUP);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].outcome, Outcome::DeliveredThenDropped);
        let msgs = client
            .chat_messages(&creds, &group(GROUP), 5, 0)
            .await
            .unwrap()
            .messages;
        assert_eq!(msgs[0].body, "maybe");

        fake.push_fault(Fault::DropBeforeAccept);
        let err = client
            .send_text(&creds, &group(GROUP), "lost")
            .await
            .unwrap_err();
        assert!(matches!(err, WappiError::Unknown(_)), "{err:?}");
        assert_eq!(fake.deliveries().len(), 1);
        assert_eq!(fake.requests().last().unwrap().outcome, Outcome::Dropped);
    }

    #[tokio::test]
    async fn a_slow_answer_is_unknown_for_a_send_and_temporary_for_a_read() {
        let (fake, _, creds) = setup().await;
        let client = HttpWappi::new(&fake.url(), Duration::from_millis(300));
        fake.push_fault(Fault::Delay(Duration::from_secs(2)));
        let err = client
            .send_text(&creds, &group(GROUP), "slow")
            .await
            .unwrap_err();
        assert!(matches!(err, WappiError::Unknown(_)), "{err:?}");
        assert_eq!(fake.deliveries().len(), 1);
        fake.push_read_fault(Fault::Delay(Duration::from_secs(2)));
        let err = client.list_chats(&creds, 10, 0).await.unwrap_err();
        assert!(matches!(err, WappiError::Temporary(_)), "{err:?}");
    }

    #[tokio::test]
    async fn random_faults_are_reproducible() {
        async fn run(seed: u64) -> Vec<Outcome> {
            let (fake, client, creds) = setup().await;
            fake.set_random_faults(seed, 0.3, 0.2);
            for i in 0..30 {
                let _ = client
                    .send_text(&creds, &group(GROUP), &format!("m{i}"))
                    .await;
            }
            fake.requests().into_iter().map(|r| r.outcome).collect()
        }
        let a = run(42).await;
        assert_eq!(a, run(42).await);
        assert!(a.iter().any(|o| matches!(
            o,
            Outcome::Refused {
                http: 500..=503,
                ..
            }
        )));
        assert!(a.contains(&Outcome::DeliveredThenDropped));
        assert!(a.contains(&Outcome::Delivered));
    }

    #[tokio::test]
    async fn min_gap_is_enforced_and_measured() {
        let (fake, client, creds) = setup().await;
        fake.set_min_gap(PROFILE, Some(Duration::from_millis(200)));
        client.send_text(&creds, &group(GROUP), "1").await.unwrap();
        assert_eq!(
            client
                .send_text(&creds, &group(GROUP), "2")
                .await
                .unwrap_err(),
            WappiError::RateLimited(1000)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        client.send_text(&creds, &group(GROUP), "3").await.unwrap();
        assert!(fake.min_gap_ms(PROFILE).unwrap() >= 200);
        assert!(fake.gap_violations(Duration::from_millis(200)).is_empty());
        assert_eq!(fake.gap_violations(Duration::from_secs(60)).len(), 1);
    }

    #[tokio::test]
    async fn waiting_for_deliveries() {
        let (fake, client, creds) = setup().await;
        let err = fake
            .wait_for_deliveries(1, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.contains("0 deliveries"), "{err}");
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client
                .send_text(&creds, &group(GROUP), "later")
                .await
                .unwrap();
        });
        fake.wait_for_deliveries(1, Duration::from_secs(5))
            .await
            .unwrap();
        task.await.unwrap();
        fake.wait_for_requests(1, Duration::from_millis(10))
            .await
            .unwrap();
    }
}

/// How evenly deliveries were paced: see [`FakeWappi::pacing`].
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Seconds the sends take at exactly the rate.
    pub ideal: f64,
    /// Seconds from the first to the last send, plus one interval.
    pub actual: f64,
    /// The smallest gap between two deliveries, in ms.
    pub min_gap: i64,
    /// Deliveries beyond one per chat.
    pub doubles: usize,
}

impl Pacing {
    /// `ideal / actual`: 1.0 is a perfectly kept rate.
    pub fn efficiency(&self) -> f64 {
        self.ideal / self.actual
    }
}
