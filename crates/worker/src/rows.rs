//! D1 rows as they come back from a query (JSON-like objects, one field per column), and
//! their conversion into the core's types. Pure, so the mapping is tested natively; the
//! queries themselves are in `d1.rs`. Column lists here and there must agree.

use groupcast_core::model::billing::Invoice;
use groupcast_core::model::ids::{ChatId, GroupJid, MailingId, ProfileId, SeriesId, UserId};
use groupcast_core::model::lang::Lang;
use groupcast_core::model::ledger::{Content, Delivery, DeliveryState, Mailing, MailingStatus};
use groupcast_core::model::schedule::{Rule, Schedule};
use groupcast_core::ports::{DbError, Series, UserRecord};
use serde::Deserialize;

pub const USER_COLUMNS: &str =
    "id, lang, wappi_token_enc, profile_id, subscription_until, dialogue, created_at, pace, tz, \
     number_since";

#[derive(Debug, Deserialize)]
pub struct UserRow {
    pub id: i64,
    pub lang: String,
    pub wappi_token_enc: Option<String>,
    pub profile_id: Option<String>,
    pub subscription_until: i64,
    pub dialogue: String,
    pub created_at: i64,
    #[serde(default)]
    pub pace: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub number_since: Option<i64>,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> UserRecord {
        UserRecord {
            id: UserId(r.id),
            lang: Lang::parse(&r.lang),
            wappi_token_enc: r.wappi_token_enc,
            // Only validated ids are ever stored; anything else reads as "not registered".
            profile_id: r.profile_id.as_deref().and_then(ProfileId::parse),
            subscription_until: r.subscription_until,
            dialogue: r.dialogue,
            created_at: r.created_at,
            pace: r.pace,
            tz: r.tz,
            number_since: r.number_since,
        }
    }
}

pub const MAILING_COLUMNS: &str = "id, user_id, chat_id, profile_id, status, content, created_at, \
     finished_at, fence, cancel_requested, progress_message_id, progress_at, pause_reason, \
     resumed_at, announce_until";

#[derive(Debug, Deserialize)]
pub struct MailingRow {
    pub id: i64,
    pub user_id: i64,
    pub chat_id: i64,
    pub profile_id: String,
    pub status: String,
    pub content: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub fence: i64,
    pub cancel_requested: i64,
    pub progress_message_id: Option<i64>,
    pub progress_at: i64,
    pub pause_reason: Option<String>,
    #[serde(default)]
    pub resumed_at: i64,
    #[serde(default)]
    pub announce_until: i64,
}

impl TryFrom<MailingRow> for Mailing {
    type Error = DbError;

    fn try_from(r: MailingRow) -> Result<Mailing, DbError> {
        let id = r.id;
        let bad = |what: &str| DbError::Backend(format!("mailing {id}: {what}"));
        let content: Content =
            serde_json::from_str(&r.content).map_err(|_| bad("unreadable content snapshot"))?;
        Ok(Mailing {
            id: MailingId(id),
            user_id: UserId(r.user_id),
            chat_id: ChatId(r.chat_id),
            profile_id: ProfileId::parse(&r.profile_id).ok_or_else(|| bad("invalid profile id"))?,
            status: MailingStatus::parse(&r.status).ok_or_else(|| bad("unknown status"))?,
            content,
            created_at: r.created_at,
            finished_at: r.finished_at,
            fence: u64::try_from(r.fence).map_err(|_| bad("negative fence"))?,
            cancel_requested: r.cancel_requested != 0,
            progress_message_id: r.progress_message_id,
            progress_at: r.progress_at,
            pause_reason: r.pause_reason,
            resumed_at: r.resumed_at,
            announce_until: r.announce_until,
        })
    }
}

pub const DELIVERY_COLUMNS: &str = "mailing_id, group_jid, part, position, state, attempts, \
     next_attempt_at, message_id, error, updated_at, checks, first_attempt_at";

