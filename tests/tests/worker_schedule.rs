//! Scheduled and repeating mailings on the Cloudflare Worker under `wrangler dev` (issue 14):
//! the Scheduler Durable Object's alarm fires the runs, D1 keeps one record per run. The
//! scenario is the native suite's (`schedule.rs`): everything scheduled, the Worker stopped
//! before the due time and started again (same persisted D1 and Durable Objects) after it.

use groupcast_e2e::harness::unix_ms;
use groupcast_e2e::scenarios;
use groupcast_e2e::worker_harness::worker_world;
use std::time::Duration;

#[tokio::test]
async fn scheduled_runs_go_at_their_time_across_a_stop_and_restart() {
    let mut w = worker_world().await;
    let s = scenarios::schedules_for_the_next_minute(&w, 7421).await;
    w.server.stop().await;
    let after_due = s.at_ms + 62_000 - unix_ms();
    tokio::time::sleep(Duration::from_millis(after_due.max(0) as u64)).await;
    w.server.restart().await;
    scenarios::scheduled_runs_went_as_said(&w, &s).await;
}
