//! Scheduled and repeating mailings on the Cloudflare Worker under `wrangler dev` (issue 14):
//! the Scheduler Durable Object's alarm fires the runs, D1 keeps one record per run. The
//! scenario is the native suite's (`schedule.rs`) without the kill.

use groupcast_e2e::scenarios;
use groupcast_e2e::worker_harness::worker_world;

#[tokio::test]
async fn scheduled_runs_go_at_their_time() {
    let w = worker_world().await;
    let s = scenarios::schedules_for_the_next_minute(&w, 7421).await;
    scenarios::scheduled_runs_went_as_said(&w, &s).await;
}
