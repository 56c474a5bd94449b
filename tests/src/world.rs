//! A test world: fake Telegram, fake Wappi and one `groupcast` server wired together, and a
//! `Person` who talks to the bot through the fake Telegram the way a user does.

use crate::fake_telegram::{FakeTelegram, SentMessage};
use crate::fake_wappi::FakeWappi;
use crate::harness::{RedisNamespace, Server};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// How long a step of a dialogue may take before a test fails.
pub const STEP: Duration = Duration::from_secs(15);

/// What runs the bot in a [`World`]: the native `groupcast` binary ([`Server`], long polling)
/// by default, or the Cloudflare Worker under `wrangler dev`
/// ([`Worker`](crate::worker_harness::Worker), webhook).
pub trait Bot {
    /// Hands the bot one update from the user, in order with the earlier ones.
    fn deliver(&self, tg: &FakeTelegram, update: Value);
    /// Everything the bot logged (shown when a step times out).
    fn logs(&self) -> String;
    /// Base URL of the bot's HTTP endpoints (`/robokassa/result`, `/healthz`, …).
    fn url(&self) -> String;
    /// The ledger (SQLite or local D1), opened read-only for assertions.
    fn db(&self) -> rusqlite::Connection;
    /// Fails if the logs hold a secret (the harness's sentinels, or any extra given).
    fn assert_no_secrets_in_logs(&self, extra: &[&str]) {
        crate::harness::assert_no_secrets_in(&self.logs(), extra);
    }
}

impl Bot for Server {
    fn deliver(&self, tg: &FakeTelegram, update: Value) {
        tg.push_update(update);
    }

    fn logs(&self) -> String {
        Server::logs(self)
    }

    fn url(&self) -> String {
        Server::url(self)
    }

    fn db(&self) -> rusqlite::Connection {
        Server::db(self)
    }
}

pub struct World<S: Bot = Server> {
    pub tg: FakeTelegram,
    pub wappi: FakeWappi,
    pub server: S,
    pub dir: tempfile::TempDir,
    /// The Redis key namespace of a world started with [`World::start_redis_with`] (its keys
    /// are deleted when the world is dropped, after its server stopped).
    pub redis: Option<RedisNamespace>,
}

/// A Wappi account of the fake: token and profile id as Wappi issues them.
#[derive(Debug, Clone)]
pub struct Account {
    pub token: String,
    pub profile: String,
}

impl Account {
    /// A distinct, valid-looking account per `n` (40 hex token, `8hex-4hex` profile).
    pub fn numbered(n: u32) -> Account {
        Account {
            token: format!("{:040x}", 0xfeed_0000_0000u64 + n as u64),
            profile: format!("{:08x}-{:04x}", 0x2f09_9bc3u32.wrapping_add(n), n),
        }
    }
}

impl World {
    pub async fn start() -> World {
        World::start_with(|_| {}).await
    }

    /// Starts the fakes and a server whose settings `tune` may change.
    pub async fn start_with(tune: impl FnOnce(&mut HashMap<String, String>)) -> World {
        let tg = FakeTelegram::start().await;
        let wappi = FakeWappi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = Server::env(&tg.url(), &wappi.url(), dir.path());
        tune(&mut env);
        let server = Server::start(env, dir.path()).await;
        World {
            tg,
            wappi,
            server,
            dir,
            redis: None,
        }
    }

    /// Starts the fakes and a server on the Redis backend: `REDIS_URL` is the shared test Redis
    /// ([`harness::redis_url`](crate::harness::redis_url)) and `REDIS_PREFIX` a random one of
    /// this world, logs are JSON (`LOG_FORMAT=json`, see [`Server::log_events`]); `tune` may
    /// change any of it (e.g. `REDIS_URL` to a private Redis).
    pub async fn start_redis_with(tune: impl FnOnce(&mut HashMap<String, String>)) -> World {
        let tg = FakeTelegram::start().await;
        let wappi = FakeWappi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = Server::env(&tg.url(), &wappi.url(), dir.path());
        env.insert("REDIS_URL".into(), crate::harness::redis_url());
        env.insert("LOG_FORMAT".into(), "json".into());
        tune(&mut env);
        let ns = RedisNamespace::new(&env["REDIS_URL"]);
        env.entry("REDIS_PREFIX".into())
            .or_insert_with(|| ns.prefix.clone());
        let server = Server::start(env, dir.path()).await;
        World {
            tg,
            wappi,
            server,
            dir,
            redis: Some(ns),
        }
    }

    /// Starts another `groupcast serve` next to the world's server: the same settings (so the
    /// same database file, Redis and prefix), changed by `tune`, logging to
    /// `server-<name>-<run>.log` in the world's folder. It long-polls Telegram too unless `tune`
    /// calls [`World::no_polling`].
    pub async fn add_server(
        &self,
        name: &str,
        tune: impl FnOnce(&mut HashMap<String, String>),
    ) -> Server {
        let mut env = self.server.env.clone();
        tune(&mut env);
        Server::start_named(env, self.dir.path(), name).await
    }

