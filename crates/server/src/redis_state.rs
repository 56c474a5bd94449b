//! `RedisState`: every coordination capability of the core's ports on Redis, for several
//! `serve` processes sharing one Redis (leases with fencing numbers, cancel flags, pacing,
//! backoff, heartbeats and a reliable intake queue). It keeps the original system's key
//! vocabulary under a prefix.
//!
//! Every change of more than one step is one Lua script, so each call is atomic as the
//! in-process [embedded state](crate::state::embedded) is under its mutex, and both pass the
//! same contract (`groupcast_core::testing::contract`; the lease part here in real time, see
//! `leases_by_backend_clock` in the tests). Lease expiry is judged by Redis's own clock (`TIME`
//! inside the scripts), never by a caller's: the processes sharing a Redis may run on hosts
//! whose clocks disagree, and a caller whose clock is ahead must not take over a lease that is
//! still live (nor one that lags keep a dead holder's lease looking live). Redis's clock also
//! gives the floor of the fencing numbers and the visibility timeout of the intake queue.
//! Pacing, backoff and heartbeats use the `now` the caller passes (as the embedded state does).
//! Key TTLs only collect garbage, with a margin beyond the logical expiry.
//!
//! Key layout, under the prefix (default `groupcast:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `mailing_lock_<profile>` | string, PX | the lease: `<token>\|<fence>\|<expires_at ms>` (Redis clock) |
//! | `mailing_lock_fence` | string | the last fencing number handed out |
//! | `cancel_mailing_<id>` | string, EX 3 days | a cancel flag |
//! | `wappi_rate:<profile>` | hash, PX | `tat` (GCRA µs) and `c:<group jid>` (recent sends, ms, `,`-joined) |
//! | `wappi_backoff:<profile>` | string, PX | no send before this unix ms |
//! | `task_runner_health` | hash | runner → last heartbeat ms (caller's clock) |
//! | `mailing_tasks_queue` | list | intake: `LPUSH`ed, taken from the right (FIFO) |
//! | `mailing_tasks_processing:<consumer>` | list | taken by that consumer, not yet acked |
//! | `mailing_tasks_consumers` | hash | consumer → last sign of life ms (Redis clock) |
//! | `lease_released` | pub/sub channel | the profile of each lease released ([`ReleaseFeed`]) |
//!
//! A process renews all the leases it holds together, a few hundred per script call
//! ([`Leases::renew_leases`]); a try for a lease another holds answers how long that lease
//! still lasts ([`Leases::try_lease`]), and a release is published, so that a process waiting
//! for the lease sleeps until it could expire and is woken at once when it is released (a
//! deploy's handover) instead of asking every second.
//!
//! Fencing numbers are `max(counter + 1, fence of the lease replaced + 1, now, Redis clock ms)`,
//! so they keep growing even when Redis lost its data (the ledger remembers the last one): a
//! regression would need fences handed out faster than one per millisecond *and* the loss of
//! the profile's lease key too.
//!
//! The intake queue delivers at least once (the lease and the ledger make a second delivery
//! harmless): [`IntakeConsumer::dequeue`] moves a mailing into the taker's processing list,
//! where it stays until [`IntakeConsumer::ack`]. [`IntakeConsumer::requeue_stale`] gives back,
//! at the head of the queue, what consumers silent for too long still hold;
//! [`IntakeConsumer::give_back`] does it at once for this consumer on a graceful stop.
//!
//! Requires Redis 6.2 or newer (`LMOVE`) and a single instance or a primary: the scripts touch
//! keys they are not given (not for Redis Cluster), and a failover to an asynchronous replica
//! can grant a lease twice (the ledger's fencing check is what stays correct then).

