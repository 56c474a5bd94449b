//! After the send (issue 16): a posted mailing fixed (✏️) or deleted (🗑) in every group, on
//! either runtime. The steps are the user's (the report's buttons, the corrected text, the
//! preview's ✅); the assertions are on what the fake Wappi carried out: which message, with
//! what text, how many times.

use crate::fake_telegram::SentMessage;
use crate::fake_wappi::Fault;
use crate::harness::wait_until;
use crate::world::{Account, Bot, Person, World};
use std::collections::HashMap;
use std::time::Duration;

/// How long a step that runs a whole mailing (ten groups at the fast pace) may take.
pub const RUN: Duration = Duration::from_secs(90);

/// A post that went out: its mailing, the groups, the account, and the message each group got.
pub struct Posted {
    pub id: i64,
    pub jids: Vec<String>,
    pub account: Account,
    /// Group → the id of the message the fake stored there.
    pub messages: HashMap<String, String>,
    /// The report, whose buttons fix or delete the post.
    pub report: SentMessage,
}

/// The next message to `user` that contains `needle`, waiting up to `timeout`.
pub async fn next<S: Bot>(w: &World<S>, user: i64, needle: &str, timeout: Duration) -> SentMessage {
    let needle = needle.to_string();
    w.tg.wait_for_message(user, move |t| t.contains(&needle), timeout)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&w.server.logs())))
}

fn tail(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().rev().take(40).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The number after `prefix` in `text` (a mailing id in `🚀 Рассылка #12 …`).
pub fn number_after(text: &str, prefix: &str) -> i64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} not in {text:?}"));
    text[at + prefix.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {text:?}"))
}

/// User `user` on account `n` posts `text` to `groups` groups and gets the ✅ report.
pub async fn posts<S: Bot>(w: &World<S>, user: i64, n: u32, groups: usize, text: &str) -> Posted {
    let (p, account, jids) = w.ready(user, n, groups, text).await;
    let id = p.starts_mailing().await;
    let report = next(w, user, &format!("Рассылка #{id} завершена"), RUN).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    let messages: HashMap<String, String> = w
        .wappi
        .deliveries()
        .into_iter()
        .filter(|r| r.profile_id == account.profile)
        .map(|r| (r.recipient.clone().unwrap(), r.message_id.clone().unwrap()))
        .collect();
    assert_eq!(messages.len(), groups, "one message per group");
    Posted {
        id,
        jids,
        account,
        messages,
        report,
    }
}

/// ✏️ under `report`, the corrected text, and the preview (returned, ✅ not pressed).
pub async fn asks_to_fix<S: Bot>(
    w: &World<S>,
    user: i64,
    report: &SentMessage,
    text: &str,
) -> SentMessage {
    let p = w.person(user);
    p.presses(
        report.message_id,
        &Person::<crate::harness::Server>::button(report, "✏️"),
    );
    let ask = p.hears("Пришлите исправленный текст").await;
    assert!(ask.text.contains("успейте до"), "{}", ask.text);
    p.says(text);
    next(w, user, text, crate::world::STEP).await
}

/// ✅ on a follow-up preview; the id of the follow-up from its start message (`✏️
/// Исправление #N` or `🗑 Удаление #N`).
pub async fn confirms<S: Bot>(w: &World<S>, user: i64, preview: &SentMessage) -> i64 {
    let p = w.person(user);
    p.presses(
        preview.message_id,
        &Person::<crate::harness::Server>::button(preview, "✅"),
    );
    let started = next(w, user, "запущено", crate::world::STEP).await;
    number_after(&started.text, "#")
}

/// 🗑 under `report` and ✅ on its preview: the delete's id.
pub async fn deletes<S: Bot>(w: &World<S>, user: i64, report: &SentMessage) -> i64 {
    let p = w.person(user);
    p.presses(
        report.message_id,
        &Person::<crate::harness::Server>::button(report, "🗑"),
    );
    let preview = p.hears("🗑 Удалить пост рассылки").await;
    confirms(w, user, &preview).await
}

/// Every message of the post was edited exactly once, to `text`, and shows it.
pub fn assert_each_edited_once<S: Bot>(w: &World<S>, posted: &Posted, text: &str) {
    let edits = w.wappi.edits();
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    for e in &edits {
        assert_eq!(e.body_text.as_deref(), Some(text), "the new text");
        *per_message
            .entry(e.message_id.as_deref().unwrap())
            .or_default() += 1;
    }
    for (group, message) in &posted.messages {
        assert_eq!(
            per_message.get(message.as_str()),
            Some(&1),
            "{group}'s message {message} edited once: {per_message:?}"
        );
        let shown = w.wappi.message(&posted.account.profile, message);
        assert_eq!(shown, Some((text.to_string(), true, false)), "{group}");
    }
    assert_eq!(edits.len(), posted.messages.len(), "no other edit");
}

/// A fix whose run is cut off in the middle (see [`a_fix_hangs_midway`]).
pub struct CutFix {
    pub posted: Posted,
    pub fixed: String,
    /// The fix's mailing id.
    pub id: i64,
    /// The group whose edit was carried out but not answered when the runtime stopped.
    pub hung: String,
}

