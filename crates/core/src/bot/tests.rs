//! `bot::handle_update` over the in-memory fakes: registration against a scripted Wappi,
//! the start blockers, and a start → drive → report round trip through the real engine.

use crate::bot::dialogue::DialogueState;
use crate::bot::handle_update;
use crate::config::CoreSettings;
use crate::crypto::TokenCipher;
use crate::mailing::{Cursor, Step};
use crate::model::ids::{ChatId, MailingId, ProfileId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::MailingStatus;
use crate::model::secret::Secret;
use crate::ports::GroupEntry;
use crate::services::Services;
use crate::telegram::callback::Callback;
use crate::telegram::{MessageId, ReplyMarkup, Update};
use crate::testing::*;
use crate::texts::{self};
use crate::wappi::{ProfileStatus, WappiError};
use base64::Engine as _;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const ANNA: i64 = 5_106_617_740;
const TOKEN: &str = "wappiToken0123456789abcdef";
const PROFILE: &str = "2f099bc3-478d";

static UPDATE_IDS: AtomicI64 = AtomicI64::new(1);

fn next_update_id() -> i64 {
    UPDATE_IDS.fetch_add(1, Ordering::SeqCst)
}

fn user_json(user: i64) -> serde_json::Value {
    json!({"id": user, "is_bot": false, "first_name": "Anna", "language_code": "en"})
}

/// A private text message from `user`.
pub(super) fn text(user: i64, body: &str) -> Update {
    let id = next_update_id();
    serde_json::from_value(json!({
        "update_id": id,
        "message": {"message_id": id, "from": user_json(user), "chat": {"id": user, "type": "private"},
                    "date": 1_700_000_000, "text": body}
    }))
    .unwrap()
}

/// A press of an inline button with `data` under the bot's message `message`.
pub(super) fn press(user: i64, message: MessageId, data: &str) -> Update {
    let id = next_update_id();
    serde_json::from_value(json!({
        "update_id": id,
        "callback_query": {"id": format!("cb{id}"), "from": user_json(user), "data": data,
            "message": {"message_id": message.0, "chat": {"id": user, "type": "private"}, "date": 1_700_000_000}}
    }))
    .unwrap()
}

pub(super) async fn say(svc: &Services, update: Update) {
    handle_update(svc, &update).await.expect("handle_update");
}

pub(super) fn last(f: &Fakes, user: i64) -> String {
    f.telegram
        .last_sent(ChatId(user))
        .map(|(_, t, _)| t)
        .unwrap_or_default()
}

pub(super) fn dialogue(f: &Fakes, user: i64) -> DialogueState {
    DialogueState::load(&f.db.user(UserId(user)).unwrap().dialogue)
}

/// The callback data of the inline buttons of the last message to `user`.
pub(super) fn last_buttons(f: &Fakes, user: i64) -> (MessageId, Vec<String>) {
    let (id, _, markup) = f.telegram.last_sent(ChatId(user)).unwrap();
    let Some(ReplyMarkup::Inline(kb)) = markup else {
        panic!("inline buttons expected")
    };
    (
        id,
        kb.inline_keyboard
            .iter()
            .flatten()
            .filter_map(|b| b.callback_data.clone())
            .collect(),
    )
}

async fn register_by_dialogue(svc: &Services, f: &Fakes) {
    say(svc, text(ANNA, "/start")).await;
    assert_eq!(last(f, ANNA), texts::ask_token(Lang::En));
    assert_eq!(dialogue(f, ANNA), DialogueState::AwaitToken);
    say(svc, text(ANNA, TOKEN)).await;
    assert_eq!(
        last(f, ANNA),
        texts::ask_profile(Lang::En, &Secret::new(TOKEN).masked())
    );
    say(svc, text(ANNA, PROFILE)).await;
}

#[tokio::test]
async fn registration_checks_the_profile_with_wappi_and_keeps_the_token_encrypted() {
    let (svc, f) = services(CoreSettings::default());
    register_by_dialogue(&svc, &f).await;

    assert_eq!(
        last(&f, ANNA),
        texts::registered(Lang::En, Some("79990001122"))
    );
    let calls = f.wappi.calls_of(WappiMethod::GetStatus);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].profile.as_str(), PROFILE);
    let user = f.db.user(UserId(ANNA)).unwrap();
    assert!(user.is_registered());
    assert_eq!(user.profile_id, ProfileId::parse(PROFILE));
    let stored = user.wappi_token_enc.clone().unwrap();
    assert!(!stored.contains(TOKEN), "stored encrypted");
    assert_eq!(
        svc.decrypt_token(UserId(ANNA), &stored).unwrap(),
        Secret::new(TOKEN)
    );
    assert_eq!(dialogue(&f, ANNA), DialogueState::Idle);
    for call in f.telegram.calls() {
        assert!(
            !call.text().unwrap_or("").contains(TOKEN),
            "the token was echoed: {call:?}"
        );
    }
}