use crate::state::{ReleaseFeed, Released, StateHealth};
use futures_util::StreamExt;
use groupcast_core::model::ids::{GroupJid, MailingId, ProfileId};
use groupcast_core::model::pacing::{Gcra, PaceState};
use groupcast_core::model::pacing::{Pace, PacingConfig};
use groupcast_core::ports::{
    async_trait, Cancels, Heartbeats, Intake, IntakeConsumer, Lease, LeaseTry, Leases, Pacer,
    StateError,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The key namespace used when none is configured.
pub const DEFAULT_PREFIX: &str = "groupcast:";

/// How long a cancel flag is kept: longer than any mailing runs.
const CANCEL_TTL_SECS: u64 = 3 * 24 * 3600;
/// How long pacing and backoff keys outlive the last time they can matter.
const PACING_GC_MARGIN_MS: i64 = 24 * 3600 * 1000;
/// The longest any garbage-collection TTL is set to (about 10 years).
const MAX_GC_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// A lease key outlives its logical expiry by its own TTL, capped at this.
const LEASE_GC_MARGIN_MAX_MS: u64 = 60_000;
/// How many leases one renewal or try carries at most: Redis serves nothing else while a
/// script runs, so thousands of leases go in several short calls.
const LEASE_CHUNK: usize = 500;
/// The channel where a released lease's profile is published.
const RELEASES: &str = "lease_released";
/// How soon a lost subscription to [`RELEASES`] is made again, at first and at most.
const FEED_RETRY_MIN: Duration = Duration::from_millis(100);
const FEED_RETRY_MAX: Duration = Duration::from_secs(2);
/// Heartbeats older than this (by the caller's clock) are dropped from `task_runner_health`.
const HEARTBEAT_FORGET_MS: i64 = 24 * 3600 * 1000;

/// Helpers shared by every script. Lua numbers are doubles: all stored numbers are written
/// with `fmt` (`tostring` would cut them to 14 digits), and the arithmetic is exact while the
/// values stay below 2^53 (µs times until the year 2255).
const PRELUDE: &str = r"
local function fmt(n) return string.format('%.0f', n) end
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function gc_ms(x, max)
  if x < 1 then return 1 end
  if x > max then return max end
  return x
end
";

/// Takes each lease that is absent or expired by Redis's clock (whatever the caller's clock
/// says); it then lasts `ttl` ms by Redis's clock. A fence is above the counter, above the
/// fence of the lease it replaces, above the caller's `now` and above Redis's clock, so it
/// keeps growing even if the counter was lost.
/// KEYS: fence counter, then the leases. ARGV: caller's now, ttl, px, then a token for each
/// lease. Returns for each lease its new fence (a string), or while another holds it the ms it
/// still lasts (an integer).
const ACQUIRE: &str = r"
local now = clock_ms()
local last = tonumber(redis.call('GET', KEYS[1]) or '')
local answers = {}
for i = 2, #KEYS do
  local floor = math.max(tonumber(ARGV[1]), now, 1)
  local held_for = nil
  local cur = redis.call('GET', KEYS[i])
  if cur then
    local tok, f, exp = string.match(cur, '^([^|]*)|(%d+)|(-?%d+)$')
    if exp then
      if now < tonumber(exp) then
        held_for = tonumber(exp) - now
      else
        floor = math.max(floor, tonumber(f) + 1)
      end
    end
  end
  if held_for then
    answers[i - 1] = held_for
  else
    if last then floor = math.max(floor, last + 1) end
    last = floor
    local fence = fmt(floor)
    redis.call('SET', KEYS[1], fence)
    redis.call('SET', KEYS[i], ARGV[i + 2] .. '|' .. fence .. '|' .. fmt(now + tonumber(ARGV[2])), 'PX', ARGV[3])
    answers[i - 1] = fence
  end
end
return answers
";

/// Extends each lease by `ttl` ms from Redis's clock if its token and fence still hold it and
/// it has not expired by Redis's clock.
/// KEYS: the leases. ARGV: ttl, px, then each lease's token and fence. Returns 1 or 0 for each.
const RENEW: &str = r"
local now = clock_ms()
local held = {}
for i, key in ipairs(KEYS) do
  held[i] = 0
  local cur = redis.call('GET', key)
  if cur then
    local tok, f, exp = string.match(cur, '^([^|]*)|(%d+)|(-?%d+)$')
    if tok == ARGV[2 * i + 1] and f == ARGV[2 * i + 2] and now < tonumber(exp) then
      redis.call('SET', key, tok .. '|' .. f .. '|' .. fmt(now + tonumber(ARGV[1])), 'PX', ARGV[2])
      held[i] = 1
    end
  end
end
return held
";

/// Deletes the lease only if this token and fence hold it (compare-and-delete), and tells
/// every process that it is free.
/// KEYS: lease. ARGV: token, fence, channel, profile. Returns 1 if deleted.
const RELEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local tok, f = string.match(cur, '^([^|]*)|(%d+)|')
if tok == ARGV[1] and f == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0
";

/// `pacing::decide` in Lua: the profile backoff, the profile GCRA (integer µs, `Gcra::check`)
/// and the chat's sliding window (`SlidingWindow::check`); on `go` with commit, the new TAT is
/// stored, every chat pruned and the send recorded (`SlidingWindow::prune` and `record`).
/// KEYS: rate hash, backoff. ARGV: now, chat, interval µs, tolerance µs, limit, window ms,
/// commit (1/0), gc margin ms, max gc ms. Returns `go` or the unix ms to wait until.
const PACE: &str = r"
local now = tonumber(ARGV[1])
local field = 'c:' .. ARGV[2]
local interval = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local function times(s)
  local out = {}
  if s then
    for t in string.gmatch(s, '[^,]+') do out[#out + 1] = tonumber(t) end
  end
  return out
end
local function join(list)
  local parts = {}
  for i = 1, #list do parts[i] = fmt(list[i]) end
  return table.concat(parts, ',')
end

local wait = nil
local backoff = tonumber(redis.call('GET', KEYS[2]) or '') or 0
if backoff > now then wait = backoff end

-- GCRA, as Gcra::check: tat = max(stored, now); conforms when now >= tat - tolerance.
local now_us = now * 1000
local tat = now_us
local stored = tonumber(redis.call('HGET', KEYS[1], 'tat') or '')
if stored and stored > now_us then tat = stored end
local new_tat = nil
local allowed_at = tat - tolerance
if now_us < allowed_at then
  -- ceil(allowed_at / 1000) without a rounded division: fmod is exact.
  local r = math.fmod(allowed_at, 1000)
  local at = (allowed_at - r) / 1000
  if r > 0 then at = at + 1 end
  if wait == nil or at > wait then wait = at end
else
  new_tat = tat + interval
end

-- Sliding window, as SlidingWindow::check: at most `limit` after now - window.
local cutoff = now - window
local recent = times(redis.call('HGET', KEYS[1], field))
local live = 0
for i = 1, #recent do
  if recent[i] > cutoff then live = live + 1 end
end
if live >= limit then
  local at = recent[#recent - limit + 1] + window
  if wait == nil or at > wait then wait = at end
end

if wait then return fmt(wait) end
if ARGV[7] ~= '1' then return 'go' end

redis.call('HSET', KEYS[1], 'tat', fmt(new_tat))
local horizon = math.ceil(new_tat / 1000)
local mine = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local name = all[i]
  if string.sub(name, 1, 2) == 'c:' then
    local list = times(all[i + 1])
    local kept = {}
    for j = 1, #list do
      if list[j] > cutoff then kept[#kept + 1] = list[j] end
    end
    if name == field then
      mine = kept
    elseif #kept == 0 then
      redis.call('HDEL', KEYS[1], name)
    else
      if #kept < #list then redis.call('HSET', KEYS[1], name, join(kept)) end
      if kept[#kept] + window > horizon then horizon = kept[#kept] + window end
    end
  end
end
local pos = #mine + 1
for j = 1, #mine do
  if mine[j] > now then
    pos = j
    break
  end
end
table.insert(mine, pos, now)
while #mine > limit do table.remove(mine, 1) end
redis.call('HSET', KEYS[1], field, join(mine))
if mine[#mine] + window > horizon then horizon = mine[#mine] + window end
redis.call('PEXPIRE', KEYS[1], fmt(gc_ms(math.max(horizon - now, 0) + tonumber(ARGV[8]), tonumber(ARGV[9]))))
return 'go'
";

/// Raises the backoff to `until` (never lowers it); kept until then, plus a margin, by
/// Redis's clock. KEYS: backoff. ARGV: until, gc margin ms, max gc ms.
const SET_BACKOFF: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local u = tonumber(ARGV[1])
if u > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  cur = u
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local left = math.max(cur - clock_ms(), 0)
  redis.call('PEXPIRE', KEYS[1], fmt(gc_ms(left + tonumber(ARGV[2]), tonumber(ARGV[3]))))
end
return 1
";

/// Records a runner's heartbeat (caller's clock), marks this consumer alive (Redis clock) and
/// forgets heartbeats older than a day.
/// KEYS: health, consumers. ARGV: runner, now, consumer, forget_before.
const HEARTBEAT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], fmt(clock_ms()))
local before = tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local t = tonumber(all[i + 1])
  if t == nil or t < before then redis.call('HDEL', KEYS[1], all[i]) end
end
return 1
";

/// Moves the oldest queued mailing into this consumer's processing list and marks the
/// consumer alive. KEYS: queue, processing, consumers. ARGV: consumer. Returns the id or nil.
const DEQUEUE: &str = r"
local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if id then redis.call('HSET', KEYS[3], ARGV[1], fmt(clock_ms())) end
return id
";

/// Marks this consumer alive, then gives back to the queue (at its head, oldest claim first)
/// everything held by consumers silent for longer than `older_than`, and forgets them.
/// KEYS: queue, consumers. ARGV: processing-list prefix, older_than ms, consumer.
/// Returns how many mailings were given back.
const REQUEUE_STALE: &str = r"
local now = clock_ms()
redis.call('HSET', KEYS[2], ARGV[3], fmt(now))
local limit = now - tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[2])
local moved = 0
for i = 1, #all, 2 do
  local c = all[i]
  local seen = tonumber(all[i + 1])
  if c ~= ARGV[3] and (seen == nil or seen < limit) then
    local list = ARGV[1] .. c
    while redis.call('LMOVE', list, KEYS[1], 'LEFT', 'RIGHT') do moved = moved + 1 end
    redis.call('HDEL', KEYS[2], c)
  end
end
return moved
";

/// Gives everything this consumer holds back to the head of the queue (oldest claim first) and
/// forgets the consumer. KEYS: queue, processing, consumers. ARGV: consumer. Returns the count.
const GIVE_BACK: &str = r"
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('HDEL', KEYS[3], ARGV[1])
return moved
";

struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    pace: Script,
    set_backoff: Script,
    heartbeat: Script,
    dequeue: Script,
    requeue_stale: Script,
    give_back: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let s = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            acquire: s(ACQUIRE),
            renew: s(RENEW),
            release: s(RELEASE),
            pace: s(PACE),
            set_backoff: s(SET_BACKOFF),
            heartbeat: s(HEARTBEAT),
            dequeue: s(DEQUEUE),
            requeue_stale: s(REQUEUE_STALE),
            give_back: s(GIVE_BACK),
        }
    }
}

