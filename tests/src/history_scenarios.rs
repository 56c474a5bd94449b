//! `/history` and its 📄 CSV (issue 16), written once and run on both runtimes
//! (`tests/tests/history.rs` on the server, `tests/tests/worker_history.rs` on the Worker).
//!
//! A user mails six groups: four of the account, one more whose name is a spreadsheet formula,
//! and one the account is not in, which Wappi refuses. After the report and the delivery audit,
//! `/history` shows the mailing with its counts, and 📄 makes the fake Telegram receive a CSV
//! document naming every group with its state, reason and what the audit read back; the
//! formula arrives neutralised. Assertions are on what the fakes received.

use crate::fake_telegram::SentDocument;
use crate::fake_wappi::DeliveryPlan;
use crate::world::{Account, Bot, Person, World, STEP};
use std::time::{Duration, Instant};

/// A group name that a spreadsheet would run as a formula.
pub const FORMULA_NAME: &str = "=HYPERLINK(\"http://evil.example/x\",\"Скидки\")";

/// The text of the scenario's mailing.
const POST: &str = "Продаю гараж\nнедорого, торг";

/// The scenario. `kick` makes the runtime look for due delivery audits (the server's timer
/// does it by itself: a no-op there; the Worker's Cron is run by hand under `wrangler dev`);
/// the world must have `DELIVERY_AUDIT_DELAY_SECS=1`.
pub async fn history_lists_the_mailing_and_its_csv_names_every_group<S: Bot>(
    w: &World<S>,
    user: i64,
    n: u32,
    kick: impl AsyncFn(),
) {
    let (p, acc, mut jids) = w.ready(user, n, 4, POST).await;
    p.says("/history");
    p.hears("📜 Рассылок ещё не было").await;

    let formula_jid = format!("120363{:012}@g.us", u64::from(n) * 100_000 + 77);
    w.wappi.add_group(&acc.profile, &formula_jid, FORMULA_NAME);
    w.wappi.set_strict_recipients(true);
    let stranger = format!("1203639999999{:05}@g.us", n % 100_000);
    jids.push(formula_jid.clone());
    jids.push(stranger.clone());
    p.sets_groups(&jids).await;
    w.wappi.set_group_delivery(
        &jids[0],
        DeliveryPlan::delivered_after(Duration::ZERO).read_after(Duration::ZERO),
    );
    w.wappi
        .set_group_delivery(&jids[1], DeliveryPlan::pending_forever());

    // The stranger's id does not resolve: the pre-flight check doubts it, included on purpose.
    let id = p.starts_mailing_including_doubtful().await;
    let report = p
        .hears(&format!("⚠️ Рассылка #{id} завершена с ошибками"))
        .await;
    let refusal = report
        .text
        .lines()
        .find(|l| l.contains(&stranger))
        .and_then(|l| l.split_once(" — "))
        .map(|(_, why)| why.to_string())
        .unwrap_or_else(|| panic!("the report names the refused group: {}", report.text));
    assert!(!refusal.is_empty());
    assert_eq!(w.wappi.deliveries_to(&stranger).len(), 0);
    for jid in &jids[..5] {
        assert_eq!(w.wappi.deliveries_to(jid).len(), 1, "{jid}");
    }

    // The delivery audit, so that the CSV carries what it read back.
    let audit = format!("📬 Доставка рассылки #{id}");
    let deadline = Instant::now() + STEP;
    loop {
        kick().await;
        let seen =
            w.tg.wait_for_message(user, |t| t.contains(&audit), Duration::from_secs(1))
                .await;
        if seen.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no delivery audit of #{id}");
    }

    p.says("/history");
    let list = p.hears("📜 Последние рассылки").await;
    let t = &list.text;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let moscow_now = chrono::DateTime::from_timestamp(unix.as_secs() as i64, 0)
        .expect("a time")
        .with_timezone(&chrono_tz::Europe::Moscow);
    let today = moscow_now.format("%d.%m.%Y").to_string();
    let today_iso = moscow_now.format("%Y-%m-%dT").to_string();
    assert!(t.contains(&format!("#{id} · {today} ")), "{t}");
    assert!(
        t.contains("· завершена\n«Продаю гараж недорого, торг»\n"),
        "{t}"
    );
    assert!(
        t.contains("Отправлено 5 · Ошибок 1 · Под вопросом 0 · Осталось 0"),
        "{t}"
    );
    let button = Person::<crate::harness::Server>::button(&list, &format!("📄 CSV #{id}"));
    assert_eq!(button, format!("hcsv:{id}"));

    // Another registered user pressing the same button gets no document.
    let theirs = Account::numbered(n + 1);
    w.wappi.add_profile(&theirs.profile, &theirs.token);
    let other = w.person(user + 1);
    other.registers(&theirs).await;
    other.presses(list.message_id, &button);
    other.hears("Такой рассылки нет среди ваших").await;

    p.presses(list.message_id, &button);
    let doc = document(w, user).await;
    assert_eq!(doc.file_name, format!("mailing-{id}.csv"));
    assert_eq!(doc.mime_type.as_deref(), Some("text/csv"));
    assert_eq!(
        doc.caption.as_deref(),
        Some(
            format!(
                "📄 Рассылка #{id}: 6 групп. Отправлено 5 · Ошибок 1 · Под вопросом 0 · Осталось 0"
            )
            .as_str()
        )
    );
    assert!(w.tg.documents_to(user + 1).is_empty());

    let rows = read_csv(&doc.bytes);
    assert_eq!(
        rows[0],
        [
            "группа",
            "id группы",
            "состояние",
            "время",
            "причина",
            "доставка"
        ]
    );
    let named = |i: usize| format!("Группа {n}-{i}");
    let want: Vec<(String, &str, &str, &str, &str)> = vec![
        (named(0), jids[0].as_str(), "sent", "", "read"),
        (named(1), jids[1].as_str(), "sent", "", "pending"),
        (named(2), jids[2].as_str(), "sent", "", "delivered"),
        (named(3), jids[3].as_str(), "sent", "", "delivered"),
        (
            format!("'{FORMULA_NAME}"),
            &formula_jid,
            "sent",
            "",
            "delivered",
        ),
        (String::new(), &stranger, "failed", &refusal, ""),
    ];
    assert_eq!(rows.len(), want.len() + 1, "{rows:?}");
    for (row, (name, jid, state, why, seen)) in rows[1..].iter().zip(&want) {
        assert_eq!(
            (&row[0], &row[1], &row[2], &row[4], &row[5]),
            (
                name,
                &jid.to_string(),
                &state.to_string(),
                &why.to_string(),
                &seen.to_string()
            ),
            "{row:?}"
        );
        // Its last change, in the user's zone (Moscow): 2026-11-26T14:03:05+03:00.
        let at = &row[3];
        assert!(
            at.len() == 25 && at.starts_with(&today_iso) && at.ends_with("+03:00"),
            "{at}"
        );
    }
    // The formula cell in the raw bytes: quoted whole behind its apostrophe.
    let raw = String::from_utf8(doc.bytes.clone()).expect("UTF-8");
    assert!(
        raw.contains("\"'=HYPERLINK(\"\"http://evil.example/x\"\",\"\"Скидки\"\")\""),
        "{raw}"
    );
}

/// Waits for the first document the bot uploads to `user`.
async fn document<S: Bot>(w: &World<S>, user: i64) -> SentDocument {
    w.tg.wait_until(|tg| !tg.documents_to(user).is_empty(), STEP)
        .await
        .unwrap_or_else(|e| panic!("{e}: no document\n{}", w.server.logs()));
    w.tg.documents_to(user).remove(0)
}

/// A CSV as rows of cells (its byte order mark checked and dropped).
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