/// After the operator replaced ENCRYPTION_KEY the stored token cannot be read: the user is
/// asked for it again (and can register anew) rather than being shown a menu that cannot work.
#[tokio::test]
async fn a_token_that_no_longer_decrypts_leads_back_to_registration() {
    let (svc, f) = services(CoreSettings::default());
    register_by_dialogue(&svc, &f).await;
    let mut other = svc.clone();
    other.cipher = Arc::new(
        TokenCipher::from_base64_key(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .unwrap(),
    );

    say(&other, text(ANNA, "/start")).await;
    assert_eq!(last(&f, ANNA), texts::ask_token(Lang::En));
    say(&other, text(ANNA, TOKEN)).await;
    say(&other, text(ANNA, PROFILE)).await;
    let user = f.db.user(UserId(ANNA)).unwrap();
    assert!(
        other.creds_of(&user).is_some(),
        "registered under the new key"
    );
}

#[tokio::test]
async fn registration_answers_each_wappi_status() {
    let not_authorized = ProfileStatus {
        authorized: false,
        app_status: Some("open".into()),
        ..Default::default()
    };
    let cases: Vec<(Result<ProfileStatus, WappiError>, String, &str)> = vec![
        (
            Ok(not_authorized),
            texts::profile_not_authorized(Lang::En),
            "profile",
        ),
        (
            Err(WappiError::NotAuthorized),
            texts::profile_not_authorized(Lang::En),
            "profile",
        ),
        (
            Err(WappiError::BadToken),
            texts::token_refused(Lang::En),
            "token",
        ),
        (
            Err(WappiError::ProfileNotFound),
            texts::profile_not_found(Lang::En),
            "profile",
        ),
        (
            Err(WappiError::NotPaid),
            texts::profile_not_paid(Lang::En),
            "profile",
        ),
        (
            Err(WappiError::Temporary("HTTP 502".into())),
            texts::wappi_unreachable(Lang::En),
            "profile",
        ),
    ];
    for (answer, want, awaits) in cases {
        let (svc, f) = services(CoreSettings::default());
        f.wappi.script_status(answer.clone());
        register_by_dialogue(&svc, &f).await;
        assert_eq!(last(&f, ANNA), want, "{answer:?}");
        assert!(
            !f.db.user(UserId(ANNA)).unwrap().is_registered(),
            "{answer:?}"
        );
        let state = dialogue(&f, ANNA);
        match awaits {
            "token" => assert_eq!(state, DialogueState::AwaitToken, "{answer:?}"),
            _ => assert!(
                matches!(state, DialogueState::AwaitProfile { .. }),
                "{answer:?}: {state:?}"
            ),
        }
    }
}

/// A registered user (subscription as given) with a text and `groups` groups.
async fn ready_user(
    svc: &Services,
    user: i64,
    prof: &ProfileId,
    subscription_until: i64,
    groups: u64,
) {
    register_user(svc, UserId(user), prof, Lang::En).await;
    svc.db
        .set_subscription_until(UserId(user), subscription_until)
        .await
        .unwrap();
    svc.db
        .set_text(UserId(user), "Flat for sale", svc.now_ms())
        .await
        .unwrap();
    let list: Vec<GroupEntry> = jids(groups)
        .into_iter()
        .map(|jid| GroupEntry { jid, name: None })
        .collect();
    svc.db.set_groups(UserId(user), &list).await.unwrap();
}

#[tokio::test]
async fn a_mailing_is_refused_without_a_subscription() {
    let (svc, f) = services(CoreSettings::default());
    ready_user(&svc, ANNA, &profile(PROFILE), 0, 3).await;

    say(&svc, text(ANNA, "/mailing")).await;
    assert_eq!(last(&f, ANNA), texts::need_subscription(Lang::En));
    // A stale confirm button does not get around it either.
    let mid = f
        .telegram
        .seed_message(ChatId(ANNA), "👀", Default::default());
    say(&svc, press(ANNA, mid, "go")).await;
    assert_eq!(last(&f, ANNA), texts::need_subscription(Lang::En));

    assert_eq!(f.db.mailing_count(), 0);
    assert!(f.state.queued().is_empty());
    assert!(f.wappi.calls().is_empty());
}

#[tokio::test]
async fn start_confirm_drive_and_report() {
    // The operator's cadence (as `DEFAULT_PACE=fast`), which this test times.
    let (svc, f) = services(CoreSettings {
        default_pace: crate::model::pacing::pace::Preset::Fast,
        ..CoreSettings::default()
    });
    let prof = profile(PROFILE);
    let until = T0 / 1000 + 86_400;
    ready_user(&svc, ANNA, &prof, until, 0).await;
    say(&svc, text(ANNA, "/groups")).await;
    say(
        &svc,
        text(
            ANNA,
            "120363000000000001@g.us\n120363000000000002\nnot a group",
        ),
    )
    .await;
    assert_eq!(
        last(&f, ANNA),
        texts::groups_saved(Lang::En, 2, 0, &[(3, "not a group".to_string())])
    );

    say(&svc, text(ANNA, "/mailing")).await;
    assert_eq!(
        last(&f, ANNA),
        texts::preview(
            Lang::En,
            "Flat for sale",
            2,
            &texts::Estimate {
                secs: 2,
                finish: None,
                pace: "Pace: ⚡ fast — a post every 1 s (the service's ceiling)".into(),
                notes: vec![
                    texts::risk_note(Lang::En, crate::model::pacing::pace::Risk::Medium, false),
                    // The scripted Wappi tells nothing of these groups.
                    texts::preflight_note(Lang::En, &[], 2, false),
                ],
            }
        )
    );
    let (preview, buttons) = last_buttons(&f, ANNA);
    assert_eq!(buttons, vec!["go:1", "no", "sch"]);

    say(&svc, press(ANNA, preview, "go:1")).await;
    let id = MailingId(1);
    assert_eq!(last(&f, ANNA), texts::started(Lang::En, id.0, 2, 2));
    let (started, buttons) = last_buttons(&f, ANNA);
    assert_eq!(
        buttons,
        vec![format!("pause:{}", id.0), format!("cancel:{}", id.0)]
    );
    assert!(f
        .telegram
        .message(ChatId(ANNA), preview)
        .unwrap()
        .keyboard
        .inline_keyboard
        .is_empty());
    let m = f.db.mailing(id);
    assert_eq!(
        (m.status, m.progress_message_id, m.content.text.as_str()),
        (MailingStatus::Running, Some(started.0), "Flat for sale")
    );
    assert_eq!(f.state.queued(), vec![id]);

    // The runner's part.
    let engine = f.engine(&svc);
    let lease = take_mailing(&engine, id, 60_000).await;
    let step = drive(&engine, &f.clock, id, &lease, &mut Cursor::default(), 1000)
        .await
        .unwrap();
    assert_eq!(step, Step::Finished);

    let sends: Vec<(String, String)> = f
        .wappi
        .sends()
        .into_iter()
        .map(|c| (c.to.unwrap().to_string(), c.text.unwrap()))
        .collect();
    assert_eq!(
        sends,
        vec![
            (
                "120363000000000001@g.us".to_string(),
                "Flat for sale".to_string()
            ),
            (
                "120363000000000002@g.us".to_string(),
                "Flat for sale".to_string()
            ),
        ]
    );
    let edits = f.telegram.edits_of(ChatId(ANNA), started);
    assert!(edits.last().unwrap().1.starts_with("📊"));
    assert!(last(&f, ANNA).starts_with("✅"), "{}", last(&f, ANNA));
    // /status afterwards shows the same report.
    say(&svc, text(ANNA, "/status")).await;
    assert!(last(&f, ANNA).starts_with("✅"));
}

#[tokio::test]
async fn a_second_user_on_the_same_number_is_told_it_is_busy() {
    let (svc, f) = services(CoreSettings::default());
    let prof = profile(PROFILE);
    let until = T0 / 1000 + 86_400;
    let boris = 600_700_800;
    ready_user(&svc, ANNA, &prof, until, 2).await;
    ready_user(&svc, boris, &prof, until, 2).await;
    say(&svc, text(ANNA, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    say(&svc, press(ANNA, preview, &buttons[0])).await;

    say(&svc, text(boris, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, boris);
    say(&svc, press(boris, preview, &buttons[0])).await;

    assert_eq!(last(&f, boris), texts::already_running(Lang::En));
    assert_eq!(f.db.mailing_count(), 1);
    assert_eq!(f.state.queued(), vec![MailingId(1)]);
    // And Anna herself cannot start a second one.
    say(&svc, text(ANNA, "/mailing")).await;
    assert_eq!(last(&f, ANNA), texts::already_running(Lang::En));
}

#[tokio::test]
async fn cancel_sets_both_flags_and_the_runner_stops_before_any_send() {
    let (svc, f) = services(CoreSettings::default());
    ready_user(&svc, ANNA, &profile(PROFILE), T0 / 1000 + 86_400, 3).await;
    say(&svc, text(ANNA, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    say(&svc, press(ANNA, preview, &buttons[0])).await;
    let (started, _) = last_buttons(&f, ANNA);
    let id = MailingId(1);

    say(&svc, press(ANNA, started, &format!("cancel:{}", id.0))).await;
    assert_eq!(last(&f, ANNA), texts::cancelling(Lang::En, id.0));
    assert!(f.db.mailing(id).cancel_requested);
    assert!(crate::ports::Cancels::is_cancelled(&*f.state, id)
        .await
        .unwrap());

    let engine = f.engine(&svc);
    let lease = take_mailing(&engine, id, 60_000).await;
    drive(&engine, &f.clock, id, &lease, &mut Cursor::default(), 100)
        .await
        .unwrap();
    assert!(f.wappi.sends().is_empty());
    assert_eq!(f.db.mailing(id).status, MailingStatus::Cancelled);
    assert!(last(&f, ANNA).starts_with("⚠️"));
}

#[tokio::test]
async fn resume_puts_a_paused_mailing_back_to_the_runner() {
    let (svc, f) = services(CoreSettings::default());
    ready_user(&svc, ANNA, &profile(PROFILE), T0 / 1000 + 86_400, 3).await;
    f.wappi.script_send(SendScript::Deliver);
    f.wappi
        .script_send(SendScript::Fail(WappiError::NotAuthorized));
    say(&svc, text(ANNA, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    say(&svc, press(ANNA, preview, &buttons[0])).await;
    let id = f.state.queued()[0];
    let engine = f.engine(&svc);
    let lease = take_mailing(&engine, id, 60_000).await;
    drive(&engine, &f.clock, id, &lease, &mut Cursor::default(), 100)
        .await
        .unwrap();
    crate::ports::Leases::release_lease(&*f.state, &lease)
        .await
        .unwrap();
    assert_eq!(f.db.mailing(id).status, MailingStatus::Paused);
    let (paused, buttons) = last_buttons(&f, ANNA);
    assert_eq!(
        buttons,
        vec![format!("resume:{}", id.0), format!("cancel:{}", id.0)]
    );

    // While paused, /mailing is still refused: the number stays taken.
    say(&svc, text(ANNA, "/mailing")).await;
    assert_eq!(last(&f, ANNA), texts::already_running(Lang::En));

    say(&svc, press(ANNA, paused, &format!("resume:{}", id.0))).await;
    assert_eq!(last(&f, ANNA), texts::resumed(Lang::En, id.0));
    assert_eq!(f.db.mailing(id).status, MailingStatus::Running);
    assert!(f
        .telegram
        .message(ChatId(ANNA), paused)
        .unwrap()
        .keyboard
        .inline_keyboard
        .is_empty());
    assert_eq!(
        f.state.queued(),
        vec![id, id],
        "queued at start and again at resume"
    );

    let lease = take_mailing(&engine, id, 60_000).await;
    drive(&engine, &f.clock, id, &lease, &mut Cursor::default(), 100)
        .await
        .unwrap();
    let prof = profile(PROFILE);
    let counts: Vec<usize> = jids(3)
        .iter()
        .map(|g| f.wappi.delivered_to(g, &prof).len())
        .collect();
    assert_eq!(counts, vec![1, 1, 1]);
    assert_eq!(f.wappi.sends().len(), 4, "g1, g2 (not authorized), g2, g3");
    assert!(last(&f, ANNA).starts_with("✅"));
}

#[tokio::test]
async fn only_the_newest_unchanged_preview_starts_and_only_once() {
    let (svc, f) = services(CoreSettings::default());
    ready_user(&svc, ANNA, &profile(PROFILE), T0 / 1000 + 86_400, 2).await;
    say(&svc, text(ANNA, "/mailing")).await;
    let (first, first_buttons) = last_buttons(&f, ANNA);
    say(&svc, text(ANNA, "/mailing")).await;
    let (second, second_buttons) = last_buttons(&f, ANNA);
    assert_ne!(first_buttons[0], second_buttons[0]);

    // The superseded preview, and a button sent before previews were numbered: void.
    for (mid, data) in [(first, first_buttons[0].as_str()), (first, "go")] {
        say(&svc, press(ANNA, mid, data)).await;
        assert_eq!(last(&f, ANNA), texts::preview_void(Lang::En));
        let (_, offered) = last_buttons(&f, ANNA);
        assert_eq!(offered, vec![Callback::FreshPreview.data()]);
    }
    assert_eq!(f.db.mailing_count(), 0);

    say(&svc, press(ANNA, second, &second_buttons[0])).await;
    assert_eq!(f.db.mailing_count(), 1);
    say(&svc, press(ANNA, second, &second_buttons[0])).await;
    assert_eq!(
        f.db.mailing_count(),
        1,
        "a second press starts nothing more"
    );
    assert_eq!(f.state.queued(), vec![MailingId(1)]);
}

#[tokio::test]
async fn a_preview_is_void_once_what_it_showed_changed() {
    let (svc, f) = services(CoreSettings::default());
    ready_user(&svc, ANNA, &profile(PROFILE), T0 / 1000 + 86_400, 2).await;
    say(&svc, text(ANNA, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    say(&svc, text(ANNA, "/groups")).await;
    say(&svc, text(ANNA, "120363000000000009@g.us")).await;
    say(&svc, press(ANNA, preview, &buttons[0])).await;
    assert_eq!(last(&f, ANNA), texts::preview_void(Lang::En));

    say(&svc, text(ANNA, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    say(&svc, text(ANNA, "/text")).await;
    say(&svc, text(ANNA, "Another flat")).await;
    say(&svc, press(ANNA, preview, &buttons[0])).await;
    assert_eq!(last(&f, ANNA), texts::preview_void(Lang::En));
    assert_eq!(f.db.mailing_count(), 0);

    // The fresh preview offered starts what it shows.
    say(&svc, press(ANNA, preview, &Callback::FreshPreview.data())).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    say(&svc, press(ANNA, preview, &buttons[0])).await;
    let m = f.db.mailing(MailingId(1));
    assert_eq!(m.content.text, "Another flat");
}

#[test]
fn only_a_cancel_is_urgent() {
    use crate::bot::is_urgent;
    let data = Callback::CancelMailing(7).data();
    for (update, urgent) in [
        (text(ANNA, "/cancel"), true),
        (text(ANNA, "/cancel@groupcast_bot"), true),
        (text(ANNA, "⛔ Остановить рассылку"), true),
        (press(ANNA, MessageId(3), &data), true),
        (text(ANNA, "/status"), false),
        (text(ANNA, "/pause"), true),
        (
            press(ANNA, MessageId(3), &Callback::PauseMailing(7).data()),
            true,
        ),
        (text(ANNA, "/resume"), false),
        (text(ANNA, "отмена? нет, это пост"), false),
        (
            press(ANNA, MessageId(3), &Callback::ImportAll.data()),
            false,
        ),
    ] {
        assert_eq!(is_urgent(&update), urgent, "{update:?}");
    }
}

#[tokio::test]
async fn pace_presets_custom_values_and_refusals() {
    use crate::model::pacing::pace::{PaceSettings, Preset, Span};
    let mut settings = CoreSettings::default();
    settings.pacing.profile_rate_per_sec = 10.0;
    let (svc, f) = services(settings);
    let prof = profile(PROFILE);
    ready_user(&svc, ANNA, &prof, T0 / 1000 + 86_400, 3).await;
    let stored =
        |f: &Fakes| -> PaceSettings { f.db.user(UserId(ANNA)).unwrap().pace(Preset::Careful) };

    say(&svc, text(ANNA, "/pace")).await;
    let (shown, buttons) = last_buttons(&f, ANNA);
    assert_eq!(buttons, vec!["pace:careful", "pace:normal", "pace:fast"]);
    assert!(
        last(&f, ANNA).starts_with("Pace: ⚡ fast"),
        "{}",
        last(&f, ANNA)
    );

    say(&svc, press(ANNA, shown, "pace:careful")).await;
    assert_eq!(stored(&f), Preset::Careful.settings());
    assert!(last(&f, ANNA).contains("🐢 careful"), "{}", last(&f, ANNA));

    say(
        &svc,
        text(ANNA, "/pace gap=0.3-0.8s batch=5 pause=3-4s hour=60"),
    )
    .await;
    let p = stored(&f);
    assert_eq!(
        (p.gap, p.batch, p.pause),
        (
            Span::new(300, 800),
            Some(Span::new(5, 5)),
            Span::new(3000, 4000)
        )
    );
    assert_eq!(p.hour, Some(60));
    assert_eq!(
        p.window,
        Preset::Careful.settings().window,
        "the rest is kept"
    );
    assert!(
        last(&f, ANNA).contains("gap 0.3–0.8 s"),
        "{}",
        last(&f, ANNA)
    );

    // The operator's ceiling is 10/s here: a faster gap is refused and nothing changes.
    for bad in [
        "/pace gap=0.05s",
        "/pace gap=60-20s",
        "/pace window=9-21",
        "/pace speed=2",
    ] {
        say(&svc, text(ANNA, bad)).await;
        assert!(
            last(&f, ANNA).starts_with("⚠️ The pace is unchanged"),
            "{bad}: {}",
            last(&f, ANNA)
        );
        assert_eq!(stored(&f), p, "{bad}");
    }
    say(&svc, text(ANNA, "/pace обычно")).await;
    assert_eq!(stored(&f), Preset::Normal.settings());
}

#[tokio::test]
async fn the_time_zone_is_set_by_name_offset_or_button_and_dates_follow_it() {
    let (svc, f) = services(CoreSettings::default());
    let prof = profile(PROFILE);
    // The subscription ends at 22:00 UTC: the next day east of Moscow's midnight.
    let until = 1_798_243_200 + 22 * 3600;
    ready_user(&svc, ANNA, &prof, until, 1).await;
    say(&svc, text(ANNA, "/subscribe")).await;
    assert!(f
        .telegram
        .sent_texts(ChatId(ANNA))
        .iter()
        .any(|t| t.contains("until 27.12.2026")));

    say(&svc, text(ANNA, "/tz UTC-5")).await;
    assert!(last(&f, ANNA).contains("UTC-5"), "{}", last(&f, ANNA));
    say(&svc, text(ANNA, "/subscribe")).await;
    assert!(f
        .telegram
        .sent_texts(ChatId(ANNA))
        .iter()
        .any(|t| t.contains("until 26.12.2026")));

    say(&svc, text(ANNA, "/tz Mars/Olympus")).await;
    assert!(
        last(&f, ANNA).starts_with("⚠️ Unknown time zone"),
        "{}",
        last(&f, ANNA)
    );
    assert_eq!(
        f.db.user(UserId(ANNA)).unwrap().tz.as_deref(),
        Some("Etc/GMT+5"),
        "unchanged"
    );

    say(&svc, text(ANNA, "/tz")).await;
    let (shown, buttons) = last_buttons(&f, ANNA);
    let novosibirsk = crate::model::zone::USUAL
        .iter()
        .position(|z| *z == "Asia/Novosibirsk")
        .unwrap();
    assert!(buttons.contains(&format!("tz:{novosibirsk}")));
    say(&svc, press(ANNA, shown, &format!("tz:{novosibirsk}"))).await;
    assert_eq!(
        f.db.user(UserId(ANNA)).unwrap().tz.as_deref(),
        Some("Asia/Novosibirsk")
    );
}