/// The coordination state on Redis. Cheap to clone (one shared multiplexed connection that
/// reconnects by itself after a Redis restart; scripts are reloaded when Redis forgot them).
///
/// The intake queue is reliable: [`IntakeConsumer::dequeue`] moves a mailing into this
/// instance's processing list, where it stays until [`IntakeConsumer::ack`];
/// [`IntakeConsumer::requeue_stale`] gives back what instances that stopped showing signs of
/// life still held.
#[derive(Clone)]
pub struct RedisState {
    /// Opens the subscription to lease releases (a connection of its own).
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    consumer: String,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]` or `unix:///path`) and
    /// checks that Redis answers and is 6.2 or newer. Every key is put under `prefix`
    /// ([`DEFAULT_PREFIX`] in production, a random one in tests). The consumer id (the owner
    /// of the processing list) is random, unique to this instance; see
    /// [`RedisState::with_consumer`]. Errors never contain the URL, which may hold a password.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisState, StateError> {
        let client = redis::Client::open(url).map_err(|_| {
            StateError::Backend(
                "redis: invalid or unsupported REDIS_URL (expected redis://[user:password@]host[:port][/db] \
                 or unix:///path; TLS is not built in)"
                    .into(),
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(backend)?;
        let state = RedisState {
            client,
            conn,
            prefix: prefix.to_string(),
            consumer: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            scripts: Arc::new(Scripts::new()),
        };
        state.check_version().await?;
        Ok(state)
    }

    /// The same state under another consumer id. The id names this instance's processing
    /// list, so it must be unique to one process run (a restarted process must not reuse it,
    /// or what the old run held is never given back).
    pub fn with_consumer(mut self, consumer: &str) -> RedisState {
        self.consumer = consumer.to_string();
        self
    }

    /// This instance's consumer id.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether Redis answers (health checks).
    pub async fn ping(&self) -> Result<(), StateError> {
        let pong: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StateError::Backend("redis: unexpected PING answer".into()))
        }
    }

    /// How many mailings wait in the intake queue.
    pub async fn queue_len(&self) -> Result<u64, StateError> {
        self.llen(self.key("mailing_tasks_queue")).await
    }

    /// How many mailings this instance took and has not acked.
    pub async fn processing_len(&self) -> Result<u64, StateError> {
        self.llen(self.processing_key(&self.consumer)).await
    }

    /// The pacing state of a profile as stored (the backoff included), in the core's shape:
    /// what [`pacing::decide`](groupcast_core::model::pacing::decide) would hold after the same calls.
    pub async fn pace_snapshot(&self, profile: &ProfileId) -> Result<PaceState, StateError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.rate_key(profile))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let backoff: Option<String> = redis::cmd("GET")
            .arg(self.backoff_key(profile))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let number = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| StateError::Backend("redis: unreadable pacing state".into()))
        };
        let mut state = PaceState {
            backoff_until: backoff.as_deref().map(number).transpose()?.unwrap_or(0),
            ..PaceState::default()
        };
        for (name, value) in fields {
            if name == "tat" {
                state.profile_tat_us = Some(number(&value)?);
            } else if let Some(chat) = name.strip_prefix("c:") {
                let times = value.split(',').map(number).collect::<Result<_, _>>()?;
                state.chats.insert(chat.to_string(), times);
            }
        }
        Ok(state)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn lease_key(&self, profile: &ProfileId) -> String {
        self.key(&format!("mailing_lock_{profile}"))
    }

    fn rate_key(&self, profile: &ProfileId) -> String {
        self.key(&format!("wappi_rate:{profile}"))
    }

    fn backoff_key(&self, profile: &ProfileId) -> String {
        self.key(&format!("wappi_backoff:{profile}"))
    }

    fn processing_key(&self, consumer: &str) -> String {
        self.key(&format!("mailing_tasks_processing:{consumer}"))
    }

    async fn llen(&self, key: String) -> Result<u64, StateError> {
        redis::cmd("LLEN")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)
    }

    /// Refuses a Redis without `LMOVE` (before 6.2). Servers that report no version pass.
    async fn check_version(&self) -> Result<(), StateError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| {
                v.trim()
                    .split('.')
                    .map(|p| p.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            });
        match version {
            Some(v) if (v[0], v.get(1).copied().unwrap_or(0)) < (6, 2) => Err(StateError::Backend(
                "redis: version 6.2 or newer is required (LMOVE)".into(),
            )),
            _ => Ok(()),
        }
    }

    async fn pace_script(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
        commit: bool,
    ) -> Result<Pace, StateError> {
        let p = PaceArgs::new(cfg);
        let answer: String = self
            .scripts
            .pace
            .key(self.rate_key(profile))
            .key(self.backoff_key(profile))
            .arg(now)
            .arg(chat.as_str())
            .arg(p.interval_us)
            .arg(p.tolerance_us)
            .arg(p.limit)
            .arg(p.window_ms)
            .arg(if commit { "1" } else { "0" })
            .arg(PACING_GC_MARGIN_MS)
            .arg(MAX_GC_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if answer == "go" {
            return Ok(Pace::Go);
        }
        answer
            .parse()
            .map(Pace::WaitUntil)
            .map_err(|_| StateError::Backend("redis: unreadable pacing answer".into()))
    }
}

/// The pacing limits as the script takes them: the very numbers `pacing::decide` works with.
struct PaceArgs {
    interval_us: i64,
    tolerance_us: i64,
    limit: u32,
    window_ms: i64,
}

impl PaceArgs {
    fn new(cfg: &PacingConfig) -> PaceArgs {
        // `decide` uses `Gcra::per_second` (burst 1, no tolerance). Its interval is whole µs,
        // reported in ms: scaling back is exact (the interval is below 2^46 µs).
        let gcra = Gcra::per_second(cfg.profile_rate_per_sec);
        PaceArgs {
            interval_us: (gcra.interval_ms() * 1000.0).round() as i64,
            tolerance_us: 0,
            // As `SlidingWindow::limit` and `SlidingWindow::window`.
            limit: cfg.chat_burst.max(1),
            window_ms: i64::try_from(cfg.chat_window_ms)
                .unwrap_or(i64::MAX / 4)
                .min(i64::MAX / 4),
        }
    }
}

