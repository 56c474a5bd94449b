//! Scheduled and repeating mailings against the real binary (issue 14): runs at their time,
//! each group once, also when the process is killed before the due time and started again after
//! it; skip-next and pause; a run that waits behind an active mailing; and two processes on one
//! Redis and one database starting a run once. The same scenario runs on the Worker
//! (`worker_schedule.rs`).

use groupcast_e2e::harness::unix_ms;
use groupcast_e2e::scenarios;
use groupcast_e2e::world::World;
use std::time::Duration;

/// Everything scheduled, then `kill -9` before the due time and a start after it: the runs
/// are caught up (within the two-hour grace), each once.
#[tokio::test]
async fn scheduled_runs_go_at_their_time_across_a_kill_and_restart() {
    let mut w = World::start().await;
    let s = scenarios::schedules_for_the_next_minute(&w, 7401).await;
    w.server.kill9();
    let after_due = s.at_ms + 62_000 - unix_ms();
    tokio::time::sleep(Duration::from_millis(after_due.max(0) as u64)).await;
    w.server.restart().await;
    scenarios::scheduled_runs_went_as_said(&w, &s).await;
}

/// Two `serve` processes on one Redis and one database file: both schedulers see the due run,
/// one starts it; every group gets the post once and the database holds one run.
#[tokio::test]
async fn two_processes_start_a_scheduled_run_once() {
    let w = World::start_redis_with(|_| {}).await;
    let b = w.add_server("b", World::no_polling).await;
    let (p, _, jids) = w.ready(7411, 151, 4, "Пост для двух процессов").await;
    let at = unix_ms();
    p.says("/schedule +1m");
    p.hears("🕒 Запланировано").await;
    w.tg.wait_for_message(
        p.id,
        |t| t.contains("по расписанию запущена"),
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    p.hears("✅ Рассылка #").await;
    w.assert_each_delivered_once(&jids);
    assert!(w.wappi.deliveries()[0].at_ms >= at + 59_000);
    let db = w.server.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM series_runs"), 1);
    assert_eq!(count("SELECT COUNT(*) FROM mailings"), 1);
    drop(b);
}
