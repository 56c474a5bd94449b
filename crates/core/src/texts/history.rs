//! What the bot says in `/history` (CONTRACT.md: past mailings with their counts, each with
//! 📄 CSV): the list of the user's last mailings, the CSV's header and caption.

use crate::model::lang::Lang;
use crate::model::ledger::{MailingStatus, Tally};

/// How much of a mailing's text an entry shows, in characters.
pub const SNIPPET_CHARS: usize = 60;

/// One mailing of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub id: i64,
    /// When it started, `DD.MM.YYYY HH:MM` in the user's zone.
    pub when: &'a str,
    pub status: MailingStatus,
    /// The post's text (only its start is shown).
    pub text: &'a str,
    pub tally: Tally,
    /// The scheduled series it was a run of.
    pub series: Option<i64>,
    /// A fix or a delete of an earlier mailing's post (see `model::followup`).
    pub follow_up: Option<crate::model::followup::FollowUp>,
}

pub fn empty(l: Lang) -> String {
    l.pick(
        "📜 Рассылок ещё не было. Подготовьте пост (/text, /groups) и запустите: /mailing",
        "📜 No mailings yet. Prepare the post (/text, /groups) and start it: /mailing",
    )
    .into()
}

/// The list: a title, then one paragraph per mailing (newest first).
pub fn list(l: Lang, entries: &[Entry<'_>]) -> String {
    let mut s = l
        .pick(
            "📜 Последние рассылки (новые сверху). 📄 — CSV по группам:",
            "📜 Latest mailings (newest first). 📄 — a CSV by group:",
        )
        .to_string();
    for e in entries {
        s.push_str("\n\n");
        s.push_str(&entry(l, e));
    }
    s
}

/// One paragraph: number, start, status; the start of the text; the counts; the series.
pub fn entry(l: Lang, e: &Entry<'_>) -> String {
    let t = &e.tally;
    let text = snippet(e.text, SNIPPET_CHARS);
    let text = if text.is_empty() {
        l.pick("(без текста)", "(no text)").to_string()
    } else {
        format!("«{text}»")
    };
    let mut s = l.pick(
        format!(
            "#{} · {} · {}\n{text}\nОтправлено {} · Ошибок {} · Под вопросом {} · Осталось {}",
            e.id,
            e.when,
            status(l, e.status),
            t.sent,
            t.failed,
            t.in_doubt,
            t.left
        ),
        format!(
            "#{} · {} · {}\n{text}\nSent {} · Failed {} · In doubt {} · Left {}",
            e.id,
            e.when,
            status(l, e.status),
            t.sent,
            t.failed,
            t.in_doubt,
            t.left
        ),
    );
    if let Some(f) = e.follow_up {
        use crate::model::followup::Action;
        s.push('\n');
        s.push_str(&match f.action {
            Action::Edit => l.pick(
                format!("✏️ Исправление поста рассылки #{}", f.of.0),
                format!("✏️ A fix of mailing #{}'s post", f.of.0),
            ),
            Action::Delete => l.pick(
                format!("🗑 Удаление поста рассылки #{}", f.of.0),
                format!("🗑 A delete of mailing #{}'s post", f.of.0),
            ),
        });
    }
    if let Some(series) = e.series {
        s.push('\n');
        s.push_str(&l.pick(
            format!("🕒 Запуск расписания #{series}"),
            format!("🕒 A run of schedule #{series}"),
        ));
    }
    s
}

/// The mailing's status in a word.
pub fn status(l: Lang, s: MailingStatus) -> &'static str {
    match s {
        MailingStatus::Running => l.pick("идёт", "running"),
        MailingStatus::Paused => l.pick("на паузе", "paused"),
        MailingStatus::Cancelled => l.pick("остановлена", "stopped"),
        MailingStatus::Done => l.pick("завершена", "finished"),
    }
}

/// The start of `text` on one line: whitespace runs become one space, at most `max`
/// characters, "…" when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        None => flat,
        Some((i, _)) => format!("{}…", flat[..i].trim_end()),
    }
}

/// The 📄 button of a mailing.
pub fn csv_button(id: i64) -> String {
    format!("📄 CSV #{id}")
}

/// The CSV's header row: group name, group id, state, time, reason, delivery status.
pub fn csv_header(l: Lang) -> [&'static str; 6] {
    l.pick(
        [
            "группа",
            "id группы",
            "состояние",
            "время",
            "причина",
            "доставка",
        ],
        ["group", "group id", "state", "time", "reason", "delivery"],
    )
}

/// The CSV document's caption.
pub fn csv_caption(l: Lang, id: i64, t: &Tally) -> String {
    l.pick(
        format!(
            "📄 Рассылка #{id}: {} групп. Отправлено {} · Ошибок {} · Под вопросом {} · Осталось {}",
            t.total, t.sent, t.failed, t.in_doubt, t.left
        ),
        format!(
            "📄 Mailing #{id}: {} groups. Sent {} · Failed {} · In doubt {} · Left {}",
            t.total, t.sent, t.failed, t.in_doubt, t.left
        ),
    )
}

/// The CSV's file name.
pub fn csv_file_name(id: i64) -> String {
    format!("mailing-{id}.csv")
}

/// A 📄 for a mailing that is not the user's (or no longer exists).
pub fn gone(l: Lang) -> String {
    l.pick(
        "Такой рассылки нет среди ваших. Список: /history",
        "No such mailing among yours. The list: /history",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("  Привет,\n\nмир  ", 60), "Привет, мир");
        assert_eq!(snippet("абв где", 4), "абв…");
        assert_eq!(snippet("abcdef", 6), "abcdef");
        assert_eq!(snippet("", 6), "");
    }

    #[test]
    fn an_entry_names_counts_and_series() {
        let e = Entry {
            id: 12,
            when: "26.11.2026 14:03",
            status: MailingStatus::Done,
            text: "Скидки\nсегодня",
            tally: Tally {
                total: 5,
                sent: 3,
                failed: 1,
                in_doubt: 1,
                left: 0,
            },
            series: Some(3),
            follow_up: None,
        };
        assert_eq!(
            entry(Lang::Ru, &e),
            "#12 · 26.11.2026 14:03 · завершена\n«Скидки сегодня»\n\
             Отправлено 3 · Ошибок 1 · Под вопросом 1 · Осталось 0\n🕒 Запуск расписания #3"
        );
        let en = entry(
            Lang::En,
            &Entry {
                series: None,
                text: " ",
                ..e
            },
        );
        assert_eq!(
            en,
            "#12 · 26.11.2026 14:03 · finished\n(no text)\nSent 3 · Failed 1 · In doubt 1 · Left 0"
        );
        let fix = crate::model::followup::FollowUp {
            of: crate::model::ids::MailingId(11),
            action: crate::model::followup::Action::Edit,
            repost: false,
        };
        let fixed = entry(
            Lang::En,
            &Entry {
                series: None,
                follow_up: Some(fix),
                ..e
            },
        );
        assert!(
            fixed.ends_with("Left 0\n✏️ A fix of mailing #11's post"),
            "{fixed}"
        );
    }
}
