//! `/history` and its 📄 CSV over the in-memory fakes: what the user reads, which buttons they
//! get, and the CSV document the fake Telegram received (columns, the user's zone, the audit's
//! status, formula cells neutralised), plus the pure CSV writer.

use super::history::{mailing_csv, neutralise};
use super::tests::{last, last_buttons, press, say, text};
use crate::config::CoreSettings;
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::{Delivery, DeliveryState, MailingStatus};
use crate::ports::GroupEntry;
use crate::services::Services;
use crate::testing::*;
use crate::texts::history;

const ANNA: i64 = 5_106_617_751;
const BORIS: i64 = 5_106_617_752;
const EVIL: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";

/// Anna (Russian, zone Asia/Novosibirsk) with three named-or-not groups; Boris registered too.
async fn world() -> (Services, Fakes, ProfileId) {
    let (svc, f) = services(CoreSettings::default());
    let prof = profile("2f099bc3-4781");
    register_user(&svc, UserId(ANNA), &prof, Lang::Ru).await;
    svc.db
        .set_tz(UserId(ANNA), "Asia/Novosibirsk")
        .await
        .unwrap();
    let groups = [
        (jid(1), Some("Аренда Москва")),
        (jid(2), Some(EVIL)),
        (jid(3), None),
    ]
    .map(|(jid, name)| GroupEntry {
        jid,
        name: name.map(str::to_string),
    });
    svc.db.set_groups(UserId(ANNA), &groups).await.unwrap();
    register_user(&svc, UserId(BORIS), &profile("2f099bc3-4782"), Lang::Ru).await;
    (svc, f, prof)
}

/// Writes a group's row as the engine would have left it, now.
async fn settle(
    svc: &Services,
    f: &Fakes,
    id: MailingId,
    group: &GroupJid,
    state: DeliveryState,
    error: Option<&str>,
) {
    let mut row: Delivery = f.db.row(id, group);
    row.state = state;
    row.error = error.map(str::to_string);
    row.message_id = (state == DeliveryState::Sent).then(|| format!("wamid-{}", group.as_str()));
    row.updated_at = f.clock.now();
    svc.db.update_delivery(&row, 0).await.unwrap();
}

/// Anna's first mailing, finished: sent, failed, in doubt; the audit read the sent one back.
async fn finished_mailing(svc: &Services, f: &Fakes, prof: &ProfileId) -> MailingId {
    let id = create_mailing(
        svc,
        UserId(ANNA),
        prof,
        &jids(3),
        "Сдаётся квартира,\n2 комнаты",
    )
    .await;
    f.clock.advance(5_000);
    settle(svc, f, id, &jid(1), DeliveryState::Sent, None).await;
    f.clock.advance(1_000);
    let refused = "not a member of this group";
    settle(svc, f, id, &jid(2), DeliveryState::Failed, Some(refused)).await;
    f.clock.advance(1_000);
    let doubt = "-no answer from Wappi";
    settle(svc, f, id, &jid(3), DeliveryState::InDoubt, Some(doubt)).await;
    svc.db
        .set_mailing_status(id, MailingStatus::Done, None, 0, f.clock.now())
        .await
        .unwrap();
    svc.db
        .record_post_status(id, &jid(1), "read")
        .await
        .unwrap();
    id
}

/// A CSV as rows of cells (the BOM checked and dropped), read back by the `csv` crate.
fn read_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let body = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .expect("a UTF-8 byte order mark first");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body)
        .records()
        .map(|r| {
            r.expect("a CSV record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn history_lists_the_users_mailings_newest_first_with_counts_and_csv_buttons() {
    let (svc, f, prof) = world().await;
    let first = finished_mailing(&svc, &f, &prof).await;
    f.clock.advance(3_600_000);
    let second = create_mailing(&svc, UserId(ANNA), &prof, &[jid(1)], "Вторая").await;
    create_mailing(
        &svc,
        UserId(BORIS),
        &profile("2f099bc3-4782"),
        &[jid(1)],
        "Чужая",
    )
    .await;

    say(&svc, text(ANNA, "/history")).await;
    let shown = last(&f, ANNA);
    // T0 is 2023-11-14 22:13:20 UTC: 15.11.2023 05:13 in Novosibirsk (UTC+7).
    let want = format!(
        "📜 Последние рассылки (новые сверху). 📄 — CSV по группам:\n\n\
         #{} · 15.11.2023 06:13 · идёт\n«Вторая»\n\
         Отправлено 0 · Ошибок 0 · Под вопросом 0 · Осталось 1\n\n\
         #{} · 15.11.2023 05:13 · завершена\n«Сдаётся квартира, 2 комнаты»\n\
         Отправлено 1 · Ошибок 1 · Под вопросом 1 · Осталось 0",
        second.0, first.0
    );
    assert_eq!(shown, want);
    assert!(!shown.contains("Чужая"));
    let (_, buttons) = last_buttons(&f, ANNA);
    assert_eq!(
        buttons,
        vec![format!("hcsv:{}", second.0), format!("hcsv:{}", first.0)]
    );
}

#[tokio::test]
async fn the_csv_button_sends_the_mailings_groups_as_a_document() {
    let (svc, f, prof) = world().await;
    let id = finished_mailing(&svc, &f, &prof).await;
    say(&svc, text(ANNA, "/history")).await;
    let (message, buttons) = last_buttons(&f, ANNA);
    say(&svc, press(ANNA, message, &buttons[0])).await;

    let docs = f.telegram.documents_sent(ChatId(ANNA));
    assert_eq!(docs.len(), 1);
    let (name, bytes, caption) = &docs[0];
    assert_eq!(name, &format!("mailing-{}.csv", id.0));
    assert_eq!(
        caption.as_deref(),
        Some(
            format!(
                "📄 Рассылка #{}: 3 групп. Отправлено 1 · Ошибок 1 · Под вопросом 1 · Осталось 0",
                id.0
            )
            .as_str()
        )
    );
    // Rows at T0 + 5 s, + 6 s, + 7 s: 05:13:25.. in Novosibirsk.
    let cells = read_csv(bytes);
    let row = |name: &str, n: u64, state: &str, at: &str, why: &str, seen: &str| {
        [name, jid(n).as_str(), state, at, why, seen]
            .map(str::to_string)
            .to_vec()
    };
    assert_eq!(
        cells,
        vec![
            [
                "группа",
                "id группы",
                "состояние",
                "время",
                "причина",
                "доставка"
            ]
            .map(str::to_string)
            .to_vec(),
            row(
                "Аренда Москва",
                1,
                "sent",
                "2023-11-15T05:13:25+07:00",
                "",
                "read"
            ),
            row(
                &format!("'{EVIL}"),
                2,
                "failed",
                "2023-11-15T05:13:26+07:00",
                "not a member of this group",
                ""
            ),
            row(
                "",
                3,
                "in_doubt",
                "2023-11-15T05:13:27+07:00",
                "'-no answer from Wappi",
                ""
            ),
        ]
    );
    // The raw bytes: CRLF line ends, the formula cell quoted whole behind its apostrophe.
    let raw = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        raw.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""),
        "{raw}"
    );
    assert!(raw.ends_with("\r\n"));
}

