//! What the bot says about fixing or deleting a post after it went out (✏️ / 🗑 under a
//! report). Their runs start with ✏️ or 🗑 and end, like every mailing, with one report that
//! starts with ✅ or ⚠️.

use super::{duration, with_report_lists, ReportLine};
use crate::model::followup::Action;
use crate::model::lang::Lang;
use crate::model::ledger::Tally;

pub fn fix_button(l: Lang) -> &'static str {
    l.pick("✏️ Исправить текст везде", "✏️ Fix the text everywhere")
}

pub fn delete_button(l: Lang) -> &'static str {
    l.pick("🗑 Удалить везде", "🗑 Delete everywhere")
}

pub fn repost_button(l: Lang) -> &'static str {
    l.pick("🚀 Разослать исправленный", "🚀 Send the corrected post")
}

/// ✅ under a follow-up's preview.
pub fn confirm(l: Lang, action: Action) -> &'static str {
    match action {
        Action::Edit => l.pick("✅ Исправить", "✅ Fix"),
        Action::Delete => l.pick("✅ Удалить", "✅ Delete"),
    }
}

/// How long WhatsApp's edit window is, in words.
fn window(l: Lang, window_ms: i64) -> String {
    duration(l, (window_ms.max(0) / 1000) as u64)
}

/// ✏️ pressed: asks for the corrected text, saying until when it can still be applied.
pub fn ask_fix(l: Lang, id: i64, groups: usize, window_ms: i64, until: &str) -> String {
    let w = window(l, window_ms);
    l.pick(
        format!("✏️ Пришлите исправленный текст поста рассылки #{id} ({groups} групп).\nWhatsApp позволяет изменить сообщение в течение {w} после отправки: успейте до {until}."),
        format!("✏️ Send the corrected text of mailing #{id}'s post ({groups} groups).\nWhatsApp lets a message be edited for {w} after it was sent: in time until {until}."),
    )
}

/// The preview of a fix: the new text, the groups, until when, how long.
pub fn preview_edit(
    l: Lang,
    id: i64,
    groups: usize,
    text: &str,
    until: &str,
    closed: usize,
    eta_secs: u64,
) -> String {
    let eta = duration(l, eta_secs);
    let mut s = l.pick(
        format!("✏️ Исправление рассылки #{id}: текст поста изменится в {groups} группах на:\n\n{text}\n\n⏳ Примерно {eta}. Окно правки WhatsApp открыто до {until}; группа, до которой очередь дойдёт позже, будет в отчёте с причиной."),
        format!("✏️ Fix of mailing #{id}: the post's text changes in {groups} groups to:\n\n{text}\n\n⏳ About {eta}. WhatsApp's edit window is open until {until}; a group whose turn comes later is reported with the reason."),
    );
    if closed > 0 {
        s.push_str(&l.pick(
            format!("\n⏰ В {closed} группах окно уже закрылось: там пост можно только удалить (🗑 под отчётом)."),
            format!("\n⏰ In {closed} groups the window has already closed: there the post can only be deleted (🗑 under the report)."),
        ));
    }
    s
}

/// The fix came too late for every group: the offer to delete the post and send the corrected
/// one instead.
pub fn preview_repost(l: Lang, id: i64, groups: usize, closed_at: &str, text: &str) -> String {
    l.pick(
        format!("⏰ Изменить пост рассылки #{id} уже нельзя: окно правки WhatsApp закрылось {closed_at}.\nМожно удалить его в {groups} группах и разослать исправленный:\n\n{text}\n\n✅ удаляет пост везде; после удаления бот предложит разослать исправленный текст в эти группы."),
        format!("⏰ Mailing #{id}'s post can no longer be edited: WhatsApp's edit window closed {closed_at}.\nYou can delete it in {groups} groups and send the corrected one:\n\n{text}\n\n✅ deletes the post everywhere; then the bot offers to send the corrected text to those groups."),
    )
}

/// The preview of a delete.
pub fn preview_delete(l: Lang, id: i64, groups: usize, eta_secs: u64) -> String {
    let eta = duration(l, eta_secs);
    l.pick(
        format!("🗑 Удалить пост рассылки #{id} в {groups} группах? Все его сообщения (фото и текст) исчезнут у всех участников.\n⏳ Примерно {eta}."),
        format!("🗑 Delete mailing #{id}'s post in {groups} groups? All its messages (photos and text) disappear for everyone.\n⏳ About {eta}."),
    )
}

/// The start of a follow-up (also its progress message).
pub fn started(l: Lang, id: i64, action: Action, groups: usize, eta_secs: u64) -> String {
    let eta = duration(l, eta_secs);
    match action {
        Action::Edit => l.pick(
            format!("✏️ Исправление #{id} запущено: {groups} групп, примерно {eta}."),
            format!("✏️ Fix #{id} started: {groups} groups, about {eta}."),
        ),
        Action::Delete => l.pick(
            format!("🗑 Удаление #{id} запущено: {groups} групп, примерно {eta}."),
            format!("🗑 Delete #{id} started: {groups} groups, about {eta}."),
        ),
    }
}