/// User `user` on account `n` posts to 10 groups and fixes the post; once three edits are
/// carried out, the next one is carried out but its answer is held for 30 s. The test then
/// stops the runtime (its row is `sending`) and starts it again.
pub async fn a_fix_hangs_midway<S: Bot>(w: &World<S>, user: i64, n: u32, text: &str) -> CutFix {
    let posted = posts(w, user, n, 10, text).await;
    let fixed = format!("{text} (исправлено)");
    let preview = asks_to_fix(w, user, &posted.report, &fixed).await;
    // Three edits go through as usual, the fourth is carried out but its answer is held (the
    // fix starts with the ✅, before its start message is in the chat).
    for _ in 0..3 {
        w.wappi.push_fault(Fault::Delay(Duration::ZERO));
    }
    w.wappi.push_fault(Fault::Slow {
        visible_after: Duration::ZERO,
        answer_after: Duration::from_secs(30),
    });
    let id = confirms(w, user, &preview).await;
    wait_until("an edit hangs", RUN, || w.wappi.edits().len() >= 4).await;
    let hung = w
        .wappi
        .edits()
        .last()
        .and_then(|e| e.chat_id.clone())
        .unwrap();
    CutFix {
        posted,
        fixed,
        id,
        hung,
    }
}

/// After a fix cut off in the middle is over: no group edited twice, none skipped, and the
/// cut-off edit settled from its group's history.
pub fn assert_cut_fix_settled<S: Bot>(w: &World<S>, cut: &CutFix) {
    assert_each_edited_once(w, &cut.posted, &cut.fixed);
    assert_history_read(w, &cut.hung);
}

/// The group's history was read after its edit was cut off: the edit was settled there (found
/// done), not guessed.
pub fn assert_history_read<S: Bot>(w: &World<S>, group: &str) {
    let reads = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/sync/messages/get" && r.chat_id.as_deref() == Some(group))
        .count();
    assert!(reads > 0, "{group}'s history was read to settle its edit");
}

/// Every message of the post was deleted exactly once.
pub fn assert_each_deleted_once<S: Bot>(w: &World<S>, posted: &Posted) {
    let deletes = w.wappi.deletes();
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    for d in &deletes {
        *per_message
            .entry(d.message_id.as_deref().unwrap())
            .or_default() += 1;
    }
    for (group, message) in &posted.messages {
        assert_eq!(
            per_message.get(message.as_str()),
            Some(&1),
            "{group}: {per_message:?}"
        );
        let shown = w.wappi.message(&posted.account.profile, message);
        assert_eq!(shown.map(|s| s.2), Some(true), "{group}'s message deleted");
    }
    assert_eq!(deletes.len(), posted.messages.len(), "no other delete");
}

/// The whole path on one runtime: a 10-group post, ✏️ fixes its text everywhere (each group's
/// message edited once), then 🗑 under the fix's report deletes it everywhere (each message
/// deleted once).
pub async fn fix_then_delete_everywhere<S: Bot>(w: &World<S>, user: i64, n: u32) {
    let posted = posts(w, user, n, 10, "Дача, 3 сотки. Цена 100 000 ₽").await;
    let fixed = "Дача, 3 сотки. Цена 90 000 ₽";
    let preview = asks_to_fix(w, user, &posted.report, fixed).await;
    assert!(preview.text.starts_with("✏️"), "{}", preview.text);
    assert!(preview.text.contains("10 группах"), "{}", preview.text);
    let fix = confirms(w, user, &preview).await;
    let report = next(w, user, &format!("Исправление #{fix} завершено"), RUN).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    assert!(report.text.contains("10 из 10"), "{}", report.text);
    assert_each_edited_once(w, &posted, fixed);

    let gone = deletes(w, user, &report).await;
    let report = next(w, user, &format!("Удаление #{gone} завершено"), RUN).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    assert_each_deleted_once(w, &posted);
}

/// With the edit window closed (`EDIT_WINDOW_SECS=0`), ✏️ is refused with the reason, and the
/// bot offers to delete and repost: ✅ deletes the post everywhere, 🚀 under that report makes
/// the corrected text and the groups the prepared post and shows its preview.
pub async fn too_late_to_edit_offers_delete_and_repost<S: Bot>(w: &World<S>, user: i64, n: u32) {
    let posted = posts(w, user, n, 3, "Цена 100 ₽").await;
    let fixed = "Цена 90 ₽";
    let offer = asks_to_fix(w, user, &posted.report, fixed).await;
    assert!(
        offer.text.starts_with("⏰ Изменить пост рассылки"),
        "{}",
        offer.text
    );
    assert!(
        offer.text.contains("окно правки WhatsApp закрылось"),
        "{}",
        offer.text
    );
    let gone = confirms(w, user, &offer).await;
    let report = next(w, user, &format!("Удаление #{gone} завершено"), RUN).await;
    assert!(w.wappi.edits().is_empty(), "nothing edited");
    assert_each_deleted_once(w, &posted);

    let p = w.person(user);
    p.presses(
        report.message_id,
        &Person::<crate::harness::Server>::button(&report, "🚀"),
    );
    p.hears("теперь текст и список групп рассылки").await;
    let preview = p.hears("Предпросмотр").await;
    assert!(preview.text.contains(fixed), "{}", preview.text);
    assert!(preview.text.contains("Групп: 3"), "{}", preview.text);
}
