//! The scripted Wappi: records every call with the fake time, keeps what it delivered per
//! chat (so `chat_messages` answers from it) and plays queued outcomes.

use super::*;
use crate::wappi::GroupFacts;

/// Which Wappi endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WappiMethod {
    GetStatus,
    SendText,
    SendImage,
    ListChats,
    ChatMessages,
    GroupInfo,
    EditMessage,
    DeleteMessage,
}

/// One recorded Wappi call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WappiCall {
    /// Fake time when the call was made (before any latency).
    pub at: i64,
    pub method: WappiMethod,
    pub profile: ProfileId,
    /// The recipient or the chat read (sends, `chat_messages` and `group_info`).
    pub to: Option<GroupJid>,
    /// The text or caption sent.
    pub text: Option<String>,
    /// The base64 of an image sent (`SendImage` only).
    pub image: Option<String>,
    /// The message edited or deleted (`EditMessage`, `DeleteMessage`).
    pub target: Option<String>,
    /// Whether the message reached the chat (sends only).
    pub delivered: bool,
    /// The error the call answered, if it failed.
    pub error: Option<WappiError>,
}

impl WappiCall {
    pub fn is_send(&self) -> bool {
        matches!(self.method, WappiMethod::SendText | WappiMethod::SendImage)
    }
}

/// What the next send does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendScript {
    /// Delivered; the call answers with a message id.
    Deliver,
    /// Not delivered; the call answers this error (429, 5xx, refused, not authorized…).
    Fail(WappiError),
    /// Delivered, but the answer is lost: the call answers this error (normally
    /// [`WappiError::Unknown`]) although the message is in the chat.
    DeliverThenFail(WappiError),
}

impl SendScript {
    /// Delivered, answered with `WappiError::Unknown` (a timeout after the request went out).
    pub fn unknown_but_delivered() -> Self {
        SendScript::DeliverThenFail(WappiError::Unknown(
            "timed out after the request was sent".into(),
        ))
    }

    /// Not delivered, answered with `WappiError::Unknown`.
    pub fn unknown_not_delivered() -> Self {
        SendScript::Fail(WappiError::Unknown("connection reset".into()))
    }
}

type SendHook = Box<dyn Fn(usize, &GroupJid) + Send + Sync>;

struct StoredMessage {
    from: ProfileId,
    msg: ChatMessage,
}

#[derive(Default)]
struct WappiInner {
    calls: Vec<WappiCall>,
    sends: VecDeque<SendScript>,
    sends_to: HashMap<GroupJid, VecDeque<SendScript>>,
    statuses: VecDeque<Result<ProfileStatus, WappiError>>,
    reads: VecDeque<WappiError>,
    list_errors: VecDeque<WappiError>,
    group_info_errors: VecDeque<WappiError>,
    /// Scripted `group_info` answers; `None` = the id does not resolve to a group.
    group_facts: HashMap<GroupJid, Option<GroupFacts>>,
    chats: Vec<Dialog>,
    history: HashMap<GroupJid, Vec<StoredMessage>>,
    last_message: u64,
    latency_ms: i64,
    /// `chat_messages` ignores `offset` (an API without paging).
    no_paging: bool,
}

/// A scripted Wappi. Sends are delivered unless a queued [`SendScript`] says otherwise (a
/// script for the recipient wins over the general queue). Delivered messages are kept per
/// chat, so `chat_messages` answers from what really "arrived", newest first, with `fromMe`
/// set for the calling profile.
pub struct ScriptedWappi {
    clock: FakeClock,
    inner: Mutex<WappiInner>,
    on_send: Mutex<Option<SendHook>>,
}

