//! The `callback_data` codec of the bot's inline buttons: [`Callback`] is what a button
//! means, [`Callback::data`] its payload (under Telegram's 64 bytes) and [`Callback::parse`]
//! reads one back. Both the dialogue and the mailing engine's progress keyboards use it.

use crate::model::lang::Lang;
use crate::model::pacing::pace::Preset;

/// Inline button payloads (`callback_data`), each under 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// ✅ on the preview with this number (see `UserStore::begin_preview`). The bare `go` of
    /// previews sent before previews were numbered reads as number 0, which is never valid.
    ConfirmStart(u64),
    DeclineStart,
    CancelMailing(i64),
    ResumeMailing(i64),
    ImportStart,
    ImportToggle(usize),
    ImportPage(usize),
    ImportAll,
    ImportNone,
    ImportSave,
    ImportClose,
    SetLang(Lang),
    /// A payment link for the plan of this many days.
    Pay(u32),
    /// Operator: send the broadcast shown.
    BroadcastGo,
    /// Operator: drop the broadcast shown.
    BroadcastNo,
    /// 🌅: build a collage of the photo set.
    MakeCollage,
    /// 🗑: forget the photo set (and its collage).
    ClearImages,
    /// ✅ under a collage preview (the collage's image id).
    UseCollage(i64),
    /// ❌ under a collage preview.
    DiscardCollage(i64),
    /// 🚀 under the notice that a preview is void: show a fresh one.
    FreshPreview,
    /// ⏸ on a progress message.
    PauseMailing(i64),
    /// A preset button under `/pace`.
    SetPace(Preset),
    /// A zone button under `/tz` (its index in `zone::USUAL`).
    SetTz(usize),
    /// A preview's ➕ / ➖ (doubtful groups in or out) or 🐤 (canary start on or off): a fresh
    /// preview with these choices.
    PreviewWith {
        all: bool,
        canary: bool,
    },
    /// 🕒 on the preview: schedule the post.
    SchedulePrompt,
    /// ⏭ under a series in `/schedules`: skip its next run.
    SkipRun(i64),
    /// ⏸ under a series.
    PauseSeries(i64),
    /// ▶️ under a paused series.
    ResumeSeries(i64),
    /// 🗑 under a series.
    DeleteSeries(i64),
    /// 💎 under a notice: the subscription and its plans.
    Subscribe,
    /// 📂 under a group set (its short key).
    UseSet(String),
    /// 🗑 under a group set (its short key).
    DeleteSet(String),
    /// ✏️ under a report: fix the text of this mailing's post in every group.
    FixPost(i64),
    /// 🗑 under a report: delete this mailing's post in every group.
    DeletePost(i64),
    /// ✅ on the preview of a fix or a delete with this number (see `UserStore::begin_preview`).
    ConfirmFollowUp(u64),
    /// 🚀 under the report of a delete made to repost (that delete's mailing id).
    Repost(i64),
    /// 📄 CSV under `/history`: the CSV of the user's mailing with this id.
    HistoryCsv(i64),
    Unknown,
}

impl Callback {
    pub fn parse(data: &str) -> Callback {
        let (head, arg) = data.split_once(':').unwrap_or((data, ""));
        let num = || arg.parse::<i64>().ok();
        let idx = || arg.parse::<usize>().ok();
        match (head, arg) {
            ("go", "") => Callback::ConfirmStart(0),
            ("go", _) => arg
                .parse()
                .map_or(Callback::Unknown, Callback::ConfirmStart),
            ("preview", _) => Callback::FreshPreview,
            ("no", _) => Callback::DeclineStart,
            ("cancel", _) => num().map_or(Callback::Unknown, Callback::CancelMailing),
            ("resume", _) => num().map_or(Callback::Unknown, Callback::ResumeMailing),
            ("pause", _) => num().map_or(Callback::Unknown, Callback::PauseMailing),
            ("pace", p) => Preset::parse(p).map_or(Callback::Unknown, Callback::SetPace),
            ("tz", _) => idx().map_or(Callback::Unknown, Callback::SetTz),
            ("sch", "") => Callback::SchedulePrompt,
            ("pv", flags) => match flags.as_bytes() {
                [a @ (b'0' | b'1'), c @ (b'0' | b'1')] => Callback::PreviewWith {
                    all: *a == b'1',
                    canary: *c == b'1',
                },
                _ => Callback::Unknown,
            },
            ("sskip", _) => num().map_or(Callback::Unknown, Callback::SkipRun),
            ("spause", _) => num().map_or(Callback::Unknown, Callback::PauseSeries),
            ("sresume", _) => num().map_or(Callback::Unknown, Callback::ResumeSeries),
            ("sdel", _) => num().map_or(Callback::Unknown, Callback::DeleteSeries),
            ("sub", "") => Callback::Subscribe,
            ("fix", _) => num().map_or(Callback::Unknown, Callback::FixPost),
            ("rm", _) => num().map_or(Callback::Unknown, Callback::DeletePost),
            ("fgo", _) => arg
                .parse()
                .map_or(Callback::Unknown, Callback::ConfirmFollowUp),
            ("repost", _) => num().map_or(Callback::Unknown, Callback::Repost),
            ("hcsv", _) => num().map_or(Callback::Unknown, Callback::HistoryCsv),
            ("setu", k) if is_key(k) => Callback::UseSet(k.to_string()),
            ("setd", k) if is_key(k) => Callback::DeleteSet(k.to_string()),
            ("imp", "start") => Callback::ImportStart,
            ("imp", "all") => Callback::ImportAll,
            ("imp", "none") => Callback::ImportNone,
            ("imp", "save") => Callback::ImportSave,
            ("imp", "close") => Callback::ImportClose,
            ("impt", _) => idx().map_or(Callback::Unknown, Callback::ImportToggle),
            ("impp", _) => idx().map_or(Callback::Unknown, Callback::ImportPage),
            ("lang", l) => Callback::SetLang(Lang::parse(l)),
            ("pay", _) => arg.parse().map_or(Callback::Unknown, Callback::Pay),
            ("bc", "go") => Callback::BroadcastGo,
            ("bc", "no") => Callback::BroadcastNo,
            ("img", "collage") => Callback::MakeCollage,
            ("img", "clear") => Callback::ClearImages,
            ("colok", _) => num().map_or(Callback::Unknown, Callback::UseCollage),
            ("colno", _) => num().map_or(Callback::Unknown, Callback::DiscardCollage),
            _ => Callback::Unknown,
        }
    }

