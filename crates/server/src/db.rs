//! `SqliteDb`: the self-hosted system of record. Implements the core's storage ports
//! (`UserStore`, `ContentStore`, `MailingStore`, `ScheduleStore`, `UpdateLog`, …) on one SQLite
//! file, using the same `migrations/` folder that Cloudflare D1 applies.
//!
//! The file runs in WAL mode with `synchronous=FULL`: every commit is fsynced, so a ledger row
//! marked `sending` is on disk before the Wappi call that follows it, even across a power loss.
//! One connection sits behind a mutex; every async method runs its SQL on tokio's blocking pool
//! so that a slow fsync never stalls the runtime. The writes of the mailing engine's hot path
//! (a ledger row's change, a claim, the progress stamp) are group-committed ([`GroupCommit`]):
//! those waiting together share one transaction, so one fsync, and each caller is answered only
//! after that commit, so a row marked `sending` is still on disk before its call. Errors become `DbError::Backend` texts built
//! from SQLite's own messages, which never contain bound parameter values.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{NaiveDate, NaiveTime};
use groupcast_core::model::billing;
use groupcast_core::model::billing::{Invoice, Settlement, Stats};
use groupcast_core::model::ids::ImageId;
use groupcast_core::model::ids::{ChatId, GroupJid, MailingId, ProfileId, SeriesId, UserId};
use groupcast_core::model::lang::Lang;
use groupcast_core::model::ledger::{
    Content, Delivery, DeliveryState, Mailing, MailingStatus, NewMailing,
};
use groupcast_core::model::schedule::{Rule, Schedule};
use groupcast_core::ports::{
    async_trait, AuditStore, BillingStore, CollageChoice, ContentStore, DbError, GroupEntry,
    GroupSet, HistoryStore, ImageMeta, ImageStore, MailingStore, NewImage, NewSeries, PastMailing,
    RunOutcome, ScheduleStore, Series, StoredImage, UpdateClaim, UpdateLog, UserRecord, UserStore,
};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

/// The migration files, in the order they apply, embedded at compile time. A new file in
/// `migrations/` must be listed here too (a test fails otherwise).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../../migrations/0001_init.sql"),
    ),
    (
        "0002_billing.sql",
        include_str!("../../../migrations/0002_billing.sql"),
    ),
    (
        "0003_images.sql",
        include_str!("../../../migrations/0003_images.sql"),
    ),
    (
        "0004_ledger_checks.sql",
        include_str!("../../../migrations/0004_ledger_checks.sql"),
    ),
    (
        "0005_preview.sql",
        include_str!("../../../migrations/0005_preview.sql"),
    ),
    (
        "0006_update_claims.sql",
        include_str!("../../../migrations/0006_update_claims.sql"),
    ),
    (
        "0007_pace.sql",
        include_str!("../../../migrations/0007_pace.sql"),
    ),
    (
        "0008_schedules.sql",
        include_str!("../../../migrations/0008_schedules.sql"),
    ),
    (
        "0009_preflight.sql",
        include_str!("../../../migrations/0009_preflight.sql"),
    ),
    (
        "0010_group_sets.sql",
        include_str!("../../../migrations/0010_group_sets.sql"),
    ),
    (
        "0011_delivery_audit.sql",
        include_str!("../../../migrations/0011_delivery_audit.sql"),
    ),
    (
        "0012_history.sql",
        include_str!("../../../migrations/0012_history.sql"),
    ),
    (
        "0013_mailings_by_profile.sql",
        include_str!("../../../migrations/0013_mailings_by_profile.sql"),
    ),
    (
        "0014_announce.sql",
        include_str!("../../../migrations/0014_announce.sql"),
    ),
];

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite system of record. Cheap to clone (the connection is shared).
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
    writes: Arc<GroupCommit>,
}

/// One write waiting for its group commit: runs its statements (`true` when they succeeded)
/// and gives back how to answer its caller once the commit is known.
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Answer) + Send>;
/// Answers a write's caller: with the write's own result, or the commit's error.
type Answer = Box<dyn FnOnce(Option<DbError>) + Send>;

/// The most writes one commit takes.
const GROUP_COMMIT_MAX: usize = 512;

/// The group commit: one thread takes the writes waiting in its queue, runs each in a savepoint
/// of one transaction (a failing write is rolled back alone), commits, and only then answers
/// every caller. Under load many writes share an fsync; alone, a write is its own transaction
/// as before.
struct GroupCommit {
    queue: Mutex<std::sync::mpsc::Sender<WriteJob>>,
}

impl GroupCommit {
    fn start(conn: Arc<Mutex<Connection>>) -> GroupCommit {
        let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("sqlite-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < GROUP_COMMIT_MAX {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    commit_group(&conn, jobs);
                }
            })
            .expect("the group commit thread starts");
        GroupCommit {
            queue: Mutex::new(tx),
        }
    }
}

/// Runs `jobs` in one transaction, each in its own savepoint, commits, then answers them.
fn commit_group(c: &Connection, jobs: Vec<WriteJob>) {
    if let Err(e) = c.execute_batch("BEGIN IMMEDIATE") {
        // Not run: dropping the jobs answers their callers with an error (the engine's step
        // fails and is tried again), as a lone write's failed statement would.
        tracing::warn!(error = %backend("begin", e), writes = jobs.len(), "group commit could not begin");
        return;
    }
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        let ran = c.execute_batch("SAVEPOINT w").map(|_| job(c));
        match ran {
            Ok((true, answer)) => {
                let _ = c.execute_batch("RELEASE w");
                answers.push(answer);
            }
            Ok((false, answer)) => {
                let _ = c.execute_batch("ROLLBACK TO w; RELEASE w");
                answers.push(answer);
            }
            Err(e) => {
                // The job was not run (dropped): its caller sees the queue's error.
                tracing::warn!(error = %backend("savepoint", e), "a write was not run");
            }
        }
    }
    let failed = c.execute_batch("COMMIT").err().map(|e| {
        let _ = c.execute_batch("ROLLBACK");
        backend("commit", e)
    });
    for answer in answers {
        answer(failed.clone());
    }
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDb").finish_non_exhaustive()
    }
}

impl SqliteDb {
    /// Opens (creating it and its parent folders if needed) the database file, in WAL mode with
    /// `synchronous=FULL`, a 5 s busy timeout and foreign keys on. Does not migrate.
    pub fn open(path: &Path) -> Result<SqliteDb, DbError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| DbError::Backend(format!("create database folder: {e}")))?;
            }
        }
        let conn = Connection::open(path).map_err(|e| backend("open", e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| backend("journal_mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable with synchronous=FULL, only slower and less concurrent.
            tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode");
        }
        Self::configure(conn)
    }

    /// A private in-memory database (tests, tools).
    pub fn open_in_memory() -> Result<SqliteDb, DbError> {
        let conn = Connection::open_in_memory().map_err(|e| backend("open", e))?;
        Self::configure(conn)
    }

    fn configure(conn: Connection) -> Result<SqliteDb, DbError> {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| backend("synchronous", e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| backend("foreign_keys", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| backend("busy_timeout", e))?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(SqliteDb {
            writes: Arc::new(GroupCommit::start(Arc::clone(&conn))),
            conn,
        })
    }

    /// Locks the connection. A panic while it was held cannot leave a transaction open
    /// (rusqlite rolls back on drop), so a poisoned lock is safe to take over.
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with the connection on tokio's blocking pool.
    async fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError>
    where
        T: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| DbError::Backend(format!("database task failed: {e}")))?
    }

    /// Runs the write `f` in the next group commit (see [`GroupCommit`]); its result once that
    /// commit is on disk (or the commit's error).
    async fn with_write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError>
    where
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |c| {
            let result = f(c);
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |failed| {
                let _ = tx.send(match failed {
                    Some(e) => Err(e),
                    None => result,
                });
            });
            (ok, answer)
        });
        self.writes
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| DbError::Backend("the database writer stopped".into()))?;
        rx.await
            .map_err(|_| DbError::Backend("a write was dropped by the database writer".into()))?
    }

    /// Applies, in name order, every embedded migration not yet recorded in `_migrations`,
    /// each in its own transaction. Returns the names newly applied (empty when up to date).
    /// Safe to run from several processes at once: each file is applied under a write lock
    /// and re-checked inside it.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.lock();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _migrations (
                name       TEXT PRIMARY KEY,
                applied_at INTEGER NOT NULL
            )",
        )
        .map_err(|e| backend("migrate", e))?;
        let mut applied = Vec::new();
        for (name, sql) in sorted_migrations() {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("migrate", e))?;
            let done = tx
                .query_row("SELECT 1 FROM _migrations WHERE name = ?1", [name], |_| {
                    Ok(())
                })
                .optional()
                .map_err(|e| backend("migrate", e))?
                .is_some();
            if done {
                continue;
            }
            tx.execute_batch(sql)
                .map_err(|e| backend(&format!("migration {name}"), e))?;
            tx.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?1, ?2)",
                params![name, unix_secs()],
            )
            .map_err(|e| backend("migrate", e))?;
            tx.commit()
                .map_err(|e| backend(&format!("migration {name}"), e))?;
            applied.push(name.to_string());
        }
        Ok(applied)
    }

    /// The embedded migrations not yet applied to this database (all of them on a new file).
    /// Reads only; never creates the bookkeeping table.
    pub fn pending_migrations(&self) -> Result<Vec<String>, DbError> {
        let conn = self.lock();
        let has_table = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| backend("pending_migrations", e))?
            .is_some();
        let mut done = std::collections::HashSet::new();
        if has_table {
            let mut stmt = conn
                .prepare("SELECT name FROM _migrations")
                .map_err(|e| backend("pending_migrations", e))?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| backend("pending_migrations", e))?;
            for n in names {
                done.insert(n.map_err(|e| backend("pending_migrations", e))?);
            }
        }
        Ok(sorted_migrations()
            .into_iter()
            .filter(|(name, _)| !done.contains(*name))
            .map(|(name, _)| name.to_string())
            .collect())
    }

    /// `PRAGMA synchronous` as a number (2 = FULL), so a test can prove the durability setting.
    pub fn synchronous_mode(&self) -> Result<i64, DbError> {
        self.lock()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(|e| backend("synchronous", e))
    }

    /// The running mailings whose cancel was asked for (what wakes their drivers early).
    pub async fn cancelled_running(&self) -> Result<Vec<MailingId>, DbError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id FROM mailings WHERE status = 'running' AND cancel_requested = 1",
                )
                .map_err(|e| backend("cancelled_running", e))?;
            let ids = stmt
                .query_map([], |r| r.get::<_, i64>(0))
                .map_err(|e| backend("cancelled_running", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend("cancelled_running", e))?;
            Ok(ids.into_iter().map(MailingId).collect())
        })
        .await
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.with_conn(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| backend("ping", e))
        })
        .await
    }

    /// Forgets Telegram update ids received before `older_than` (unix ms). Returns how many.
    pub async fn prune_updates(&self, older_than: i64) -> Result<usize, DbError> {
        self.with_conn(move |c| {
            c.execute(
                "DELETE FROM telegram_updates WHERE received_at < ?1",
                [older_than],
            )
            .map_err(|e| backend("prune_updates", e))
        })
        .await
    }

    /// Hands taken, unfinished updates back (a shutdown cut their handling off): any process
    /// takes them at its next [`SqliteDb::take_unfinished_updates`].
    pub async fn release_updates(&self, update_ids: Vec<i64>) -> Result<(), DbError> {
        self.with_conn(move |c| {
            for id in update_ids {
                c.execute(
                    "UPDATE telegram_updates SET claimed_at = 0
                      WHERE update_id = ?1 AND done_at IS NULL",
                    [id],
                )
                .map_err(|e| backend("release_updates", e))?;
            }
            Ok(())
        })
        .await
    }

    /// Takes (claims anew at `now`) up to `limit` unfinished updates whose claim is older than
    /// `stale_before`, lowest id first, with their payloads: the updates a dead or stopped
    /// handler left. One statement, so two processes never take the same one.
    pub async fn take_unfinished_updates(
        &self,
        stale_before: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare(
                    "UPDATE telegram_updates SET claimed_at = ?2
                      WHERE update_id IN (
                            SELECT update_id FROM telegram_updates
                             WHERE done_at IS NULL AND claimed_at < ?1 AND payload <> ''
                             ORDER BY update_id LIMIT ?3)
                     RETURNING update_id, payload",
                )
                .map_err(|e| backend("take_unfinished_updates", e))?;
            let mut taken = stmt
                .query_map(params![stale_before, now, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(|e| backend("take_unfinished_updates", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend("take_unfinished_updates", e))?;
            taken.sort_by_key(|(id, _)| *id);
            Ok(taken)
        })
        .await
    }

    /// How many users the bot has.
    pub async fn count_users(&self) -> Result<u64, DbError> {
        self.with_conn(|c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
                .map_err(|e| backend("count_users", e))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    /// How many of a mailing's rows are in each state (states with no rows are absent).
    pub async fn delivery_counts(
        &self,
        mailing: MailingId,
    ) -> Result<HashMap<DeliveryState, u64>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT state, COUNT(*) FROM deliveries WHERE mailing_id = ?1 GROUP BY state",
                )
                .map_err(|e| backend("delivery_counts", e))?;
            let rows = stmt
                .query_map([mailing.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(|e| backend("delivery_counts", e))?;
            let mut out = HashMap::new();
            for row in rows {
                let (state, n) = row.map_err(|e| backend("delivery_counts", e))?;
                let state = DeliveryState::parse(&state).ok_or_else(|| {
                    DbError::Backend("delivery_counts: unknown delivery state".into())
                })?;
                out.insert(state, n.max(0) as u64);
            }
            Ok(out)
        })
        .await
    }

    /// How many mailings are in each status (for `/metrics`).
    pub async fn mailing_status_counts(&self) -> Result<Vec<(String, u64)>, DbError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare_cached("SELECT status, COUNT(*) FROM mailings GROUP BY status")
                .map_err(|e| backend("mailing_status_counts", e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(|e| backend("mailing_status_counts", e))?;
            rows.map(|r| {
                r.map(|(s, n)| (s, n.max(0) as u64))
                    .map_err(|e| backend("mailing_status_counts", e))
            })
            .collect()
        })
        .await
    }

    /// Every user's id, ascending (the recipients of an operator broadcast; the id is also
    /// the private chat's id).
    pub async fn user_ids(&self) -> Result<Vec<UserId>, DbError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id FROM users ORDER BY id")
                .map_err(|e| backend("user_ids", e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, i64>(0))
                .map_err(|e| backend("user_ids", e))?;
            rows.map(|r| r.map(UserId).map_err(|e| backend("user_ids", e)))
                .collect()
        })
        .await
    }
}