impl ScriptedWappi {
    pub fn new(clock: FakeClock) -> Self {
        ScriptedWappi {
            clock,
            inner: Mutex::new(WappiInner::default()),
            on_send: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WappiInner> {
        lock(&self.inner)
    }

    /// Queues the outcome of the next send (to any recipient without its own script).
    pub fn script_send(&self, outcome: SendScript) {
        self.lock().sends.push_back(outcome);
    }

    /// Queues the outcome of the next send to `to`.
    pub fn script_send_to(&self, to: &GroupJid, outcome: SendScript) {
        self.lock()
            .sends_to
            .entry(to.clone())
            .or_default()
            .push_back(outcome);
    }

    /// Queues the answer of the next `get_status` (the default is a connected number).
    pub fn script_status(&self, answer: Result<ProfileStatus, WappiError>) {
        self.lock().statuses.push_back(answer);
    }

    /// Makes the next `chat_messages` call fail with `e`.
    pub fn fail_next_read(&self, e: WappiError) {
        self.lock().reads.push_back(e);
    }

    /// With `false`, `chat_messages` ignores `offset` and answers the newest page, without a
    /// `total_count` (an API that does not page).
    pub fn set_history_paging(&self, on: bool) {
        self.lock().no_paging = !on;
    }

    /// Makes the next `list_chats` call fail with `e`.
    pub fn fail_next_list(&self, e: WappiError) {
        self.lock().list_errors.push_back(e);
    }

    /// The dialogs `list_chats` pages through.
    pub fn set_chats(&self, chats: Vec<Dialog>) {
        self.lock().chats = chats;
    }

    /// What `group_info` answers for `group` from now on: `Some(facts)`, or `None` for an id
    /// that does not resolve to a group. An unscripted group answers
    /// `Ok(Some(GroupFacts::default()))` (a group whose facts are all unknown). A dialog of
    /// `list_chats` whose id is a group with `Some(facts)` also carries them as its `group`
    /// object (whatsmeow's keys, as [`GroupFacts::from_json`] reads them), in place of any
    /// `group` the dialog was given.
    pub fn set_group_facts(&self, group: &GroupJid, facts: Option<GroupFacts>) {
        self.lock().group_facts.insert(group.clone(), facts);
    }

    /// Makes the next `group_info` call fail with `e`.
    pub fn fail_next_group_info(&self, e: WappiError) {
        self.lock().group_info_errors.push_back(e);
    }

    /// Every call advances the fake clock by this much (the time a request takes).
    pub fn set_latency(&self, ms: i64) {
        self.lock().latency_ms = ms;
    }

    /// Runs `hook(send_index, recipient)` inside every send call, after it is recorded and
    /// before it answers (to look at the ledger at that moment, or to cancel mid-send).
    pub fn on_send(&self, hook: impl Fn(usize, &GroupJid) + Send + Sync + 'static) {
        *lock(&self.on_send) = Some(Box::new(hook));
    }

    /// Puts a message into a chat without a recorded call: a send by a process that died
    /// before it could record it, or a message of another member (`from` another profile).
    pub fn inject_message(&self, chat: &GroupJid, from: &ProfileId, body: &str, at_ms: i64) {
        let mut inner = self.lock();
        inner.last_message += 1;
        let id = format!("wamid.{}", inner.last_message);
        Self::store(&mut inner, chat, from, id, body, at_ms);
    }

    fn store(
        inner: &mut WappiInner,
        chat: &GroupJid,
        from: &ProfileId,
        id: String,
        body: &str,
        at_ms: i64,
    ) {
        inner
            .history
            .entry(chat.clone())
            .or_default()
            .push(StoredMessage {
                from: from.clone(),
                msg: ChatMessage {
                    id,
                    from_me: false,
                    time: at_ms.div_euclid(1000),
                    body: body.to_string(),
                    caption: String::new(),
                    kind: "chat".into(),
                    delivery_status: "delivered".into(),
                    is_deleted: false,
                },
            });
    }

    /// Every call, in order.
    pub fn calls(&self) -> Vec<WappiCall> {
        self.lock().calls.clone()
    }

    /// The send calls (text and image), in order.
    pub fn sends(&self) -> Vec<WappiCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.is_send())
            .cloned()
            .collect()
    }

