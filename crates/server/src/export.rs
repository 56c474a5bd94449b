//! `groupcast export`: a user's mailing reports as CSV, for the operator (a support request, an
//! audit). One row per ledger row (mailing, group, part), read from the SQLite file directly and
//! read-only, so it can run next to a serving process.
//!
//! Columns: `mailing_id, created, status, group_jid, group_name, part, state, attempts,
//! message_id, error, updated`; times are UTC in ISO 8601; fields are quoted per RFC 4180 when
//! they hold a comma, a quote or a line break.
//!
//! Group names are set by any admin of the WhatsApp group, and errors quote what Wappi said, so
//! a cell may start like a spreadsheet formula (`=HYPERLINK(…)`, `+…`, `-…`, `@…`): every cell
//! that starts with `=`, `+`, `-`, `@`, a tab or a CR gets a leading `'` (OWASP's advice on CSV
//! injection), so a spreadsheet shows it as text and never runs it.

use rusqlite::{Connection, OpenFlags};
use std::io::Write;
use std::path::Path;

pub const HEADER: [&str; 11] = [
    "mailing_id",
    "created",
    "status",
    "group_jid",
    "group_name",
    "part",
    "state",
    "attempts",
    "message_id",
    "error",
    "updated",
];

/// Writes the CSV of `user`'s mailings (only `mailing` if given) to `out`; returns the number
/// of data rows.
pub fn export(
    database: &Path,
    user: i64,
    mailing: Option<i64>,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("DATABASE_PATH {}: {e}", database.display()))?;
    if let Some(id) = mailing {
        let owner: Option<i64> = conn
            .query_row("SELECT user_id FROM mailings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .ok();
        match owner {
            None => anyhow::bail!("mailing {id} does not exist"),
            Some(o) if o != user => anyhow::bail!("mailing {id} belongs to user {o}, not {user}"),
            Some(_) => {}
        }
    }
    let mut stmt = conn.prepare(
        "SELECT m.id, m.created_at, m.status, d.group_jid, g.name, d.part, d.state,
                d.attempts, d.message_id, d.error, d.updated_at
         FROM mailings m
         JOIN deliveries d ON d.mailing_id = m.id
         LEFT JOIN groups g ON g.user_id = m.user_id AND g.jid = d.group_jid
         WHERE m.user_id = ?1 AND (?2 IS NULL OR m.id = ?2)
         ORDER BY m.id, d.position, d.part",
    )?;
    let rows = stmt.query_map(rusqlite::params![user, mailing], |r| {
        Ok([
            r.get::<_, i64>(0)?.to_string(),
            iso_time(r.get(1)?),
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            r.get::<_, i64>(5)?.to_string(),
            r.get::<_, String>(6)?,
            r.get::<_, i64>(7)?.to_string(),
            r.get::<_, Option<String>>(8)?.unwrap_or_default(),
            r.get::<_, Option<String>>(9)?.unwrap_or_default(),
            iso_time(r.get(10)?),
        ])
    })?;
    write_record(out, &HEADER)?;
    let mut count = 0;
    for row in rows {
        write_record(out, &row?)?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// One CSV line (CRLF-terminated, as RFC 4180 has it), every cell [`neutralise`]d.
pub fn write_record<S: AsRef<str>>(out: &mut dyn Write, fields: &[S]) -> std::io::Result<()> {
    let line: Vec<String> = fields
        .iter()
        .map(|f| quote(&neutralise(f.as_ref())))
        .collect();
    write!(out, "{}\r\n", line.join(","))
}

/// A cell a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
/// CR) with a `'` in front, so it is shown as text; any other cell as it is.
pub fn neutralise(field: &str) -> std::borrow::Cow<'_, str> {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}").into()
    } else {
        field.into()
    }
}

/// A field as CSV: quoted (with inner quotes doubled) when it holds `,` `"` CR or LF, or
/// starts or ends with a space.
pub fn quote(field: &str) -> String {
    let needs =
        field.contains([',', '"', '\r', '\n']) || field.starts_with(' ') || field.ends_with(' ');
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC); empty for 0.
pub fn iso_time(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("two\nlines"), "\"two\nlines\"");
        assert_eq!(quote(""), "");
        let mut out = Vec::new();
        write_record(&mut out, &["1", "x,y", ""]).unwrap();
        assert_eq!(out, b"1,\"x,y\",\r\n");
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in [
            "=1+2",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"http://x\",\"y\")",
        ] {
            assert_eq!(neutralise(cell), format!("'{cell}"));
        }
        for cell in ["", "plain", "1-2", " =x", "'=x", "Дом"] {
            assert_eq!(neutralise(cell), cell);
        }
        let mut out = Vec::new();
        write_record(&mut out, &["7", "=HYPERLINK(\"http://x\",\"y\")", "-"]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'-\r\n"
        );
    }

    #[test]
    fn times() {
        assert_eq!(iso_time(0), "");
        assert_eq!(iso_time(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(1_798_761_599_000), "2026-12-31T23:59:59Z");
    }
}