#[tokio::test]
async fn only_the_users_own_mailing_is_exported() {
    let (svc, f, _) = world().await;
    let theirs = create_mailing(
        &svc,
        UserId(BORIS),
        &profile("2f099bc3-4782"),
        &[jid(1)],
        "Чужая",
    )
    .await;
    let message = f
        .telegram
        .seed_message(ChatId(ANNA), "old", Default::default());
    for data in [format!("hcsv:{}", theirs.0), "hcsv:999".to_string()] {
        say(&svc, press(ANNA, message, &data)).await;
        assert_eq!(last(&f, ANNA), history::gone(Lang::Ru));
    }
    assert!(f.telegram.documents_sent(ChatId(ANNA)).is_empty());
    // Boris gets his.
    say(&svc, press(BORIS, message, &format!("hcsv:{}", theirs.0))).await;
    assert_eq!(f.telegram.documents_sent(ChatId(BORIS)).len(), 1);
}

#[tokio::test]
async fn an_empty_history_says_so() {
    let (svc, f, _) = world().await;
    say(&svc, text(ANNA, "/history")).await;
    assert_eq!(last(&f, ANNA), history::empty(Lang::Ru));
    assert!(f.telegram.last_sent(ChatId(ANNA)).unwrap().2.is_none());
}

#[tokio::test]
async fn a_long_history_stays_within_one_message_and_lists_ten() {
    let (svc, f, prof) = world().await;
    let long = "Очень длинный пост ".repeat(300);
    let mut ids = Vec::new();
    for _ in 0..12 {
        let id = create_mailing(&svc, UserId(ANNA), &prof, &jids(3), &long).await;
        svc.db
            .set_mailing_status(id, MailingStatus::Cancelled, None, 0, f.clock.now())
            .await
            .unwrap();
        ids.push(id);
    }
    say(&svc, text(ANNA, "/history")).await;
    let shown = last(&f, ANNA);
    assert!(shown.encode_utf16().count() <= 4096, "{}", shown.len());
    assert_eq!(shown.matches("· остановлена").count(), 10);
    let (_, buttons) = last_buttons(&f, ANNA);
    let want: Vec<String> = ids
        .iter()
        .rev()
        .take(10)
        .map(|id| format!("hcsv:{}", id.0))
        .collect();
    assert_eq!(buttons, want);
}

#[test]
fn formula_cells_get_an_apostrophe() {
    for (cell, want) in [
        ("=1+2", "'=1+2"),
        ("+7 999", "'+7 999"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Аренда = дёшево", "Аренда = дёшево"),
        ("", ""),
        ("120363000000000001@g.us", "120363000000000001@g.us"),
    ] {
        assert_eq!(neutralise(cell), want, "{cell:?}");
    }
}

#[test]
fn the_csv_has_english_headers_the_zone_and_one_row_per_group() {
    let row = |group: u64, part: u32, state: DeliveryState, at: i64| Delivery {
        mailing_id: MailingId(1),
        group: jid(group),
        part,
        position: group as u32,
        state,
        attempts: 1,
        checks: 0,
        first_attempt_at: 0,
        next_attempt_at: 0,
        message_id: None,
        error: None,
        updated_at: at,
    };
    // A photo and its text per group: one line per group, its latest change, the worse state.
    let rows = vec![
        row(1, 1, DeliveryState::Sent, T0),
        row(1, 0, DeliveryState::Sent, T0 + 60_000),
        row(2, 1, DeliveryState::Sent, T0),
        row(2, 0, DeliveryState::Sending, T0 + 1_000),
    ];
    let names = [GroupEntry {
        jid: jid(2),
        name: Some("@admins, \"VIP\"".into()),
    }];
    let statuses = [(jid(1), "delivered".to_string())];
    let bytes = mailing_csv(Lang::En, chrono_tz::UTC, &rows, &names, &statuses);
    assert_eq!(
        read_csv(&bytes),
        vec![
            vec!["group", "group id", "state", "time", "reason", "delivery"],
            vec![
                "",
                jid(1).as_str(),
                "sent",
                "2023-11-14T22:14:20+00:00",
                "",
                "delivered"
            ],
            vec![
                "'@admins, \"VIP\"",
                jid(2).as_str(),
                "pending",
                "2023-11-14T22:13:21+00:00",
                "",
                ""
            ],
        ]
    );
}