/// A lease's time-to-live as the scripts take it (Lua numbers stay exact below 2^53).
fn lease_ttl(ttl_ms: u64) -> u64 {
    ttl_ms.min(MAX_GC_MS as u64)
}

/// The lease key's PX: its TTL plus a margin (the TTL, capped), so that an expired lease is
/// still there for a while to give the floor of the next fence.
fn lease_px(ttl_ms: u64) -> u64 {
    ttl_ms
        .saturating_add(ttl_ms.min(LEASE_GC_MARGIN_MAX_MS))
        .clamp(1, MAX_GC_MS as u64)
}

/// One profile's answer of the [`ACQUIRE`] script: taken with `token`, or held for a while.
fn lease_try(
    profile: &ProfileId,
    token: String,
    answer: redis::Value,
) -> Result<LeaseTry, StateError> {
    let unreadable = || StateError::Backend("redis: unreadable answer to a lease try".into());
    match answer {
        redis::Value::Int(ms) => Ok(LeaseTry::Held {
            free_in_ms: Some(u64::try_from(ms).unwrap_or(0).max(1)),
        }),
        redis::Value::BulkString(fence) => Ok(LeaseTry::Taken(Lease {
            profile: profile.clone(),
            token,
            fence: std::str::from_utf8(&fence)
                .ok()
                .and_then(|f| f.parse().ok())
                .ok_or_else(unreadable)?,
        })),
        _ => Err(unreadable()),
    }
}