#[derive(Debug, Deserialize)]
pub struct DeliveryRow {
    pub mailing_id: i64,
    pub group_jid: String,
    pub part: i64,
    pub position: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub message_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: i64,
    pub checks: i64,
    pub first_attempt_at: i64,
}

fn to_u32(v: i64, what: &str) -> Result<u32, DbError> {
    u32::try_from(v).map_err(|_| DbError::Backend(format!("{what} out of range")))
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = DbError;

    fn try_from(r: DeliveryRow) -> Result<Delivery, DbError> {
        Ok(Delivery {
            mailing_id: MailingId(r.mailing_id),
            group: GroupJid::parse(&r.group_jid)
                .ok_or_else(|| DbError::Backend("deliveries: invalid group id".into()))?,
            part: to_u32(r.part, "delivery part")?,
            position: to_u32(r.position, "delivery position")?,
            state: DeliveryState::parse(&r.state)
                .ok_or_else(|| DbError::Backend("deliveries: unknown state".into()))?,
            attempts: to_u32(r.attempts, "delivery attempts")?,
            checks: to_u32(r.checks, "delivery checks")?,
            first_attempt_at: r.first_attempt_at,
            next_attempt_at: r.next_attempt_at,
            message_id: r.message_id,
            error: r.error,
            updated_at: r.updated_at,
        })
    }
}

pub const INVOICE_COLUMNS: &str =
    "id, user_id, plan_days, amount_kopecks, status, created_at, extended_until";

#[derive(Debug, Deserialize)]
pub struct InvoiceRow {
    pub id: i64,
    pub user_id: i64,
    pub plan_days: i64,
    pub amount_kopecks: i64,
    pub status: String,
    pub created_at: i64,
    pub extended_until: Option<i64>,
}

impl TryFrom<InvoiceRow> for Invoice {
    type Error = DbError;

    fn try_from(r: InvoiceRow) -> Result<Invoice, DbError> {
        Ok(Invoice {
            id: r.id,
            user_id: UserId(r.user_id),
            plan_days: to_u32(r.plan_days, "invoice plan_days")?,
            amount_kopecks: r.amount_kopecks,
            paid: r.status == "paid",
            created_at: r.created_at,
            extended_until: r.extended_until,
        })
    }
}

/// Dates are stored as 'YYYY-MM-DD' (so that they sort as text), times as 'HH:MM:SS' (the
/// server's formats).
pub const DATE_FORMAT: &str = "%Y-%m-%d";
pub const TIME_FORMAT: &str = "%H:%M:%S";

/// A series row with its derived `last_date` (the newest decided run). The same list as the
/// server's `SERIES_COLUMNS`; every column is named with `AS` so D1's keys are fixed.
pub const SERIES_COLUMNS: &str = "s.id AS id, s.user_id AS user_id, s.chat_id AS chat_id, \
     s.profile_id AS profile_id, s.content AS content, s.groups AS groups, \
     s.first_date AS first_date, s.at_time AS at_time, s.rule AS rule, \
     s.until_date AS until_date, s.paused AS paused, s.not_before AS not_before, \
     (SELECT MAX(r.run_date) FROM series_runs AS r WHERE r.series_id = s.id) AS last_date, \
     s.waiting_date AS waiting_date, s.next_due_at AS next_due_at, s.created_at AS created_at";

#[derive(Debug, Deserialize)]
pub struct SeriesRow {
    pub id: i64,
    pub user_id: i64,
    pub chat_id: i64,
    pub profile_id: String,
    pub content: String,
    pub groups: String,
    pub first_date: String,
    pub at_time: String,
    pub rule: String,
    #[serde(default)]
    pub until_date: Option<String>,
    pub paused: i64,
    pub not_before: i64,
    #[serde(default)]
    pub last_date: Option<String>,
    #[serde(default)]
    pub waiting_date: Option<String>,
    #[serde(default)]
    pub next_due_at: Option<i64>,
    pub created_at: i64,
}

