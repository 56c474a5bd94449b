//! Scheduled and repeating mailings over the in-memory fakes: `/schedule` and `/schedules`
//! through `handle_update`, and the runs decided by `mailing::scheduled` under the fake clock.
//! The assertions are on what the user was told and on the mailings the runs created.

use super::tests::{dialogue, last, last_buttons, press, say, text};
use crate::bot::dialogue::DialogueState;
use crate::config::CoreSettings;
use crate::mailing::scheduled::{self, Fired};
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, SeriesId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::MailingStatus;
use crate::ports::{GroupEntry, IntakeConsumer, RunOutcome};
use crate::services::Services;
use crate::testing::*;
use crate::texts;
use chrono::{NaiveDate, TimeZone};

const ANNA: i64 = 5_106_617_741;
const CHAT: ChatId = ChatId(ANNA);
const POST: &str = "*Flat* for rent, 2 rooms";

/// A registered user (zone: the default, Europe/Moscow) with a post and two groups.
async fn world() -> (Services, Fakes, ProfileId) {
    let (svc, f) = services(CoreSettings::default());
    let prof = profile("2f099bc3-478d");
    register_user(&svc, UserId(ANNA), &prof, Lang::En).await;
    svc.db.set_text(UserId(ANNA), POST, T0).await.unwrap();
    let groups = [jid(1), jid(2)].map(|jid| GroupEntry { jid, name: None });
    svc.db.set_groups(UserId(ANNA), &groups).await.unwrap();
    (svc, f, prof)
}

/// Unix ms of a Moscow wall-clock time on a day of November 2023.
fn msk(day: u32, h: u32, m: u32) -> i64 {
    chrono_tz::Europe::Moscow
        .with_ymd_and_hms(2023, 11, day, h, m, 0)
        .unwrap()
        .timestamp_millis()
}

fn nov(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2023, 11, day).unwrap()
}

async fn fire(svc: &Services) -> Fired {
    scheduled::fire_due(svc).await.expect("a pass")
}

/// The mailing a run started: its groups and its text.
fn mailing_of(f: &Fakes, id: MailingId) -> (Vec<GroupJid>, String) {
    let m = f.db.mailing(id);
    let groups = f.db.rows(id).into_iter().map(|r| r.group).collect();
    (groups, m.content.text)
}

async fn finish(svc: &Services, id: MailingId) {
    svc.db
        .set_mailing_status(id, MailingStatus::Done, None, 0, T0)
        .await
        .expect("the mailing ends");
}

fn sent_since(f: &Fakes, n: usize) -> Vec<String> {
    f.telegram.sent_texts(CHAT).into_iter().skip(n).collect()
}

#[tokio::test]
async fn a_one_off_runs_once_at_its_time_with_the_post_as_it_was_scheduled() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule +1m")).await;
    let answer = last(&f, ANNA);
    assert!(answer.starts_with("🕒"), "{answer}");
    assert!(answer.contains("15.11.2023 01:14"), "{answer}");
    // A later edit of the post does not reach the scheduled one (a snapshot).
    svc.db.set_text(UserId(ANNA), "changed", T0).await.unwrap();

    assert_eq!(fire(&svc).await, Fired::default(), "not due yet");
    f.clock.advance(59_000);
    assert_eq!(fire(&svc).await.started, vec![]);
    f.clock.advance(1_000);
    let told = f.telegram.sent_texts(CHAT).len();
    let fired = fire(&svc).await;
    assert_eq!(fired.started.len(), 1);
    let id = fired.started[0];
    assert_eq!(mailing_of(&f, id), (vec![jid(1), jid(2)], POST.to_string()));
    assert_eq!(
        f.state.dequeue().await.unwrap(),
        Some(id),
        "handed to the runners"
    );
    let start = sent_since(&f, told);
    assert_eq!(start.len(), 1);
    assert!(
        start[0].starts_with(&format!("🚀 Scheduled mailing #{}", id.0)),
        "{start:?}"
    );
    assert!(
        f.db.mailing(id).progress_message_id.is_some(),
        "the start message is the progress message"
    );

    for _ in 0..3 {
        f.clock.advance(86_400_000);
        assert_eq!(fire(&svc).await, Fired::default(), "once only");
    }
    say(&svc, text(ANNA, "/schedules")).await;
    assert_eq!(
        last(&f, ANNA),
        texts::schedule::none(Lang::En),
        "a one-off is over"
    );
}

