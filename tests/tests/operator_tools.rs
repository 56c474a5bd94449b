//! The operator's tools against the real binary: `groupcast check` (webhook registration and
//! delivery errors, database and migrations, Redis), `groupcast export` (the CSV matches the
//! ledger, quoted properly), and `/broadcast` (one message per user, at most 30 a second,
//! Telegram's `retry_after` honoured, a report at the end, operators only).

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::harness::{binary, free_port, WEBHOOK_SECRET};
use groupcast_e2e::scenarios::{
    assert_retry_after_honoured, busiest_second, everyone_starts, operator_broadcasts,
};
use groupcast_e2e::world::World;
use std::collections::HashMap;

const PUBLIC_URL: &str = "https://bot.example.test";

/// A `groupcast` subcommand with these settings; (success, stdout, stderr).
async fn run(args: &[&str], env: HashMap<String, String>) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(binary())
            .args(&args)
            .env_clear()
            .envs(&env)
            .output()
            .expect("run groupcast");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// The line of `check`'s output about `part`, which must start with `status`.
fn line_of<'a>(out: &'a str, status: &str, part: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(status) && l.contains(&format!(" {part}:")))
        .unwrap_or_else(|| panic!("no {status} line for {part} in:\n{out}"))
}

#[tokio::test]
async fn check_reads_the_webhook_the_database_and_redis() {
    let w = World::start_with(|env| {
        env.insert("PUBLIC_URL".into(), PUBLIC_URL.into());
        env.insert("TELEGRAM_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    })
    .await;
    let env = w.server.env.clone();

    // No webhook registered yet: a problem naming the fix, and a failing exit.
    let (ok, out, _) = run(&["check"], env.clone()).await;
    assert!(!ok, "{out}");
    let line = line_of(&out, "PROBLEM", "webhook");
    assert!(line.contains("groupcast set-webhook"), "{line}");
    line_of(&out, "ok", "telegram");
    line_of(&out, "ok", "database");
    assert_eq!(w.tg.calls_of("getWebhookInfo").len(), 1);

    // Registered: every line ok.
    let (ok, out, err) = run(&["set-webhook"], env.clone()).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["check"], env.clone()).await;
    assert!(ok, "{out}{err}");
    let line = line_of(&out, "ok", "webhook");
    assert!(
        line.contains(&format!("{PUBLIC_URL}/telegram/webhook"))
            && line.contains("0 update(s) pending"),
        "{line}"
    );
    assert!(line_of(&out, "ok", "database").contains("all migrations applied"));
    for part in ["configuration", "telegram", "state", "encryption key"] {
        line_of(&out, "ok", part);
    }
    assert!(out.lines().all(|l| l.starts_with("ok")), "{out}");

    // Telegram could not deliver: the last error, with what to look at.
    w.tg.set_webhook_error("Connection timed out");
    let (ok, out, _) = run(&["check"], env.clone()).await;
    assert!(!ok);
    let line = out
        .lines()
        .find(|l| l.starts_with("PROBLEM webhook:") && l.contains("Connection timed out"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("PUBLIC_URL"), "{line}");

    // Registered somewhere else.
    let mut moved = env.clone();
    moved.insert("PUBLIC_URL".into(), "https://other.example.test".into());
    let (ok, out, _) = run(&["check"], moved).await;
    assert!(!ok);
    assert!(line_of(&out, "PROBLEM", "webhook").contains("Telegram has https://bot.example.test"));

    // A missing database file is reported, not created.
    let mut missing = env.clone();
    let path = w.dir.path().join("nowhere/groupcast.db");
    missing.insert("DATABASE_PATH".into(), path.display().to_string());
    let (ok, out, _) = run(&["check"], missing).await;
    assert!(!ok);
    assert!(line_of(&out, "PROBLEM", "database").contains("groupcast migrate"));
    assert!(!path.exists(), "check created the database");

    // A database missing a migration.
    let partial = w.dir.path().join("partial.db");
    {
        let db = rusqlite::Connection::open(&partial).unwrap();
        db.execute_batch(
            "CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO _migrations VALUES ('0001_init.sql', 0);",
        )
        .unwrap();
    }
    let mut behind = env.clone();
    behind.insert("DATABASE_PATH".into(), partial.display().to_string());
    let (ok, out, _) = run(&["check"], behind).await;
    assert!(!ok);
    let line = line_of(&out, "PROBLEM", "database");
    assert!(
        line.contains("0002_billing.sql") && line.contains("groupcast migrate"),
        "{line}"
    );

    // Redis that answers (the test Redis), and one that does not.
    let mut redis = env.clone();
    redis.insert("REDIS_URL".into(), groupcast_e2e::harness::redis_url());
    let (_, out, _) = run(&["check"], redis).await;
    assert!(
        line_of(&out, "ok", "state").contains("redis reachable"),
        "{out}"
    );
    let mut redis = env.clone();
    redis.insert(
        "REDIS_URL".into(),
        format!("redis://127.0.0.1:{}", free_port()),
    );
    let (ok, out, _) = run(&["check"], redis).await;
    assert!(!ok);
    assert!(line_of(&out, "PROBLEM", "state").contains("REDIS_URL"));
}

/// RFC 4180 records (quoted fields, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "a record without CRLF"
    );
    records
}

#[tokio::test]
async fn export_writes_the_ledger_as_csv() {
    let w = World::start().await;
    let user = 8201;
    let (p, acc, jids) = w.ready(user, 1, 6, "Экспорт").await;
    // One group refused with a reason holding a comma and quotes; one with a tricky name.
    w.wappi.push_fault(Fault::Status(
        400,
        r#"{"status":"error","detail":"chat \"x\" unknown, check the id"}"#.into(),
    ));
    {
        let db = rusqlite::Connection::open(w.dir.path().join("groupcast.db")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        db.execute(
            "UPDATE groups SET name = ?1 WHERE user_id = ?2 AND jid = ?3",
            rusqlite::params!["Дом \"Ромашка\", подъезд 2", user, jids[1]],
        )
        .unwrap();
    }
    let id = p.starts_mailing().await;
    let report = p.hears(&format!("Рассылка #{id}")).await;
    assert!(report.text.starts_with('⚠'), "{}", report.text);
    assert_eq!(w.sends(&acc.profile).len(), 6);

    let (ok, out, err) = run(
        &["export", "--user", &user.to_string()],
        w.server.env.clone(),
    )
    .await;
    assert!(ok, "{err}");
    assert!(err.contains("exported 6 row(s)"), "{err}");
    let records = parse_csv(&out);
    assert_eq!(
        records[0],
        groupcast_server::export::HEADER.map(String::from).to_vec()
    );
    let rows = &records[1..];
    assert_eq!(rows.len(), 6);

    // Field by field against the database.
    let db = w.server.db();
    let (created, status): (i64, String) = db
        .query_row(
            "SELECT created_at, status FROM mailings WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut stmt = db
        .prepare(
            "SELECT group_jid, part, state, attempts, COALESCE(message_id, ''), COALESCE(error, ''), updated_at
             FROM deliveries WHERE mailing_id = ?1 ORDER BY position, part",
        )
        .unwrap();
    let ledger: Vec<(String, i64, String, i64, String, String, i64)> = stmt
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (row, (jid, part, state, attempts, message_id, error, updated)) in rows.iter().zip(&ledger)
    {
        let iso = groupcast_server::export::iso_time;
        assert_eq!(row[0], id.to_string());
        assert_eq!(row[1], iso(created));
        assert_eq!(row[2], status);
        assert_eq!(&row[3], jid);
        assert_eq!(row[5], part.to_string());
        assert_eq!(&row[6], state);
        assert_eq!(row[7], attempts.to_string());
        assert_eq!(&row[8], message_id);
        assert_eq!(&row[9], error);
        assert_eq!(row[10], iso(*updated));
    }
    assert_eq!(rows[1][4], "Дом \"Ромашка\", подъезд 2");
    // The other pasted ids carry their names from the account's chat list (issue 15).
    assert_eq!(
        rows.iter().filter(|r| r[4].starts_with("Группа ")).count(),
        5,
        "{rows:?}"
    );
    let failed: Vec<_> = rows.iter().filter(|r| r[6] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0][9].contains("chat \"x\" unknown, check the id"),
        "{failed:?}"
    );
    assert!(rows
        .iter()
        .filter(|r| r[6] == "sent")
        .all(|r| !r[8].is_empty()));
    assert!(
        rows[0][1].ends_with('Z') && rows[0][1].len() == 20,
        "{}",
        rows[0][1]
    );

    // One mailing to a file: the same text.
    let file = w.dir.path().join("report.csv");
    let (ok, _, err) = run(
        &[
            "export",
            "--user",
            &user.to_string(),
            "--mailing",
            &id.to_string(),
            "--out",
            file.to_str().unwrap(),
        ],
        w.server.env.clone(),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), out);

    // Another user's mailing, or none at all: refused.
    let (ok, _, err) = run(
        &["export", "--user", "1", "--mailing", &id.to_string()],
        w.server.env.clone(),
    )
    .await;
    assert!(
        !ok && err.contains(&format!("belongs to user {user}")),
        "{err}"
    );
    let (ok, _, err) = run(
        &["export", "--user", &user.to_string(), "--mailing", "999"],
        w.server.env.clone(),
    )
    .await;
    assert!(!ok && err.contains("does not exist"), "{err}");
    // A user without mailings: the header only.
    let (ok, out, _) = run(&["export", "--user", "777"], w.server.env.clone()).await;
    assert!(ok);
    assert_eq!(parse_csv(&out).len(), 1);
}

/// Issue 12, item 14: group names are set by any WhatsApp admin; a name that a spreadsheet
/// would run as a formula (leading `=`, `+`, `-`, `@`, tab, CR) is exported with a leading `'`,
/// so the cell is shown as text. Other names are exported as they are.
#[tokio::test]
async fn export_neutralises_cells_a_spreadsheet_would_run() {
    let w = World::start().await;
    let user = 8202;
    let (p, acc, jids) = w.ready(user, 2, 7, "Формулы").await;
    let names = [
        r#"=HYPERLINK("http://x","y")"#,
        "+7 999 Чат",
        "-2+3",
        "@SUM(1,2)",
        "\tТаб",
        "\r=1",
        "Обычная группа",
    ];
    {
        let db = rusqlite::Connection::open(w.dir.path().join("groupcast.db")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        for (jid, name) in jids.iter().zip(names) {
            db.execute(
                "UPDATE groups SET name = ?1 WHERE user_id = ?2 AND jid = ?3",
                rusqlite::params![name, user, jid],
            )
            .unwrap();
        }
    }
    let id = p.starts_mailing().await;
    p.hears(&format!("Рассылка #{id}")).await;
    assert_eq!(w.sends(&acc.profile).len(), 7);

    let (ok, out, err) = run(
        &["export", "--user", &user.to_string()],
        w.server.env.clone(),
    )
    .await;
    assert!(ok, "{err}");
    // The very bytes: quoted (it holds a comma and quotes), the quote mark first.
    assert!(
        out.contains(r#","'=HYPERLINK(""http://x"",""y"")","#),
        "{out}"
    );
    let rows = &parse_csv(&out)[1..];
    assert_eq!(rows.len(), 7);
    for (row, name) in rows.iter().zip(names) {
        let want = if name == "Обычная группа" {
            name.to_string()
        } else {
            format!("'{name}")
        };
        assert_eq!(row[4], want);
    }
    // No cell of the export starts like a formula.
    for cell in rows.iter().flatten() {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{cell:?}"
        );
    }
}

const ADMIN: i64 = 9000;
const USERS: i64 = 40;
const FIRST_USER: i64 = 9100;
const HELD_USER: i64 = FIRST_USER + 7;
const RETRY_AFTER_SECS: u64 = 2;
const BROADCAST: &str = "Плановые работы сегодня в 23:00, бот будет недоступен 10 минут.";

#[tokio::test]
async fn broadcast_reaches_every_user_once_within_telegram_limits() {
    let w = World::start_with(|env| {
        env.insert("ADMIN_TELEGRAM_IDS".into(), ADMIN.to_string());
    })
    .await;
    // 40 users and the operator write to the bot (and so become its users).
    let everyone: Vec<i64> = (FIRST_USER..FIRST_USER + USERS).chain([ADMIN]).collect();
    everyone_starts(&w, &everyone).await;

    // For anyone else /broadcast is what any unknown command is.
    let other = w.person(FIRST_USER);
    other.says("/broadcast Всем привет");
    let answer = other.hears("").await;
    other.says("/nosuchcommand Всем привет");
    let unknown = other.hears("").await;
    assert_eq!(answer.text, unknown.text);
    assert!(!answer.text.contains("📣"));

    // The operator: /broadcast, the text, the confirmation with the count (41), ✅; one copy
    // per user.
    let calls =
        operator_broadcasts(&w, ADMIN, &everyone, BROADCAST, HELD_USER, RETRY_AFTER_SECS).await;
    assert!(w
        .tg
        .sent_to(FIRST_USER)
        .iter()
        .all(|m| m.text != "Всем привет"));

    // At most 30 a second overall, and no chat before its retry_after ran out.
    let at: Vec<_> = calls.iter().map(|c| c.at).collect();
    let busiest = busiest_second(&at);
    let span = at.last().unwrap().duration_since(at[0]);
    eprintln!(
        "broadcast: {} sends in {span:?}, at most {busiest} in any second",
        at.len()
    );
    assert!(busiest <= 30, "{busiest} broadcast sends within a second");
    assert!(
        span.as_millis() >= 1200,
        "41 sends took {span:?}: not paced"
    );
    assert_retry_after_honoured(&w, &calls, HELD_USER, RETRY_AFTER_SECS);
    let violations = w.tg.violations();
    assert!(violations.is_empty(), "{violations:?}");

    let metrics = reqwest::get(format!("{}/metrics", w.server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("groupcast_broadcast_messages_total{outcome=\"sent\"} 41"),
        "{metrics}"
    );
}
