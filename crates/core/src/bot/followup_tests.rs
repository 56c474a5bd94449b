//! Fixing and deleting a post after it went out, over the in-memory fakes: ✏️ / 🗑 under the
//! report through `handle_update`, the follow-up driven by the engine under the fake clock.
//! The assertions are on the calls the scripted Wappi received (which message, what text) and
//! on what the user was told.

use super::tests::{dialogue, last, last_buttons, press, say, text};
use crate::bot::dialogue::DialogueState;
use crate::config::CoreSettings;
use crate::mailing::Cursor;
use crate::model::followup::EDIT_WINDOW_MS;
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::{Content, DeliveryState, NewMailing};
use crate::ports::{IntakeConsumer, NewImage};
use crate::services::Services;
use crate::testing::*;

const ANNA: i64 = 5_106_617_742;
const CHAT: ChatId = ChatId(ANNA);

async fn world() -> (Services, Fakes, ProfileId) {
    let (svc, f) = services(CoreSettings::default());
    let prof = profile("2f099bc3-478e");
    register_user(&svc, UserId(ANNA), &prof, Lang::En).await;
    (svc, f, prof)
}

/// Drives mailing `id` to its end, as a runner does.
async fn run(svc: &Services, f: &Fakes, id: MailingId) {
    let engine = f.engine(svc);
    let lease = take_mailing(&engine, id, DRIVER_LEASE_TTL_MS).await;
    let mut cursor = Cursor::default();
    drive(&engine, &f.clock, id, &lease, &mut cursor, 500)
        .await
        .expect("the mailing runs");
    engine.leases.release_lease(&lease).await.expect("release");
}

/// A finished text mailing of "Price 100" to `groups`; the report's message id and buttons.
async fn posted(svc: &Services, f: &Fakes, prof: &ProfileId, groups: &[GroupJid]) -> MailingId {
    let id = create_mailing(svc, UserId(ANNA), prof, groups, "Price 100").await;
    run(svc, f, id).await;
    id
}

/// Presses the last message's button whose data starts with `prefix`.
async fn press_button(svc: &Services, f: &Fakes, prefix: &str) {
    let (mid, buttons) = last_buttons(f, ANNA);
    let data = buttons
        .iter()
        .find(|b| b.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} button in {buttons:?}"));
    say(svc, press(ANNA, mid, data)).await;
}

/// The follow-up ✅ started: handed to the runners.
async fn started(f: &Fakes) -> MailingId {
    f.state
        .dequeue()
        .await
        .expect("dequeue")
        .expect("a follow-up was handed to the runners")
}

/// The message id each group got for part `part` of mailing `id`.
fn message_ids(f: &Fakes, id: MailingId) -> Vec<(GroupJid, String)> {
    f.db.rows(id)
        .into_iter()
        .filter(|r| r.part == 0)
        .map(|r| (r.group, r.message_id.expect("sent with an id")))
        .collect()
}

#[tokio::test]
async fn a_fix_edits_each_groups_message_once_with_the_new_text() {
    let (svc, f, prof) = world().await;
    let groups = jids(3);
    let id = posted(&svc, &f, &prof, &groups).await;
    assert!(last(&f, ANNA).starts_with('✅'), "{}", last(&f, ANNA));
    let sent = message_ids(&f, id);

    press_button(&svc, &f, "fix:").await;
    assert_eq!(dialogue(&f, ANNA), DialogueState::AwaitFix { of: id.0 });
    let ask = last(&f, ANNA);
    assert!(ask.starts_with("✏️") && ask.contains("15 min"), "{ask}");
    say(&svc, text(ANNA, "Price 90")).await;
    let preview = last(&f, ANNA);
    assert!(
        preview.contains("Price 90") && preview.contains("3 groups"),
        "{preview}"
    );
    assert_eq!(dialogue(&f, ANNA), DialogueState::Idle);
    press_button(&svc, &f, "fgo:").await;
    let fix = started(&f).await;
    assert!(last(&f, ANNA).starts_with(&format!("✏️ Fix #{}", fix.0)));
    run(&svc, &f, fix).await;

    let edits = f.wappi.calls_of(WappiMethod::EditMessage);
    let got: Vec<(GroupJid, String, String)> = edits
        .iter()
        .map(|c| {
            (
                c.to.clone().unwrap(),
                c.target.clone().unwrap(),
                c.text.clone().unwrap(),
            )
        })
        .collect();
    let want: Vec<(GroupJid, String, String)> = sent
        .into_iter()
        .map(|(g, m)| (g, m, "Price 90".to_string()))
        .collect();
    assert_eq!(got, want, "each group's message edited once, in order");
    for g in &groups {
        assert_eq!(f.wappi.delivered_to(g, &prof), vec!["Price 90".to_string()]);
    }
    let report = last(&f, ANNA);
    assert!(
        report.starts_with(&format!("✅ Fix #{}", fix.0)),
        "{report}"
    );
    assert!(report.contains("3 of 3"), "{report}");
    // The buttons under a fix's report act on the post again.
    let (_, buttons) = last_buttons(&f, ANNA);
    assert_eq!(
        buttons,
        vec![format!("fix:{}", id.0), format!("rm:{}", id.0)]
    );
}