/// 16 random bytes, hex.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Redis error as the port's error. Connection trouble reads "redis unreachable"; nothing
/// that looks like a URL is passed on (it may hold a password).
fn backend(e: RedisError) -> StateError {
    if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
        return StateError::Backend(format!("redis unreachable ({})", e.category()));
    }
    let text = e
        .to_string()
        .split_whitespace()
        .map(|w| {
            if w.contains("://") || w.contains('@') {
                "<redacted>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    StateError::Backend(format!("redis: {text}"))
}

#[async_trait]
impl Leases for RedisState {
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Option<Lease>, StateError> {
        Ok(self.try_lease(profile, ttl_ms, now).await?.taken())
    }

    async fn try_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<LeaseTry, StateError> {
        let mut tries = self
            .try_leases(std::slice::from_ref(profile), ttl_ms, now)
            .await?;
        tries
            .pop()
            .ok_or_else(|| StateError::Backend("redis: no answer to a lease try".into()))
    }

    /// One script call per [`LEASE_CHUNK`] profiles, one after the other. `now` only raises
    /// the floor of the fences: Redis's clock judges the leases.
    async fn try_leases(
        &self,
        profiles: &[ProfileId],
        ttl_ms: u64,
        now: i64,
    ) -> Result<Vec<LeaseTry>, StateError> {
        let mut tries = Vec::with_capacity(profiles.len());
        for chunk in profiles.chunks(LEASE_CHUNK) {
            let mut call = self.scripts.acquire.prepare_invoke();
            call.key(self.key("mailing_lock_fence"));
            for profile in chunk {
                call.key(self.lease_key(profile));
            }
            call.arg(now).arg(lease_ttl(ttl_ms)).arg(lease_px(ttl_ms));
            let tokens: Vec<String> = chunk.iter().map(|_| new_token()).collect();
            for token in &tokens {
                call.arg(token);
            }
            let answers: Vec<redis::Value> = call
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            if answers.len() != chunk.len() {
                return Err(StateError::Backend(
                    "redis: a lease try answered for too few leases".into(),
                ));
            }
            for ((profile, token), answer) in chunk.iter().zip(tokens).zip(answers) {
                tries.push(lease_try(profile, token, answer)?);
            }
        }
        Ok(tries)
    }

    /// `_now` is not used: Redis's clock judges the lease.
    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64, now: i64) -> Result<bool, StateError> {
        let held = self
            .renew_leases(std::slice::from_ref(lease), ttl_ms, now)
            .await?;
        Ok(held == [true])
    }

    /// One script call per [`LEASE_CHUNK`] leases, one after the other, so that Redis serves
    /// the other clients between them. `_now` is not used: Redis's clock judges the leases.
    async fn renew_leases(
        &self,
        leases: &[Lease],
        ttl_ms: u64,
        _now: i64,
    ) -> Result<Vec<bool>, StateError> {
        let mut held = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(LEASE_CHUNK) {
            let mut call = self.scripts.renew.prepare_invoke();
            for lease in chunk {
                call.key(self.lease_key(&lease.profile));
            }
            call.arg(lease_ttl(ttl_ms)).arg(lease_px(ttl_ms));
            for lease in chunk {
                call.arg(&lease.token).arg(lease.fence);
            }
            let answers: Vec<i64> = call
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            if answers.len() != chunk.len() {
                return Err(StateError::Backend(
                    "redis: a lease renewal answered for too few leases".into(),
                ));
            }
            held.extend(answers.into_iter().map(|a| a == 1));
        }
        Ok(held)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        let _: i64 = self
            .scripts
            .release
            .key(self.lease_key(&lease.profile))
            .arg(&lease.token)
            .arg(lease.fence)
            .arg(self.key(RELEASES))
            .arg(lease.profile.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

impl ReleaseFeed for RedisState {
    fn release_feed(&self) -> Option<mpsc::UnboundedReceiver<Released>> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(listen_for_releases(
            self.client.clone(),
            self.key(RELEASES),
            tx,
        ));
        Some(rx)
    }
}

/// Passes every release published on `channel` to `tx`, until `tx` is closed. Whenever the
/// subscription is (re)made it first sends [`Released::Unknown`]: releases may have been
/// missed while there was none.
async fn listen_for_releases(
    client: redis::Client,
    channel: String,
    tx: mpsc::UnboundedSender<Released>,
) {
    let mut pause = FEED_RETRY_MIN;
    while !tx.is_closed() {
        match subscribe(&client, &channel).await {
            Ok(mut stream) => {
                pause = FEED_RETRY_MIN;
                if tx.send(Released::Unknown).is_err() {
                    return;
                }
                while let Some(msg) = stream.next().await {
                    let profile = msg
                        .get_payload::<String>()
                        .ok()
                        .and_then(|p| ProfileId::parse(&p));
                    if let Some(profile) = profile {
                        if tx.send(Released::Lease(profile)).is_err() {
                            return;
                        }
                    }
                }
                tracing::warn!("the lease release feed was cut; subscribing again");
            }
            Err(e) => tracing::warn!(error = %backend(e), "could not subscribe to lease releases"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(FEED_RETRY_MAX);
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSubStream, RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub.into_on_message())
}

#[async_trait]
impl Cancels for RedisState {
    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        redis::cmd("SET")
            .arg(self.key(&format!("cancel_mailing_{mailing}")))
            .arg(1)
            .arg("EX")
            .arg(CANCEL_TTL_SECS)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(backend)
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        redis::cmd("EXISTS")
            .arg(self.key(&format!("cancel_mailing_{mailing}")))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl Pacer for RedisState {
    async fn pace(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        self.pace_script(profile, chat, cfg, now, true).await
    }

    async fn pace_peek(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        self.pace_script(profile, chat, cfg, now, false).await
    }

    async fn set_backoff(&self, profile: &ProfileId, until: i64) -> Result<(), StateError> {
        let _: i64 = self
            .scripts
            .set_backoff
            .key(self.backoff_key(profile))
            .arg(until)
            .arg(PACING_GC_MARGIN_MS)
            .arg(MAX_GC_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn backoff_until(&self, profile: &ProfileId) -> Result<Option<i64>, StateError> {
        let until: Option<String> = redis::cmd("GET")
            .arg(self.backoff_key(profile))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(until.and_then(|u| u.parse().ok()))
    }
}

#[async_trait]
impl Heartbeats for RedisState {
    async fn heartbeat(&self, runner: &str, now: i64) -> Result<(), StateError> {
        let _: i64 = self
            .scripts
            .heartbeat
            .key(self.key("task_runner_health"))
            .key(self.key("mailing_tasks_consumers"))
            .arg(runner)
            .arg(now)
            .arg(&self.consumer)
            .arg(now.saturating_sub(HEARTBEAT_FORGET_MS))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError> {
        let values: Vec<String> = redis::cmd("HVALS")
            .arg(self.key("task_runner_health"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(values.iter().filter_map(|v| v.parse::<i64>().ok()).max())
    }
}

#[async_trait]
impl Intake for RedisState {
    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        redis::cmd("LPUSH")
            .arg(self.key("mailing_tasks_queue"))
            .arg(mailing.0)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl IntakeConsumer for RedisState {
    async fn dequeue(&self) -> Result<Option<MailingId>, StateError> {
        let mut conn = self.conn.clone();
        let processing = self.processing_key(&self.consumer);
        loop {
            let item: Option<String> = self
                .scripts
                .dequeue
                .key(self.key("mailing_tasks_queue"))
                .key(&processing)
                .key(self.key("mailing_tasks_consumers"))
                .arg(&self.consumer)
                .invoke_async(&mut conn)
                .await
                .map_err(backend)?;
            let Some(item) = item else {
                return Ok(None);
            };
            match item.parse::<i64>() {
                Ok(id) => return Ok(Some(MailingId(id))),
                Err(_) => {
                    // Not ours to interpret: drop it rather than hand it round forever.
                    tracing::warn!("dropped an unreadable entry from the intake queue");
                    redis::cmd("LREM")
                        .arg(&processing)
                        .arg(1)
                        .arg(&item)
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(backend)?;
                }
            }
        }
    }

    /// Removes one entry of the mailing from this instance's processing list.
    async fn ack(&self, mailing: MailingId) -> Result<bool, StateError> {
        let removed: i64 = redis::cmd("LREM")
            .arg(self.processing_key(&self.consumer))
            .arg(1)
            .arg(mailing.0)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }

    /// Every consumer (another process using this Redis) silent for `older_than_ms` by Redis's
    /// clock has its processing list moved back to the head of the queue and is forgotten.
    /// Run it periodically from any process, with `older_than_ms` a few heartbeat periods.
    async fn requeue_stale(&self, older_than_ms: u64) -> Result<u64, StateError> {
        let moved: u64 = self
            .scripts
            .requeue_stale
            .key(self.key("mailing_tasks_queue"))
            .key(self.key("mailing_tasks_consumers"))
            .arg(self.processing_key(""))
            .arg(older_than_ms.min(MAX_GC_MS as u64))
            .arg(&self.consumer)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(moved)
    }

    /// Moves this instance's processing list back to the head of the queue.
    async fn give_back(&self) -> Result<u64, StateError> {
        self.scripts
            .give_back
            .key(self.key("mailing_tasks_queue"))
            .key(self.processing_key(&self.consumer))
            .key(self.key("mailing_tasks_consumers"))
            .arg(&self.consumer)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)
    }

    async fn queue_depth(&self) -> Result<Option<u64>, StateError> {
        self.queue_len().await.map(Some)
    }
}

#[async_trait]
impl StateHealth for RedisState {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StateError> {
        RedisState::ping(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::model::pacing::decide;
    use groupcast_core::testing::contract;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Where the tests find Redis: `REDIS_URL`, or the local default.
    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A random key prefix whose keys are deleted when this is dropped (also after a failure).
    struct Namespace {
        url: String,
        prefix: String,
    }

    impl Namespace {
        fn new() -> Namespace {
            Namespace {
                url: redis_url(),
                prefix: format!("groupcast-test-{:016x}:", rand::random::<u64>()),
            }
        }

        async fn state(&self) -> RedisState {
            RedisState::connect(&self.url, &self.prefix)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "no Redis answers at REDIS_URL (default redis://127.0.0.1:6379): {e}. \
                         Start one (`redis-server --daemonize yes`) before these tests."
                    )
                })
        }

        /// A raw connection for looking behind the adapter.
        async fn raw(&self) -> redis::aio::MultiplexedConnection {
            redis::Client::open(self.url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let Ok(client) = redis::Client::open(self.url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
            }
        }
    }

    /// One raw command, behind the adapter's back.
    async fn raw_cmd<T: redis::FromRedisValue>(
        conn: &mut redis::aio::MultiplexedConnection,
        name: &str,
        args: &[&str],
    ) -> T {
        redis::cmd(name).arg(args).query_async(conn).await.unwrap()
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap()
    }

    fn profile(name: &str) -> ProfileId {
        ProfileId::parse(name).unwrap()
    }

    #[tokio::test]
    async fn redis_state_meets_the_contract() {
        let ns = Namespace::new();
        let state = ns.state().await;
        for _ in 0..2 {
            // Twice on the same keys: leftovers of a run do not disturb the next.
            let run = contract::Run::new();
            contract::all_but_leases(&state, &run).await;
            leases_by_backend_clock(&state, &run.profile("lease"), &run.profile("lease2")).await;
        }
    }

    #[tokio::test]
    async fn fences_keep_growing_when_the_counter_is_lost() {
        let ns = Namespace::new();
        let state = ns.state().await;
        let mut raw = ns.raw().await;
        let p = profile("fence-profile");
        let t = now_ms();
        let a = state.acquire_lease(&p, 1, t).await.unwrap().unwrap();
        assert!(
            a.fence >= t as u64,
            "the first fence is not below the clock"
        );
        let b = state
            .acquire_lease(&profile("fence-other"), 1, t)
            .await
            .unwrap()
            .unwrap();
        assert!(b.fence > a.fence);

        // Redis lost the counter (a FLUSH, a restart without persistence) right after; the
        // profile's old lease is still there and expired (by Redis's clock, a millisecond
        // later): its fence is the floor, so the profile's fences (what the ledger compares)
        // keep growing.
        let _: i64 = raw_cmd(
            &mut raw,
            "DEL",
            &[&(ns.prefix.clone() + "mailing_lock_fence")],
        )
        .await;
        let c = loop {
            if let Some(c) = state.acquire_lease(&p, 1, t).await.unwrap() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert!(c.fence > a.fence, "{} > {}", c.fence, a.fence);

        // Lost again a little later, with no lease to remember and a caller whose clock lags
        // far behind: Redis's clock is the floor, above every fence handed out before.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _: i64 = raw_cmd(
            &mut raw,
            "DEL",
            &[&(ns.prefix.clone() + "mailing_lock_fence")],
        )
        .await;
        let d = state
            .acquire_lease(&profile("fence-third"), 1, 0)
            .await
            .unwrap()
            .unwrap();
        let before = a.fence.max(b.fence).max(c.fence);
        assert!(d.fence > before, "{} > {before}", d.fence);
    }

    #[tokio::test]
    async fn a_release_is_heard_by_every_process_and_many_leases_go_in_chunks() {
        let ns = Namespace::new();
        let (a, b) = (ns.state().await, ns.state().await);
        let mut feed = b.release_feed().expect("Redis has a release feed");
        // The feed first says that releases may have been missed (it just subscribed).
        let first = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
        assert_eq!(first.unwrap(), Some(Released::Unknown));

        let profiles: Vec<ProfileId> = (0..LEASE_CHUNK + 3)
            .map(|i| profile(&format!("chunk-{i}")))
            .collect();
        let leases: Vec<Lease> = a
            .try_leases(&profiles, 60_000, now_ms())
            .await
            .unwrap()
            .into_iter()
            .map(|t| match t {
                LeaseTry::Taken(lease) => lease,
                held => panic!("a free lease answered {held:?}"),
            })
            .collect();
        assert!(leases.windows(2).all(|w| w[0].fence < w[1].fence));
        assert!(leases.iter().zip(&profiles).all(|(l, p)| &l.profile == p));
        let again = b.try_leases(&profiles, 60_000, now_ms()).await.unwrap();
        assert!(again
            .iter()
            .all(|t| matches!(t, LeaseTry::Held { free_in_ms: Some(ms) } if *ms <= 60_000)));
        let held = b.renew_leases(&leases, 60_000, now_ms()).await.unwrap();
        assert_eq!(held, vec![true; leases.len()]);

        a.release_lease(&leases[7]).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
        assert_eq!(
            heard.unwrap(),
            Some(Released::Lease(leases[7].profile.clone()))
        );
        // A stale release (nothing deleted) is not announced.
        a.release_lease(&leases[7]).await.unwrap();
        a.release_lease(&leases[8]).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
        assert_eq!(
            heard.unwrap(),
            Some(Released::Lease(leases[8].profile.clone()))
        );
        let held = b
            .renew_leases(&leases[6..9], 60_000, now_ms())
            .await
            .unwrap();
        assert_eq!(held, [true, false, false]);
        for l in &leases {
            a.release_lease(l).await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_abandoned_lease_key_expires_by_px() {
        let ns = Namespace::new();
        let state = ns.state().await;
        let mut raw = ns.raw().await;
        let p = profile("px-profile");
        let t = now_ms();
        let a = state.acquire_lease(&p, 100, t).await.unwrap().unwrap();
        let key = ns.prefix.clone() + "mailing_lock_px-profile";
        let pttl: i64 = raw_cmd(&mut raw, "PTTL", &[&key]).await;
        assert!(
            (100..=200).contains(&pttl),
            "PX is the ttl plus a margin: {pttl}"
        );
        // Expired after 100 ms by Redis's clock, even for a caller whose clock stands still...
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!state.renew_lease(&a, 100, t).await.unwrap());
        // ...and gone from Redis after ttl + margin.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let exists: i64 = raw_cmd(&mut raw, "EXISTS", &[&key]).await;
        assert_eq!(exists, 0, "the key was collected");
        let b = state.acquire_lease(&p, 100, t).await.unwrap().unwrap();
        assert!(b.fence > a.fence);
        assert!(!state.renew_lease(&a, 100, t + 1).await.unwrap());
        state.release_lease(&a).await.unwrap();
        assert!(
            state.renew_lease(&b, 100, t + 1).await.unwrap(),
            "a stale release left the new lease alone"
        );
    }

    #[tokio::test]
    async fn the_intake_queue_is_reliable() {
        let ns = Namespace::new();
        let a = ns.state().await.with_consumer("runner-a");
        let b = ns.state().await.with_consumer("runner-b");
        for n in [1, 2, 3] {
            a.enqueue(MailingId(n)).await.unwrap();
        }
        // Dequeue moves to the taker's processing list; ack removes it there.
        assert_eq!(a.dequeue().await.unwrap(), Some(MailingId(1)));
        assert_eq!(
            (
                a.queue_len().await.unwrap(),
                a.processing_len().await.unwrap()
            ),
            (2, 1)
        );
        assert!(a.ack(MailingId(1)).await.unwrap());
        assert!(!a.ack(MailingId(1)).await.unwrap(), "acked once");
        assert_eq!(a.processing_len().await.unwrap(), 0);

        // A claim of a live consumer stays; a consumer never counts itself as stale.
        assert_eq!(a.dequeue().await.unwrap(), Some(MailingId(2)));
        assert!(!b.ack(MailingId(2)).await.unwrap(), "only the taker acks");
        assert_eq!(b.requeue_stale(60_000).await.unwrap(), 0);
        assert_eq!(a.requeue_stale(0).await.unwrap(), 0);

        // A heartbeat keeps a long mailing's claim alive.
        tokio::time::sleep(Duration::from_millis(60)).await;
        a.heartbeat("runner-a", now_ms()).await.unwrap();
        assert_eq!(b.requeue_stale(50).await.unwrap(), 0);

        // Silent for longer than the timeout: the claim comes back, ahead of newer work.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(b.requeue_stale(50).await.unwrap(), 1);
        assert_eq!(a.processing_len().await.unwrap(), 0);
        assert_eq!(b.dequeue().await.unwrap(), Some(MailingId(2)));
        assert!(!a.ack(MailingId(2)).await.unwrap(), "no longer a's");
        assert!(b.ack(MailingId(2)).await.unwrap());
        assert_eq!(b.dequeue().await.unwrap(), Some(MailingId(3)));
        assert_eq!(b.dequeue().await.unwrap(), None);

        // Several claims come back in the order they were taken.
        for n in [10, 11, 12] {
            b.enqueue(MailingId(n)).await.unwrap();
        }
        for n in [10, 11] {
            assert_eq!(a.dequeue().await.unwrap(), Some(MailingId(n)));
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(b.requeue_stale(50).await.unwrap(), 2);
        let order = [
            b.dequeue().await.unwrap(),
            b.dequeue().await.unwrap(),
            b.dequeue().await.unwrap(),
        ];
        assert_eq!(order, [10, 11, 12].map(|n| Some(MailingId(n))));
        for n in [3, 10, 11, 12] {
            assert!(b.ack(MailingId(n)).await.unwrap());
        }

        // A graceful stop gives back what is held, at once and in order.
        for n in [30, 31] {
            b.enqueue(MailingId(n)).await.unwrap();
        }
        assert_eq!(b.dequeue().await.unwrap(), Some(MailingId(30)));
        assert_eq!(b.dequeue().await.unwrap(), Some(MailingId(31)));
        b.enqueue(MailingId(32)).await.unwrap();
        assert_eq!(b.give_back().await.unwrap(), 2);
        assert_eq!(b.processing_len().await.unwrap(), 0);
        for n in [30, 31, 32] {
            assert_eq!(a.dequeue().await.unwrap(), Some(MailingId(n)));
            assert!(a.ack(MailingId(n)).await.unwrap());
        }

        // An entry that is no mailing id is dropped, not handed out.
        let mut raw = ns.raw().await;
        let _: i64 = raw_cmd(
            &mut raw,
            "LPUSH",
            &[&(ns.prefix.clone() + "mailing_tasks_queue"), "garbage"],
        )
        .await;
        b.enqueue(MailingId(20)).await.unwrap();
        assert_eq!(b.dequeue().await.unwrap(), Some(MailingId(20)));
    }

    #[tokio::test]
    async fn heartbeats_and_cancel_flags_have_their_keys() {
        let ns = Namespace::new();
        let state = ns.state().await;
        let mut raw = ns.raw().await;
        let t = now_ms();
        state
            .heartbeat("old-runner", t - HEARTBEAT_FORGET_MS - 1)
            .await
            .unwrap();
        state.heartbeat("runner", t).await.unwrap();
        let health: HashMap<String, String> = raw_cmd(
            &mut raw,
            "HGETALL",
            &[&(ns.prefix.clone() + "task_runner_health")],
        )
        .await;
        assert_eq!(health, HashMap::from([("runner".into(), t.to_string())]));

        state.set_cancel(MailingId(42)).await.unwrap();
        let ttl: i64 = raw_cmd(
            &mut raw,
            "TTL",
            &[&(ns.prefix.clone() + "cancel_mailing_42")],
        )
        .await;
        assert!((CANCEL_TTL_SECS as i64 - 5..=CANCEL_TTL_SECS as i64).contains(&ttl));
    }

    /// Rate configurations worth covering: the default, round and awkward rates, extremes.
    fn random_config(rng: &mut StdRng) -> PacingConfig {
        let rates = [1.0, 0.5, 3.0, 7.0, 33.3, 1000.0, 0.0, f64::NAN];
        let rate = if rng.gen_bool(0.5) {
            rates[rng.gen_range(0..rates.len())]
        } else {
            rng.gen_range(0.2..50.0)
        };
        PacingConfig {
            profile_rate_per_sec: rate,
            chat_burst: rng.gen_range(0..6),
            chat_window_ms: if rng.gen_bool(0.1) {
                0
            } else {
                rng.gen_range(1..4000)
            },
        }
    }

    #[tokio::test]
    async fn pace_answers_exactly_as_pacing_decide() {
        let ns = Namespace::new();
        let state = ns.state().await;
        let seed = std::env::var("PACE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        eprintln!("pace parity seed {seed} (PACE_SEED={seed} replays it)");
        let mut rng = StdRng::seed_from_u64(seed);
        let chats: Vec<GroupJid> = (1..=3)
            .map(|n| GroupJid::parse(&format!("12036300000{n:05}@g.us")).unwrap())
            .collect();
        for seq in 0..300 {
            let p = profile(&format!("parity-{seq}"));
            let mut cfg = random_config(&mut rng);
            let mut model = PaceState::default();
            let mut now: i64 = rng.gen_range(0..2_000_000_000_000);
            // The last `WaitUntil`: a runner comes back exactly then, which hits every boundary.
            let mut told: Option<i64> = None;
            for step in 0..rng.gen_range(5..60) {
                now = match told.take() {
                    Some(at) if rng.gen_bool(0.6) => at,
                    _ => {
                        now + match rng.gen_range(0..20) {
                            0 => -rng.gen_range(1..5_000), // the clock steps back
                            1 => rng.gen_range(0..10_000),
                            _ => rng.gen_range(0..400),
                        }
                    }
                };
                if rng.gen_range(0..25) == 0 {
                    cfg = random_config(&mut rng); // settings changed between two runs
                }
                let chat = &chats[rng.gen_range(0..chats.len())];
                let ctx = format!("seed {seed} sequence {seq} step {step} {cfg:?} at {now}");
                let answer = match rng.gen_range(0..10) {
                    0 => {
                        let until = now + rng.gen_range(-500..3_000);
                        state.set_backoff(&p, until).await.unwrap();
                        model.backoff_until = model.backoff_until.max(until);
                        continue;
                    }
                    1 | 2 => {
                        let want = decide(&mut model.clone(), chat.as_str(), &cfg, now);
                        let got = state.pace_peek(&p, chat, &cfg, now).await.unwrap();
                        assert_eq!(got, want, "peek, {ctx}");
                        got
                    }
                    _ => {
                        let want = decide(&mut model, chat.as_str(), &cfg, now);
                        let got = state.pace(&p, chat, &cfg, now).await.unwrap();
                        assert_eq!(got, want, "pace, {ctx}");
                        got
                    }
                };
                if let Pace::WaitUntil(at) = answer {
                    told = Some(at);
                }
            }
            let stored = state.pace_snapshot(&p).await.unwrap();
            assert_eq!(stored, model, "stored state, seed {seed} sequence {seq}");
        }
    }

    #[tokio::test]
    async fn pace_peek_takes_nothing() {
        let ns = Namespace::new();
        let state = ns.state().await;
        let p = profile("peek-profile");
        let g = GroupJid::parse("120363000000001@g.us").unwrap();
        let cfg = PacingConfig::default();
        let t = now_ms();
        for _ in 0..3 {
            assert_eq!(state.pace_peek(&p, &g, &cfg, t).await.unwrap(), Pace::Go);
        }
        assert_eq!(state.pace_snapshot(&p).await.unwrap(), PaceState::default());
        assert_eq!(state.pace(&p, &g, &cfg, t).await.unwrap(), Pace::Go);
        assert_eq!(
            state.pace_peek(&p, &g, &cfg, t).await.unwrap(),
            Pace::WaitUntil(t + 1000)
        );
    }

    #[tokio::test]
    async fn errors_never_show_the_url() {
        let bad = RedisState::connect("redis://:sekret-pw@127.0.0.1:1/", "x:")
            .await
            .unwrap_err();
        let text = bad.to_string();
        assert!(text.contains("redis unreachable"), "{text}");
        assert!(!text.contains("sekret"), "{text}");
        let bad = RedisState::connect("http://user:sekret-pw@host/", "x:")
            .await
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("sekret"), "{bad}");
    }

    /// A private `redis-server` on a free port, killed when dropped.
    struct PrivateRedis {
        port: u16,
        child: std::process::Child,
    }

    impl PrivateRedis {
        fn start(port: u16) -> PrivateRedis {
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server must be installed for this test: {e}"));
            PrivateRedis { port, child }
        }

        async fn wait_ready(&self) {
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the private redis-server did not start");
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn survives_a_redis_restart_that_lost_everything() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateRedis::start(port);
        server.wait_ready().await;
        let url = format!("redis://127.0.0.1:{port}");
        let state = RedisState::connect(&url, DEFAULT_PREFIX).await.unwrap();
        let p = profile("restart-profile");
        let before = state
            .acquire_lease(&p, 60_000, now_ms())
            .await
            .unwrap()
            .unwrap();
        state.enqueue(MailingId(1)).await.unwrap();

        drop(server);
        let server = PrivateRedis::start(port);
        server.wait_ready().await;
        tokio::time::sleep(Duration::from_millis(5)).await;

        // The same `RedisState` reconnects (the first calls may still fail) and reloads its
        // scripts; the lost lease is free again, with a fence above the one handed out before.
        let mut after = None;
        for _ in 0..50 {
            match state.acquire_lease(&p, 60_000, now_ms()).await {
                Ok(lease) => {
                    after = lease;
                    break;
                }
                Err(e) => {
                    assert!(e.to_string().contains("redis"), "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let after = after.expect("reconnected after the restart and took the lost lease");
        assert!(
            after.fence > before.fence,
            "{} > {}",
            after.fence,
            before.fence
        );
        assert_eq!(
            state.dequeue().await.unwrap(),
            None,
            "the queue was lost with Redis"
        );
        drop(server);
    }

    #[test]
    fn pace_args_are_the_numbers_decide_uses() {
        let args = PaceArgs::new(&PacingConfig {
            profile_rate_per_sec: 3.0,
            chat_burst: 0,
            chat_window_ms: u64::MAX,
        });
        assert_eq!(args.interval_us, 333_334);
        assert_eq!(args.limit, 1);
        assert_eq!(args.window_ms, i64::MAX / 4);
        assert_eq!(
            PaceArgs::new(&PacingConfig {
                profile_rate_per_sec: 0.0,
                ..PacingConfig::default()
            })
            .interval_us,
            1 << 46
        );
    }

    #[test]
    fn lease_keys_outlive_the_lease_by_a_capped_margin() {
        assert_eq!(lease_px(100), 200);
        assert_eq!(lease_px(15_000), 30_000);
        assert_eq!(lease_px(600_000), 660_000);
        assert_eq!(lease_px(0), 1);
    }

    /// The lease contract of a backend that keeps its own clock: the same rules as
    /// `contract::leases`, in real time, with callers' clocks an hour ahead or behind.
    async fn leases_by_backend_clock(state: &RedisState, p: &ProfileId, other: &ProfileId) {
        use std::time::{Duration, Instant};
        const TTL: u64 = 1_000;
        const SKEW: i64 = 3_600_000;
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
        };
        let acquired = Instant::now();
        let a = state
            .acquire_lease(p, TTL, now())
            .await
            .unwrap()
            .expect("a free profile is acquired");
        assert_eq!(&a.profile, p);
        assert!(a.token.len() >= 16, "the token is a long random string");

        // Exclusive while unexpired, whatever the caller's clock says.
        for at in [now(), now() + TTL as i64 * 2, now() + SKEW, now() - SKEW] {
            assert_eq!(
                state.acquire_lease(p, TTL, at).await.unwrap(),
                None,
                "held, for a caller whose clock says {at}"
            );
        }
        // A try tells how long the lease still lasts by Redis's clock, whatever the caller's.
        match state.try_lease(p, TTL, now() + SKEW).await.unwrap() {
            LeaseTry::Held {
                free_in_ms: Some(ms),
            } => assert!((1..=TTL).contains(&ms), "held for {ms} ms more of {TTL}"),
            other => panic!("a held lease answered {other:?}"),
        }
        // Another profile is independent; a lease taken by a caller far behind lasts as long.
        let o = state
            .acquire_lease(other, TTL, now() - SKEW)
            .await
            .unwrap()
            .expect("another profile is free");
        assert_ne!(o.token, a.token);
        assert!(o.fence != a.fence, "fences are never reused");
        assert_eq!(state.acquire_lease(other, TTL, now()).await.unwrap(), None);

        // Renewal (by a caller whose clock lags) extends the lease past its first expiry.
        tokio::time::sleep_until((acquired + Duration::from_millis(TTL / 2)).into()).await;
        let renewed = Instant::now();
        assert!(state.renew_lease(&a, TTL, now() - SKEW).await.unwrap());
        tokio::time::sleep_until((acquired + Duration::from_millis(TTL + TTL / 5)).into()).await;
        assert_eq!(
            state.acquire_lease(p, TTL, now() + SKEW).await.unwrap(),
            None,
            "renewed: held past the first expiry"
        );

        // Expired by the backend's clock: taken over (by a caller far behind), not before.
        let deadline = Instant::now() + Duration::from_secs(10);
        let b = loop {
            if let Some(b) = state.acquire_lease(p, TTL, now() - SKEW).await.unwrap() {
                break b;
            }
            assert!(Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            renewed.elapsed() >= Duration::from_millis(TTL - 20),
            "taken over {:?} after the renewal",
            renewed.elapsed()
        );
        assert_ne!(b.token, a.token);
        assert!(b.fence > a.fence, "fence {} after {}", b.fence, a.fence);

        // The old holder can neither renew nor release the new holder's lease.
        assert!(
            !state.renew_lease(&a, TTL, now()).await.unwrap(),
            "renew with a stale token"
        );
        state.release_lease(&a).await.unwrap();
        assert_eq!(
            state.acquire_lease(p, TTL, now() + SKEW).await.unwrap(),
            None,
            "a stale release deleted nothing"
        );
        assert_eq!(
            state
                .renew_leases(&[a.clone(), b.clone()], TTL, now())
                .await
                .unwrap(),
            [false, true]
        );

        // A released lease is free at once, and the next fence is larger still.
        state.release_lease(&b).await.unwrap();
        assert!(
            !state.renew_lease(&b, TTL, now()).await.unwrap(),
            "released means lost"
        );
        const SHORT: u64 = 100;
        let c = state
            .acquire_lease(p, SHORT, now())
            .await
            .unwrap()
            .expect("free after release");
        assert!(c.fence > b.fence);

        // A lease that ran out cannot be renewed, even if nobody took it meanwhile, and even by a
        // caller whose clock says it is still early.
        tokio::time::sleep(Duration::from_millis(SHORT * 3)).await;
        assert!(
            !state.renew_lease(&c, TTL, now() - SKEW).await.unwrap(),
            "expired means lost"
        );
        state.release_lease(&c).await.unwrap();
        state.release_lease(&o).await.unwrap();
    }
}