    /// Waits until the world's server drives mailing `id` (holds its profile's lease), then
    /// starts a second process named `name` whose Wappi calls pass through a tap of its own, so
    /// a test can tell which process sent what. With `polls` false the second one takes no
    /// Telegram updates ([`World::no_polling`]).
    pub async fn second_process_once_driving(
        &self,
        id: i64,
        name: &str,
        polls: bool,
    ) -> (Server, crate::harness::WappiTap) {
        crate::harness::wait_until("the first process drives", Duration::from_secs(10), || {
            !self.server.driving_fences(id).is_empty()
        })
        .await;
        let tap = crate::harness::WappiTap::start(&self.wappi.url());
        let server = self
            .add_server(name, |env| {
                if !polls {
                    World::no_polling(env);
                }
                env.insert("WAPPI_API_URL".into(), tap.url());
            })
            .await;
        (server, tap)
    }

    /// Settings of a server that takes no Telegram updates (webhook mode, and nothing is ever
    /// delivered to it): a mailing runner only, which still talks to Telegram for progress and
    /// reports. Avoids two long pollers answering each other's `getUpdates` with 409.
    pub fn no_polling(env: &mut HashMap<String, String>) {
        env.insert("PUBLIC_URL".into(), "https://runner.example.test".into());
        env.insert(
            "TELEGRAM_WEBHOOK_SECRET".into(),
            crate::harness::WEBHOOK_SECRET.into(),
        );
    }
}

impl<S: Bot> World<S> {
    pub fn person(&self, id: i64) -> Person<'_, S> {
        Person { w: self, id }
    }

    /// Adds `n` groups to the account at the fake and returns their ids.
    pub fn groups(&self, account: &Account, n: usize, seed: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let jid = format!("120363{:012}@g.us", seed * 100_000 + i as u64);
                self.wappi
                    .add_group(&account.profile, &jid, &format!("Группа {seed}-{i}"));
                jid
            })
            .collect()
    }
}

/// A Telegram user talking to the bot.
pub struct Person<'a, S: Bot = Server> {
    pub w: &'a World<S>,
    pub id: i64,
}