#[tokio::test]
async fn an_edit_whose_answer_is_lost_is_settled_from_history_not_repeated() {
    let (svc, f, prof) = world().await;
    let groups = jids(2);
    let id = posted(&svc, &f, &prof, &groups).await;
    // Minutes later (within the window): the message is older than the edit's own attempt.
    f.clock.advance(5 * 60_000);
    press_button(&svc, &f, "fix:").await;
    say(&svc, text(ANNA, "Price 90")).await;
    press_button(&svc, &f, "fgo:").await;
    let fix = started(&f).await;
    // The first group's edit is carried out but its answer is lost; the second's is lost
    // before it was carried out.
    f.wappi
        .script_send_to(&groups[0], SendScript::unknown_but_delivered());
    f.wappi
        .script_send_to(&groups[1], SendScript::unknown_not_delivered());
    run(&svc, &f, fix).await;

    let edits = |g: &GroupJid| {
        f.wappi
            .calls_of(WappiMethod::EditMessage)
            .into_iter()
            .filter(|c| c.to.as_ref() == Some(g))
            .map(|c| c.delivered)
            .collect::<Vec<_>>()
    };
    assert_eq!(edits(&groups[0]), vec![true], "found edited: not repeated");
    assert_eq!(
        edits(&groups[1]),
        vec![false, true],
        "found unchanged: made again"
    );
    for g in &groups {
        assert_eq!(f.wappi.delivered_to(g, &prof), vec!["Price 90".to_string()]);
    }
    assert!(f
        .db
        .rows(fix)
        .iter()
        .all(|r| r.state == DeliveryState::Sent));
    assert!(last(&f, ANNA).starts_with('✅'), "{}", last(&f, ANNA));
    let _ = id;
}

#[tokio::test]
async fn after_the_edit_window_the_bot_offers_delete_and_repost() {
    let (svc, f, prof) = world().await;
    let groups = jids(2);
    let id = posted(&svc, &f, &prof, &groups).await;
    let report_buttons = last_buttons(&f, ANNA);
    f.clock.advance(EDIT_WINDOW_MS + 60_000);
    say(&svc, press(ANNA, report_buttons.0, &report_buttons.1[0])).await;
    say(&svc, text(ANNA, "Price 90")).await;
    let offer = last(&f, ANNA);
    assert!(offer.starts_with("⏰"), "{offer}");
    assert!(offer.contains("can no longer be edited"), "{offer}");
    press_button(&svc, &f, "fgo:").await;
    let gone = started(&f).await;
    run(&svc, &f, gone).await;

    assert!(
        f.wappi.calls_of(WappiMethod::EditMessage).is_empty(),
        "no edit tried"
    );
    let deleted: Vec<String> = f
        .wappi
        .calls_of(WappiMethod::DeleteMessage)
        .into_iter()
        .map(|c| c.target.unwrap())
        .collect();
    let sent: Vec<String> = message_ids(&f, id).into_iter().map(|(_, m)| m).collect();
    assert_eq!(deleted, sent, "each message deleted once");
    assert!(groups
        .iter()
        .all(|g| f.wappi.delivered_to(g, &prof) == vec![String::new()]));
    let report = last(&f, ANNA);
    assert!(
        report.starts_with(&format!("✅ Delete #{}", gone.0)),
        "{report}"
    );
    assert!(report.contains('🚀'), "{report}");

    // 🚀: the corrected post and those groups become the prepared post, previewed.
    press_button(&svc, &f, "repost:").await;
    assert_eq!(
        svc.db.get_text(UserId(ANNA)).await.unwrap().as_deref(),
        Some("Price 90")
    );
    let prepared: Vec<GroupJid> = svc
        .db
        .get_groups(UserId(ANNA))
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.jid)
        .collect();
    assert_eq!(prepared, groups);
    let (_, buttons) = last_buttons(&f, ANNA);
    assert!(buttons.iter().any(|b| b.starts_with("go:")), "{buttons:?}");
}