    /// The send calls to one recipient.
    pub fn sends_to(&self, to: &GroupJid) -> Vec<WappiCall> {
        self.sends()
            .into_iter()
            .filter(|c| c.to.as_ref() == Some(to))
            .collect()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: WappiMethod) -> Vec<WappiCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The messages of a chat from `profile`, oldest first (bodies).
    pub fn delivered_to(&self, chat: &GroupJid, profile: &ProfileId) -> Vec<String> {
        self.lock()
            .history
            .get(chat)
            .map(|h| {
                h.iter()
                    .filter(|m| &m.from == profile)
                    .map(|m| m.msg.body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record(&self, call: WappiCall) {
        let latency = {
            let mut inner = self.lock();
            inner.calls.push(call);
            inner.latency_ms
        };
        if latency > 0 {
            self.clock.advance(latency);
        }
    }

    /// An edit (`body`) or a delete (`None`) of message `id` in `chat`, scripted like a send:
    /// carried out unless the script says otherwise; a message that is not in the chat is
    /// refused.
    fn change(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        id: &str,
        body: Option<&str>,
    ) -> Result<Sent, WappiError> {
        let at = self.clock.now();
        let (result, done) = {
            let mut inner = self.lock();
            let script = inner
                .sends_to
                .get_mut(chat)
                .and_then(VecDeque::pop_front)
                .or_else(|| inner.sends.pop_front())
                .unwrap_or(SendScript::Deliver);
            let message = inner
                .history
                .get_mut(chat)
                .and_then(|h| h.iter_mut().find(|m| m.msg.id == id));
            match (script, message) {
                (SendScript::Fail(e), _) => (Err(e), false),
                (_, None) => (Err(WappiError::Rejected("message not found".into())), false),
                (script, Some(m)) => {
                    match body {
                        Some(b) if m.msg.kind == "image" => m.msg.caption = b.to_string(),
                        Some(b) => m.msg.body = b.to_string(),
                        None => {
                            m.msg.is_deleted = true;
                            m.msg.body.clear();
                            m.msg.caption.clear();
                        }
                    }
                    let result = match script {
                        SendScript::DeliverThenFail(e) => Err(e),
                        _ => Ok(Sent {
                            message_id: Some(id.to_string()),
                            task_id: None,
                        }),
                    };
                    (result, true)
                }
            }
        };
        self.record(WappiCall {
            at,
            method: match body {
                Some(_) => WappiMethod::EditMessage,
                None => WappiMethod::DeleteMessage,
            },
            profile: creds.profile_id.clone(),
            to: Some(chat.clone()),
            text: body.map(str::to_string),
            image: None,
            target: Some(id.to_string()),
            delivered: done,
            error: result.as_ref().err().cloned(),
        });
        result
    }

    async fn send(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        text: &str,
        image: Option<&str>,
        method: WappiMethod,
    ) -> Result<Sent, WappiError> {
        let at = self.clock.now();
        let (index, result, delivered) = {
            let mut inner = self.lock();
            let script = inner
                .sends_to
                .get_mut(to)
                .and_then(VecDeque::pop_front)
                .or_else(|| inner.sends.pop_front())
                .unwrap_or(SendScript::Deliver);
            let delivered = matches!(script, SendScript::Deliver | SendScript::DeliverThenFail(_));
            let mut message_id = None;
            if delivered {
                inner.last_message += 1;
                let id = format!("wamid.{}", inner.last_message);
                Self::store(&mut inner, to, &creds.profile_id, id.clone(), text, at);
                if image.is_some() {
                    // An image message: no body, the text is its caption.
                    if let Some(last) = inner.history.get_mut(to).and_then(|h| h.last_mut()) {
                        last.msg.kind = "image".into();
                        last.msg.caption = std::mem::take(&mut last.msg.body);
                    }
                }
                message_id = Some(id);
            }
            let result = match script {
                SendScript::Deliver => Ok(Sent {
                    message_id,
                    task_id: None,
                }),
                SendScript::Fail(e) | SendScript::DeliverThenFail(e) => Err(e),
            };
            let index = inner.calls.iter().filter(|c| c.is_send()).count();
            (index, result, delivered)
        };
        self.record(WappiCall {
            at,
            method,
            profile: creds.profile_id.clone(),
            to: Some(to.clone()),
            text: Some(text.to_string()),
            image: image.map(str::to_string),
            target: None,
            delivered,
            error: result.as_ref().err().cloned(),
        });
        if let Some(hook) = lock(&self.on_send).as_ref() {
            hook(index, to);
        }
        result
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl WappiApi for ScriptedWappi {
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
        let at = self.clock.now();
        let answer = self.lock().statuses.pop_front().unwrap_or_else(|| {
            Ok(ProfileStatus {
                app_status: Some("open".into()),
                authorized: true,
                name: Some("Test".into()),
                phone: Some("79990001122".into()),
                profile_id: Some(creds.profile_id.to_string()),
                authorized_at: None,
            })
        });
        self.record(WappiCall {
            at,
            method: WappiMethod::GetStatus,
            profile: creds.profile_id.clone(),
            to: None,
            text: None,
            image: None,
            target: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }

    async fn send_text(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        body: &str,
    ) -> Result<Sent, WappiError> {
        self.send(creds, to, body, None, WappiMethod::SendText)
            .await
    }

    async fn send_image(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        b64: &str,
        caption: Option<&str>,
    ) -> Result<Sent, WappiError> {
        self.send(
            creds,
            to,
            caption.unwrap_or(""),
            Some(b64),
            WappiMethod::SendImage,
        )
        .await
    }

    async fn list_chats(
        &self,
        creds: &WappiCreds,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Dialog>, WappiError> {
        let at = self.clock.now();
        let answer = {
            let mut inner = self.lock();
            match inner.list_errors.pop_front() {
                Some(e) => Err(e),
                None => Ok(inner
                    .chats
                    .iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .map(|d| {
                        let mut d = d.clone();
                        let facts = d.group().and_then(|g| inner.group_facts.get(&g).cloned());
                        if let Some(Some(facts)) = facts {
                            d.group = Some(group_facts_json(&facts));
                        }
                        d
                    })
                    .collect()),
            }
        };
        self.record(WappiCall {
            at,
            method: WappiMethod::ListChats,
            profile: creds.profile_id.clone(),
            to: None,
            text: None,
            image: None,
            target: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }

    async fn group_info(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
    ) -> Result<Option<GroupFacts>, WappiError> {
        let at = self.clock.now();
        let answer = {
            let mut inner = self.lock();
            match inner.group_info_errors.pop_front() {
                Some(e) => Err(e),
                None => Ok(inner
                    .group_facts
                    .get(group)
                    .cloned()
                    .unwrap_or_else(|| Some(GroupFacts::default()))),
            }
        };
        self.record(WappiCall {
            at,
            method: WappiMethod::GroupInfo,
            profile: creds.profile_id.clone(),
            to: Some(group.clone()),
            text: None,
            image: None,
            target: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }

    async fn edit_message(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
        message_id: &str,
        body: &str,
    ) -> Result<Sent, WappiError> {
        self.change(creds, group, message_id, Some(body))
    }

    async fn delete_message(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
        message_id: &str,
    ) -> Result<Sent, WappiError> {
        self.change(creds, group, message_id, None)
    }

    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
        offset: u32,
    ) -> Result<MessagesPage, WappiError> {
        let at = self.clock.now();
        let answer = {
            let mut inner = self.lock();
            match inner.reads.pop_front() {
                Some(e) => Err(e),
                None => {
                    let history = inner.history.get(chat).map(Vec::as_slice).unwrap_or(&[]);
                    let offset = if inner.no_paging { 0 } else { offset };
                    Ok(MessagesPage {
                        messages: history
                            .iter()
                            .rev()
                            .skip(offset as usize)
                            .take(limit as usize)
                            .map(|m| ChatMessage {
                                from_me: m.from == creds.profile_id,
                                ..m.msg.clone()
                            })
                            .collect(),
                        total_count: (!inner.no_paging).then_some(history.len() as u64),
                        skipped: 0,
                    })
                }
            }
        };
        self.record(WappiCall {
            at,
            method: WappiMethod::ChatMessages,
            profile: creds.profile_id.clone(),
            to: Some(chat.clone()),
            text: None,
            image: None,
            target: None,
            delivered: false,
            error: answer.as_ref().err().cloned(),
        });
        answer
    }
}

/// `facts` as a `group` object with whatsmeow's `GroupInfo` keys: `Name`, `IsAnnounce` and
/// `Participants` (`JID` `<digits>@s.whatsapp.net`, `IsAdmin`, `IsSuperAdmin`), each only when
/// known, so that [`GroupFacts::from_json`] reads back the same facts. An admin missing from
/// the participants is listed too (it is one).
pub fn group_facts_json(facts: &GroupFacts) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if let Some(name) = &facts.name {
        o.insert("Name".into(), name.clone().into());
    }
    if let Some(announce) = facts.announce {
        o.insert("IsAnnounce".into(), announce.into());
    }
    let admins = facts.admins.clone().unwrap_or_default();
    if facts.participants.is_some() || !admins.is_empty() {
        let mut members = facts.participants.clone().unwrap_or_default();
        members.extend(
            admins
                .iter()
                .filter(|a| !members.contains(a))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let list: Vec<serde_json::Value> = members
            .iter()
            .map(|m| {
                let admin = admins.contains(m);
                serde_json::json!({
                    "JID": format!("{m}@s.whatsapp.net"),
                    "IsAdmin": admin,
                    "IsSuperAdmin": false,
                })
            })
            .collect();
        o.insert("Participants".into(), list.into());
    }
    serde_json::Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> WappiCreds {
        WappiCreds {
            token: Secret::new("0123456789abcdef0123456789abcdef01234567"),
            profile_id: ProfileId::parse("2f099bc3-478d").unwrap(),
        }
    }

    fn jid(n: u64) -> GroupJid {
        GroupJid::parse(&format!("12036300000000{n:04}@g.us")).unwrap()
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[tokio::test]
    async fn scripted_wappi_group_info_and_chats_carry_the_scripted_facts() {
        let w = ScriptedWappi::new(FakeClock::new(T0));
        let c = creds();
        let facts = GroupFacts {
            name: Some("Квартиры СПб".into()),
            announce: Some(true),
            participants: strings(&["79990001122", "79115576367"]),
            admins: strings(&["79115576367"]),
        };
        w.set_group_facts(&jid(1), Some(facts.clone()));
        w.set_group_facts(&jid(2), None);
        assert_eq!(w.group_info(&c, &jid(1)).await, Ok(Some(facts.clone())));
        assert_eq!(w.group_info(&c, &jid(2)).await, Ok(None));
        assert_eq!(
            w.group_info(&c, &jid(3)).await,
            Ok(Some(GroupFacts::default())),
            "unscripted: a group, facts unknown"
        );
        w.fail_next_group_info(WappiError::RateLimited(1000));
        assert_eq!(
            w.group_info(&c, &jid(1)).await,
            Err(WappiError::RateLimited(1000))
        );
        let calls = w.calls_of(WappiMethod::GroupInfo);
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].to, Some(jid(1)));
        assert_eq!(calls[0].at, T0);
        assert_eq!(calls[3].error, Some(WappiError::RateLimited(1000)));
        assert!(!calls[0].is_send());

        w.set_chats(
            [jid(1), jid(2), jid(3)]
                .iter()
                .map(|g| Dialog {
                    id: g.to_string(),
                    ..Default::default()
                })
                .chain([Dialog {
                    id: "79115576367@c.us".into(),
                    ..Default::default()
                }])
                .collect(),
        );
        let dialogs = w.list_chats(&c, 10, 0).await.unwrap();
        let read: Vec<Option<GroupFacts>> = dialogs.iter().map(Dialog::group_facts).collect();
        assert_eq!(read, [Some(facts), None, None, None]);
    }

    #[test]
    fn group_facts_json_reads_back() {
        let cases = [
            GroupFacts::default(),
            GroupFacts {
                name: Some("G".into()),
                announce: Some(false),
                participants: strings(&["79990001122"]),
                admins: Some(vec![]),
            },
            GroupFacts {
                name: None,
                announce: Some(true),
                participants: strings(&["79990001122", "79115576367"]),
                admins: strings(&["79990001122"]),
            },
        ];
        for f in cases {
            assert_eq!(GroupFacts::from_json(&group_facts_json(&f)), f, "{f:?}");
        }
        let v = group_facts_json(&GroupFacts {
            participants: strings(&["79990001122"]),
            admins: strings(&["79990001122"]),
            ..Default::default()
        });
        assert_eq!(
            v,
            serde_json::json!({"Participants": [
                {"JID": "79990001122@s.whatsapp.net", "IsAdmin": true, "IsSuperAdmin": false}
            ]})
        );
    }
}