    pub fn data(&self) -> String {
        match self {
            Callback::ConfirmStart(seq) => format!("go:{seq}"),
            Callback::FreshPreview => "preview".into(),
            Callback::DeclineStart => "no".into(),
            Callback::CancelMailing(id) => format!("cancel:{id}"),
            Callback::ResumeMailing(id) => format!("resume:{id}"),
            Callback::PauseMailing(id) => format!("pause:{id}"),
            Callback::SetPace(p) => format!("pace:{}", p.word()),
            Callback::SetTz(i) => format!("tz:{i}"),
            Callback::SchedulePrompt => "sch".into(),
            Callback::PreviewWith { all, canary } => {
                format!("pv:{}{}", u8::from(*all), u8::from(*canary))
            }
            Callback::SkipRun(id) => format!("sskip:{id}"),
            Callback::PauseSeries(id) => format!("spause:{id}"),
            Callback::ResumeSeries(id) => format!("sresume:{id}"),
            Callback::DeleteSeries(id) => format!("sdel:{id}"),
            Callback::Subscribe => "sub".into(),
            Callback::FixPost(id) => format!("fix:{id}"),
            Callback::DeletePost(id) => format!("rm:{id}"),
            Callback::ConfirmFollowUp(seq) => format!("fgo:{seq}"),
            Callback::Repost(id) => format!("repost:{id}"),
            Callback::UseSet(k) => format!("setu:{k}"),
            Callback::DeleteSet(k) => format!("setd:{k}"),
            Callback::HistoryCsv(id) => format!("hcsv:{id}"),
            Callback::ImportStart => "imp:start".into(),
            Callback::ImportToggle(i) => format!("impt:{i}"),
            Callback::ImportPage(p) => format!("impp:{p}"),
            Callback::ImportAll => "imp:all".into(),
            Callback::ImportNone => "imp:none".into(),
            Callback::ImportSave => "imp:save".into(),
            Callback::ImportClose => "imp:close".into(),
            Callback::SetLang(l) => format!("lang:{}", l.code()),
            Callback::Pay(days) => format!("pay:{days}"),
            Callback::BroadcastGo => "bc:go".into(),
            Callback::BroadcastNo => "bc:no".into(),
            Callback::MakeCollage => "img:collage".into(),
            Callback::ClearImages => "img:clear".into(),
            Callback::UseCollage(id) => format!("colok:{id}"),
            Callback::DiscardCollage(id) => format!("colno:{id}"),
            Callback::Unknown => "?".into(),
        }
    }
}

/// A group set's key: 1 to 16 hex digits.
fn is_key(k: &str) -> bool {
    (1..=16).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_round_trip() {
        for cb in [
            Callback::ConfirmStart(3),
            Callback::ConfirmStart(u64::MAX),
            Callback::FreshPreview,
            Callback::DeclineStart,
            Callback::CancelMailing(42),
            Callback::ResumeMailing(7),
            Callback::PauseMailing(8),
            Callback::SetPace(Preset::Careful),
            Callback::SetPace(Preset::Fast),
            Callback::SetTz(5),
            Callback::SchedulePrompt,
            Callback::PreviewWith {
                all: true,
                canary: false,
            },
            Callback::PreviewWith {
                all: false,
                canary: true,
            },
            Callback::SkipRun(4),
            Callback::PauseSeries(5),
            Callback::ResumeSeries(6),
            Callback::DeleteSeries(i64::MAX),
            Callback::Subscribe,
            Callback::FixPost(12),
            Callback::DeletePost(i64::MAX),
            Callback::ConfirmFollowUp(u64::MAX),
            Callback::Repost(3),
            Callback::UseSet("0a1b2c3d4e5f".into()),
            Callback::DeleteSet("0a1b2c3d4e5f".into()),
            Callback::HistoryCsv(12),
            Callback::HistoryCsv(i64::MAX),
            Callback::ImportStart,
            Callback::ImportToggle(13),
            Callback::ImportPage(2),
            Callback::ImportAll,
            Callback::ImportNone,
            Callback::ImportSave,
            Callback::ImportClose,
            Callback::SetLang(Lang::En),
            Callback::Pay(90),
            Callback::MakeCollage,
            Callback::ClearImages,
            Callback::UseCollage(12),
            Callback::DiscardCollage(12),
        ] {
            assert_eq!(Callback::parse(&cb.data()), cb);
            assert!(cb.data().len() <= 64);
        }
        assert_eq!(Callback::parse("cancel:x"), Callback::Unknown);
        // The ✅ of a preview sent before previews were numbered: number 0, always void.
        assert_eq!(Callback::parse("go"), Callback::ConfirmStart(0));
        assert_eq!(Callback::parse("go:x"), Callback::Unknown);
        assert_eq!(Callback::parse("hcsv:12"), Callback::HistoryCsv(12));
        assert_eq!(Callback::parse("hcsv:"), Callback::Unknown);
        assert_eq!(Callback::parse("hcsv:1x"), Callback::Unknown);
    }
}
