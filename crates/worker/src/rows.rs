//! D1 rows as they come back from a query (JSON-like objects, one field per column), and
//! their conversion into the core's types. Pure, so the mapping is tested natively; the
//! queries themselves are in `d1.rs`. Column lists here and there must agree.

use groupcast_core::model::billing::Invoice;
use groupcast_core::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use groupcast_core::model::lang::Lang;
use groupcast_core::model::ledger::{Content, Delivery, DeliveryState, Mailing, MailingStatus};
use groupcast_core::ports::{DbError, UserRecord};
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
     resumed_at";

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