/// A stored date or time column (`FromStr` of chrono's `NaiveDate` reads exactly
/// 'YYYY-MM-DD', of `NaiveTime` 'HH:MM:SS'), or `Backend` naming the series and the column.
fn parse_column<T: std::str::FromStr>(series: i64, column: &str, text: &str) -> Result<T, DbError> {
    text.parse()
        .map_err(|_| DbError::Backend(format!("series {series}: invalid {column}")))
}

fn parse_opt_column<T: std::str::FromStr>(
    series: i64,
    column: &str,
    text: Option<&str>,
) -> Result<Option<T>, DbError> {
    text.map(|t| parse_column(series, column, t)).transpose()
}

impl TryFrom<SeriesRow> for Series {
    type Error = DbError;

    fn try_from(r: SeriesRow) -> Result<Series, DbError> {
        let id = r.id;
        let bad = |what: &str| DbError::Backend(format!("series {id}: {what}"));
        let content: Content =
            serde_json::from_str(&r.content).map_err(|_| bad("unreadable content snapshot"))?;
        let groups: Vec<String> =
            serde_json::from_str(&r.groups).map_err(|_| bad("unreadable group list"))?;
        let groups = groups
            .iter()
            .map(|g| GroupJid::parse(g).ok_or_else(|| bad("invalid group id")))
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = Schedule {
            first: parse_column(id, "first_date", &r.first_date)?,
            time: parse_column(id, "at_time", &r.at_time)?,
            rule: Rule::from_code(&r.rule).ok_or_else(|| bad("unknown rule"))?,
            until: parse_opt_column(id, "until_date", r.until_date.as_deref())?,
        };
        Ok(Series {
            id: SeriesId(id),
            user_id: UserId(r.user_id),
            chat_id: ChatId(r.chat_id),
            profile_id: ProfileId::parse(&r.profile_id).ok_or_else(|| bad("invalid profile id"))?,
            content,
            groups,
            schedule,
            paused: r.paused != 0,
            not_before: r.not_before,
            last_date: parse_opt_column(id, "last run date", r.last_date.as_deref())?,
            waiting_date: parse_opt_column(id, "waiting_date", r.waiting_date.as_deref())?,
            next_due_at: r.next_due_at,
            created_at: r.created_at,
        })
    }
}

/// True when a D1 error text is the primary-key violation of `series_runs` (SQLite reports
/// it as `UNIQUE constraint failed: series_runs.series_id, series_runs.run_date`): the run of
/// that (series, date) was already decided.
pub fn is_run_taken(message: &str) -> bool {
    message.contains("series_runs.series_id")
        && (message.contains("UNIQUE constraint failed") || message.contains("PRIMARY KEY"))
}

/// Keeps the first occurrence of every item, in order (a group listed twice still gets one
/// row, and positions stay dense: the same rule as the server's `ON CONFLICT DO NOTHING`).
pub fn first_occurrences<T: Clone, K: Eq + std::hash::Hash>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter(|i| seen.insert(key(i)))
        .cloned()
        .collect()
}

/// True when a D1 error text is the UNIQUE violation of `mailings_one_active_per_profile`.
pub fn is_active_conflict(message: &str) -> bool {
    message.contains("UNIQUE constraint failed") && message.contains("mailings.profile_id")
}