fn sorted_migrations() -> Vec<(&'static str, &'static str)> {
    let mut all = MIGRATIONS.to_vec();
    all.sort_by_key(|(name, _)| *name);
    all
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Turns a rusqlite error into `DbError::Backend` without ever echoing a value: SQLite's own
/// messages name tables, columns and constraints only; the variants that could carry a value
/// are reduced to their kind.
fn backend(context: &str, e: rusqlite::Error) -> DbError {
    use rusqlite::Error as E;
    let what = match e {
        E::SqliteFailure(err, Some(msg)) => format!("{msg} ({:?})", err.code),
        E::SqliteFailure(err, None) => format!("{err}"),
        E::QueryReturnedNoRows => "query returned no rows".to_string(),
        E::InvalidColumnType(idx, name, ty) => format!("column {name} (index {idx}) has type {ty}"),
        E::InvalidColumnIndex(idx) => format!("invalid column index {idx}"),
        E::InvalidColumnName(name) => format!("invalid column name {name}"),
        E::IntegralValueOutOfRange(idx, _) => format!("integer out of range in column {idx}"),
        E::FromSqlConversionFailure(idx, ty, _) => {
            format!("cannot convert column {idx} of type {ty}")
        }
        E::ToSqlConversionFailure(_) => "a parameter could not be converted".to_string(),
        E::Utf8Error(_) | E::NulError(_) => "invalid text".to_string(),
        E::InvalidParameterCount(got, want) => format!("{got} parameters given, {want} expected"),
        E::ExecuteReturnedResults => "statement returned rows".to_string(),
        E::StatementChangedRows(n) => format!("statement changed {n} rows"),
        E::MultipleStatement => "multiple statements given".to_string(),
        _ => "unexpected SQLite error".to_string(),
    };
    DbError::Backend(format!("{context}: {what}"))
}

/// True when `e` is the UNIQUE violation of `mailings_one_active_per_profile`.
fn is_active_conflict(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(err, msg) => {
            err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && msg
                    .as_deref()
                    .is_some_and(|m| m.contains("mailings.profile_id"))
        }
        _ => false,
    }
}

/// Like `backend`, but the one-active-mailing violation becomes `AlreadyActive`.
fn mailing_write_error(context: &str, e: rusqlite::Error) -> DbError {
    if is_active_conflict(&e) {
        DbError::AlreadyActive
    } else {
        backend(context, e)
    }
}

/// True when `e` is the primary-key violation of `series_runs`: the run of that (series,
/// date) was already decided.
fn is_run_taken(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(err, msg) => {
            matches!(
                err.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            ) && msg
                .as_deref()
                .is_some_and(|m| m.contains("series_runs.series_id"))
        }
        _ => false,
    }
}

/// Like `backend`, but a run already decided becomes `RunTaken`.
fn run_write_error(context: &str, e: rusqlite::Error) -> DbError {
    if is_run_taken(&e) {
        DbError::RunTaken
    } else {
        backend(context, e)
    }
}

fn fence_param(fence: u64) -> Result<i64, DbError> {
    i64::try_from(fence).map_err(|_| DbError::Backend("fencing number out of range".into()))
}

fn to_u32(v: i64, what: &str) -> Result<u32, DbError> {
    u32::try_from(v).map_err(|_| DbError::Backend(format!("{what} out of range")))
}

/// The start of each post (group × mailing) of a profile since a time, oldest first (the same
/// query as D1's).
const RECENT_POSTS: &str = "SELECT MIN(d.first_attempt_at) AS v
       FROM deliveries d JOIN mailings m ON m.id = d.mailing_id
      WHERE m.profile_id = ?1 AND d.first_attempt_at >= ?2
      GROUP BY d.mailing_id, d.group_jid
      ORDER BY v";

const USER_COLUMNS: &str =
    "id, lang, wappi_token_enc, profile_id, subscription_until, dialogue, created_at, pace, tz, \
     number_since";

fn read_user(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    let lang: String = r.get(1)?;
    let profile: Option<String> = r.get(3)?;
    Ok(UserRecord {
        id: UserId(r.get(0)?),
        lang: Lang::parse(&lang),
        wappi_token_enc: r.get(2)?,
        // Only validated ids are ever stored; anything else reads as "not registered".
        profile_id: profile.as_deref().and_then(ProfileId::parse),
        subscription_until: r.get(4)?,
        dialogue: r.get(5)?,
        created_at: r.get(6)?,
        pace: r.get(7)?,
        tz: r.get(8)?,
        number_since: r.get(9)?,
    })
}

const MAILING_COLUMNS: &str = "id, user_id, chat_id, profile_id, status, content, created_at, \
     finished_at, fence, cancel_requested, progress_message_id, progress_at, pause_reason, \
     resumed_at, announce_until";

/// A mailings row, before the text columns are validated.
struct RawMailing {
    id: i64,
    user_id: i64,
    chat_id: i64,
    profile_id: String,
    status: String,
    content: String,
    created_at: i64,
    finished_at: Option<i64>,
    fence: i64,
    cancel_requested: i64,
    progress_message_id: Option<i64>,
    progress_at: i64,
    pause_reason: Option<String>,
    resumed_at: i64,
    announce_until: i64,
}

fn read_raw_mailing(r: &Row<'_>) -> rusqlite::Result<RawMailing> {
    Ok(RawMailing {
        id: r.get(0)?,
        user_id: r.get(1)?,
        chat_id: r.get(2)?,
        profile_id: r.get(3)?,
        status: r.get(4)?,
        content: r.get(5)?,
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
        fence: r.get(8)?,
        cancel_requested: r.get(9)?,
        progress_message_id: r.get(10)?,
        progress_at: r.get(11)?,
        pause_reason: r.get(12)?,
        resumed_at: r.get(13)?,
        announce_until: r.get(14)?,
    })
}

impl RawMailing {
    fn into_mailing(self) -> Result<Mailing, DbError> {
        let id = self.id;
        let bad = |what: &str| DbError::Backend(format!("mailing {id}: {what}"));
        let content: Content = serde_json::from_str(&self.content).map_err(|e| {
            bad(&format!(
                "unreadable content snapshot (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(Mailing {
            id: MailingId(id),
            user_id: UserId(self.user_id),
            chat_id: ChatId(self.chat_id),
            profile_id: ProfileId::parse(&self.profile_id)
                .ok_or_else(|| bad("invalid profile id"))?,
            status: MailingStatus::parse(&self.status).ok_or_else(|| bad("unknown status"))?,
            content,
            created_at: self.created_at,
            finished_at: self.finished_at,
            fence: u64::try_from(self.fence).map_err(|_| bad("negative fence"))?,
            cancel_requested: self.cancel_requested != 0,
            progress_message_id: self.progress_message_id,
            progress_at: self.progress_at,
            pause_reason: self.pause_reason,
            resumed_at: self.resumed_at,
            announce_until: self.announce_until,
        })
    }
}

fn query_mailings(
    c: &Connection,
    context: &str,
    filter: &str,
    param: &dyn rusqlite::ToSql,
) -> Result<Vec<Mailing>, DbError> {
    let sql = format!("SELECT {MAILING_COLUMNS} FROM mailings {filter}");
    let mut stmt = c.prepare_cached(&sql).map_err(|e| backend(context, e))?;
    let rows = stmt
        .query_map([param], read_raw_mailing)
        .map_err(|e| backend(context, e))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(|e| backend(context, e))?.into_mailing()?);
    }
    Ok(out)
}

const DELIVERY_COLUMNS: &str = "mailing_id, group_jid, part, position, state, attempts, \
     next_attempt_at, message_id, error, updated_at, checks, first_attempt_at";

struct RawDelivery {
    mailing_id: i64,
    group_jid: String,
    part: i64,
    position: i64,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    message_id: Option<String>,
    error: Option<String>,
    updated_at: i64,
    checks: i64,
    first_attempt_at: i64,
}

fn read_raw_delivery(r: &Row<'_>) -> rusqlite::Result<RawDelivery> {
    Ok(RawDelivery {
        mailing_id: r.get(0)?,
        group_jid: r.get(1)?,
        part: r.get(2)?,
        position: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        message_id: r.get(7)?,
        error: r.get(8)?,
        updated_at: r.get(9)?,
        checks: r.get(10)?,
        first_attempt_at: r.get(11)?,
    })
}

impl RawDelivery {
    fn into_delivery(self) -> Result<Delivery, DbError> {
        Ok(Delivery {
            mailing_id: MailingId(self.mailing_id),
            group: GroupJid::parse(&self.group_jid)
                .ok_or_else(|| DbError::Backend("deliveries: invalid group id".into()))?,
            part: to_u32(self.part, "delivery part")?,
            position: to_u32(self.position, "delivery position")?,
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| DbError::Backend("deliveries: unknown state".into()))?,
            attempts: to_u32(self.attempts, "delivery attempts")?,
            checks: to_u32(self.checks, "delivery checks")?,
            first_attempt_at: self.first_attempt_at,
            next_attempt_at: self.next_attempt_at,
            message_id: self.message_id,
            error: self.error,
            updated_at: self.updated_at,
        })
    }
}

/// A mailing's content snapshot, as stored (JSON of `Content`).
fn mailing_content(context: &str, new: &NewMailing) -> Result<String, DbError> {
    serde_json::to_string(&new.content)
        .map_err(|_| DbError::Backend(format!("{context}: content cannot be serialised")))
}

/// What `create_mailing` writes, inside the caller's transaction: the mailing row, then one
/// `pending` row per group and part of the post. `AlreadyActive` when the profile already
/// has an active mailing (the caller's transaction then rolls back when dropped).
fn insert_mailing(
    tx: &rusqlite::Transaction<'_>,
    context: &str,
    new: &NewMailing,
    content: &str,
) -> Result<MailingId, DbError> {
    tx.execute(
        "INSERT INTO mailings
             (user_id, chat_id, profile_id, status, content, created_at, announce_until)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
        params![
            new.user_id.0,
            new.chat_id.0,
            new.profile_id.as_str(),
            content,
            new.now,
            new.announce_until
        ],
    )
    .map_err(|e| mailing_write_error(context, e))?;
    let id = tx.last_insert_rowid();
    // A group listed twice still gets one set of rows: every group receives the post once.
    // One row per part of the post (images, then the text).
    let parts = new.content.part_numbers();
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO deliveries (mailing_id, group_jid, part, position, state, attempts,
                                     next_attempt_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, 0, ?5)
             ON CONFLICT (mailing_id, group_jid, part) DO NOTHING",
        )
        .map_err(|e| backend(context, e))?;
    let mut position: i64 = 0;
    for g in &new.groups {
        let mut n = 0;
        for part in &parts {
            n += stmt
                .execute(params![id, g.as_str(), part, position, new.now])
                .map_err(|e| backend(context, e))?;
        }
        position += i64::from(n > 0);
    }
    for (g, reason) in &new.skipped {
        tx.execute(
            "UPDATE deliveries SET state = 'failed', error = ?3
             WHERE mailing_id = ?1 AND group_jid = ?2",
            params![id, g.as_str(), reason],
        )
        .map_err(|e| backend(context, e))?;
    }
    Ok(MailingId(id))
}