#[tokio::test]
async fn a_daily_series_skips_and_pauses_exactly_what_the_user_said() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule 10:00 repeat daily")).await;
    let answer = last(&f, ANNA);
    assert!(answer.starts_with("🕒"), "{answer}");
    for day in ["15.11.2023 10:00", "16.11.2023 10:00", "17.11.2023 10:00"] {
        assert!(answer.contains(day), "{day} in {answer}");
    }
    say(&svc, text(ANNA, "/schedules")).await;
    let (card, buttons) = last_buttons(&f, ANNA);
    assert_eq!(buttons, vec!["sskip:1", "spause:1", "sdel:1"]);
    assert!(last(&f, ANNA).contains("Next runs: 15.11.2023 10:00, 16.11.2023 10:00"));

    // ⏭: the 15th is skipped, the 16th runs.
    say(&svc, press(ANNA, card, "sskip:1")).await;
    assert_eq!(
        last(&f, ANNA),
        texts::schedule::skipped_next(Lang::En, 1, "15.11.2023 10:00", Some("16.11.2023 10:00"))
    );
    f.clock.set(msk(15, 10, 0));
    assert_eq!(fire(&svc).await.started, vec![]);
    f.clock.set(msk(16, 10, 0));
    let run16 = fire(&svc).await.started;
    assert_eq!(run16.len(), 1);
    finish(&svc, run16[0]).await;
    let s = svc.db.get_series(SeriesId(1)).await.unwrap().unwrap();
    assert_eq!(
        s.next_due_at,
        Some(msk(17, 10, 0)),
        "the next run after the first"
    );

    // ⏸: nothing on the 17th; ▶️ on the 17th after 10:00: the next is the 18th.
    say(&svc, press(ANNA, card, "spause:1")).await;
    assert!(last(&f, ANNA).starts_with("⏸ #1"));
    f.clock.set(msk(17, 10, 0));
    assert_eq!(fire(&svc).await, Fired::default());
    f.clock.set(msk(17, 11, 0));
    say(&svc, press(ANNA, card, "sresume:1")).await;
    assert!(
        last(&f, ANNA).contains("Next run: 18.11.2023 10:00"),
        "{}",
        last(&f, ANNA)
    );
    assert_eq!(
        fire(&svc).await,
        Fired::default(),
        "the 17th is not run late"
    );
    f.clock.set(msk(18, 10, 0));
    let run18 = fire(&svc).await.started;
    assert_eq!(run18.len(), 1);

    let mut runs = Vec::new();
    for d in [15, 16, 17, 18] {
        runs.push(svc.db.run_of(SeriesId(1), nov(d)).await.unwrap());
    }
    assert_eq!(
        runs,
        vec![
            Some((RunOutcome::Skipped, None)),
            Some((RunOutcome::Started, Some(run16[0]))),
            None,
            Some((RunOutcome::Started, Some(run18[0]))),
        ]
    );

    // 🗑: gone, nothing runs any more.
    finish(&svc, run18[0]).await;
    say(&svc, press(ANNA, card, "sdel:1")).await;
    assert_eq!(last(&f, ANNA), texts::schedule::deleted(Lang::En, 1));
    f.clock.set(msk(19, 10, 0));
    assert_eq!(fire(&svc).await, Fired::default());
}