/// The report of a follow-up: ✅ when every group was done, ⚠️ otherwise, with the groups that
/// failed (and why) and those in doubt; a repost's report says the corrected post is ready.
#[allow(clippy::too_many_arguments)]
pub fn report(
    l: Lang,
    id: i64,
    action: Action,
    t: &Tally,
    cancelled: bool,
    failed: &[ReportLine<'_>],
    in_doubt: &[ReportLine<'_>],
    repost: bool,
) -> String {
    let clean = !cancelled && t.failed == 0 && t.in_doubt == 0 && t.left == 0;
    let (done, total) = (t.sent, t.total);
    let counts = l.pick(
        format!(
            "Готово: {done} · Ошибок: {} · Под вопросом: {} · Не дошла очередь: {}",
            t.failed, t.in_doubt, t.left
        ),
        format!(
            "Done: {done} · Failed: {} · In doubt: {} · Not reached: {}",
            t.failed, t.in_doubt, t.left
        ),
    );
    let mut s = match (action, clean, cancelled) {
        (Action::Edit, true, _) => l.pick(
            format!("✅ Исправление #{id} завершено: текст изменён в {done} из {total} групп."),
            format!("✅ Fix #{id} finished: the text was changed in {done} of {total} groups."),
        ),
        (Action::Delete, true, _) => l.pick(
            format!("✅ Удаление #{id} завершено: пост удалён в {done} из {total} групп."),
            format!("✅ Delete #{id} finished: the post was deleted in {done} of {total} groups."),
        ),
        (Action::Edit, false, true) => l.pick(
            format!("⚠️ Исправление #{id} остановлено.\n{counts}"),
            format!("⚠️ Fix #{id} was stopped.\n{counts}"),
        ),
        (Action::Delete, false, true) => l.pick(
            format!("⚠️ Удаление #{id} остановлено.\n{counts}"),
            format!("⚠️ Delete #{id} was stopped.\n{counts}"),
        ),
        (Action::Edit, false, false) => l.pick(
            format!("⚠️ Исправление #{id} завершено с ошибками.\n{counts}"),
            format!("⚠️ Fix #{id} finished with errors.\n{counts}"),
        ),
        (Action::Delete, false, false) => l.pick(
            format!("⚠️ Удаление #{id} завершено с ошибками.\n{counts}"),
            format!("⚠️ Delete #{id} finished with errors.\n{counts}"),
        ),
    };
    if repost && done > 0 {
        s.push_str(l.pick(
            "\n🚀 Исправленный пост готов к отправке в эти группы.",
            "\n🚀 The corrected post is ready to go to these groups.",
        ));
    }
    with_report_lists(l, s, failed, in_doubt)
}

/// ✏️ / 🗑 on a mailing that is not the user's or is gone.
pub fn unknown_mailing(l: Lang) -> &'static str {
    l.pick("Эта рассылка не найдена.", "That mailing was not found.")
}

/// ✏️ / 🗑 while the mailing still runs (or is paused).
pub fn still_running(l: Lang, id: i64) -> String {
    l.pick(
        format!("Рассылка #{id} ещё не закончена: исправить или удалить пост можно после её окончания (⛔ остановит её)."),
        format!("Mailing #{id} is not over yet: its post can be fixed or deleted once it ends (⛔ stops it)."),
    )
}

/// ✏️ / 🗑 on a mailing that reached no group.
pub fn nothing_there(l: Lang, id: i64, action: Action) -> String {
    match action {
        Action::Edit => l.pick(
            format!("Нечего исправлять: текст рассылки #{id} не дошёл ни до одной группы."),
            format!("Nothing to fix: mailing #{id}'s text reached no group."),
        ),
        Action::Delete => l.pick(
            format!("Нечего удалять: пост рассылки #{id} не дошёл ни до одной группы."),
            format!("Nothing to delete: mailing #{id}'s post reached no group."),
        ),
    }
}

/// The corrected text is longer than a caption may be (the post is a captioned collage).
pub fn caption_too_long(l: Lang, len: usize, max: usize) -> String {
    l.pick(
        format!("Текст слишком длинный для подписи к фото: {len} символов, можно не больше {max}. Сократите его и пришлите снова."),
        format!("The text is too long for a photo caption: {len} characters, at most {max}. Shorten it and send it again."),
    )
}

/// ✅ of a follow-up preview that is no longer the newest or was already pressed.
pub fn void(l: Lang) -> &'static str {
    l.pick(
        "Это подтверждение уже недействительно. Нажмите ✏️ или 🗑 под отчётом рассылки ещё раз.",
        "This confirmation is no longer valid. Press ✏️ or 🗑 under the mailing's report again.",
    )
}

/// 🚀 under a repost's report: the corrected post became the prepared one.
pub fn repost_prepared(l: Lang, groups: usize) -> String {
    l.pick(
        format!("🚀 Исправленный текст и {groups} групп, где пост был удалён, теперь текст и список групп рассылки. Проверьте и запустите:"),
        format!("🚀 The corrected text and the {groups} groups the post was deleted from are now the mailing's text and group list. Check and start:"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_up_report_starts_as_every_report_does() {
        let clean = Tally {
            total: 3,
            sent: 3,
            ..Tally::default()
        };
        let rough = Tally {
            total: 3,
            sent: 2,
            failed: 1,
            ..Tally::default()
        };
        let line = ReportLine {
            group: "1@g.us",
            name: Some("Дача"),
            reason: "too late to edit",
        };
        for l in [Lang::Ru, Lang::En] {
            for action in [Action::Edit, Action::Delete] {
                let ok = report(l, 5, action, &clean, false, &[], &[], false);
                assert!(ok.starts_with("✅"), "{ok}");
                let bad = report(
                    l,
                    5,
                    action,
                    &rough,
                    false,
                    std::slice::from_ref(&line),
                    &[],
                    false,
                );
                assert!(
                    bad.starts_with("⚠️") && bad.contains("too late to edit"),
                    "{bad}"
                );
                let stopped = report(l, 5, action, &clean, true, &[], &[], false);
                assert!(stopped.starts_with("⚠️"), "{stopped}");
            }
        }
        let repost = report(Lang::Ru, 5, Action::Delete, &clean, false, &[], &[], true);
        assert!(repost.contains("🚀"), "{repost}");
    }
}