/// Explains why a fenced write of `mailing` changed nothing: the mailing is gone (`NotFound`),
/// or its fence is not `fence` (`StaleFence`), or — `None` — the mailing is fine and the
/// target row itself is missing.
fn fence_refusal(
    c: &Connection,
    mailing: i64,
    fence: i64,
    context: &str,
) -> Result<Option<DbError>, DbError> {
    let current: Option<i64> = c
        .query_row("SELECT fence FROM mailings WHERE id = ?1", [mailing], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| backend(context, e))?;
    Ok(match current {
        None => Some(DbError::NotFound),
        Some(f) if f != fence => Some(DbError::StaleFence),
        Some(_) => None,
    })
}

/// `Ok(())` when an update touched a row, `NotFound` otherwise.
fn found(changed: usize) -> Result<(), DbError> {
    if changed == 0 {
        Err(DbError::NotFound)
    } else {
        Ok(())
    }
}

impl SqliteDb {
    /// Runs `sql` (`?1` = the user id, `?2` = `value`) on one user's row; `NotFound` when the
    /// user does not exist.
    async fn update_user<V>(
        &self,
        id: UserId,
        what: &'static str,
        sql: &'static str,
        value: V,
    ) -> Result<(), DbError>
    where
        V: rusqlite::ToSql + Send + 'static,
    {
        self.with_conn(move |c| {
            let n = c
                .execute(sql, params![id.0, value])
                .map_err(|e| backend(what, e))?;
            found(n)
        })
        .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl UserStore for SqliteDb {
    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, DbError> {
        self.with_conn(move |c| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_row([id.0], read_user).optional())
                .map_err(|e| backend("get_user", e))
        })
        .await
    }