impl<S: Bot> Person<'_, S> {
    pub fn says(&self, text: &str) {
        let u = self.w.tg.text_message(self.id, text);
        self.w.server.deliver(&self.w.tg, u);
    }

    pub fn says_formatted(&self, text: &str, entities: Value) {
        let u = self
            .w
            .tg
            .text_message_with_entities(self.id, text, entities);
        self.w.server.deliver(&self.w.tg, u);
    }

    pub fn presses(&self, message_id: i64, data: &str) {
        let u = self.w.tg.callback(self.id, message_id, data);
        self.w.server.deliver(&self.w.tg, u);
    }

    /// The next bot message to this person containing `needle`.
    pub async fn hears(&self, needle: &str) -> SentMessage {
        let needle = needle.to_string();
        self.w
            .tg
            .wait_for_message(self.id, move |t| t.contains(&needle), STEP)
            .await
            .unwrap_or_else(|e| {
                let logs = self.w.server.logs();
                let tail: Vec<&str> = logs.lines().rev().take(40).collect();
                panic!(
                    "{e}\nlast server log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
    }
}

impl Person<'_> {
    /// The inline button of `msg` whose label contains `label`: its callback data.
    pub fn button(msg: &SentMessage, label: &str) -> String {
        let markup = msg.reply_markup.as_ref().expect("message has buttons");
        button_in(markup, label)
    }
}

/// The callback data of the inline button labelled (in part) `label` in a `reply_markup`.
fn button_in(markup: &Value, label: &str) -> String {
    markup["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .find(|b| b["text"].as_str().unwrap_or("").contains(label))
        .and_then(|b| b["callback_data"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no button {label:?} in {markup}"))
}

/// Photos the way a Telegram client uploads them: the files at the fake Telegram, the
/// updates to the bot, and the bot's messages as edits leave them.
impl<S: Bot> World<S> {
    /// Sends the photos as one album (one update per photo sharing the `media_group_id`
    /// `album`), each registered at the fake Telegram with its JPEG bytes.
    pub fn sends_album(&self, user: i64, album: &str, photos: &[(impl AsRef<str>, Vec<u8>)]) {
        for (file_id, jpeg) in photos {
            let file_id = file_id.as_ref();
            self.tg.add_file(file_id, jpeg.clone());
            let mut update = self.tg.photo_message(user, file_id, None);
            update["message"]["media_group_id"] = album.into();
            self.server.deliver(&self.tg, update);
        }
    }

    /// Waits until the bot's message `message_id` (edited as an album arrives) contains
    /// `needle`.
    pub async fn shows(&self, user: i64, message_id: i64, needle: &str) {
        let needle = needle.to_string();
        self.tg
            .wait_until(
                |tg| {
                    tg.current_text(user, message_id)
                        .is_some_and(|t| t.contains(&needle))
                },
                STEP,
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e}: message {message_id} shows {:?}\n{}",
                    self.tg.current_text(user, message_id),
                    self.server.logs()
                )
            });
    }

    /// The callback data of the button labelled `label` on a message as it shows now
    /// (buttons added by an edit included, e.g. the collage preview's).
    pub async fn current_button(&self, user: i64, msg: &SentMessage, label: &str) -> String {
        let id = msg.message_id;
        self.tg
            .wait_until(|tg| tg.current_markup(user, id).is_some(), STEP)
            .await
            .expect("the message gets buttons");
        let markup = self.tg.current_markup(user, id).expect("buttons");
        button_in(&markup, label)
    }
}

impl<S: Bot> Person<'_, S> {
    /// Registers with the account's token and profile; ends at the main menu.
    pub async fn registers(&self, account: &Account) {
        self.says("/start");
        self.hears("токен").await;
        self.says(&account.token);
        self.hears("профиля").await;
        self.says(&account.profile);
        self.hears("✔️").await;
    }

    /// Sets the mailing text (plain).
    pub async fn sets_text(&self, text: &str) {
        self.says("/text");
        self.hears("📝").await;
        self.says(text);
        self.hears("Текст сохранён").await;
    }

    /// Pastes the group list.
    pub async fn sets_groups(&self, groups: &[String]) {
        self.says("/groups");
        self.hears("👥").await;
        self.says(&groups.join("\n"));
        self.hears("Сохранено групп").await;
    }

    /// /mailing, then ✅ on the preview; returns the mailing id from the 🚀 message.
    pub async fn starts_mailing(&self) -> i64 {
        self.starts_mailing_msg().await.0
    }

    /// /mailing, ➕ on the preview (the groups the pre-flight check doubts go in too), then ✅
    /// on the fresh preview; returns the mailing id. For groups that exist only to be refused.
    pub async fn starts_mailing_including_doubtful(&self) -> i64 {
        self.says("/mailing");
        let preview = self.hears("Предпросмотр").await;
        self.presses(
            preview.message_id,
            &Person::<Server>::button(&preview, "➕"),
        );
        let all = self.hears("Предпросмотр").await;
        self.presses(all.message_id, &Person::<Server>::button(&all, "✅"));
        let started = self.hears("🚀 Рассылка #").await;
        started.text["🚀 Рассылка #".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("mailing id in the start message")
    }

    /// Like `starts_mailing`, also returning the 🚀 message (which becomes the progress
    /// message, with ⛔).
    pub async fn starts_mailing_msg(&self) -> (i64, SentMessage) {
        self.says("/mailing");
        let preview = self.hears("Предпросмотр").await;
        self.presses(
            preview.message_id,
            &Person::<Server>::button(&preview, "✅"),
        );
        let started = self.hears("🚀 Рассылка #").await;
        let id = started.text["🚀 Рассылка #".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("mailing id in the start message");
        (id, started)
    }
}

/// Send-arrival tolerance at the fake Wappi: the pacer spaces the *calls*; their arrival
/// jitters by a few ms of loopback and scheduling.
pub const JITTER_MS: i64 = 5;

impl<S: Bot> World<S> {
    /// A registered person on account `n` with `groups` groups (added to the fake account
    /// too), the text set and the groups pasted: ready to start a mailing.
    pub async fn ready(
        &self,
        id: i64,
        n: u32,
        groups: usize,
        text: &str,
    ) -> (Person<'_, S>, Account, Vec<String>) {
        let acc = Account::numbered(n);
        self.wappi.add_profile(&acc.profile, &acc.token);
        let jids = self.groups(&acc, groups, n as u64);
        let p = self.person(id);
        p.registers(&acc).await;
        p.sets_text(text).await;
        p.sets_groups(&jids).await;
        (p, acc, jids)
    }

    /// Every send request of a profile at the fake (any outcome), in arrival order.
    pub fn sends(&self, profile: &str) -> Vec<crate::fake_wappi::Request> {
        self.wappi
            .requests()
            .into_iter()
            .filter(|r| r.is_send() && r.profile_id == profile)
            .collect()
    }

    /// Each group received the text exactly once, and nothing went to chats outside the list.
    pub fn assert_each_delivered_once(&self, jids: &[String]) {
        let counts = self.wappi.delivery_count_by_recipient();
        let wrong: Vec<_> = jids
            .iter()
            .filter(|j| counts.get(*j) != Some(&1))
            .map(|j| (j, counts.get(j)))
            .collect();
        assert!(
            wrong.is_empty(),
            "groups not delivered exactly once: {wrong:?}"
        );
        assert_eq!(
            counts.len(),
            jids.len(),
            "deliveries to chats outside the list"
        );
    }
}