#[tokio::test]
async fn a_run_due_during_an_active_mailing_waits_and_starts_after_it() {
    let (svc, f, prof) = world().await;
    let active = create_mailing(&svc, UserId(ANNA), &prof, &[jid(9)], "earlier").await;
    say(&svc, text(ANNA, "/schedule +1m")).await;
    f.clock.advance(60_000);
    let told = f.telegram.sent_texts(CHAT).len();
    assert_eq!(fire(&svc).await.waiting, 1);
    assert_eq!(fire(&svc).await.waiting, 1);
    let notices = sent_since(&f, told);
    assert_eq!(notices.len(), 1, "told once: {notices:?}");
    assert!(
        notices[0].starts_with("🕒") && notices[0].contains("waits"),
        "{notices:?}"
    );

    // Long past the grace: it was seen on time, so it still waits rather than being missed.
    f.clock.advance(3 * 3_600_000);
    assert_eq!(fire(&svc).await.waiting, 1);
    finish(&svc, active).await;
    let fired = fire(&svc).await;
    assert_eq!(fired.started.len(), 1);
    assert_eq!(mailing_of(&f, fired.started[0]).0, vec![jid(1), jid(2)]);
}

#[tokio::test]
async fn a_run_missed_by_downtime_starts_within_two_hours_and_is_skipped_after() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule 10:00 repeat daily")).await;
    // Down from before 10:00 until 13:01: the 15th is skipped and said so.
    f.clock.set(msk(15, 13, 1));
    let told = f.telegram.sent_texts(CHAT).len();
    let fired = fire(&svc).await;
    assert_eq!((fired.started.len(), fired.skipped), (0, 1));
    assert_eq!(
        sent_since(&f, told),
        vec![texts::schedule::missed(Lang::En, "15.11.2023 10:00", false)]
    );
    // Back at 11:59 the next day: within the grace, the 16th runs.
    f.clock.set(msk(16, 11, 59));
    assert_eq!(fire(&svc).await.started.len(), 1);
}

#[tokio::test]
async fn a_run_still_waiting_when_the_next_comes_due_is_skipped() {
    let (svc, f, prof) = world().await;
    let active = create_mailing(&svc, UserId(ANNA), &prof, &[jid(9)], "endless").await;
    say(&svc, text(ANNA, "/schedule 10:00 repeat daily")).await;
    f.clock.set(msk(15, 10, 0));
    assert_eq!(fire(&svc).await.waiting, 1);
    f.clock.set(msk(16, 10, 0));
    let told = f.telegram.sent_texts(CHAT).len();
    let fired = fire(&svc).await;
    assert_eq!((fired.skipped, fired.waiting), (1, 1));
    let said = sent_since(&f, told);
    assert_eq!(
        said[0],
        texts::schedule::missed(Lang::En, "15.11.2023 10:00", true)
    );
    assert!(
        said[1].contains("16.11.2023 10:00") && said[1].starts_with("🕒"),
        "{said:?}"
    );
    finish(&svc, active).await;
    assert_eq!(fire(&svc).await.started.len(), 1);
    assert_eq!(
        svc.db
            .run_of(SeriesId(1), nov(16))
            .await
            .unwrap()
            .map(|r| r.0),
        Some(RunOutcome::Started)
    );
}