    async fn ensure_user(
        &self,
        id: UserId,
        lang: Lang,
        subscription_until: i64,
        now: i64,
    ) -> Result<UserRecord, DbError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO users (id, lang, subscription_until, dialogue, created_at)
                 VALUES (?1, ?2, ?3, '', ?4) ON CONFLICT (id) DO NOTHING",
                params![id.0, lang.code(), subscription_until, now],
            )
            .map_err(|e| backend("ensure_user", e))?;
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_row([id.0], read_user))
                .map_err(|e| backend("ensure_user", e))
        })
        .await
    }

    async fn save_credentials(
        &self,
        id: UserId,
        token_enc: &str,
        profile: &ProfileId,
    ) -> Result<(), DbError> {
        let token = token_enc.to_string();
        let profile = profile.as_str().to_string();
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "UPDATE users SET wappi_token_enc = ?2, profile_id = ?3 WHERE id = ?1",
                    params![id.0, token, profile],
                )
                .map_err(|e| backend("save_credentials", e))?;
            found(n)
        })
        .await
    }

    async fn set_lang(&self, id: UserId, lang: Lang) -> Result<(), DbError> {
        self.update_user(
            id,
            "set_lang",
            "UPDATE users SET lang = ?2 WHERE id = ?1",
            lang.code().to_string(),
        )
        .await
    }

    async fn set_pace(&self, id: UserId, pace: &str) -> Result<(), DbError> {
        let sql = "UPDATE users SET pace = ?2 WHERE id = ?1";
        self.update_user(id, "set_pace", sql, pace.to_string())
            .await
    }

    async fn set_tz(&self, id: UserId, tz: &str) -> Result<(), DbError> {
        let sql = "UPDATE users SET tz = ?2 WHERE id = ?1";
        self.update_user(id, "set_tz", sql, tz.to_string()).await
    }

    async fn set_number_since(&self, id: UserId, at: i64) -> Result<(), DbError> {
        let sql = "UPDATE users SET number_since = ?2 WHERE id = ?1";
        self.update_user(id, "set_number_since", sql, at).await
    }

    async fn set_dialogue(&self, id: UserId, dialogue: &str) -> Result<(), DbError> {
        let sql = "UPDATE users SET dialogue = ?2 WHERE id = ?1";
        self.update_user(id, "set_dialogue", sql, dialogue.to_string())
            .await
    }

    async fn set_subscription_until(&self, id: UserId, until: i64) -> Result<(), DbError> {
        let sql = "UPDATE users SET subscription_until = ?2 WHERE id = ?1";
        self.update_user(id, "set_subscription_until", sql, until)
            .await
    }

    async fn begin_preview(&self, id: UserId, digest: &str, skip: &str) -> Result<u64, DbError> {
        let (digest, skip) = (digest.to_string(), skip.to_string());
        self.with_conn(move |c| {
            c.query_row(
                "UPDATE users SET preview_seq = preview_seq + 1, preview_digest = ?2,
                                  preview_skip = ?3
                 WHERE id = ?1 RETURNING preview_seq",
                params![id.0, digest, skip],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| backend("begin_preview", e))?
            .map(|n| n as u64)
            .ok_or(DbError::NotFound)
        })
        .await
    }

    async fn take_preview(
        &self,
        id: UserId,
        seq: u64,
        digest: &str,
    ) -> Result<Option<String>, DbError> {
        let digest = digest.to_string();
        self.with_conn(move |c| {
            c.query_row(
                "UPDATE users SET preview_digest = NULL
                 WHERE id = ?1 AND preview_seq = ?2 AND preview_digest = ?3
                 RETURNING COALESCE(preview_skip, '')",
                params![id.0, seq as i64, digest],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(|e| backend("take_preview", e))
        })
        .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl AuditStore for SqliteDb {
    async fn mailings_to_audit(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<MailingId>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(AUDIT_DUE)
                .map_err(|e| backend("mailings_to_audit", e))?;
            let rows = stmt
                .query_map(params![since, until, limit], |r| r.get::<_, i64>(0))
                .map_err(|e| backend("mailings_to_audit", e))?;
            rows.map(|r| {
                r.map(MailingId)
                    .map_err(|e| backend("mailings_to_audit", e))
            })
            .collect()
        })
        .await
    }

    async fn claim_audit(&self, id: MailingId, now: i64) -> Result<bool, DbError> {
        self.with_conn(move |c| {
            c.execute(
                "UPDATE mailings SET audited_at = ?2 WHERE id = ?1 AND audited_at IS NULL",
                params![id.0, now],
            )
            .map(|n| n == 1)
            .map_err(|e| backend("claim_audit", e))
        })
        .await
    }

    async fn record_group_delivery(
        &self,
        user: UserId,
        group: &GroupJid,
        status: &str,
        delivered: bool,
        now: i64,
    ) -> Result<(), DbError> {
        let (group, status) = (group.as_str().to_string(), status.to_string());
        self.with_conn(move |c| {
            c.execute(
                GROUP_DELIVERY,
                params![user.0, group, status, !delivered, now],
            )
            .map(drop)
            .map_err(|e| backend("record_group_delivery", e))
        })
        .await
    }

    async fn undelivering_groups(&self, user: UserId) -> Result<Vec<GroupJid>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT jid FROM group_delivery WHERE user_id = ?1 AND misses > 0 ORDER BY jid",
                )
                .map_err(|e| backend("undelivering_groups", e))?;
            let rows = stmt
                .query_map([user.0], |r| r.get::<_, String>(0))
                .map_err(|e| backend("undelivering_groups", e))?;
            let mut out = Vec::new();
            for row in rows {
                let jid = row.map_err(|e| backend("undelivering_groups", e))?;
                out.extend(GroupJid::parse(&jid));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl HistoryStore for SqliteDb {
    async fn mailing_history(&self, user: UserId, limit: u32) -> Result<Vec<PastMailing>, DbError> {
        self.with_conn(move |c| {
            let filter = format!("WHERE user_id = ?1 ORDER BY id DESC LIMIT {limit}");
            let mailings = query_mailings(c, "mailing_history", &filter, &user.0)?;
            let mut stmt = c
                .prepare_cached(SERIES_OF_MAILING)
                .map_err(|e| backend("mailing_history", e))?;
            let mut out = Vec::with_capacity(mailings.len());
            for mailing in mailings {
                let series = stmt
                    .query_row([mailing.id.0], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(|e| backend("mailing_history", e))?
                    .map(SeriesId);
                out.push(PastMailing { mailing, series });
            }
            Ok(out)
        })
        .await
    }

    async fn record_post_status(
        &self,
        id: MailingId,
        group: &GroupJid,
        status: &str,
    ) -> Result<(), DbError> {
        let (group, status) = (group.as_str().to_string(), status.to_string());
        self.with_conn(move |c| {
            c.execute(
                "UPDATE deliveries SET delivery_status = ?3 WHERE mailing_id = ?1 AND group_jid = ?2",
                params![id.0, group, status],
            )
            .map(drop)
            .map_err(|e| backend("record_post_status", e))
        })
        .await
    }

    async fn post_statuses(&self, id: MailingId) -> Result<Vec<(GroupJid, String)>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(POST_STATUSES)
                .map_err(|e| backend("post_statuses", e))?;
            let rows = stmt
                .query_map([id.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(|e| backend("post_statuses", e))?;
            let mut out = Vec::new();
            for row in rows {
                let (jid, status) = row.map_err(|e| backend("post_statuses", e))?;
                out.extend(GroupJid::parse(&jid).map(|g| (g, status)));
            }
            Ok(out)
        })
        .await
    }
}

/// The series a mailing was a run of (the same query as D1's).
const SERIES_OF_MAILING: &str =
    "SELECT series_id FROM series_runs WHERE mailing_id = ?1 ORDER BY series_id LIMIT 1";

/// Each audited group of a mailing once, in the mailing's order (the same query as D1's).
const POST_STATUSES: &str = "SELECT group_jid, MAX(delivery_status) FROM deliveries
      WHERE mailing_id = ?1 AND delivery_status IS NOT NULL
      GROUP BY group_jid ORDER BY MIN(position), group_jid";

/// Finished mailings not audited yet (the same query as D1's).
const AUDIT_DUE: &str = "SELECT id FROM mailings
      WHERE audited_at IS NULL AND status IN ('done', 'cancelled')
        AND finished_at BETWEEN ?1 AND ?2
      ORDER BY finished_at LIMIT ?3";

/// What an audit saw of a group: a miss counts up, a delivery starts again (as D1's).
const GROUP_DELIVERY: &str = "INSERT INTO group_delivery (user_id, jid, status, misses, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (user_id, jid) DO UPDATE SET status = ?3, updated_at = ?5,
         misses = CASE WHEN ?4 THEN group_delivery.misses + 1 ELSE 0 END";

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ContentStore for SqliteDb {
    async fn get_text(&self, user: UserId) -> Result<Option<String>, DbError> {
        self.with_conn(move |c| {
            c.query_row("SELECT body FROM texts WHERE user_id = ?1", [user.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| backend("get_text", e))
        })
        .await
    }

    async fn set_text(&self, user: UserId, text: &str, now: i64) -> Result<(), DbError> {
        let text = text.to_string();
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO texts (user_id, body, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                params![user.0, text, now],
            )
            .map_err(|e| backend("set_text", e))?;
            Ok(())
        })
        .await
    }

    async fn get_groups(&self, user: UserId) -> Result<Vec<GroupEntry>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT jid, name FROM groups WHERE user_id = ?1 ORDER BY position, jid",
                )
                .map_err(|e| backend("get_groups", e))?;
            let rows = stmt
                .query_map([user.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(|e| backend("get_groups", e))?;
            let mut out = Vec::new();
            for row in rows {
                let (jid, name) = row.map_err(|e| backend("get_groups", e))?;
                let jid = GroupJid::parse(&jid)
                    .ok_or_else(|| DbError::Backend("get_groups: invalid group id".into()))?;
                out.push(GroupEntry { jid, name });
            }
            Ok(out)
        })
        .await
    }

    async fn set_groups(&self, user: UserId, groups: &[GroupEntry]) -> Result<(), DbError> {
        let groups = groups.to_vec();
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("set_groups", e))?;
            tx.execute("DELETE FROM groups WHERE user_id = ?1", [user.0])
                .map_err(|e| backend("set_groups", e))?;
            {
                // A repeated group keeps its first place; positions stay dense.
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO groups (user_id, jid, name, position) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (user_id, jid) DO NOTHING",
                    )
                    .map_err(|e| backend("set_groups", e))?;
                let mut position: i64 = 0;
                for g in &groups {
                    let n = stmt
                        .execute(params![user.0, g.jid.as_str(), g.name, position])
                        .map_err(|e| backend("set_groups", e))?;
                    position += n as i64;
                }
            }
            tx.commit().map_err(|e| backend("set_groups", e))
        })
        .await
    }

    async fn save_group_set(
        &self,
        user: UserId,
        name: &str,
        groups: &[GroupEntry],
        now: i64,
    ) -> Result<(), DbError> {
        let name = name.to_string();
        let groups = serde_json::to_string(groups)
            .map_err(|_| DbError::Backend("save_group_set: groups cannot be serialised".into()))?;
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO group_sets (user_id, name, groups, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, name) DO UPDATE SET groups = ?3, updated_at = ?4",
                params![user.0, name, groups, now],
            )
            .map(drop)
            .map_err(|e| backend("save_group_set", e))
        })
        .await
    }

    async fn group_sets(&self, user: UserId) -> Result<Vec<GroupSet>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, groups FROM group_sets WHERE user_id = ?1 ORDER BY name",
                )
                .map_err(|e| backend("group_sets", e))?;
            let rows = stmt
                .query_map([user.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(|e| backend("group_sets", e))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, groups) = row.map_err(|e| backend("group_sets", e))?;
                let groups = serde_json::from_str(&groups)
                    .map_err(|_| DbError::Backend("group_sets: a set no longer reads".into()))?;
                out.push(GroupSet { name, groups });
            }
            Ok(out)
        })
        .await
    }

    async fn delete_group_set(&self, user: UserId, name: &str) -> Result<bool, DbError> {
        let name = name.to_string();
        self.with_conn(move |c| {
            c.execute(
                "DELETE FROM group_sets WHERE user_id = ?1 AND name = ?2",
                params![user.0, name],
            )
            .map(|n| n == 1)
            .map_err(|e| backend("delete_group_set", e))
        })
        .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl MailingStore for SqliteDb {
    async fn create_mailing(&self, new: &NewMailing) -> Result<MailingId, DbError> {
        let new = new.clone();
        let content = mailing_content("create_mailing", &new)?;
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("create_mailing", e))?;
            let id = insert_mailing(&tx, "create_mailing", &new, &content)?;
            tx.commit()
                .map_err(|e| mailing_write_error("create_mailing", e))?;
            Ok(id)
        })
        .await
    }

    async fn get_mailing(&self, id: MailingId) -> Result<Option<Mailing>, DbError> {
        self.with_conn(move |c| {
            Ok(query_mailings(c, "get_mailing", "WHERE id = ?1", &id.0)?
                .into_iter()
                .next())
        })
        .await
    }

    async fn latest_mailing(&self, user: UserId) -> Result<Option<Mailing>, DbError> {
        self.with_conn(move |c| {
            Ok(query_mailings(
                c,
                "latest_mailing",
                "WHERE user_id = ?1 ORDER BY id DESC LIMIT 1",
                &user.0,
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn running_mailings(&self) -> Result<Vec<Mailing>, DbError> {
        self.with_conn(|c| {
            query_mailings(
                c,
                "running_mailings",
                "WHERE status = ?1 ORDER BY id",
                &"running",
            )
        })
        .await
    }

    async fn claim_mailing(&self, id: MailingId, fence: u64) -> Result<(), DbError> {
        let fence = fence_param(fence)?;
        self.with_write(move |c| {
            let n = c
                .execute(
                    "UPDATE mailings SET fence = ?2 WHERE id = ?1 AND fence <= ?2",
                    params![id.0, fence],
                )
                .map_err(|e| backend("claim_mailing", e))?;
            if n > 0 {
                return Ok(());
            }
            let exists = c
                .query_row("SELECT 1 FROM mailings WHERE id = ?1", [id.0], |_| Ok(()))
                .optional()
                .map_err(|e| backend("claim_mailing", e))?
                .is_some();
            Err(if exists {
                DbError::StaleFence
            } else {
                DbError::NotFound
            })
        })
        .await
    }

    async fn deliveries(&self, id: MailingId) -> Result<Vec<Delivery>, DbError> {
        self.with_conn(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE mailing_id = ?1 ORDER BY position, part, group_jid"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(|e| backend("deliveries", e))?;
            let rows = stmt.query_map([id.0], read_raw_delivery).map_err(|e| backend("deliveries", e))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(|e| backend("deliveries", e))?.into_delivery()?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_delivery(&self, row: &Delivery, fence: u64) -> Result<(), DbError> {
        let fence = fence_param(fence)?;
        let row = row.clone();
        self.with_write(move |c| {
            let n = c
                .execute(
                    "UPDATE deliveries
                        SET state = ?4, attempts = ?5, next_attempt_at = ?6, message_id = ?7,
                            error = ?8, updated_at = ?9, checks = ?11, first_attempt_at = ?12
                      WHERE mailing_id = ?1 AND group_jid = ?2 AND part = ?3
                        AND EXISTS (SELECT 1 FROM mailings WHERE id = ?1 AND fence = ?10)",
                    params![
                        row.mailing_id.0,
                        row.group.as_str(),
                        row.part,
                        row.state.as_str(),
                        row.attempts,
                        row.next_attempt_at,
                        row.message_id,
                        row.error,
                        row.updated_at,
                        fence,
                        row.checks,
                        row.first_attempt_at,
                    ],
                )
                .map_err(|e| backend("update_delivery", e))?;
            if n > 0 {
                return Ok(());
            }
            Err(
                fence_refusal(c, row.mailing_id.0, fence, "update_delivery")?
                    .unwrap_or(DbError::NotFound),
            )
        })
        .await
    }

    async fn set_mailing_status(
        &self,
        id: MailingId,
        status: MailingStatus,
        reason: Option<&str>,
        fence: u64,
        now: i64,
    ) -> Result<(), DbError> {
        let fence = fence_param(fence)?;
        let reason = reason.map(str::to_string);
        let finished_at =
            matches!(status, MailingStatus::Cancelled | MailingStatus::Done).then_some(now);
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "UPDATE mailings SET status = ?2, pause_reason = ?3, finished_at = ?4
                      WHERE id = ?1 AND fence = ?5",
                    params![id.0, status.as_str(), reason, finished_at, fence],
                )
                .map_err(|e| mailing_write_error("set_mailing_status", e))?;
            if n > 0 {
                return Ok(());
            }
            Err(fence_refusal(c, id.0, fence, "set_mailing_status")?.unwrap_or(DbError::NotFound))
        })
        .await
    }

    async fn request_cancel(&self, id: MailingId) -> Result<(), DbError> {
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "UPDATE mailings SET cancel_requested = 1 WHERE id = ?1",
                    [id.0],
                )
                .map_err(|e| backend("request_cancel", e))?;
            found(n)
        })
        .await
    }

    async fn cancel_requested(&self, id: MailingId) -> Result<bool, DbError> {
        self.with_conn(move |c| {
            let flag: Option<i64> = c
                .prepare_cached("SELECT cancel_requested FROM mailings WHERE id = ?1")
                .and_then(|mut s| s.query_row([id.0], |r| r.get(0)).optional())
                .map_err(|e| backend("cancel_requested", e))?;
            Ok(flag.is_none_or(|f| f != 0))
        })
        .await
    }

    async fn resume_mailing(&self, id: MailingId, now: i64) -> Result<bool, DbError> {
        self.with_conn(move |c| {
            // A paused mailing already holds its profile's slot in the unique index, so this
            // cannot collide; a collision would still be reported as `AlreadyActive`.
            let n = c
                .execute(
                    "UPDATE mailings SET status = 'running', pause_reason = NULL, resumed_at = ?2
                      WHERE id = ?1 AND status = 'paused'",
                    params![id.0, now],
                )
                .map_err(|e| mailing_write_error("resume_mailing", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn pause_mailing(&self, id: MailingId, reason: &str) -> Result<bool, DbError> {
        let reason = reason.to_string();
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "UPDATE mailings SET status = 'paused', pause_reason = ?2
                      WHERE id = ?1 AND status = 'running'",
                    params![id.0, reason],
                )
                .map_err(|e| mailing_write_error("pause_mailing", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn recent_posts(&self, profile: &ProfileId, since: i64) -> Result<Vec<i64>, DbError> {
        let profile = profile.as_str().to_string();
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(RECENT_POSTS)
                .map_err(|e| backend("recent_posts", e))?;
            let posts = stmt
                .query_map(params![profile, since], |r| r.get::<_, i64>(0))
                .map_err(|e| backend("recent_posts", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend("recent_posts", e))?;
            Ok(posts)
        })
        .await
    }

    async fn set_progress(
        &self,
        id: MailingId,
        message_id: Option<i64>,
        at: i64,
    ) -> Result<(), DbError> {
        self.with_write(move |c| {
            let n = c
                .execute(
                    "UPDATE mailings
                        SET progress_message_id = COALESCE(?2, progress_message_id), progress_at = ?3,
                            announce_until = 0
                      WHERE id = ?1",
                    params![id.0, message_id, at],
                )
                .map_err(|e| backend("set_progress", e))?;
            found(n)
        })
        .await
    }
}

/// Dates are stored as 'YYYY-MM-DD' (so that they sort as text), times as 'HH:MM:SS'.
const DATE_FORMAT: &str = "%Y-%m-%d";
const TIME_FORMAT: &str = "%H:%M:%S";

fn date_text(date: NaiveDate) -> String {
    date.format(DATE_FORMAT).to_string()
}

/// A series row with its derived `last_date` (the newest decided run). The same list as D1's
/// `rows::SERIES_COLUMNS`.
const SERIES_COLUMNS: &str = "s.id AS id, s.user_id AS user_id, s.chat_id AS chat_id, \
     s.profile_id AS profile_id, s.content AS content, s.groups AS groups, \
     s.first_date AS first_date, s.at_time AS at_time, s.rule AS rule, \
     s.until_date AS until_date, s.paused AS paused, s.not_before AS not_before, \
     (SELECT MAX(r.run_date) FROM series_runs AS r WHERE r.series_id = s.id) AS last_date, \
     s.waiting_date AS waiting_date, s.next_due_at AS next_due_at, s.created_at AS created_at";

/// A series row, before the text columns are validated.
struct RawSeries {
    id: i64,
    user_id: i64,
    chat_id: i64,
    profile_id: String,
    content: String,
    groups: String,
    first_date: String,
    at_time: String,
    rule: String,
    until_date: Option<String>,
    paused: i64,
    not_before: i64,
    last_date: Option<String>,
    waiting_date: Option<String>,
    next_due_at: Option<i64>,
    created_at: i64,
}

fn read_raw_series(r: &Row<'_>) -> rusqlite::Result<RawSeries> {
    Ok(RawSeries {
        id: r.get(0)?,
        user_id: r.get(1)?,
        chat_id: r.get(2)?,
        profile_id: r.get(3)?,
        content: r.get(4)?,
        groups: r.get(5)?,
        first_date: r.get(6)?,
        at_time: r.get(7)?,
        rule: r.get(8)?,
        until_date: r.get(9)?,
        paused: r.get(10)?,
        not_before: r.get(11)?,
        last_date: r.get(12)?,
        waiting_date: r.get(13)?,
        next_due_at: r.get(14)?,
        created_at: r.get(15)?,
    })
}

impl RawSeries {
    /// The series, or `Backend` naming the series and the column that no longer reads.
    fn into_series(self) -> Result<Series, DbError> {
        let id = self.id;
        let bad = |what: &str| DbError::Backend(format!("series {id}: {what}"));
        let date = |column: &str, text: &str| {
            NaiveDate::parse_from_str(text, DATE_FORMAT)
                .map_err(|_| bad(&format!("invalid {column}")))
        };
        let opt_date = |column: &str, text: Option<&str>| text.map(|t| date(column, t)).transpose();
        let content: Content = serde_json::from_str(&self.content).map_err(|e| {
            bad(&format!(
                "unreadable content snapshot (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let groups: Vec<String> =
            serde_json::from_str(&self.groups).map_err(|_| bad("unreadable group list"))?;
        let groups = groups
            .iter()
            .map(|g| GroupJid::parse(g).ok_or_else(|| bad("invalid group id")))
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = Schedule {
            first: date("first_date", &self.first_date)?,
            time: NaiveTime::parse_from_str(&self.at_time, TIME_FORMAT)
                .map_err(|_| bad("invalid at_time"))?,
            rule: Rule::from_code(&self.rule).ok_or_else(|| bad("unknown rule"))?,
            until: opt_date("until_date", self.until_date.as_deref())?,
        };
        Ok(Series {
            id: SeriesId(id),
            user_id: UserId(self.user_id),
            chat_id: ChatId(self.chat_id),
            profile_id: ProfileId::parse(&self.profile_id)
                .ok_or_else(|| bad("invalid profile id"))?,
            content,
            groups,
            schedule,
            paused: self.paused != 0,
            not_before: self.not_before,
            last_date: opt_date("last run date", self.last_date.as_deref())?,
            waiting_date: opt_date("waiting_date", self.waiting_date.as_deref())?,
            next_due_at: self.next_due_at,
            created_at: self.created_at,
        })
    }
}

fn query_series(
    c: &Connection,
    context: &str,
    filter: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Series>, DbError> {
    let sql = format!("SELECT {SERIES_COLUMNS} FROM series AS s {filter}");
    let mut stmt = c.prepare_cached(&sql).map_err(|e| backend(context, e))?;
    let rows = stmt
        .query_map(params, read_raw_series)
        .map_err(|e| backend(context, e))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(|e| backend(context, e))?.into_series()?);
    }
    Ok(out)
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ScheduleStore for SqliteDb {
    async fn create_series(&self, new: &NewSeries) -> Result<SeriesId, DbError> {
        let content = serde_json::to_string(&new.content)
            .map_err(|_| DbError::Backend("create_series: content cannot be serialised".into()))?;
        let groups = serde_json::to_string(&new.groups)
            .map_err(|_| DbError::Backend("create_series: groups cannot be serialised".into()))?;
        let (user, chat, profile) = (new.user_id.0, new.chat_id.0, new.profile_id.clone());
        let schedule = &new.schedule;
        let first = date_text(schedule.first);
        let time = schedule.time.format(TIME_FORMAT).to_string();
        let rule = schedule.rule.code();
        let until = schedule.until.map(date_text);
        let (next_due_at, now) = (new.next_due_at, new.now);
        self.with_conn(move |c| {
            let id: i64 = c
                .query_row(
                    "INSERT INTO series (user_id, chat_id, profile_id, content, groups, first_date,
                                         at_time, rule, until_date, paused, deleted, not_before,
                                         waiting_date, next_due_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10, NULL, ?11, ?10)
                     RETURNING id",
                    params![
                        user,
                        chat,
                        profile.as_str(),
                        content,
                        groups,
                        first,
                        time,
                        rule,
                        until,
                        now,
                        next_due_at
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| backend("create_series", e))?;
            Ok(SeriesId(id))
        })
        .await
    }

    async fn get_series(&self, id: SeriesId) -> Result<Option<Series>, DbError> {
        self.with_conn(move |c| {
            Ok(query_series(
                c,
                "get_series",
                "WHERE s.id = ?1 AND s.deleted = 0",
                &[&id.0],
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn user_series(&self, user: UserId) -> Result<Vec<Series>, DbError> {
        self.with_conn(move |c| {
            query_series(
                c,
                "user_series",
                "WHERE s.user_id = ?1 AND s.deleted = 0 AND s.next_due_at IS NOT NULL
                 ORDER BY s.id",
                &[&user.0],
            )
        })
        .await
    }

    async fn due_series(&self, before: i64, limit: u32) -> Result<Vec<Series>, DbError> {
        self.with_conn(move |c| {
            query_series(
                c,
                "due_series",
                "WHERE s.paused = 0 AND s.deleted = 0 AND s.next_due_at IS NOT NULL
                   AND s.next_due_at <= ?1
                 ORDER BY s.next_due_at, s.id LIMIT ?2",
                &[&before, &limit],
            )
        })
        .await
    }

    async fn earliest_due(&self) -> Result<Option<i64>, DbError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT MIN(next_due_at) FROM series
                  WHERE paused = 0 AND deleted = 0 AND next_due_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .map_err(|e| backend("earliest_due", e))
        })
        .await
    }

    async fn set_series_next(&self, id: SeriesId, next_due_at: Option<i64>) -> Result<(), DbError> {
        self.with_conn(move |c| {
            c.execute(
                "UPDATE series SET next_due_at = ?2 WHERE id = ?1",
                params![id.0, next_due_at],
            )
            .map_err(|e| backend("set_series_next", e))?;
            Ok(())
        })
        .await
    }

    async fn set_series_paused(
        &self,
        id: SeriesId,
        user: UserId,
        paused: bool,
        now: i64,
    ) -> Result<bool, DbError> {
        self.with_conn(move |c| {
            let n = if paused {
                c.execute(
                    "UPDATE series SET paused = 1
                      WHERE id = ?1 AND user_id = ?2 AND deleted = 0 AND paused = 0",
                    params![id.0, user.0],
                )
            } else {
                c.execute(
                    "UPDATE series SET paused = 0, not_before = ?3
                      WHERE id = ?1 AND user_id = ?2 AND deleted = 0 AND paused = 1",
                    params![id.0, user.0, now],
                )
            }
            .map_err(|e| backend("set_series_paused", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_series(&self, id: SeriesId, user: UserId) -> Result<bool, DbError> {
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "UPDATE series SET deleted = 1 WHERE id = ?1 AND user_id = ?2 AND deleted = 0",
                    params![id.0, user.0],
                )
                .map_err(|e| backend("delete_series", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_series_waiting(&self, id: SeriesId, date: NaiveDate) -> Result<bool, DbError> {
        let date = date_text(date);
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "UPDATE series SET waiting_date = ?2 WHERE id = ?1 AND waiting_date IS NOT ?2",
                    params![id.0, date],
                )
                .map_err(|e| backend("set_series_waiting", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        due_at: i64,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<bool, DbError> {
        let date = date_text(date);
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO series_runs
                            (series_id, run_date, due_at, outcome, mailing_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                    params![series.0, date, due_at, outcome.code(), now],
                )
                .map_err(|e| backend("record_run", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn start_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        due_at: i64,
        mailing: &NewMailing,
    ) -> Result<MailingId, DbError> {
        let new = mailing.clone();
        let content = mailing_content("start_run", &new)?;
        let date = date_text(date);
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("start_run", e))?;
            // The run first: a run already decided refuses the whole start. Every early
            // return below drops `tx`, which rolls everything back.
            tx.execute(
                "INSERT INTO series_runs
                        (series_id, run_date, due_at, outcome, mailing_id, created_at)
                 VALUES (?1, ?2, ?3, 'started', NULL, ?4)",
                params![series.0, date, due_at, new.now],
            )
            .map_err(|e| run_write_error("start_run", e))?;
            let id = insert_mailing(&tx, "start_run", &new, &content)?;
            tx.execute(
                "UPDATE series_runs SET mailing_id = ?3 WHERE series_id = ?1 AND run_date = ?2",
                params![series.0, date, id.0],
            )
            .map_err(|e| backend("start_run", e))?;
            tx.commit()
                .map_err(|e| mailing_write_error("start_run", e))?;
            Ok(id)
        })
        .await
    }

    async fn run_of(
        &self,
        series: SeriesId,
        date: NaiveDate,
    ) -> Result<Option<(RunOutcome, Option<MailingId>)>, DbError> {
        let date = date_text(date);
        self.with_conn(move |c| {
            let row: Option<(String, Option<i64>)> = c
                .query_row(
                    "SELECT outcome, mailing_id FROM series_runs
                      WHERE series_id = ?1 AND run_date = ?2",
                    params![series.0, date],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| backend("run_of", e))?;
            row.map(|(outcome, mailing)| {
                let outcome = RunOutcome::parse(&outcome).ok_or_else(|| {
                    DbError::Backend(format!("series {}: unknown run outcome", series.0))
                })?;
                Ok((outcome, mailing.map(MailingId)))
            })
            .transpose()
        })
        .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl UpdateLog for SqliteDb {
    async fn claim_update(
        &self,
        update_id: i64,
        payload: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<UpdateClaim, DbError> {
        let payload = payload.to_string();
        self.with_conn(move |c| {
            let taken = c
                .execute(
                    "INSERT INTO telegram_updates (update_id, received_at, payload, claimed_at)
                     VALUES (?1, ?2, ?3, ?2)
                     ON CONFLICT (update_id) DO UPDATE SET claimed_at = excluded.claimed_at
                      WHERE telegram_updates.done_at IS NULL
                        AND telegram_updates.claimed_at < ?4",
                    params![update_id, now, payload, stale_before],
                )
                .map_err(|e| backend("claim_update", e))?;
            if taken > 0 {
                return Ok(UpdateClaim::Taken);
            }
            let done: Option<i64> = c
                .query_row(
                    "SELECT done_at FROM telegram_updates WHERE update_id = ?1",
                    [update_id],
                    |r| r.get(0),
                )
                .map_err(|e| backend("claim_update", e))?;
            Ok(match done {
                Some(_) => UpdateClaim::Handled,
                None => UpdateClaim::InHand,
            })
        })
        .await
    }

    async fn finish_update(&self, update_id: i64, now: i64) -> Result<(), DbError> {
        self.with_conn(move |c| {
            c.execute(
                // The payload is only needed to take the update again: gone once handled.
                "UPDATE telegram_updates SET done_at = ?2, payload = ''
                  WHERE update_id = ?1 AND done_at IS NULL",
                params![update_id, now],
            )
            .map_err(|e| backend("finish_update", e))?;
            Ok(())
        })
        .await
    }
}

const INVOICE_COLUMNS: &str =
    "id, user_id, plan_days, amount_kopecks, status, created_at, extended_until";

fn read_image_meta(r: &Row<'_>) -> rusqlite::Result<ImageMeta> {
    Ok(ImageMeta {
        id: r.get(0)?,
        width: r.get(1)?,
        height: r.get(2)?,
        size: r.get::<_, i64>(3)?.max(0) as u64,
        tg_file_id: r.get(4)?,
    })
}

/// The columns [`read_image_meta`] reads, from `images` aliased `i`.
const IMAGE_META_COLUMNS: &str = "i.id, i.width, i.height, length(i.jpeg), i.tg_file_id";

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ImageStore for SqliteDb {
    async fn insert_image(&self, image: &NewImage<'_>) -> Result<ImageId, DbError> {
        let (user, jpeg, width, height, file_id, now) = (
            image.user_id,
            image.jpeg.to_vec(),
            image.width,
            image.height,
            image.tg_file_id.map(str::to_string),
            image.now,
        );
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO images (user_id, jpeg, width, height, tg_file_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user.0, jpeg, width, height, file_id, now],
            )
            .map_err(|e| backend("insert_image", e))?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<StoredImage>, DbError> {
        self.with_conn(move |c| {
            c.query_row(
                "SELECT id, user_id, jpeg, width, height, tg_file_id, created_at
                   FROM images WHERE id = ?1",
                [id],
                |r| {
                    Ok(StoredImage {
                        id: r.get(0)?,
                        user_id: UserId(r.get(1)?),
                        jpeg: r.get(2)?,
                        width: r.get(3)?,
                        height: r.get(4)?,
                        tg_file_id: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| backend("get_image", e))
        })
        .await
    }

    async fn photo_set(&self, user: UserId) -> Result<Vec<ImageMeta>, DbError> {
        self.with_conn(move |c| {
            let sql = format!(
                "SELECT {IMAGE_META_COLUMNS} FROM photo_sets s JOIN images i ON i.id = s.image_id
                  WHERE s.user_id = ?1 ORDER BY s.position"
            );
            let mut stmt = c
                .prepare_cached(&sql)
                .map_err(|e| backend("photo_set", e))?;
            let rows = stmt
                .query_map([user.0], read_image_meta)
                .map_err(|e| backend("photo_set", e))?;
            rows.map(|r| r.map_err(|e| backend("photo_set", e)))
                .collect()
        })
        .await
    }

    async fn add_to_photo_set(
        &self,
        user: UserId,
        image: ImageId,
        max: usize,
    ) -> Result<Option<usize>, DbError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.with_conn(move |c| {
            // One statement: the count check and the append cannot be split by another writer.
            let n = c
                .execute(
                    "INSERT INTO photo_sets (user_id, position, image_id)
                     SELECT ?1, COALESCE(MAX(position) + 1, 0), ?2 FROM photo_sets
                      WHERE user_id = ?1 HAVING COUNT(*) < ?3",
                    params![user.0, image, max],
                )
                .map_err(|e| backend("add_to_photo_set", e))?;
            if n == 0 {
                return Ok(None);
            }
            let count: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM photo_sets WHERE user_id = ?1",
                    [user.0],
                    |r| r.get(0),
                )
                .map_err(|e| backend("add_to_photo_set", e))?;
            Ok(Some(count.max(0) as usize))
        })
        .await
    }

    async fn clear_photo_set(&self, user: UserId) -> Result<(), DbError> {
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("clear_photo_set", e))?;
            tx.execute("DELETE FROM photo_sets WHERE user_id = ?1", [user.0])
                .map_err(|e| backend("clear_photo_set", e))?;
            tx.execute("DELETE FROM collages WHERE user_id = ?1", [user.0])
                .map_err(|e| backend("clear_photo_set", e))?;
            tx.commit().map_err(|e| backend("clear_photo_set", e))
        })
        .await
    }

    async fn collage(&self, user: UserId) -> Result<Option<CollageChoice>, DbError> {
        self.with_conn(move |c| {
            let sql = format!(
                "SELECT {IMAGE_META_COLUMNS}, k.confirmed FROM collages k
                   JOIN images i ON i.id = k.image_id WHERE k.user_id = ?1"
            );
            c.query_row(&sql, [user.0], |r| {
                Ok(CollageChoice {
                    image: read_image_meta(r)?,
                    confirmed: r.get::<_, i64>(5)? != 0,
                })
            })
            .optional()
            .map_err(|e| backend("collage", e))
        })
        .await
    }

    async fn set_collage(
        &self,
        user: UserId,
        collage: Option<(ImageId, bool)>,
        now: i64,
    ) -> Result<(), DbError> {
        self.with_conn(move |c| {
            match collage {
                Some((image, confirmed)) => c.execute(
                    "INSERT INTO collages (user_id, image_id, confirmed, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id) DO UPDATE
                        SET image_id = excluded.image_id, confirmed = excluded.confirmed,
                            updated_at = excluded.updated_at",
                    params![user.0, image, i64::from(confirmed), now],
                ),
                None => c.execute("DELETE FROM collages WHERE user_id = ?1", [user.0]),
            }
            .map(drop)
            .map_err(|e| backend("set_collage", e))
        })
        .await
    }

    async fn delete_images_except(&self, user: UserId, keep: &[ImageId]) -> Result<usize, DbError> {
        // `keep` travels as a JSON array (one parameter, any length; D1 has json_each too).
        let keep = serde_json::to_string(keep)
            .map_err(|_| DbError::Backend("delete_images_except: keep list".into()))?;
        self.with_conn(move |c| {
            c.execute(
                "DELETE FROM images
                  WHERE user_id = ?1
                    AND id NOT IN (SELECT value FROM json_each(?2))
                    AND id NOT IN (SELECT image_id FROM photo_sets WHERE user_id = ?1)
                    AND id NOT IN (SELECT image_id FROM collages WHERE user_id = ?1)",
                params![user.0, keep],
            )
            .map_err(|e| backend("delete_images_except", e))
        })
        .await
    }
}

fn read_invoice(r: &Row<'_>) -> rusqlite::Result<Invoice> {
    Ok(Invoice {
        id: r.get(0)?,
        user_id: UserId(r.get(1)?),
        plan_days: r.get(2)?,
        amount_kopecks: r.get(3)?,
        paid: r.get::<_, String>(4)? == "paid",
        created_at: r.get(5)?,
        extended_until: r.get(6)?,
    })
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl BillingStore for SqliteDb {
    async fn create_invoice(
        &self,
        user: UserId,
        plan_days: u32,
        amount_kopecks: i64,
        now: i64,
    ) -> Result<Invoice, DbError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO invoices (user_id, plan_days, amount_kopecks, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.0, plan_days, amount_kopecks, now],
            )
            .map_err(|e| backend("create_invoice", e))?;
            Ok(Invoice {
                id: c.last_insert_rowid(),
                user_id: user,
                plan_days,
                amount_kopecks,
                paid: false,
                created_at: now,
                extended_until: None,
            })
        })
        .await
    }

    async fn get_invoice(&self, id: i64) -> Result<Option<Invoice>, DbError> {
        self.with_conn(move |c| {
            let sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = ?1");
            c.query_row(&sql, [id], read_invoice)
                .optional()
                .map_err(|e| backend("get_invoice", e))
        })
        .await
    }

    async fn settle_invoice(
        &self,
        id: i64,
        out_sum_raw: &str,
        now: i64,
    ) -> Result<Settlement, DbError> {
        let raw = out_sum_raw.to_string();
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("settle_invoice", e))?;
            let sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = ?1");
            let invoice = tx
                .query_row(&sql, [id], read_invoice)
                .optional()
                .map_err(|e| backend("settle_invoice", e))?
                .ok_or(DbError::NotFound)?;
            if invoice.paid {
                return Ok(Settlement::AlreadyPaid { until: invoice.extended_until.unwrap_or(0) });
            }
            let current: i64 = tx
                .query_row(
                    "SELECT subscription_until FROM users WHERE id = ?1",
                    [invoice.user_id.0],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| backend("settle_invoice", e))?
                .ok_or(DbError::NotFound)?;
            let until = billing::extend(current, now / 1000, invoice.plan_days);
            tx.execute(
                "UPDATE users SET subscription_until = ?2 WHERE id = ?1",
                params![invoice.user_id.0, until],
            )
            .map_err(|e| backend("settle_invoice", e))?;
            let n = tx
                .execute(
                    "UPDATE invoices SET status = 'paid', paid_at = ?2, paid_out_sum = ?3, extended_until = ?4
                     WHERE id = ?1 AND status = 'pending'",
                    params![id, now, raw, until],
                )
                .map_err(|e| backend("settle_invoice", e))?;
            if n != 1 {
                return Err(DbError::Backend("invoice changed during settlement".into()));
            }
            tx.commit().map_err(|e| backend("settle_invoice", e))?;
            Ok(Settlement::Applied { until })
        })
        .await
    }

    async fn grant_days(&self, user: UserId, days: u32, now: i64) -> Result<i64, DbError> {
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("grant_days", e))?;
            let current: i64 = tx
                .query_row(
                    "SELECT subscription_until FROM users WHERE id = ?1",
                    [user.0],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| backend("grant_days", e))?
                .ok_or(DbError::NotFound)?;
            let until = billing::extend(current, now / 1000, days);
            tx.execute(
                "UPDATE users SET subscription_until = ?2 WHERE id = ?1",
                params![user.0, until],
            )
            .map_err(|e| backend("grant_days", e))?;
            tx.commit().map_err(|e| backend("grant_days", e))?;
            Ok(until)
        })
        .await
    }

    async fn subscriptions_ending(
        &self,
        now_secs: i64,
        window_secs: i64,
        grace_secs: i64,
    ) -> Result<Vec<(UserId, Lang, i64)>, DbError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, lang, subscription_until FROM users
                     WHERE subscription_until > 0 AND subscription_until <= ?1 AND subscription_until > ?2",
                )
                .map_err(|e| backend("subscriptions_ending", e))?;
            let rows = stmt
                .query_map(params![now_secs + window_secs, now_secs - grace_secs], |r| {
                    Ok((UserId(r.get(0)?), Lang::parse(&r.get::<_, String>(1)?), r.get(2)?))
                })
                .map_err(|e| backend("subscriptions_ending", e))?;
            rows.collect::<Result<_, _>>().map_err(|e| backend("subscriptions_ending", e))
        })
        .await
    }

    async fn record_reminder(
        &self,
        user: UserId,
        kind: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let kind = kind.to_string();
        self.with_conn(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO reminders (user_id, kind, until, sent_at) VALUES (?1, ?2, ?3, ?4)",
                    params![user.0, kind, until, now],
                )
                .map_err(|e| backend("record_reminder", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn stats(&self, now: i64) -> Result<Stats, DbError> {
        self.with_conn(move |c| {
            let secs = now / 1000;
            let day = billing::day_start(secs) * 1000;
            let month = billing::month_start(secs) * 1000;
            let one = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<i64, DbError> {
                c.query_row(sql, p, |r| r.get(0)).map_err(|e| backend("stats", e))
            };
            Ok(Stats {
                users: one("SELECT COUNT(*) FROM users", &[])? as u64,
                active_subscriptions: one("SELECT COUNT(*) FROM users WHERE subscription_until > ?1", &[&secs])? as u64,
                revenue_month_kopecks: one(
                    "SELECT COALESCE(SUM(amount_kopecks), 0) FROM invoices WHERE status = 'paid' AND paid_at >= ?1",
                    &[&month],
                )?,
                mailings_today: one("SELECT COUNT(*) FROM mailings WHERE created_at >= ?1", &[&day])? as u64,
                messages_sent_today: one(
                    "SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND updated_at >= ?1",
                    &[&day],
                )? as u64,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn jid(n: u64) -> GroupJid {
        GroupJid::parse(&format!("1203630{n:011}@g.us")).unwrap()
    }

    fn profile(s: &str) -> ProfileId {
        ProfileId::parse(s).unwrap()
    }

    fn memory() -> SqliteDb {
        let db = SqliteDb::open_in_memory().unwrap();
        db.migrate().unwrap();
        db
    }

    fn new_mailing(user: i64, prof: &str, groups: Vec<GroupJid>) -> NewMailing {
        NewMailing {
            user_id: UserId(user),
            chat_id: ChatId(user),
            profile_id: profile(prof),
            content: Content::text_only("*Sale* today"),
            groups,
            skipped: vec![],
            now: T0,
            announce_until: 0,
        }
    }

    #[tokio::test]
    async fn migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/groupcast.db");
        let db = SqliteDb::open(&path).unwrap();
        let all: Vec<String> = sorted_migrations()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(db.pending_migrations().unwrap(), all);
        assert_eq!(db.migrate().unwrap(), all);
        assert!(db.pending_migrations().unwrap().is_empty());
        assert!(db.migrate().unwrap().is_empty());
        drop(db);

        let again = SqliteDb::open(&path).unwrap();
        assert!(again.pending_migrations().unwrap().is_empty());
        assert!(again.migrate().unwrap().is_empty());
        again.ping().await.unwrap();

        let mem = SqliteDb::open_in_memory().unwrap();
        assert_eq!(mem.migrate().unwrap(), all);
        assert!(mem.migrate().unwrap().is_empty());
    }

    /// Every file of `migrations/` is embedded, so none is silently skipped.
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = sorted_migrations()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(embedded, on_disk);
    }

    #[tokio::test]
    async fn file_database_is_durable_and_in_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("g.db")).unwrap();
        assert_eq!(
            db.synchronous_mode().unwrap(),
            2,
            "synchronous must be FULL"
        );
        let mode: String = db
            .lock()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = db
            .lock()
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[tokio::test]
    async fn user_round_trip() {
        let db = memory();
        let id = UserId(42);
        assert_eq!(db.get_user(id).await.unwrap(), None);
        assert_eq!(db.count_users().await.unwrap(), 0);

        let u = db
            .ensure_user(id, Lang::En, 1_700_086_400, T0)
            .await
            .unwrap();
        let mut want = UserRecord {
            id,
            lang: Lang::En,
            wappi_token_enc: None,
            profile_id: None,
            subscription_until: 1_700_086_400,
            dialogue: String::new(),
            created_at: T0,
            pace: None,
            tz: None,
            number_since: None,
        };
        assert_eq!(u, want);
        assert!(!u.is_registered());

        // An existing row comes back unchanged.
        let again = db.ensure_user(id, Lang::Ru, 0, T0 + 5).await.unwrap();
        assert_eq!(again, want);

        db.save_credentials(id, "enc:v1:abcdef", &profile("2f099bc3-478d"))
            .await
            .unwrap();
        db.set_lang(id, Lang::Ru).await.unwrap();
        db.set_dialogue(id, r#"{"state":"awaiting_text","n":1}"#)
            .await
            .unwrap();
        db.set_subscription_until(id, 1_800_000_000).await.unwrap();
        want.wappi_token_enc = Some("enc:v1:abcdef".into());
        want.profile_id = Some(profile("2f099bc3-478d"));
        want.lang = Lang::Ru;
        want.dialogue = r#"{"state":"awaiting_text","n":1}"#.into();
        want.subscription_until = 1_800_000_000;
        let got = db.get_user(id).await.unwrap().unwrap();
        assert_eq!(got, want);
        assert!(got.is_registered());
        assert_eq!(db.count_users().await.unwrap(), 1);

        assert_eq!(
            db.set_lang(UserId(7), Lang::En).await,
            Err(DbError::NotFound)
        );
        assert_eq!(
            db.set_dialogue(UserId(7), "{}").await,
            Err(DbError::NotFound)
        );
    }

    #[tokio::test]
    async fn text_upsert() {
        let db = memory();
        let u = UserId(1);
        assert_eq!(db.get_text(u).await.unwrap(), None);
        db.set_text(u, "first", T0).await.unwrap();
        db.set_text(u, "_second_ ✓", T0 + 1).await.unwrap();
        assert_eq!(db.get_text(u).await.unwrap().as_deref(), Some("_second_ ✓"));
        assert_eq!(db.get_text(UserId(2)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn groups_keep_their_order_and_are_replaced_whole() {
        let db = memory();
        let u = UserId(1);
        assert!(db.get_groups(u).await.unwrap().is_empty());
        let list = vec![
            GroupEntry {
                jid: jid(30),
                name: Some("Flats".into()),
            },
            GroupEntry {
                jid: jid(10),
                name: None,
            },
            GroupEntry {
                jid: jid(20),
                name: Some("Cars".into()),
            },
        ];
        db.set_groups(u, &list).await.unwrap();
        assert_eq!(db.get_groups(u).await.unwrap(), list);
        db.set_groups(UserId(2), &list[..1]).await.unwrap();

        let replaced = vec![
            GroupEntry {
                jid: jid(20),
                name: None,
            },
            GroupEntry {
                jid: jid(40),
                name: None,
            },
        ];
        db.set_groups(u, &replaced).await.unwrap();
        assert_eq!(db.get_groups(u).await.unwrap(), replaced);
        assert_eq!(db.get_groups(UserId(2)).await.unwrap(), list[..1].to_vec());

        // A repeated group keeps its first place.
        let dup = vec![
            GroupEntry {
                jid: jid(1),
                name: None,
            },
            GroupEntry {
                jid: jid(2),
                name: None,
            },
            GroupEntry {
                jid: jid(1),
                name: Some("again".into()),
            },
        ];
        db.set_groups(u, &dup).await.unwrap();
        assert_eq!(db.get_groups(u).await.unwrap(), dup[..2].to_vec());

        db.set_groups(u, &[]).await.unwrap();
        assert!(db.get_groups(u).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn create_mailing_snapshots_and_makes_pending_rows() {
        let db = memory();
        let groups = vec![jid(3), jid(1), jid(2), jid(1)];
        let id = db
            .create_mailing(&new_mailing(5, "prof-a", groups))
            .await
            .unwrap();

        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            m,
            Mailing {
                id,
                user_id: UserId(5),
                chat_id: ChatId(5),
                profile_id: profile("prof-a"),
                status: MailingStatus::Running,
                content: Content::text_only("*Sale* today"),
                created_at: T0,
                finished_at: None,
                fence: 0,
                cancel_requested: false,
                progress_message_id: None,
                progress_at: 0,
                pause_reason: None,
                resumed_at: 0,
                announce_until: 0,
            }
        );
        let rows = db.deliveries(id).await.unwrap();
        let got: Vec<(GroupJid, u32, u32)> = rows
            .iter()
            .map(|r| (r.group.clone(), r.part, r.position))
            .collect();
        assert_eq!(got, vec![(jid(3), 0, 0), (jid(1), 0, 1), (jid(2), 0, 2)]);
        for r in &rows {
            assert_eq!(r.mailing_id, id);
            assert_eq!(r.state, DeliveryState::Pending);
            assert_eq!((r.attempts, r.next_attempt_at, r.updated_at), (0, 0, T0));
            assert_eq!((r.message_id.as_deref(), r.error.as_deref()), (None, None));
        }
        let counts = db.delivery_counts(id).await.unwrap();
        assert_eq!(counts, HashMap::from([(DeliveryState::Pending, 3)]));

        assert_eq!(
            db.latest_mailing(UserId(5)).await.unwrap().map(|m| m.id),
            Some(id)
        );
        assert_eq!(db.latest_mailing(UserId(6)).await.unwrap(), None);
        assert_eq!(
            db.running_mailings()
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>(),
            vec![id]
        );
        assert_eq!(db.get_mailing(MailingId(999)).await.unwrap(), None);
        assert!(db.deliveries(MailingId(999)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn one_active_mailing_per_profile() {
        let db = memory();
        let first = db
            .create_mailing(&new_mailing(1, "prof-a", vec![jid(1)]))
            .await
            .unwrap();
        assert_eq!(
            db.create_mailing(&new_mailing(2, "prof-a", vec![jid(2)]))
                .await,
            Err(DbError::AlreadyActive)
        );
        // The refused start left nothing behind.
        assert_eq!(db.latest_mailing(UserId(2)).await.unwrap(), None);

        // Another profile is independent.
        let other = db
            .create_mailing(&new_mailing(2, "prof-b", vec![jid(2)]))
            .await
            .unwrap();

        // Paused still holds the profile.
        db.set_mailing_status(
            first,
            MailingStatus::Paused,
            Some("not authorized"),
            0,
            T0 + 1,
        )
        .await
        .unwrap();
        assert_eq!(
            db.create_mailing(&new_mailing(1, "prof-a", vec![jid(1)]))
                .await,
            Err(DbError::AlreadyActive)
        );
        assert_eq!(
            db.running_mailings()
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>(),
            vec![other]
        );

        db.set_mailing_status(first, MailingStatus::Done, None, 0, T0 + 2)
            .await
            .unwrap();
        let m = db.get_mailing(first).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.finished_at, m.pause_reason),
            (MailingStatus::Done, Some(T0 + 2), None)
        );

        let second = db
            .create_mailing(&new_mailing(1, "prof-a", vec![jid(1)]))
            .await
            .unwrap();
        assert!(second.0 > other.0);
        assert_eq!(
            db.latest_mailing(UserId(1)).await.unwrap().map(|m| m.id),
            Some(second)
        );

        // Reviving the finished one would make two active: refused.
        assert_eq!(
            db.set_mailing_status(first, MailingStatus::Running, None, 0, T0 + 3)
                .await,
            Err(DbError::AlreadyActive)
        );
    }

    #[tokio::test]
    async fn fencing_refuses_stale_writers() {
        let db = memory();
        let id = db
            .create_mailing(&new_mailing(1, "prof-a", vec![jid(1), jid(2)]))
            .await
            .unwrap();
        let rows = db.deliveries(id).await.unwrap();

        db.claim_mailing(id, 5).await.unwrap();
        db.claim_mailing(id, 5).await.unwrap(); // re-claiming with the same fence is fine
        let mut sending = rows[0].clone();
        sending.state = DeliveryState::Sending;
        sending.attempts = 1;
        sending.updated_at = T0 + 10;
        db.update_delivery(&sending, 5).await.unwrap();

        assert_eq!(db.claim_mailing(id, 3).await, Err(DbError::StaleFence));
        let mut stale = rows[0].clone();
        stale.state = DeliveryState::Failed;
        stale.error = Some("stale".into());
        assert_eq!(
            db.update_delivery(&stale, 3).await,
            Err(DbError::StaleFence)
        );
        assert_eq!(
            db.set_mailing_status(id, MailingStatus::Cancelled, None, 3, T0 + 11)
                .await,
            Err(DbError::StaleFence)
        );

        // Nothing changed.
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            (m.fence, m.status, m.finished_at),
            (5, MailingStatus::Running, None)
        );
        assert_eq!(
            db.deliveries(id).await.unwrap(),
            vec![sending.clone(), rows[1].clone()]
        );

        // A newer runner takes over; the old fence is now stale too.
        db.claim_mailing(id, 7).await.unwrap();
        let mut sent = sending.clone();
        sent.state = DeliveryState::Sent;
        sent.message_id = Some("3EB0ABC".into());
        assert_eq!(db.update_delivery(&sent, 5).await, Err(DbError::StaleFence));
        db.update_delivery(&sent, 7).await.unwrap();
        assert_eq!(db.deliveries(id).await.unwrap()[0], sent);

        // Missing things are NotFound, not StaleFence.
        assert_eq!(
            db.claim_mailing(MailingId(999), 1).await,
            Err(DbError::NotFound)
        );
        let mut ghost = rows[0].clone();
        ghost.mailing_id = MailingId(999);
        assert_eq!(db.update_delivery(&ghost, 7).await, Err(DbError::NotFound));
        let mut no_row = rows[0].clone();
        no_row.group = jid(77);
        assert_eq!(db.update_delivery(&no_row, 7).await, Err(DbError::NotFound));
        assert_eq!(
            db.set_mailing_status(MailingId(999), MailingStatus::Done, None, 7, T0)
                .await,
            Err(DbError::NotFound)
        );
    }

    #[tokio::test]
    async fn delivery_update_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (id, row) = {
            let db = SqliteDb::open(&path).unwrap();
            db.migrate().unwrap();
            let id = db
                .create_mailing(&new_mailing(1, "prof-a", vec![jid(1)]))
                .await
                .unwrap();
            db.claim_mailing(id, 2).await.unwrap();
            let mut row = db.deliveries(id).await.unwrap().remove(0);
            row.state = DeliveryState::Sending;
            row.attempts = 1;
            row.next_attempt_at = T0 + 30_000;
            row.error = Some("timeout".into());
            row.updated_at = T0 + 1;
            db.update_delivery(&row, 2).await.unwrap();
            (id, row)
        };
        let db = SqliteDb::open(&path).unwrap();
        assert!(db.migrate().unwrap().is_empty());
        assert_eq!(db.deliveries(id).await.unwrap(), vec![row]);
        assert_eq!(db.get_mailing(id).await.unwrap().unwrap().fence, 2);
    }

    #[tokio::test]
    async fn cancel_resume_and_progress() {
        let db = memory();
        let id = db
            .create_mailing(&new_mailing(1, "prof-a", vec![jid(1)]))
            .await
            .unwrap();

        assert!(
            !db.resume_mailing(id, T0).await.unwrap(),
            "running is not paused"
        );
        db.set_mailing_status(
            id,
            MailingStatus::Paused,
            Some("Not authorized in whatsapp"),
            0,
            T0 + 1,
        )
        .await
        .unwrap();
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.pause_reason.as_deref(), m.finished_at),
            (
                MailingStatus::Paused,
                Some("Not authorized in whatsapp"),
                None
            )
        );
        assert!(db.resume_mailing(id, T0).await.unwrap());
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!((m.status, m.pause_reason), (MailingStatus::Running, None));

        db.set_progress(id, Some(555), T0 + 2).await.unwrap();
        db.set_progress(id, None, T0 + 3).await.unwrap();
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!((m.progress_message_id, m.progress_at), (Some(555), T0 + 3));

        assert!(!db.cancel_requested(id).await.unwrap());
        db.request_cancel(id).await.unwrap();
        assert!(db.get_mailing(id).await.unwrap().unwrap().cancel_requested);
        assert!(db.cancel_requested(id).await.unwrap());
        assert!(
            db.cancel_requested(MailingId(999)).await.unwrap(),
            "gone = cancelled"
        );
        db.set_mailing_status(id, MailingStatus::Cancelled, None, 0, T0 + 4)
            .await
            .unwrap();
        db.request_cancel(id).await.unwrap(); // any status
        assert!(!db.resume_mailing(id, T0).await.unwrap());

        assert_eq!(
            db.request_cancel(MailingId(999)).await,
            Err(DbError::NotFound)
        );
        assert_eq!(
            db.set_progress(MailingId(999), None, 0).await,
            Err(DbError::NotFound)
        );
    }

    #[tokio::test]
    async fn pruned_update_ids_are_forgotten() {
        let db = memory();
        let stale = T0 - 60_000;
        assert_eq!(
            db.claim_update(100, "{}", T0, stale).await.unwrap(),
            UpdateClaim::Taken
        );
        db.finish_update(100, T0).await.unwrap();
        assert_eq!(
            db.claim_update(99, "{}", T0 + 2, stale).await.unwrap(),
            UpdateClaim::Taken
        );
        db.finish_update(99, T0 + 2).await.unwrap();
        assert_eq!(db.prune_updates(T0 + 1).await.unwrap(), 1);
        assert_eq!(
            db.claim_update(100, "{}", T0 + 4, stale).await.unwrap(),
            UpdateClaim::Taken,
            "pruned ids are forgotten"
        );
        assert_eq!(
            db.claim_update(99, "{}", T0 + 5, stale).await.unwrap(),
            UpdateClaim::Handled
        );
    }

    #[tokio::test]
    async fn unfinished_updates_are_taken_once_stale_or_handed_back() {
        let db = memory();
        let long_ago = T0 - 60_000;
        for id in [7, 5, 6] {
            db.claim_update(id, &format!("{{\"update_id\":{id}}}"), T0, long_ago)
                .await
                .unwrap();
        }
        db.finish_update(6, T0 + 1).await.unwrap();
        // Fresh claims are left alone; a handed-back one is taken at once.
        assert!(db
            .take_unfinished_updates(T0 - 1, T0 + 2, 10)
            .await
            .unwrap()
            .is_empty());
        db.release_updates(vec![7]).await.unwrap();
        let taken = db
            .take_unfinished_updates(T0 - 1, T0 + 3, 10)
            .await
            .unwrap();
        assert_eq!(taken, vec![(7, "{\"update_id\":7}".to_string())]);
        // Taken means claimed anew: a second sweep does not take it again.
        assert!(db
            .take_unfinished_updates(T0 - 1, T0 + 4, 10)
            .await
            .unwrap()
            .is_empty());
        // Once stale, every unfinished one comes back, lowest id first; finished ones never.
        let ids: Vec<i64> = db
            .take_unfinished_updates(T0 + 10, T0 + 11, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![5, 7]);
    }

    #[test]
    fn errors_never_echo_values() {
        let db = memory();
        let conn = db.lock();
        let secret = "SECRET-TOKEN-VALUE";
        let e = conn
            .execute(
                "INSERT INTO users (id, lang, wappi_token_enc, created_at) VALUES (1, ?1, ?1, 0)",
                [secret],
            )
            .unwrap_err();
        let DbError::Backend(text) = backend("test", e) else {
            panic!("not a backend error")
        };
        assert!(text.contains("CHECK constraint failed"), "{text}");
        assert!(!text.contains(secret), "{text}");

        let e = conn
            .query_row("SELECT ?1 + 0", [i64::MAX], |r| r.get::<_, i32>(0))
            .unwrap_err();
        let DbError::Backend(text) = backend("test", e) else {
            panic!("not a backend error")
        };
        assert!(!text.contains(&i64::MAX.to_string()), "{text}");
    }
    #[tokio::test]
    async fn payments_extend_once_and_replays_change_nothing() {
        let db = SqliteDb::open_in_memory().unwrap();
        db.migrate().unwrap();
        let user = UserId(42);
        db.ensure_user(user, Lang::Ru, 0, T0).await.unwrap();
        let inv = db.create_invoice(user, 30, 49_000, T0).await.unwrap();
        let first = db.settle_invoice(inv.id, "490.000000", T0).await.unwrap();
        let until = T0 / 1000 + 30 * 86_400;
        assert_eq!(first, Settlement::Applied { until });
        for _ in 0..3 {
            assert_eq!(
                db.settle_invoice(inv.id, "490.000000", T0 + 5)
                    .await
                    .unwrap(),
                Settlement::AlreadyPaid { until }
            );
        }
        assert_eq!(
            db.get_user(user).await.unwrap().unwrap().subscription_until,
            until
        );
        // A second invoice extends from the current end, not from now.
        let inv2 = db.create_invoice(user, 30, 49_000, T0).await.unwrap();
        assert_eq!(
            db.settle_invoice(inv2.id, "490", T0).await.unwrap(),
            Settlement::Applied {
                until: until + 30 * 86_400
            }
        );
        assert_eq!(
            db.settle_invoice(9999, "1", T0).await,
            Err(DbError::NotFound)
        );
        let stats = db.stats(T0).await.unwrap();
        assert_eq!(
            (
                stats.users,
                stats.active_subscriptions,
                stats.revenue_month_kopecks
            ),
            (1, 1, 98_000)
        );
    }

    #[tokio::test]
    async fn reminders_are_recorded_once() {
        let db = SqliteDb::open_in_memory().unwrap();
        db.migrate().unwrap();
        let user = UserId(7);
        db.ensure_user(user, Lang::En, T0 / 1000 + 2 * 86_400, T0)
            .await
            .unwrap();
        let ending = db
            .subscriptions_ending(T0 / 1000, 3 * 86_400, 7 * 86_400)
            .await
            .unwrap();
        assert_eq!(ending, vec![(user, Lang::En, T0 / 1000 + 2 * 86_400)]);
        assert!(db
            .record_reminder(user, "3d", ending[0].2, T0)
            .await
            .unwrap());
        assert!(!db
            .record_reminder(user, "3d", ending[0].2, T0)
            .await
            .unwrap());
        assert!(db
            .record_reminder(user, "1d", ending[0].2, T0)
            .await
            .unwrap());
    }

    fn new_series(user: i64, prof: &str, schedule: Schedule) -> NewSeries {
        NewSeries {
            user_id: UserId(user),
            chat_id: ChatId(user),
            profile_id: profile(prof),
            content: Content::text_only("*Sale* every day"),
            groups: vec![jid(3), jid(1), jid(2)],
            schedule,
            next_due_at: Some(T0 + 60_000),
            now: T0,
        }
    }

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    /// Rows of `series_runs`, `mailings` and `deliveries`.
    fn table_counts(db: &SqliteDb) -> (i64, i64, i64) {
        let c = db.lock();
        let count = |table: &str| -> i64 {
            c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        (count("series_runs"), count("mailings"), count("deliveries"))
    }

    #[tokio::test]
    async fn series_round_trip_with_every_rule() {
        use chrono::Weekday;
        let db = memory();
        let rules = [
            Rule::Once,
            Rule::Daily,
            Rule::Weekdays,
            Rule::Weekly,
            Rule::Days(vec![Weekday::Mon]),
            Rule::Days(vec![Weekday::Tue, Weekday::Thu, Weekday::Sun]),
            Rule::EveryDays(2),
            Rule::EveryDays(366),
        ];
        for (n, rule) in rules.into_iter().enumerate() {
            let until = (n % 2 == 0).then(|| date(28));
            let schedule = Schedule {
                first: date(2),
                time: NaiveTime::from_hms_opt(23, 59, 7).unwrap(),
                rule,
                until,
            };
            let new = new_series(7, "prof-s", schedule.clone());
            let id = db.create_series(&new).await.unwrap();
            let expected = Series {
                id,
                user_id: UserId(7),
                chat_id: ChatId(7),
                profile_id: profile("prof-s"),
                content: new.content.clone(),
                groups: new.groups.clone(),
                schedule,
                paused: false,
                not_before: T0,
                last_date: None,
                waiting_date: None,
                next_due_at: Some(T0 + 60_000),
                created_at: T0,
            };
            assert_eq!(db.get_series(id).await.unwrap(), Some(expected));
        }
        // Stored as documented in the migration.
        let (first, time, until, rule): (String, String, Option<String>, String) = db
            .lock()
            .query_row(
                "SELECT first_date, at_time, until_date, rule FROM series WHERE id = 6",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (first.as_str(), time.as_str(), until, rule.as_str()),
            ("2026-03-02", "23:59:07", None, "days:tue,thu,sun")
        );
        assert_eq!(db.user_series(UserId(7)).await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn a_series_row_that_no_longer_reads_is_a_backend_error() {
        let db = memory();
        let schedule = Schedule {
            first: date(2),
            time: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            rule: Rule::Daily,
            until: None,
        };
        let id = db
            .create_series(&new_series(7, "prof-s", schedule))
            .await
            .unwrap();
        for (column, bad) in [
            ("rule", "fortnightly"),
            ("first_date", "02.03.2026"),
            ("at_time", "25:00:00"),
            ("waiting_date", "yesterday"),
        ] {
            let good = db.get_series(id).await.unwrap().unwrap();
            db.lock()
                .execute(
                    &format!("UPDATE series SET {column} = ?1 WHERE id = ?2"),
                    params![bad, id.0],
                )
                .unwrap();
            match db.get_series(id).await {
                Err(DbError::Backend(msg)) => {
                    assert!(msg.contains(&format!("series {}", id.0)), "{msg}");
                    assert!(!msg.contains(bad), "never echoes the value: {msg}");
                }
                other => panic!("{column}: {other:?}"),
            }
            assert!(matches!(
                db.user_series(UserId(7)).await,
                Err(DbError::Backend(_))
            ));
            // Put it back for the next column.
            let restore = match column {
                "rule" => good.schedule.rule.code(),
                "first_date" => date_text(good.schedule.first),
                "at_time" => "10:00:00".to_string(),
                _ => "2026-03-02".to_string(),
            };
            db.lock()
                .execute(
                    &format!("UPDATE series SET {column} = ?1 WHERE id = ?2"),
                    params![restore, id.0],
                )
                .unwrap();
            assert!(db.get_series(id).await.unwrap().is_some());
        }
        db.lock()
            .execute("INSERT INTO series_runs (series_id, run_date, due_at, outcome, created_at) VALUES (?1, 'soon', 0, 'missed', 0)", [id.0])
            .unwrap();
        assert!(matches!(db.get_series(id).await, Err(DbError::Backend(_))));
    }

    #[tokio::test]
    async fn start_run_leaves_nothing_behind_on_a_conflict() {
        let db = memory();
        let schedule = Schedule {
            first: date(2),
            time: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            rule: Rule::Daily,
            until: None,
        };
        let series = db
            .create_series(&new_series(1, "prof-a", schedule))
            .await
            .unwrap();
        let groups = vec![jid(1), jid(2), jid(1)];
        let first = db
            .start_run(
                series,
                date(2),
                T0,
                &new_mailing(1, "prof-a", groups.clone()),
            )
            .await
            .unwrap();
        assert_eq!(table_counts(&db), (1, 1, 2));
        assert_eq!(
            db.run_of(series, date(2)).await.unwrap(),
            Some((RunOutcome::Started, Some(first)))
        );

        // The run already decided: refused before the mailing, whatever the profile.
        assert_eq!(
            db.start_run(
                series,
                date(2),
                T0,
                &new_mailing(1, "prof-b", groups.clone())
            )
            .await,
            Err(DbError::RunTaken)
        );
        assert_eq!(table_counts(&db), (1, 1, 2));
        assert_eq!(
            db.start_run(
                series,
                date(2),
                T0,
                &new_mailing(1, "prof-a", groups.clone())
            )
            .await,
            Err(DbError::RunTaken),
            "both conflicts: the run's is found first"
        );
        assert_eq!(table_counts(&db), (1, 1, 2));
        assert!(db
            .record_run(series, date(3), T0, RunOutcome::Skipped, T0)
            .await
            .unwrap());
        assert_eq!(
            db.start_run(
                series,
                date(3),
                T0,
                &new_mailing(1, "prof-b", groups.clone())
            )
            .await,
            Err(DbError::RunTaken)
        );
        assert_eq!(table_counts(&db), (2, 1, 2));

        // The account's mailing still active: refused, and not even the run's record stays.
        assert_eq!(
            db.start_run(
                series,
                date(4),
                T0,
                &new_mailing(1, "prof-a", groups.clone())
            )
            .await,
            Err(DbError::AlreadyActive)
        );
        assert_eq!(table_counts(&db), (2, 1, 2));
        assert_eq!(db.run_of(series, date(4)).await.unwrap(), None);
        assert_eq!(
            db.get_series(series).await.unwrap().unwrap().last_date,
            Some(date(3))
        );

        // Once it is done, the same run starts, exactly as `create_mailing` would make it.
        db.set_mailing_status(first, MailingStatus::Done, None, 0, T0 + 1)
            .await
            .unwrap();
        let second = db
            .start_run(
                series,
                date(4),
                T0 + 5,
                &new_mailing(1, "prof-a", groups.clone()),
            )
            .await
            .unwrap();
        assert_eq!(table_counts(&db), (3, 2, 4));
        assert_eq!(
            db.run_of(series, date(4)).await.unwrap(),
            Some((RunOutcome::Started, Some(second)))
        );
        let made = db
            .create_mailing(&new_mailing(1, "prof-c", groups))
            .await
            .unwrap();
        let shape = |rows: Vec<Delivery>| -> Vec<(GroupJid, u32, u32, DeliveryState)> {
            rows.into_iter()
                .map(|d| (d.group, d.part, d.position, d.state))
                .collect()
        };
        assert_eq!(
            shape(db.deliveries(second).await.unwrap()),
            shape(db.deliveries(made).await.unwrap())
        );
        let due_at: i64 = db
            .lock()
            .query_row(
                "SELECT due_at FROM series_runs WHERE series_id = ?1 AND run_date = '2026-03-04'",
                [series.0],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(due_at, T0 + 5);
        assert_eq!(
            db.get_series(series).await.unwrap().unwrap().last_date,
            Some(date(4))
        );
    }

    #[test]
    fn run_conflicts_are_told_apart() {
        let db = memory();
        let c = db.lock();
        c.execute_batch(
            "INSERT INTO series (user_id, chat_id, profile_id, content, groups, first_date, at_time,
                                 rule, not_before, created_at)
             VALUES (1, 1, 'prof-a', '{}', '[]', '2026-03-02', '10:00:00', 'daily', 0, 0);
             INSERT INTO series_runs (series_id, run_date, due_at, outcome, created_at)
             VALUES (1, '2026-03-02', 0, 'missed', 0);
             INSERT INTO mailings (user_id, chat_id, profile_id, status, content, created_at)
             VALUES (1, 1, 'prof-a', 'running', '{}', 0);",
        )
        .unwrap();
        let run = c
            .execute(
                "INSERT INTO series_runs (series_id, run_date, due_at, outcome, created_at)
                 VALUES (1, '2026-03-02', 0, 'started', 0)",
                [],
            )
            .unwrap_err();
        assert!(is_run_taken(&run) && !is_active_conflict(&run), "{run:?}");
        let active = c
            .execute(
                "INSERT INTO mailings (user_id, chat_id, profile_id, status, content, created_at)
                 VALUES (1, 1, 'prof-a', 'running', '{}', 0)",
                [],
            )
            .unwrap_err();
        assert!(
            is_active_conflict(&active) && !is_run_taken(&active),
            "{active:?}"
        );
        let orphan = c
            .execute(
                "INSERT INTO series_runs (series_id, run_date, due_at, outcome, created_at)
                 VALUES (99, '2026-03-02', 0, 'started', 0)",
                [],
            )
            .unwrap_err();
        assert!(!is_run_taken(&orphan), "{orphan:?}");
    }

    #[test]
    fn due_series_uses_the_partial_index() {
        let db = memory();
        let c = db.lock();
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT {SERIES_COLUMNS} FROM series AS s
                  WHERE s.paused = 0 AND s.deleted = 0 AND s.next_due_at IS NOT NULL
                    AND s.next_due_at <= ?1
                  ORDER BY s.next_due_at, s.id LIMIT ?2"
            ))
            .unwrap()
            .query_map(params![T0, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("series_due")), "{plan:?}");
    }

    /// The storage contract every `Db` backend passes (the in-memory one in core included).
    #[tokio::test]
    async fn passes_the_db_contract() {
        let db = SqliteDb::open_in_memory().unwrap();
        db.migrate().unwrap();
        groupcast_core::testing::db_contract_suite(&db, "sqlite").await;
    }
}