#[tokio::test]
async fn an_edit_due_after_its_window_closed_fails_with_the_reason() {
    let (svc, f, prof) = world().await;
    let groups = jids(2);
    let id = posted(&svc, &f, &prof, &groups).await;
    press_button(&svc, &f, "fix:").await;
    say(&svc, text(ANNA, "Price 90")).await;
    press_button(&svc, &f, "fgo:").await;
    let fix = started(&f).await;
    // The runner only gets to it after the window closed.
    f.clock.advance(EDIT_WINDOW_MS + 1);
    run(&svc, &f, fix).await;
    assert!(f.wappi.calls_of(WappiMethod::EditMessage).is_empty());
    let report = last(&f, ANNA);
    assert!(report.starts_with('⚠'), "{report}");
    assert!(report.contains("edit window has closed"), "{report}");
    let _ = id;
}

#[tokio::test]
async fn a_delete_removes_every_part_of_a_photo_post() {
    let (svc, f, prof) = world().await;
    let groups = jids(2);
    let image = svc
        .db
        .insert_image(&NewImage {
            user_id: UserId(ANNA),
            jpeg: &[0xFF, 0xD8, 0xFF, 0xD9],
            width: 1,
            height: 1,
            tg_file_id: None,
            now: f.clock.now(),
        })
        .await
        .unwrap();
    let id = svc
        .db
        .create_mailing(&NewMailing {
            user_id: UserId(ANNA),
            chat_id: CHAT,
            profile_id: prof.clone(),
            content: Content::with_images("Price 100", vec![image], false),
            groups: groups.clone(),
            skipped: vec![],
            now: f.clock.now(),
            announce_until: 0,
        })
        .await
        .unwrap();
    run(&svc, &f, id).await;
    assert_eq!(f.wappi.sends().len(), 4);

    press_button(&svc, &f, "rm:").await;
    let preview = last(&f, ANNA);
    assert!(
        preview.starts_with("🗑") && preview.contains("2 groups"),
        "{preview}"
    );
    press_button(&svc, &f, "fgo:").await;
    let gone = started(&f).await;
    run(&svc, &f, gone).await;
    let mut deleted: Vec<String> = f
        .wappi
        .calls_of(WappiMethod::DeleteMessage)
        .into_iter()
        .map(|c| c.target.unwrap())
        .collect();
    let mut all: Vec<String> =
        f.db.rows(id)
            .into_iter()
            .map(|r| r.message_id.unwrap())
            .collect();
    deleted.sort();
    all.sort();
    assert_eq!(
        deleted, all,
        "the photo and the text of every group, once each"
    );
    assert!(last(&f, ANNA).starts_with(&format!("✅ Delete #{}", gone.0)));
    // A delete's report offers nothing more.
    let (_, _, markup) = f.telegram.last_sent(CHAT).unwrap();
    assert!(markup.is_none());
}

#[tokio::test]
async fn a_confirmation_starts_once_and_only_the_users_own_mailing() {
    let (svc, f, prof) = world().await;
    let id = posted(&svc, &f, &prof, &jids(1)).await;
    press_button(&svc, &f, "rm:").await;
    let (mid, buttons) = last_buttons(&f, ANNA);
    let go = buttons
        .iter()
        .find(|b| b.starts_with("fgo:"))
        .unwrap()
        .clone();
    say(&svc, press(ANNA, mid, &go)).await;
    let gone = started(&f).await;
    say(&svc, press(ANNA, mid, &go)).await;
    assert_eq!(
        f.state.dequeue().await.unwrap(),
        None,
        "a second press starts nothing"
    );
    assert!(
        last(&f, ANNA).contains("no longer valid"),
        "{}",
        last(&f, ANNA)
    );
    run(&svc, &f, gone).await;

    // Another user's mailing id is refused.
    let bob = 5_106_617_743;
    register_user(&svc, UserId(bob), &profile("2f099bc3-478f"), Lang::En).await;
    say(&svc, press(bob, mid, &format!("rm:{}", id.0))).await;
    assert_eq!(last(&f, bob), "That mailing was not found.");
}