#[tokio::test]
async fn without_a_subscription_a_run_is_skipped_with_the_offer_and_warned_of_a_day_before() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule 16.11 10:00 repeat daily")).await;
    // The subscription ends at 08:00 on the 16th, two hours before the first run.
    let ends = msk(16, 8, 0) / 1000;
    svc.db
        .set_subscription_until(UserId(ANNA), ends)
        .await
        .unwrap();
    f.clock.set(msk(15, 9, 0));
    assert_eq!(
        scheduled::warn_before_runs(&svc).await.unwrap(),
        0,
        "more than a day ahead"
    );
    f.clock.set(msk(15, 11, 0));
    let told = f.telegram.sent_texts(CHAT).len();
    assert_eq!(scheduled::warn_before_runs(&svc).await.unwrap(), 1);
    assert_eq!(scheduled::warn_before_runs(&svc).await.unwrap(), 0, "once");
    assert_eq!(
        sent_since(&f, told),
        vec![texts::schedule::ends_before_run(
            Lang::En,
            "16.11.2023",
            "16.11.2023 10:00"
        )]
    );

    f.clock.set(msk(16, 10, 0));
    let fired = fire(&svc).await;
    assert_eq!((fired.started.len(), fired.skipped), (0, 1));
    assert_eq!(
        last(&f, ANNA),
        texts::schedule::no_subscription(Lang::En, "16.11.2023 10:00")
    );
    let (offer, buttons) = last_buttons(&f, ANNA);
    assert_eq!(buttons, vec!["sub"]);
    say(&svc, press(ANNA, offer, "sub")).await;
    assert!(
        f.telegram
            .sent_texts(CHAT)
            .iter()
            .any(|t| t.starts_with("💎 Subscription is not active")),
        "the 💎 button shows the subscription"
    );
}

#[tokio::test]
async fn a_changed_zone_moves_the_next_run_to_the_new_zones_clock() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule 10:00 repeat daily")).await;
    let moscow = svc.db.get_series(SeriesId(1)).await.unwrap().unwrap();
    assert_eq!(moscow.next_due_at, Some(msk(15, 10, 0)));
    say(&svc, text(ANNA, "/tz Asia/Novosibirsk")).await;
    let nsk = svc.db.get_series(SeriesId(1)).await.unwrap().unwrap();
    // 10:00 in Novosibirsk (UTC+7) is 06:00 in Moscow (UTC+3).
    assert_eq!(nsk.next_due_at, Some(msk(15, 6, 0)));
    f.clock.set(msk(15, 6, 0));
    assert_eq!(fire(&svc).await.started.len(), 1);
}

#[tokio::test]
async fn schedules_the_bot_cannot_read_are_refused_and_the_preview_offers_one() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule 25:00")).await;
    assert!(
        last(&f, ANNA).starts_with("Not scheduled: cannot read the time “25:00”"),
        "{}",
        last(&f, ANNA)
    );
    assert!(svc.db.user_series(UserId(ANNA)).await.unwrap().is_empty());

    // 🕒 on the preview asks, and the answer is read as /schedule's words.
    say(&svc, text(ANNA, "/mailing")).await;
    let (preview, buttons) = last_buttons(&f, ANNA);
    assert!(buttons.contains(&"sch".to_string()), "{buttons:?}");
    say(&svc, press(ANNA, preview, "sch")).await;
    assert_eq!(dialogue(&f, ANNA), DialogueState::AwaitSchedule);
    say(&svc, text(ANNA, "tomorrow 9:99")).await;
    assert!(last(&f, ANNA).starts_with("Not scheduled"), "asked again");
    assert_eq!(dialogue(&f, ANNA), DialogueState::AwaitSchedule);
    say(&svc, text(ANNA, "завтра 09:30 повтор пн,ср,пт")).await;
    assert!(last(&f, ANNA).starts_with("🕒"), "{}", last(&f, ANNA));
    assert_eq!(dialogue(&f, ANNA), DialogueState::Idle);
    let s = &svc.db.user_series(UserId(ANNA)).await.unwrap()[0];
    // Tomorrow is Thursday the 16th: the first listed day on or after it is Friday the 17th.
    assert_eq!(s.next_due_at, Some(msk(17, 9, 30)));
}

#[tokio::test]
async fn two_passes_at_once_start_a_run_once() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/schedule +1m")).await;
    f.clock.advance(60_000);
    let (a, b) = tokio::join!(fire(&svc), fire(&svc));
    assert_eq!(a.started.len() + b.started.len(), 1);
    assert!(f.state.dequeue().await.unwrap().is_some(), "queued once");
    assert_eq!(f.state.dequeue().await.unwrap(), None);
}
