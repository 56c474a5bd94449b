//! `D1Db`: the core's storage ports on Cloudflare D1, with the same schema (`migrations/`) and
//! the same semantics as the server's `SqliteDb`.
//!
//! D1 has no interactive transactions. Where the server opens one, this adapter either sends
//! one `batch()` (D1 runs a batch as a single transaction) or relies on a conditional
//! statement: every ledger write carries `AND fence = ?`, so a runner holding a stale fence
//! changes nothing and learns it (`StaleFence`); a payment flips `pending → paid` in the same
//! batch that extends the subscription, guarded by `status = 'pending'`, so a replay is a no-op.
//! Errors become `DbError::Backend` texts built from D1's own messages, which name tables and
//! constraints, never bound values.

use crate::counts;
use crate::rows::{self, DeliveryRow, InvoiceRow, MailingRow, SeriesRow, UserRow};
use crate::test_hooks::{self, Hooks};
use chrono::NaiveDate;
use groupcast_core::model::billing::{self, DAY_SECS};
use groupcast_core::model::billing::{Invoice, Settlement, Stats};
use groupcast_core::model::ids::ImageId;
use groupcast_core::model::ids::{GroupJid, MailingId, ProfileId, SeriesId, UserId};
use groupcast_core::model::lang::Lang;
use groupcast_core::model::ledger::{Delivery, Mailing, MailingStatus, NewMailing};
use groupcast_core::ports::{
    async_trait, AuditStore, BillingStore, CollageChoice, ContentStore, DbError, GroupEntry,
    GroupSet, HistoryStore, ImageMeta, ImageStore, MailingStore, NewImage, NewSeries, PastMailing,
    RunOutcome, ScheduleStore, Series, StoredImage, UpdateClaim, UpdateLog, UserRecord, UserStore,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

/// D1 refuses statements with more than 100 bound parameters.
const MAX_PARAMS: usize = 100;

/// The D1 system of record.
pub struct D1Db {
    db: D1Database,
    /// Test fault hooks (the runner's "crash after send"); `None` in production.
    hooks: Option<Hooks>,
}

/// A bound value.
pub enum V<'a> {
    I(i64),
    S(&'a str),
    OptI(Option<i64>),
    OptS(Option<&'a str>),
    /// A BLOB (bound as an `ArrayBuffer`).
    B(&'a [u8]),
}

impl V<'_> {
    fn js(&self) -> JsValue {
        match self {
            V::I(n) => JsValue::from_f64(*n as f64),
            V::S(s) => JsValue::from_str(s),
            V::OptI(Some(n)) => JsValue::from_f64(*n as f64),
            V::OptS(Some(s)) => JsValue::from_str(s),
            V::OptI(None) | V::OptS(None) => JsValue::null(),
            V::B(bytes) => js_sys::Uint8Array::from(*bytes).buffer().into(),
        }
    }
}

fn backend(context: &str, e: worker::Error) -> DbError {
    DbError::Backend(format!("{context}: {e}"))
}

fn fence_param(fence: u64) -> Result<i64, DbError> {
    i64::try_from(fence).map_err(|_| DbError::Backend("fencing number out of range".into()))
}

#[derive(Deserialize)]
struct One<T> {
    v: T,
}

impl D1Db {
    pub fn new(db: D1Database, hooks: Option<Hooks>) -> D1Db {
        D1Db { db, hooks }
    }

    fn stmt(
        &self,
        context: &str,
        sql: &str,
        params: &[V<'_>],
    ) -> Result<D1PreparedStatement, DbError> {
        let values: Vec<JsValue> = params.iter().map(V::js).collect();
        self.db
            .prepare(sql)
            .bind(&values)
            .map_err(|e| backend(context, e))
    }

    /// All rows of a query.
    async fn all<T: DeserializeOwned>(
        &self,
        context: &str,
        sql: &str,
        params: &[V<'_>],
    ) -> Result<Vec<T>, DbError> {
        let result = self
            .stmt(context, sql, params)?
            .all()
            .await
            .map_err(|e| failed(context, 1, e))?;
        count(std::slice::from_ref(&result));
        if let Some(e) = result.error() {
            return Err(DbError::Backend(format!("{context}: {e}")));
        }
        result.results().map_err(|e| backend(context, e))
    }

    async fn first<T: DeserializeOwned>(
        &self,
        context: &str,
        sql: &str,
        params: &[V<'_>],
    ) -> Result<Option<T>, DbError> {
        Ok(self.all(context, sql, params).await?.into_iter().next())
    }

    /// One value (`SELECT … AS v`).
    async fn value<T: DeserializeOwned>(
        &self,
        context: &str,
        sql: &str,
        params: &[V<'_>],
    ) -> Result<Option<T>, DbError> {
        Ok(self
            .first::<One<T>>(context, sql, params)
            .await?
            .map(|o| o.v))
    }

    /// Runs a write; returns how many rows it changed.
    async fn run(&self, context: &str, sql: &str, params: &[V<'_>]) -> Result<usize, DbError> {
        let result = self
            .stmt(context, sql, params)?
            .run()
            .await
            .map_err(|e| failed(context, 1, e))?;
        count(std::slice::from_ref(&result));
        changes(context, &result)
    }

    /// Runs statements as one transaction.
    async fn batch(
        &self,
        context: &str,
        statements: Vec<D1PreparedStatement>,
    ) -> Result<Vec<D1Result>, DbError> {
        let n = statements.len();
        let results = self
            .db
            .batch(statements)
            .await
            .map_err(|e| failed(context, n, e))?;
        count(&results);
        Ok(results)
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.value::<i64>("ping", "SELECT 1 AS v", &[])
            .await
            .map(drop)
    }

    /// Forgets Telegram update ids received before `older_than` (unix ms). Returns how many.
    pub async fn prune_updates(&self, older_than: i64) -> Result<usize, DbError> {
        self.run(
            "prune_updates",
            "DELETE FROM telegram_updates WHERE received_at < ?1",
            &[V::I(older_than)],
        )
        .await
    }

    /// The newest progress write of any running mailing (unix ms): the runners' sign of life.
    pub async fn newest_progress(&self) -> Result<Option<i64>, DbError> {
        self.value::<Option<i64>>(
            "newest_progress",
            "SELECT MAX(progress_at) AS v FROM mailings WHERE status = 'running'",
            &[],
        )
        .await
        .map(Option::flatten)
    }

    /// Explains why a fenced write changed nothing (see the server's `fence_refusal`).
    async fn fence_refusal(
        &self,
        context: &str,
        mailing: i64,
        fence: i64,
    ) -> Result<DbError, DbError> {
        let current: Option<i64> = self
            .value(
                context,
                "SELECT fence AS v FROM mailings WHERE id = ?1",
                &[V::I(mailing)],
            )
            .await?;
        Ok(match current {
            None => DbError::NotFound,
            Some(f) if f != fence => DbError::StaleFence,
            Some(_) => DbError::NotFound,
        })
    }

    /// What `create_mailing` writes, as statements of one batch (one transaction): the
    /// mailing row, then one `pending` row per group and part of the post. The deliveries find
    /// their mailing through the profile's one active mailing (unique index), which is the row
    /// just inserted. A profile with an active mailing fails the batch on the first statement
    /// (see `mailing_write_error`).
    fn mailing_statements(
        &self,
        context: &str,
        new: &NewMailing,
    ) -> Result<Vec<D1PreparedStatement>, DbError> {
        let content = serde_json::to_string(&new.content)
            .map_err(|_| DbError::Backend(format!("{context}: content cannot be serialised")))?;
        let groups = rows::first_occurrences(&new.groups, |g| g.clone());
        let profile = new.profile_id.as_str();
        let mut statements = vec![self.stmt(
            context,
            "INSERT INTO mailings
                 (user_id, chat_id, profile_id, status, content, created_at, announce_until)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
            &[
                V::I(new.user_id.0),
                V::I(new.chat_id.0),
                V::S(profile),
                V::S(&content),
                V::I(new.now),
                V::I(new.announce_until),
            ],
        )?];
        let parts = new.content.part_numbers();
        let rows: Vec<(usize, &groupcast_core::GroupJid, u32)> = groups
            .iter()
            .enumerate()
            .flat_map(|(pos, g)| parts.iter().map(move |p| (pos, g, *p)))
            .collect();
        statements.extend(chunked_inserts(
            self,
            context,
            "INSERT INTO deliveries (mailing_id, group_jid, part, position, state, attempts,
                                     next_attempt_at, updated_at)
             SELECT m.id, v.column1, v.column2, v.column3, 'pending', 0, 0, ?2 FROM (",
            ") AS v, mailings AS m WHERE m.profile_id = ?1 AND m.status = 'running'",
            &[V::S(profile), V::I(new.now)],
            &rows,
            |_, (pos, g, part)| vec![V::S(g.as_str()), V::I(*part as i64), V::I(*pos as i64)],
        )?);
        // Groups the pre-flight check left out: born failed, with the reason.
        for (g, reason) in &new.skipped {
            statements.push(self.stmt(
                context,
                "UPDATE deliveries SET state = 'failed', error = ?3
                 WHERE group_jid = ?2 AND mailing_id =
                       (SELECT id FROM mailings WHERE profile_id = ?1 AND status = 'running')",
                &[V::S(profile), V::S(g.as_str()), V::S(reason)],
            )?);
        }
        Ok(statements)
    }

    /// The last statement of a batch that made a mailing: its id (the profile's running one).
    fn new_mailing_id_statement(
        &self,
        context: &str,
        new: &NewMailing,
    ) -> Result<D1PreparedStatement, DbError> {
        self.stmt(
            context,
            "SELECT id AS v FROM mailings WHERE profile_id = ?1 AND status = 'running'",
            &[V::S(new.profile_id.as_str())],
        )
    }

    async fn series(
        &self,
        context: &str,
        filter: &str,
        params: &[V<'_>],
    ) -> Result<Vec<Series>, DbError> {
        let sql = format!("SELECT {} FROM series AS s {filter}", rows::SERIES_COLUMNS);
        self.all::<SeriesRow>(context, &sql, params)
            .await?
            .into_iter()
            .map(Series::try_from)
            .collect()
    }

    async fn mailings(
        &self,
        context: &str,
        filter: &str,
        params: &[V<'_>],
    ) -> Result<Vec<Mailing>, DbError> {
        let sql = format!("SELECT {} FROM mailings {filter}", rows::MAILING_COLUMNS);
        self.all::<MailingRow>(context, &sql, params)
            .await?
            .into_iter()
            .map(Mailing::try_from)
            .collect()
    }
}

/// Counts one call to D1 (`crate::counts::d1`): its statements and the rows D1 reports.
pub fn count(results: &[D1Result]) {
    let (mut read, mut written) = (0, 0);
    for m in results.iter().filter_map(|r| r.meta().ok().flatten()) {
        read += m.rows_read.unwrap_or(0);
        written += m.rows_written.unwrap_or(0);
    }
    counts::d1(results.len(), read, written);
}

/// A call D1 refused (a constraint, a stale fence inside a batch…): its statements still
/// count, with no rows known.
fn failed(context: &str, statements: usize, e: worker::Error) -> DbError {
    counts::d1(statements, 0, 0);
    backend(context, e)
}

fn changes(context: &str, result: &D1Result) -> Result<usize, DbError> {
    if let Some(e) = result.error() {
        return Err(DbError::Backend(format!("{context}: {e}")));
    }
    Ok(result
        .meta()
        .map_err(|e| backend(context, e))?
        .and_then(|m| m.changes)
        .unwrap_or(0))
}

fn found(changed: usize) -> Result<(), DbError> {
    if changed == 0 {
        Err(DbError::NotFound)
    } else {
        Ok(())
    }
}

/// Like `backend`, but the one-active-mailing violation becomes `AlreadyActive`.
fn mailing_write_error(e: DbError) -> DbError {
    match e {
        DbError::Backend(msg) if rows::is_active_conflict(&msg) => DbError::AlreadyActive,
        other => other,
    }
}

/// The new mailing's id: what the batch's last statement (`new_mailing_id_statement`) read.
fn new_mailing_id(context: &str, results: &[D1Result]) -> Result<MailingId, DbError> {
    let last = results
        .last()
        .ok_or_else(|| DbError::Backend(format!("{context}: empty batch result")))?;
    let ids: Vec<One<i64>> = last.results().map_err(|e| backend(context, e))?;
    ids.first()
        .map(|o| MailingId(o.v))
        .ok_or_else(|| DbError::Backend(format!("{context}: the new mailing is missing")))
}

/// Why a `start_run` batch failed: its first statement (the run's record) violated the
/// primary key of `series_runs` (`RunTaken`), or the mailing's insert the one active mailing
/// per profile (`AlreadyActive`). Either way the batch rolled back entirely.
fn start_run_error(e: DbError) -> DbError {
    match e {
        DbError::Backend(msg) if rows::is_run_taken(&msg) => DbError::RunTaken,
        other => mailing_write_error(other),
    }
}

/// Multi-row statements of at most [`MAX_PARAMS`] parameters each (see
/// [`rows::chunked_values_sql`]): `fixed` first, then `row(global index, item)` per item.
fn chunked_inserts<'a, T>(
    db: &D1Db,
    context: &str,
    prefix: &str,
    suffix: &str,
    fixed: &[V<'a>],
    items: &'a [T],
    row: impl Fn(usize, &'a T) -> Vec<V<'a>>,
) -> Result<Vec<D1PreparedStatement>, DbError> {
    let per_row = items.first().map(|i| row(0, i).len()).unwrap_or(1);
    rows::chunked_values_sql(
        prefix,
        suffix,
        fixed.len(),
        per_row,
        items.len(),
        MAX_PARAMS,
    )
    .into_iter()
    .map(|(sql, range)| {
        let mut params: Vec<V<'a>> = fixed.iter().map(copy_v).collect();
        for i in range {
            params.extend(row(i, &items[i]));
        }
        db.stmt(context, &sql, &params)
    })
    .collect()
}

fn copy_v<'a>(v: &V<'a>) -> V<'a> {
    match v {
        V::I(n) => V::I(*n),
        V::S(s) => V::S(s),
        V::OptI(n) => V::OptI(*n),
        V::OptS(s) => V::OptS(*s),
        V::B(b) => V::B(b),
    }
}

#[async_trait(?Send)]
impl UserStore for D1Db {
    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, DbError> {
        let sql = format!("SELECT {} FROM users WHERE id = ?1", rows::USER_COLUMNS);
        Ok(self
            .first::<UserRow>("get_user", &sql, &[V::I(id.0)])
            .await?
            .map(UserRecord::from))
    }

    async fn ensure_user(
        &self,
        id: UserId,
        lang: Lang,
        subscription_until: i64,
        now: i64,
    ) -> Result<UserRecord, DbError> {
        self.run(
            "ensure_user",
            "INSERT INTO users (id, lang, subscription_until, dialogue, created_at)
             VALUES (?1, ?2, ?3, '', ?4) ON CONFLICT (id) DO NOTHING",
            &[
                V::I(id.0),
                V::S(lang.code()),
                V::I(subscription_until),
                V::I(now),
            ],
        )
        .await?;
        self.get_user(id).await?.ok_or(DbError::NotFound)
    }

    async fn save_credentials(
        &self,
        id: UserId,
        token_enc: &str,
        profile: &ProfileId,
    ) -> Result<(), DbError> {
        found(
            self.run(
                "save_credentials",
                "UPDATE users SET wappi_token_enc = ?2, profile_id = ?3 WHERE id = ?1",
                &[V::I(id.0), V::S(token_enc), V::S(profile.as_str())],
            )
            .await?,
        )
    }

    async fn set_pace(&self, id: UserId, pace: &str) -> Result<(), DbError> {
        found(
            self.run(
                "set_pace",
                "UPDATE users SET pace = ?2 WHERE id = ?1",
                &[V::I(id.0), V::S(pace)],
            )
            .await?,
        )
    }

    async fn set_tz(&self, id: UserId, tz: &str) -> Result<(), DbError> {
        found(
            self.run(
                "set_tz",
                "UPDATE users SET tz = ?2 WHERE id = ?1",
                &[V::I(id.0), V::S(tz)],
            )
            .await?,
        )
    }

    async fn set_number_since(&self, id: UserId, at: i64) -> Result<(), DbError> {
        found(
            self.run(
                "set_number_since",
                "UPDATE users SET number_since = ?2 WHERE id = ?1",
                &[V::I(id.0), V::I(at)],
            )
            .await?,
        )
    }

    async fn set_lang(&self, id: UserId, lang: Lang) -> Result<(), DbError> {
        found(
            self.run(
                "set_lang",
                "UPDATE users SET lang = ?2 WHERE id = ?1",
                &[V::I(id.0), V::S(lang.code())],
            )
            .await?,
        )
    }

    async fn set_dialogue(&self, id: UserId, dialogue: &str) -> Result<(), DbError> {
        found(
            self.run(
                "set_dialogue",
                "UPDATE users SET dialogue = ?2 WHERE id = ?1",
                &[V::I(id.0), V::S(dialogue)],
            )
            .await?,
        )
    }

    async fn set_subscription_until(&self, id: UserId, until: i64) -> Result<(), DbError> {
        found(
            self.run(
                "set_subscription_until",
                "UPDATE users SET subscription_until = ?2 WHERE id = ?1",
                &[V::I(id.0), V::I(until)],
            )
            .await?,
        )
    }

    async fn begin_preview(&self, id: UserId, digest: &str, skip: &str) -> Result<u64, DbError> {
        self.value::<i64>(
            "begin_preview",
            "UPDATE users SET preview_seq = preview_seq + 1, preview_digest = ?2, preview_skip = ?3
             WHERE id = ?1 RETURNING preview_seq AS v",
            &[V::I(id.0), V::S(digest), V::S(skip)],
        )
        .await?
        .map(|n| n as u64)
        .ok_or(DbError::NotFound)
    }

    async fn take_preview(
        &self,
        id: UserId,
        seq: u64,
        digest: &str,
    ) -> Result<Option<String>, DbError> {
        self.value::<String>(
            "take_preview",
            "UPDATE users SET preview_digest = NULL
             WHERE id = ?1 AND preview_seq = ?2 AND preview_digest = ?3
             RETURNING COALESCE(preview_skip, '') AS v",
            &[V::I(id.0), V::I(seq as i64), V::S(digest)],
        )
        .await
    }
}

#[async_trait(?Send)]
impl AuditStore for D1Db {
    async fn mailings_to_audit(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<MailingId>, DbError> {
        let rows: Vec<One<i64>> = self
            .all(
                "mailings_to_audit",
                "SELECT id AS v FROM mailings
                  WHERE audited_at IS NULL AND status IN ('done', 'cancelled')
                    AND finished_at BETWEEN ?1 AND ?2
                  ORDER BY finished_at LIMIT ?3",
                &[V::I(since), V::I(until), V::I(i64::from(limit))],
            )
            .await?;
        Ok(rows.into_iter().map(|r| MailingId(r.v)).collect())
    }

    async fn claim_audit(&self, id: MailingId, now: i64) -> Result<bool, DbError> {
        let n = self
            .run(
                "claim_audit",
                "UPDATE mailings SET audited_at = ?2 WHERE id = ?1 AND audited_at IS NULL",
                &[V::I(id.0), V::I(now)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn record_group_delivery(
        &self,
        user: UserId,
        group: &GroupJid,
        status: &str,
        delivered: bool,
        now: i64,
    ) -> Result<(), DbError> {
        self.run(
            "record_group_delivery",
            "INSERT INTO group_delivery (user_id, jid, status, misses, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id, jid) DO UPDATE SET status = ?3, updated_at = ?5,
                 misses = CASE WHEN ?4 THEN group_delivery.misses + 1 ELSE 0 END",
            &[
                V::I(user.0),
                V::S(group.as_str()),
                V::S(status),
                V::I(i64::from(!delivered)),
                V::I(now),
            ],
        )
        .await
        .map(drop)
    }

    async fn undelivering_groups(&self, user: UserId) -> Result<Vec<GroupJid>, DbError> {
        let rows: Vec<One<String>> = self
            .all(
                "undelivering_groups",
                "SELECT jid AS v FROM group_delivery WHERE user_id = ?1 AND misses > 0 ORDER BY jid",
                &[V::I(user.0)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| GroupJid::parse(&r.v))
            .collect())
    }
}

#[async_trait(?Send)]
impl HistoryStore for D1Db {
    async fn mailing_history(&self, user: UserId, limit: u32) -> Result<Vec<PastMailing>, DbError> {
        let mailings = self
            .mailings(
                "mailing_history",
                "WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2",
                &[V::I(user.0), V::I(i64::from(limit))],
            )
            .await?;
        let mut out = Vec::with_capacity(mailings.len());
        for mailing in mailings {
            let series: Option<i64> = self
                .value(
                    "mailing_history",
                    "SELECT series_id AS v FROM series_runs WHERE mailing_id = ?1
                      ORDER BY series_id LIMIT 1",
                    &[V::I(mailing.id.0)],
                )
                .await?;
            out.push(PastMailing {
                mailing,
                series: series.map(SeriesId),
            });
        }
        Ok(out)
    }

    async fn record_post_status(
        &self,
        id: MailingId,
        group: &GroupJid,
        status: &str,
    ) -> Result<(), DbError> {
        self.run(
            "record_post_status",
            "UPDATE deliveries SET delivery_status = ?3 WHERE mailing_id = ?1 AND group_jid = ?2",
            &[V::I(id.0), V::S(group.as_str()), V::S(status)],
        )
        .await
        .map(drop)
    }

    async fn post_statuses(&self, id: MailingId) -> Result<Vec<(GroupJid, String)>, DbError> {
        #[derive(Deserialize)]
        struct Status {
            g: String,
            s: String,
        }
        let rows: Vec<Status> = self
            .all(
                "post_statuses",
                "SELECT group_jid AS g, MAX(delivery_status) AS s FROM deliveries
                  WHERE mailing_id = ?1 AND delivery_status IS NOT NULL
                  GROUP BY group_jid ORDER BY MIN(position), group_jid",
                &[V::I(id.0)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| GroupJid::parse(&r.g).map(|g| (g, r.s)))
            .collect())
    }
}

#[async_trait(?Send)]
impl ContentStore for D1Db {
    async fn get_text(&self, user: UserId) -> Result<Option<String>, DbError> {
        self.value(
            "get_text",
            "SELECT body AS v FROM texts WHERE user_id = ?1",
            &[V::I(user.0)],
        )
        .await
    }

    async fn set_text(&self, user: UserId, text: &str, now: i64) -> Result<(), DbError> {
        self.run(
            "set_text",
            "INSERT INTO texts (user_id, body, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            &[V::I(user.0), V::S(text), V::I(now)],
        )
        .await
        .map(drop)
    }

    async fn get_groups(&self, user: UserId) -> Result<Vec<GroupEntry>, DbError> {
        #[derive(Deserialize)]
        struct Row {
            jid: String,
            name: Option<String>,
        }
        self.all::<Row>(
            "get_groups",
            "SELECT jid, name FROM groups WHERE user_id = ?1 ORDER BY position, jid",
            &[V::I(user.0)],
        )
        .await?
        .into_iter()
        .map(|r| {
            Ok(GroupEntry {
                jid: groupcast_core::GroupJid::parse(&r.jid)
                    .ok_or_else(|| DbError::Backend("get_groups: invalid group id".into()))?,
                name: r.name,
            })
        })
        .collect()
    }

    async fn set_groups(&self, user: UserId, groups: &[GroupEntry]) -> Result<(), DbError> {
        let groups = rows::first_occurrences(groups, |g| g.jid.clone());
        let mut statements = vec![self.stmt(
            "set_groups",
            "DELETE FROM groups WHERE user_id = ?1",
            &[V::I(user.0)],
        )?];
        statements.extend(chunked_inserts(
            self,
            "set_groups",
            "INSERT INTO groups (user_id, jid, name, position)",
            "",
            &[],
            &groups,
            |i, g| {
                vec![
                    V::I(user.0),
                    V::S(g.jid.as_str()),
                    V::OptS(g.name.as_deref()),
                    V::I(i as i64),
                ]
            },
        )?);
        self.batch("set_groups", statements).await.map(drop)
    }

    async fn save_group_set(
        &self,
        user: UserId,
        name: &str,
        groups: &[GroupEntry],
        now: i64,
    ) -> Result<(), DbError> {
        let groups = serde_json::to_string(groups)
            .map_err(|_| DbError::Backend("save_group_set: groups cannot be serialised".into()))?;
        self.run(
            "save_group_set",
            "INSERT INTO group_sets (user_id, name, groups, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, name) DO UPDATE SET groups = ?3, updated_at = ?4",
            &[V::I(user.0), V::S(name), V::S(&groups), V::I(now)],
        )
        .await
        .map(drop)
    }

    async fn group_sets(&self, user: UserId) -> Result<Vec<GroupSet>, DbError> {
        #[derive(Deserialize)]
        struct Row {
            name: String,
            groups: String,
        }
        let rows: Vec<Row> = self
            .all(
                "group_sets",
                "SELECT name, groups FROM group_sets WHERE user_id = ?1 ORDER BY name",
                &[V::I(user.0)],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let groups = serde_json::from_str(&r.groups)
                    .map_err(|_| DbError::Backend("group_sets: a set no longer reads".into()))?;
                Ok(GroupSet {
                    name: r.name,
                    groups,
                })
            })
            .collect()
    }

    async fn delete_group_set(&self, user: UserId, name: &str) -> Result<bool, DbError> {
        let n = self
            .run(
                "delete_group_set",
                "DELETE FROM group_sets WHERE user_id = ?1 AND name = ?2",
                &[V::I(user.0), V::S(name)],
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait(?Send)]
impl MailingStore for D1Db {
    async fn create_mailing(&self, new: &NewMailing) -> Result<MailingId, DbError> {
        let mut statements = self.mailing_statements("create_mailing", new)?;
        statements.push(self.new_mailing_id_statement("create_mailing", new)?);
        let results = self
            .batch("create_mailing", statements)
            .await
            .map_err(mailing_write_error)?;
        new_mailing_id("create_mailing", &results)
    }

    async fn get_mailing(&self, id: MailingId) -> Result<Option<Mailing>, DbError> {
        Ok(self
            .mailings("get_mailing", "WHERE id = ?1", &[V::I(id.0)])
            .await?
            .into_iter()
            .next())
    }

    async fn latest_mailing(&self, user: UserId) -> Result<Option<Mailing>, DbError> {
        Ok(self
            .mailings(
                "latest_mailing",
                "WHERE user_id = ?1 ORDER BY id DESC LIMIT 1",
                &[V::I(user.0)],
            )
            .await?
            .into_iter()
            .next())
    }

    async fn running_mailings(&self) -> Result<Vec<Mailing>, DbError> {
        self.mailings(
            "running_mailings",
            "WHERE status = 'running' ORDER BY id",
            &[],
        )
        .await
    }

    async fn claim_mailing(&self, id: MailingId, fence: u64) -> Result<(), DbError> {
        let fence = fence_param(fence)?;
        let n = self
            .run(
                "claim_mailing",
                "UPDATE mailings SET fence = ?2 WHERE id = ?1 AND fence <= ?2",
                &[V::I(id.0), V::I(fence)],
            )
            .await?;
        if n > 0 {
            return Ok(());
        }
        let exists: Option<i64> = self
            .value(
                "claim_mailing",
                "SELECT 1 AS v FROM mailings WHERE id = ?1",
                &[V::I(id.0)],
            )
            .await?;
        Err(if exists.is_some() {
            DbError::StaleFence
        } else {
            DbError::NotFound
        })
    }

    async fn deliveries(&self, id: MailingId) -> Result<Vec<Delivery>, DbError> {
        let sql = format!(
            "SELECT {} FROM deliveries WHERE mailing_id = ?1 ORDER BY position, part, group_jid",
            rows::DELIVERY_COLUMNS
        );
        self.all::<DeliveryRow>("deliveries", &sql, &[V::I(id.0)])
            .await?
            .into_iter()
            .map(Delivery::try_from)
            .collect()
    }

    async fn update_delivery(&self, row: &Delivery, fence: u64) -> Result<(), DbError> {
        test_hooks::before_ledger_write(self.hooks.as_ref())?;
        let fence = fence_param(fence)?;
        let n = self
            .run(
                "update_delivery",
                "UPDATE deliveries
                    SET state = ?4, attempts = ?5, next_attempt_at = ?6, message_id = ?7,
                        error = ?8, updated_at = ?9, checks = ?11, first_attempt_at = ?12
                  WHERE mailing_id = ?1 AND group_jid = ?2 AND part = ?3
                    AND EXISTS (SELECT 1 FROM mailings WHERE id = ?1 AND fence = ?10)",
                &[
                    V::I(row.mailing_id.0),
                    V::S(row.group.as_str()),
                    V::I(row.part as i64),
                    V::S(row.state.as_str()),
                    V::I(row.attempts as i64),
                    V::I(row.next_attempt_at),
                    V::OptS(row.message_id.as_deref()),
                    V::OptS(row.error.as_deref()),
                    V::I(row.updated_at),
                    V::I(fence),
                    V::I(row.checks as i64),
                    V::I(row.first_attempt_at),
                ],
            )
            .await?;
        if n > 0 {
            return Ok(());
        }
        Err(self
            .fence_refusal("update_delivery", row.mailing_id.0, fence)
            .await?)
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
        let finished_at =
            matches!(status, MailingStatus::Cancelled | MailingStatus::Done).then_some(now);
        let n = self
            .run(
                "set_mailing_status",
                "UPDATE mailings SET status = ?2, pause_reason = ?3, finished_at = ?4
                  WHERE id = ?1 AND fence = ?5",
                &[
                    V::I(id.0),
                    V::S(status.as_str()),
                    V::OptS(reason),
                    V::OptI(finished_at),
                    V::I(fence),
                ],
            )
            .await
            .map_err(mailing_write_error)?;
        if n > 0 {
            return Ok(());
        }
        Err(self
            .fence_refusal("set_mailing_status", id.0, fence)
            .await?)
    }

    async fn request_cancel(&self, id: MailingId) -> Result<(), DbError> {
        found(
            self.run(
                "request_cancel",
                "UPDATE mailings SET cancel_requested = 1 WHERE id = ?1",
                &[V::I(id.0)],
            )
            .await?,
        )
    }

    async fn cancel_requested(&self, id: MailingId) -> Result<bool, DbError> {
        let flag: Option<i64> = self
            .value(
                "cancel_requested",
                "SELECT cancel_requested AS v FROM mailings WHERE id = ?1",
                &[V::I(id.0)],
            )
            .await?;
        Ok(flag.is_none_or(|f| f != 0))
    }

    async fn pause_mailing(&self, id: MailingId, reason: &str) -> Result<bool, DbError> {
        let n = self
            .run(
                "pause_mailing",
                "UPDATE mailings SET status = 'paused', pause_reason = ?2
                  WHERE id = ?1 AND status = 'running'",
                &[V::I(id.0), V::S(reason)],
            )
            .await
            .map_err(mailing_write_error)?;
        Ok(n > 0)
    }

    async fn recent_posts(&self, profile: &ProfileId, since: i64) -> Result<Vec<i64>, DbError> {
        let rows: Vec<One<i64>> = self
            .all(
                "recent_posts",
                "SELECT MIN(d.first_attempt_at) AS v
                   FROM deliveries d JOIN mailings m ON m.id = d.mailing_id
                  WHERE m.profile_id = ?1 AND d.first_attempt_at >= ?2
                  GROUP BY d.mailing_id, d.group_jid
                  ORDER BY v",
                &[V::S(profile.as_str()), V::I(since)],
            )
            .await?;
        Ok(rows.into_iter().map(|o| o.v).collect())
    }

    async fn resume_mailing(&self, id: MailingId, now: i64) -> Result<bool, DbError> {
        let n = self
            .run(
                "resume_mailing",
                "UPDATE mailings SET status = 'running', pause_reason = NULL, resumed_at = ?2
                  WHERE id = ?1 AND status = 'paused'",
                &[V::I(id.0), V::I(now)],
            )
            .await
            .map_err(mailing_write_error)?;
        Ok(n > 0)
    }

    async fn set_progress(
        &self,
        id: MailingId,
        message_id: Option<i64>,
        at: i64,
    ) -> Result<(), DbError> {
        found(
            self.run(
                "set_progress",
                "UPDATE mailings
                    SET progress_message_id = COALESCE(?2, progress_message_id), progress_at = ?3,
                        announce_until = 0
                  WHERE id = ?1",
                &[V::I(id.0), V::OptI(message_id), V::I(at)],
            )
            .await?,
        )
    }
}

/// A date as stored ('YYYY-MM-DD', see `rows::DATE_FORMAT`).
fn date_text(date: NaiveDate) -> String {
    date.format(rows::DATE_FORMAT).to_string()
}

/// The same SQL as the server's `ScheduleStore`, statement for statement; `start_run` is one
/// batch (one transaction) where the server opens one.
#[async_trait(?Send)]
impl ScheduleStore for D1Db {
    async fn create_series(&self, new: &NewSeries) -> Result<SeriesId, DbError> {
        let content = serde_json::to_string(&new.content)
            .map_err(|_| DbError::Backend("create_series: content cannot be serialised".into()))?;
        let groups = serde_json::to_string(&new.groups)
            .map_err(|_| DbError::Backend("create_series: groups cannot be serialised".into()))?;
        let schedule = &new.schedule;
        let first = date_text(schedule.first);
        let time = schedule.time.format(rows::TIME_FORMAT).to_string();
        let rule = schedule.rule.code();
        let until = schedule.until.map(date_text);
        let id: Option<i64> = self
            .value(
                "create_series",
                "INSERT INTO series (user_id, chat_id, profile_id, content, groups, first_date,
                                     at_time, rule, until_date, paused, deleted, not_before,
                                     waiting_date, next_due_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10, NULL, ?11, ?10)
                 RETURNING id AS v",
                &[
                    V::I(new.user_id.0),
                    V::I(new.chat_id.0),
                    V::S(new.profile_id.as_str()),
                    V::S(&content),
                    V::S(&groups),
                    V::S(&first),
                    V::S(&time),
                    V::S(&rule),
                    V::OptS(until.as_deref()),
                    V::I(new.now),
                    V::OptI(new.next_due_at),
                ],
            )
            .await?;
        id.map(SeriesId)
            .ok_or_else(|| DbError::Backend("create_series: no id returned".into()))
    }

    async fn get_series(&self, id: SeriesId) -> Result<Option<Series>, DbError> {
        Ok(self
            .series(
                "get_series",
                "WHERE s.id = ?1 AND s.deleted = 0",
                &[V::I(id.0)],
            )
            .await?
            .into_iter()
            .next())
    }

    async fn user_series(&self, user: UserId) -> Result<Vec<Series>, DbError> {
        self.series(
            "user_series",
            "WHERE s.user_id = ?1 AND s.deleted = 0 AND s.next_due_at IS NOT NULL
             ORDER BY s.id",
            &[V::I(user.0)],
        )
        .await
    }

    async fn due_series(&self, before: i64, limit: u32) -> Result<Vec<Series>, DbError> {
        self.series(
            "due_series",
            "WHERE s.paused = 0 AND s.deleted = 0 AND s.next_due_at IS NOT NULL
               AND s.next_due_at <= ?1
             ORDER BY s.next_due_at, s.id LIMIT ?2",
            &[V::I(before), V::I(i64::from(limit))],
        )
        .await
    }

    async fn earliest_due(&self) -> Result<Option<i64>, DbError> {
        self.value::<Option<i64>>(
            "earliest_due",
            "SELECT MIN(next_due_at) AS v FROM series
              WHERE paused = 0 AND deleted = 0 AND next_due_at IS NOT NULL",
            &[],
        )
        .await
        .map(Option::flatten)
    }

    async fn set_series_next(&self, id: SeriesId, next_due_at: Option<i64>) -> Result<(), DbError> {
        self.run(
            "set_series_next",
            "UPDATE series SET next_due_at = ?2 WHERE id = ?1",
            &[V::I(id.0), V::OptI(next_due_at)],
        )
        .await
        .map(drop)
    }

    async fn set_series_paused(
        &self,
        id: SeriesId,
        user: UserId,
        paused: bool,
        now: i64,
    ) -> Result<bool, DbError> {
        let n = if paused {
            self.run(
                "set_series_paused",
                "UPDATE series SET paused = 1
                  WHERE id = ?1 AND user_id = ?2 AND deleted = 0 AND paused = 0",
                &[V::I(id.0), V::I(user.0)],
            )
            .await?
        } else {
            self.run(
                "set_series_paused",
                "UPDATE series SET paused = 0, not_before = ?3
                  WHERE id = ?1 AND user_id = ?2 AND deleted = 0 AND paused = 1",
                &[V::I(id.0), V::I(user.0), V::I(now)],
            )
            .await?
        };
        Ok(n > 0)
    }

    async fn delete_series(&self, id: SeriesId, user: UserId) -> Result<bool, DbError> {
        let n = self
            .run(
                "delete_series",
                "UPDATE series SET deleted = 1 WHERE id = ?1 AND user_id = ?2 AND deleted = 0",
                &[V::I(id.0), V::I(user.0)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn set_series_waiting(&self, id: SeriesId, date: NaiveDate) -> Result<bool, DbError> {
        let date = date_text(date);
        let n = self
            .run(
                "set_series_waiting",
                "UPDATE series SET waiting_date = ?2 WHERE id = ?1 AND waiting_date IS NOT ?2",
                &[V::I(id.0), V::S(&date)],
            )
            .await?;
        Ok(n > 0)
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
        let n = self
            .run(
                "record_run",
                "INSERT OR IGNORE INTO series_runs
                        (series_id, run_date, due_at, outcome, mailing_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                &[
                    V::I(series.0),
                    V::S(&date),
                    V::I(due_at),
                    V::S(outcome.code()),
                    V::I(now),
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn start_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        due_at: i64,
        mailing: &NewMailing,
    ) -> Result<MailingId, DbError> {
        let date = date_text(date);
        // One batch = one transaction, rolled back entirely when any statement fails: the
        // run's record first (a plain INSERT: a run already decided fails it), then exactly
        // `create_mailing`'s statements, then the run points at the mailing just made.
        let mut statements = vec![self.stmt(
            "start_run",
            "INSERT INTO series_runs
                    (series_id, run_date, due_at, outcome, mailing_id, created_at)
             VALUES (?1, ?2, ?3, 'started', NULL, ?4)",
            &[V::I(series.0), V::S(&date), V::I(due_at), V::I(mailing.now)],
        )?];
        statements.extend(self.mailing_statements("start_run", mailing)?);
        statements.push(self.stmt(
            "start_run",
            "UPDATE series_runs
                SET mailing_id = (SELECT id FROM mailings WHERE profile_id = ?1 AND status = 'running')
              WHERE series_id = ?2 AND run_date = ?3",
            &[
                V::S(mailing.profile_id.as_str()),
                V::I(series.0),
                V::S(&date),
            ],
        )?);
        statements.push(self.new_mailing_id_statement("start_run", mailing)?);
        let results = self
            .batch("start_run", statements)
            .await
            .map_err(start_run_error)?;
        new_mailing_id("start_run", &results)
    }

    async fn run_of(
        &self,
        series: SeriesId,
        date: NaiveDate,
    ) -> Result<Option<(RunOutcome, Option<MailingId>)>, DbError> {
        #[derive(Deserialize)]
        struct Row {
            outcome: String,
            mailing_id: Option<i64>,
        }
        let date = date_text(date);
        let row: Option<Row> = self
            .first(
                "run_of",
                "SELECT outcome, mailing_id FROM series_runs WHERE series_id = ?1 AND run_date = ?2",
                &[V::I(series.0), V::S(&date)],
            )
            .await?;
        row.map(|r| {
            let outcome = RunOutcome::parse(&r.outcome).ok_or_else(|| {
                DbError::Backend(format!("series {}: unknown run outcome", series.0))
            })?;
            Ok((outcome, r.mailing_id.map(MailingId)))
        })
        .transpose()
    }
}

#[async_trait(?Send)]
impl UpdateLog for D1Db {
    async fn claim_update(
        &self,
        update_id: i64,
        payload: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<UpdateClaim, DbError> {
        let taken = self
            .run(
                "claim_update",
                "INSERT INTO telegram_updates (update_id, received_at, payload, claimed_at)
                 VALUES (?1, ?2, ?3, ?2)
                 ON CONFLICT (update_id) DO UPDATE SET claimed_at = excluded.claimed_at
                  WHERE telegram_updates.done_at IS NULL
                    AND telegram_updates.claimed_at < ?4",
                &[
                    V::I(update_id),
                    V::I(now),
                    V::S(payload),
                    V::I(stale_before),
                ],
            )
            .await?;
        if taken > 0 {
            return Ok(UpdateClaim::Taken);
        }
        let done: Option<Option<i64>> = self
            .value(
                "claim_update",
                "SELECT done_at AS v FROM telegram_updates WHERE update_id = ?1",
                &[V::I(update_id)],
            )
            .await?;
        Ok(match done.flatten() {
            Some(_) => UpdateClaim::Handled,
            None => UpdateClaim::InHand,
        })
    }

    async fn finish_update(&self, update_id: i64, now: i64) -> Result<(), DbError> {
        self.run(
            "finish_update",
            "UPDATE telegram_updates SET done_at = ?2 WHERE update_id = ?1 AND done_at IS NULL",
            &[V::I(update_id), V::I(now)],
        )
        .await
        .map(drop)
    }
}

#[async_trait(?Send)]
impl BillingStore for D1Db {
    async fn create_invoice(
        &self,
        user: UserId,
        plan_days: u32,
        amount_kopecks: i64,
        now: i64,
    ) -> Result<Invoice, DbError> {
        let id: Option<i64> = self
            .value(
                "create_invoice",
                "INSERT INTO invoices (user_id, plan_days, amount_kopecks, created_at)
                 VALUES (?1, ?2, ?3, ?4) RETURNING id AS v",
                &[
                    V::I(user.0),
                    V::I(plan_days as i64),
                    V::I(amount_kopecks),
                    V::I(now),
                ],
            )
            .await?;
        Ok(Invoice {
            id: id.ok_or_else(|| DbError::Backend("create_invoice: no id returned".into()))?,
            user_id: user,
            plan_days,
            amount_kopecks,
            paid: false,
            created_at: now,
            extended_until: None,
        })
    }

    async fn get_invoice(&self, id: i64) -> Result<Option<Invoice>, DbError> {
        let sql = format!(
            "SELECT {} FROM invoices WHERE id = ?1",
            rows::INVOICE_COLUMNS
        );
        self.first::<InvoiceRow>("get_invoice", &sql, &[V::I(id)])
            .await?
            .map(Invoice::try_from)
            .transpose()
    }

    async fn settle_invoice(
        &self,
        id: i64,
        out_sum_raw: &str,
        now: i64,
    ) -> Result<Settlement, DbError> {
        let invoice = self.get_invoice(id).await?.ok_or(DbError::NotFound)?;
        if invoice.paid {
            return Ok(Settlement::AlreadyPaid {
                until: invoice.extended_until.unwrap_or(0),
            });
        }
        let exists: Option<i64> = self
            .value(
                "settle_invoice",
                "SELECT 1 AS v FROM users WHERE id = ?1",
                &[V::I(invoice.user_id.0)],
            )
            .await?;
        if exists.is_none() {
            return Err(DbError::NotFound);
        }
        // One transaction: extend the subscription (same rule as `billing::extend`) and flip
        // the invoice, both only while it is still pending. A concurrent replay finds it paid
        // and changes nothing.
        let now_secs = now / 1000;
        let statements = vec![
            self.stmt(
                "settle_invoice",
                "UPDATE users
                    SET subscription_until = MAX(subscription_until, ?2) + ?3
                  WHERE id = (SELECT user_id FROM invoices WHERE id = ?1 AND status = 'pending')",
                &[
                    V::I(id),
                    V::I(now_secs),
                    V::I(invoice.plan_days as i64 * DAY_SECS),
                ],
            )?,
            self.stmt(
                "settle_invoice",
                "UPDATE invoices
                    SET status = 'paid', paid_at = ?2, paid_out_sum = ?3,
                        extended_until = (SELECT subscription_until FROM users
                                           WHERE users.id = invoices.user_id)
                  WHERE id = ?1 AND status = 'pending'",
                &[V::I(id), V::I(now), V::S(out_sum_raw)],
            )?,
        ];
        let results = self.batch("settle_invoice", statements).await?;
        let flipped = results
            .get(1)
            .map(|r| changes("settle_invoice", r))
            .transpose()?
            .unwrap_or(0);
        let after = self.get_invoice(id).await?.ok_or(DbError::NotFound)?;
        let until = after.extended_until.unwrap_or(0);
        Ok(if flipped == 1 {
            Settlement::Applied { until }
        } else {
            Settlement::AlreadyPaid { until }
        })
    }

    async fn grant_days(&self, user: UserId, days: u32, now: i64) -> Result<i64, DbError> {
        let until: Option<i64> = self
            .value(
                "grant_days",
                "UPDATE users SET subscription_until = MAX(subscription_until, ?2) + ?3
                  WHERE id = ?1 RETURNING subscription_until AS v",
                &[V::I(user.0), V::I(now / 1000), V::I(days as i64 * DAY_SECS)],
            )
            .await?;
        until.ok_or(DbError::NotFound)
    }

    async fn subscriptions_ending(
        &self,
        now_secs: i64,
        window_secs: i64,
        grace_secs: i64,
    ) -> Result<Vec<(UserId, Lang, i64)>, DbError> {
        #[derive(Deserialize)]
        struct Row {
            id: i64,
            lang: String,
            subscription_until: i64,
        }
        Ok(self
            .all::<Row>(
                "subscriptions_ending",
                "SELECT id, lang, subscription_until FROM users
                  WHERE subscription_until > 0 AND subscription_until <= ?1
                    AND subscription_until > ?2",
                &[V::I(now_secs + window_secs), V::I(now_secs - grace_secs)],
            )
            .await?
            .into_iter()
            .map(|r| (UserId(r.id), Lang::parse(&r.lang), r.subscription_until))
            .collect())
    }

    async fn record_reminder(
        &self,
        user: UserId,
        kind: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let n = self
            .run(
                "record_reminder",
                "INSERT OR IGNORE INTO reminders (user_id, kind, until, sent_at) VALUES (?1, ?2, ?3, ?4)",
                &[V::I(user.0), V::S(kind), V::I(until), V::I(now)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn stats(&self, now: i64) -> Result<Stats, DbError> {
        let secs = now / 1000;
        let day = billing::day_start(secs) * 1000;
        let month = billing::month_start(secs) * 1000;
        let one = |sql: &'static str, p: i64| async move {
            self.value::<i64>("stats", sql, &[V::I(p)])
                .await
                .map(|v| v.unwrap_or(0))
        };
        Ok(Stats {
            users: one("SELECT COUNT(*) AS v FROM users WHERE ?1 = ?1", 0)
                .await?
                .max(0) as u64,
            active_subscriptions: one(
                "SELECT COUNT(*) AS v FROM users WHERE subscription_until > ?1",
                secs,
            )
            .await?
            .max(0) as u64,
            revenue_month_kopecks: one(
                "SELECT COALESCE(SUM(amount_kopecks), 0) AS v FROM invoices
                  WHERE status = 'paid' AND paid_at >= ?1",
                month,
            )
            .await?,
            mailings_today: one(
                "SELECT COUNT(*) AS v FROM mailings WHERE created_at >= ?1",
                day,
            )
            .await?
            .max(0) as u64,
            messages_sent_today: one(
                "SELECT COUNT(*) AS v FROM deliveries WHERE state = 'sent' AND updated_at >= ?1",
                day,
            )
            .await?
            .max(0) as u64,
        })
    }
}

/// The image columns of [`ImageMetaRow`], from `images` aliased `i`.
const IMAGE_META_COLUMNS: &str =
    "i.id AS id, i.width AS width, i.height AS height, length(i.jpeg) AS size, i.tg_file_id AS tg_file_id";

#[derive(Deserialize)]
struct ImageMetaRow {
    id: i64,
    width: i64,
    height: i64,
    size: i64,
    tg_file_id: Option<String>,
    #[serde(default)]
    confirmed: i64,
}

impl ImageMetaRow {
    fn meta(&self) -> ImageMeta {
        ImageMeta {
            id: self.id,
            width: self.width.max(0) as u32,
            height: self.height.max(0) as u32,
            size: self.size.max(0) as u64,
            tg_file_id: self.tg_file_id.clone(),
        }
    }
}

/// Images are BLOBs of at most about 1 MB (normalised JPEGs), under D1's 2 MB row limit. They
/// are read back as hex (a BLOB's JavaScript form differs between D1 versions; text does not).
#[async_trait(?Send)]
impl ImageStore for D1Db {
    async fn insert_image(&self, image: &NewImage<'_>) -> Result<ImageId, DbError> {
        let id: Option<i64> = self
            .value(
                "insert_image",
                "INSERT INTO images (user_id, jpeg, width, height, tg_file_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id AS v",
                &[
                    V::I(image.user_id.0),
                    V::B(image.jpeg),
                    V::I(image.width as i64),
                    V::I(image.height as i64),
                    V::OptS(image.tg_file_id),
                    V::I(image.now),
                ],
            )
            .await?;
        id.ok_or_else(|| DbError::Backend("insert_image: no id returned".into()))
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<StoredImage>, DbError> {
        #[derive(Deserialize)]
        struct Row {
            id: i64,
            user_id: i64,
            jpeg_hex: String,
            width: i64,
            height: i64,
            tg_file_id: Option<String>,
            created_at: i64,
        }
        let Some(r) = self
            .first::<Row>(
                "get_image",
                "SELECT id, user_id, hex(jpeg) AS jpeg_hex, width, height, tg_file_id, created_at
                   FROM images WHERE id = ?1",
                &[V::I(id)],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(StoredImage {
            id: r.id,
            user_id: UserId(r.user_id),
            jpeg: hex::decode(&r.jpeg_hex)
                .map_err(|_| DbError::Backend("get_image: unreadable blob".into()))?,
            width: r.width.max(0) as u32,
            height: r.height.max(0) as u32,
            tg_file_id: r.tg_file_id,
            created_at: r.created_at,
        }))
    }

    async fn photo_set(&self, user: UserId) -> Result<Vec<ImageMeta>, DbError> {
        let sql = format!(
            "SELECT {IMAGE_META_COLUMNS} FROM photo_sets s JOIN images i ON i.id = s.image_id
              WHERE s.user_id = ?1 ORDER BY s.position"
        );
        Ok(self
            .all::<ImageMetaRow>("photo_set", &sql, &[V::I(user.0)])
            .await?
            .iter()
            .map(ImageMetaRow::meta)
            .collect())
    }

    async fn add_to_photo_set(
        &self,
        user: UserId,
        image: ImageId,
        max: usize,
    ) -> Result<Option<usize>, DbError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // One statement: the count check and the append cannot be split by another writer.
        let n = self
            .run(
                "add_to_photo_set",
                "INSERT INTO photo_sets (user_id, position, image_id)
                 SELECT ?1, COALESCE(MAX(position) + 1, 0), ?2 FROM photo_sets
                  WHERE user_id = ?1 HAVING COUNT(*) < ?3",
                &[V::I(user.0), V::I(image), V::I(max)],
            )
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let count: Option<i64> = self
            .value(
                "add_to_photo_set",
                "SELECT COUNT(*) AS v FROM photo_sets WHERE user_id = ?1",
                &[V::I(user.0)],
            )
            .await?;
        Ok(Some(count.unwrap_or(0).max(0) as usize))
    }

    async fn clear_photo_set(&self, user: UserId) -> Result<(), DbError> {
        let statements = vec![
            self.stmt(
                "clear_photo_set",
                "DELETE FROM photo_sets WHERE user_id = ?1",
                &[V::I(user.0)],
            )?,
            self.stmt(
                "clear_photo_set",
                "DELETE FROM collages WHERE user_id = ?1",
                &[V::I(user.0)],
            )?,
        ];
        self.batch("clear_photo_set", statements).await.map(drop)
    }

    async fn collage(&self, user: UserId) -> Result<Option<CollageChoice>, DbError> {
        let sql = format!(
            "SELECT {IMAGE_META_COLUMNS}, k.confirmed AS confirmed FROM collages k
               JOIN images i ON i.id = k.image_id WHERE k.user_id = ?1"
        );
        Ok(self
            .first::<ImageMetaRow>("collage", &sql, &[V::I(user.0)])
            .await?
            .map(|r| CollageChoice {
                image: r.meta(),
                confirmed: r.confirmed != 0,
            }))
    }

    async fn set_collage(
        &self,
        user: UserId,
        collage: Option<(ImageId, bool)>,
        now: i64,
    ) -> Result<(), DbError> {
        match collage {
            Some((image, confirmed)) => {
                self.run(
                    "set_collage",
                    "INSERT INTO collages (user_id, image_id, confirmed, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id) DO UPDATE
                        SET image_id = excluded.image_id, confirmed = excluded.confirmed,
                            updated_at = excluded.updated_at",
                    &[
                        V::I(user.0),
                        V::I(image),
                        V::I(i64::from(confirmed)),
                        V::I(now),
                    ],
                )
                .await
            }
            None => {
                self.run(
                    "set_collage",
                    "DELETE FROM collages WHERE user_id = ?1",
                    &[V::I(user.0)],
                )
                .await
            }
        }
        .map(drop)
    }

    async fn delete_images_except(&self, user: UserId, keep: &[ImageId]) -> Result<usize, DbError> {
        // `keep` travels as a JSON array (one parameter, any length).
        let keep = serde_json::to_string(keep)
            .map_err(|_| DbError::Backend("delete_images_except: keep list".into()))?;
        self.run(
            "delete_images_except",
            "DELETE FROM images
              WHERE user_id = ?1
                AND id NOT IN (SELECT value FROM json_each(?2))
                AND id NOT IN (SELECT image_id FROM photo_sets WHERE user_id = ?1)
                AND id NOT IN (SELECT image_id FROM collages WHERE user_id = ?1)",
            &[V::I(user.0), V::S(&keep)],
        )
        .await
    }
}
