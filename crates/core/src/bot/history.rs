//! `/history`: the user's last mailings (newest first) with their counts and, for a run of a
//! schedule, its series; under them a 📄 button per mailing that sends that mailing's CSV as a
//! Telegram document: one line per group with its name, id, state, the time of its last change
//! (in the user's zone), the reason of a failure and what the delivery audit read back.
//!
//! Only the user's own mailings are listed or exported. The CSV is written by the `csv` crate
//! (RFC 4180 quoting, CRLF line ends, a UTF-8 byte order mark so that spreadsheet programs read
//! Cyrillic right), and every cell that a spreadsheet would run as a formula is neutralised.

use crate::bot::ctx::{BotError, Ctx};
use crate::model::ids::{GroupJid, MailingId};
use crate::model::lang::Lang;
use crate::model::ledger::{group_outcomes, Delivery, Tally};
use crate::ports::GroupEntry;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts::history;
use chrono::TimeZone;
use chrono_tz::Tz;
use std::borrow::Cow;

/// How many mailings `/history` lists.
pub const LISTED: u32 = 10;

/// 📄 buttons per keyboard row.
const BUTTONS_PER_ROW: usize = 2;

impl Ctx<'_> {
    /// `/history`: one message listing the last mailings, with a 📄 button for each.
    pub(super) async fn history(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let past = self.svc.db.mailing_history(self.user.id, LISTED).await?;
        if past.is_empty() {
            self.say(&history::empty(l)).await?;
            return Ok(());
        }
        let tz = self.zone();
        let mut whens = Vec::with_capacity(past.len());
        let mut tallies = Vec::with_capacity(past.len());
        for p in &past {
            whens.push(crate::texts::schedule::moment(p.mailing.created_at, tz));
            tallies.push(Tally::of(&self.svc.db.deliveries(p.mailing.id).await?));
        }
        let entries: Vec<history::Entry<'_>> = past
            .iter()
            .zip(&whens)
            .zip(&tallies)
            .map(|((p, when), tally)| history::Entry {
                id: p.mailing.id.0,
                when,
                status: p.mailing.status,
                text: &p.mailing.content.text,
                tally: *tally,
                series: p.series.map(|s| s.0),
                follow_up: p.mailing.content.follow_up,
            })
            .collect();
        let buttons: Vec<(String, String)> = past
            .iter()
            .map(|p| {
                let id = p.mailing.id.0;
                (history::csv_button(id), Callback::HistoryCsv(id).data())
            })
            .collect();
        let keyboard = InlineKeyboardMarkup::rows(
            buttons
                .chunks(BUTTONS_PER_ROW)
                .map(|row| {
                    row.iter()
                        .map(|(label, data)| (label.as_str(), data.clone()))
                        .collect()
                })
                .collect(),
        );
        self.say_with(&history::list(l, &entries), ReplyMarkup::Inline(keyboard))
            .await?;
        Ok(())
    }

    /// 📄 under `/history`: the mailing's CSV as a document, if the mailing is the user's.
    pub(super) async fn history_csv(&mut self, id: MailingId) -> Result<(), BotError> {
        let l = self.lang();
        let mailing = self.svc.db.get_mailing(id).await?;
        if mailing.is_none_or(|m| m.user_id != self.user.id) {
            self.say(&history::gone(l)).await?;
            return Ok(());
        }
        let rows = self.svc.db.deliveries(id).await?;
        let names = self.svc.db.get_groups(self.user.id).await?;
        let statuses = self.svc.db.post_statuses(id).await?;
        let csv = mailing_csv(l, self.zone(), &rows, &names, &statuses);
        let caption = history::csv_caption(l, id.0, &Tally::of(&rows));
        self.svc
            .telegram
            .send_document(
                self.chat,
                &history::csv_file_name(id.0),
                &csv,
                Some(&caption),
            )
            .await?;
        tracing::info!(
            user = self.user.id.0,
            mailing = id.0,
            bytes = csv.len(),
            "history csv sent"
        );
        Ok(())
    }
}

/// The CSV of a mailing: a header row, then one row per group in the mailing's order with the
/// group's name (from the user's list; empty when unknown), id, state (the ledger's word:
/// `sent`, `failed`, `in_doubt`, `pending`), the time of its last change in `tz`
/// (`YYYY-MM-DDTHH:MM:SS+HH:MM`), the reason (of a failed or in-doubt group) and what the
/// delivery audit read back (empty when not audited).
pub fn mailing_csv(
    l: Lang,
    tz: Tz,
    rows: &[Delivery],
    names: &[GroupEntry],
    statuses: &[(GroupJid, String)],
) -> Vec<u8> {
    let bom = "\u{feff}".as_bytes().to_vec();
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(bom);
    let mut records: Vec<[String; 6]> = vec![history::csv_header(l).map(str::to_string)];
    for g in group_outcomes(rows) {
        let jid = &g.row.group;
        let name = names
            .iter()
            .find(|e| &e.jid == jid)
            .and_then(|e| e.name.clone())
            .unwrap_or_default();
        let changed = rows
            .iter()
            .filter(|r| &r.group == jid)
            .map(|r| r.updated_at)
            .max()
            .unwrap_or(g.row.updated_at);
        let status = statuses
            .iter()
            .find(|(s, _)| s == jid)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        records.push([
            name,
            jid.as_str().to_string(),
            g.state.as_str().to_string(),
            iso_time(changed, tz),
            g.row.error.clone().unwrap_or_default(),
            status,
        ]);
    }
    for record in &records {
        if let Err(e) = w.write_record(record.iter().map(|c| neutralise(c).into_owned())) {
            tracing::warn!(error = %e, "csv row not written");
        }
    }
    w.into_inner().unwrap_or_else(|e| {
        tracing::warn!(error = %e.error(), "csv not finished");
        Vec::new()
    })
}

/// A cell a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading apostrophe, so it shows as text and never runs (CSV
/// injection, OWASP).
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// A unix-ms instant as `YYYY-MM-DDTHH:MM:SS+HH:MM` in `tz`.
fn iso_time(ms: i64, tz: Tz) -> String {
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        None => String::new(),
    }
}