/// Multi-row statements under a bound-parameter cap: `fixed` parameters (`?1..?fixed`) come
/// first, then `per_row` per item. Returns, per statement, its SQL
/// (`{prefix} VALUES (?a, ?b), (…) {suffix}`) and the range of items it carries.
pub fn chunked_values_sql(
    prefix: &str,
    suffix: &str,
    fixed: usize,
    per_row: usize,
    items: usize,
    max_params: usize,
) -> Vec<(String, std::ops::Range<usize>)> {
    let per_row = per_row.max(1);
    let rows_per_stmt = (max_params.saturating_sub(fixed) / per_row).max(1);
    (0..items)
        .step_by(rows_per_stmt)
        .map(|start| {
            let end = (start + rows_per_stmt).min(items);
            let tuples: Vec<String> = (0..end - start)
                .map(|row| {
                    let first = fixed + row * per_row + 1;
                    let marks: Vec<String> =
                        (first..first + per_row).map(|k| format!("?{k}")).collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            let sql = format!("{prefix} VALUES {} {suffix}", tuples.join(", "));
            (sql.trim_end().to_string(), start..end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mailing_row_maps() {
        let row: MailingRow = serde_json::from_value(json!({
            "id": 7, "user_id": 1, "chat_id": 1, "profile_id": "prof-1", "status": "running",
            "content": "{\"text\":\"hi\"}", "created_at": 5, "finished_at": null, "fence": 3,
            "cancel_requested": 1, "progress_message_id": null, "progress_at": 0,
            "pause_reason": null
        }))
        .unwrap();
        let m = Mailing::try_from(row).unwrap();
        assert_eq!(m.id, MailingId(7));
        assert_eq!(m.status, MailingStatus::Running);
        assert_eq!(m.content.text, "hi");
        assert_eq!(m.fence, 3);
        assert!(m.cancel_requested);
    }

    #[test]
    fn bad_rows_are_backend_errors() {
        let row: MailingRow = serde_json::from_value(json!({
            "id": 7, "user_id": 1, "chat_id": 1, "profile_id": "prof-1", "status": "weird",
            "content": "{}", "created_at": 5, "finished_at": null, "fence": 3,
            "cancel_requested": 0, "progress_message_id": null, "progress_at": 0,
            "pause_reason": null
        }))
        .unwrap();
        assert!(matches!(Mailing::try_from(row), Err(DbError::Backend(_))));
        let row: DeliveryRow = serde_json::from_value(json!({
            "mailing_id": 1, "group_jid": "not a jid", "part": 0, "position": 0,
            "state": "pending", "attempts": 0, "next_attempt_at": 0, "message_id": null,
            "error": null, "updated_at": 0, "checks": 0, "first_attempt_at": 0
        }))
        .unwrap();
        assert!(Delivery::try_from(row).is_err());
    }

    #[test]
    fn user_and_invoice_rows() {
        let u: UserRow = serde_json::from_value(json!({
            "id": 9, "lang": "en", "wappi_token_enc": null, "profile_id": "bad id!",
            "subscription_until": 0, "dialogue": "", "created_at": 1
        }))
        .unwrap();
        let u = UserRecord::from(u);
        assert_eq!(u.lang, Lang::En);
        assert_eq!(u.profile_id, None);
        let i: InvoiceRow = serde_json::from_value(json!({
            "id": 3, "user_id": 9, "plan_days": 30, "amount_kopecks": 49000,
            "status": "paid", "created_at": 1, "extended_until": 99
        }))
        .unwrap();
        let i = Invoice::try_from(i).unwrap();
        assert!(i.paid);
        assert_eq!(i.extended_until, Some(99));
    }

    #[test]
    fn dedup_and_conflicts() {
        assert_eq!(first_occurrences(&[1, 2, 1, 3, 2], |x| *x), vec![1, 2, 3]);
        assert!(is_active_conflict(
            "D1_ERROR: UNIQUE constraint failed: mailings.profile_id: SQLITE_CONSTRAINT"
        ));
        assert!(!is_active_conflict("UNIQUE constraint failed: groups.jid"));
    }

    fn series_json() -> serde_json::Value {
        json!({
            "id": 4, "user_id": 1, "chat_id": 2, "profile_id": "prof-1",
            "content": "{\"text\":\"hi\"}",
            "groups": "[\"120363000000000002@g.us\",\"120363000000000001@g.us\"]",
            "first_date": "2026-03-02", "at_time": "10:00:30", "rule": "days:mon,fri",
            "until_date": null, "paused": 1, "not_before": 5, "last_date": "2026-03-06",
            "waiting_date": null, "next_due_at": null, "created_at": 5
        })
    }

    #[test]
    fn series_row_maps() {
        use groupcast_core::model::schedule::Rule;
        let row: SeriesRow = serde_json::from_value(series_json()).unwrap();
        let s = Series::try_from(row).unwrap();
        assert_eq!(s.id, SeriesId(4));
        assert_eq!(s.chat_id, ChatId(2));
        assert_eq!(s.content.text, "hi");
        assert_eq!(
            s.groups,
            vec![
                GroupJid::parse("120363000000000002@g.us").unwrap(),
                GroupJid::parse("120363000000000001@g.us").unwrap()
            ]
        );
        assert_eq!(s.schedule.first.to_string(), "2026-03-02");
        assert_eq!(s.schedule.time.to_string(), "10:00:30");
        assert_eq!(s.schedule.rule.code(), "days:mon,fri");
        assert!(matches!(s.schedule.rule, Rule::Days(_)));
        assert_eq!(s.schedule.until, None);
        assert!(s.paused);
        assert_eq!(
            s.last_date.map(|d| d.to_string()).as_deref(),
            Some("2026-03-06")
        );
        assert_eq!((s.waiting_date, s.next_due_at), (None, None));
        let mut until = series_json();
        until["until_date"] = json!("2026-12-31");
        let s = Series::try_from(serde_json::from_value::<SeriesRow>(until).unwrap()).unwrap();
        assert_eq!(
            s.schedule.until.map(|d| d.to_string()).as_deref(),
            Some("2026-12-31")
        );
    }

    #[test]
    fn series_rows_that_no_longer_read_are_backend_errors() {
        for (column, bad) in [
            ("rule", json!("fortnightly")),
            ("first_date", json!("02.03.2026")),
            ("at_time", json!("25:00:00")),
            ("until_date", json!("never")),
            ("last_date", json!("soon")),
            ("groups", json!("[\"not a jid\"]")),
            ("content", json!("{")),
        ] {
            let mut v = series_json();
            v[column] = bad;
            let row: SeriesRow = serde_json::from_value(v).unwrap();
            match Series::try_from(row) {
                Err(DbError::Backend(msg)) => assert!(msg.starts_with("series 4: "), "{msg}"),
                other => panic!("{column}: {other:?}"),
            }
        }
    }

    #[test]
    fn run_outcomes_and_run_conflicts() {
        use groupcast_core::ports::RunOutcome;
        for o in [
            RunOutcome::Started,
            RunOutcome::Skipped,
            RunOutcome::Missed,
            RunOutcome::NoSubscription,
        ] {
            assert_eq!(RunOutcome::parse(o.code()), Some(o));
        }
        assert_eq!(RunOutcome::parse("done"), None);
        let taken = "D1_ERROR: UNIQUE constraint failed: series_runs.series_id, \
                     series_runs.run_date: SQLITE_CONSTRAINT";
        assert!(is_run_taken(taken));
        assert!(!is_active_conflict(taken));
        let active = "D1_ERROR: UNIQUE constraint failed: mailings.profile_id: SQLITE_CONSTRAINT";
        assert!(is_active_conflict(active));
        assert!(!is_run_taken(active));
        assert!(!is_run_taken(
            "D1_ERROR: FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"
        ));
    }

    #[test]
    fn chunked_statements_stay_under_the_cap() {
        let chunks = chunked_values_sql("INSERT INTO t (a, b, c)", "", 2, 3, 70, 100);
        // (100 - 2) / 3 = 32 rows per statement: 32 + 32 + 6.
        let ranges: Vec<_> = chunks.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(ranges, vec![0..32, 32..64, 64..70]);
        let (sql, _) = &chunks[2];
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c) VALUES (?3, ?4, ?5), (?6, ?7, ?8), (?9, ?10, ?11), \
             (?12, ?13, ?14), (?15, ?16, ?17), (?18, ?19, ?20)"
        );
        let (sql, _) = &chunks[0];
        assert!(sql.ends_with("(?96, ?97, ?98)"), "{sql}");
        assert!(chunked_values_sql("x", "", 0, 2, 0, 100).is_empty());
    }
}
