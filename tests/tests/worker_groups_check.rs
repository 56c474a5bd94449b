//! Groups that really get the post (issue 15) on the Cloudflare Worker under `wrangler dev`:
//! the pre-flight check of the preview and the canary start, as in `groups_check.rs`.

use groupcast_e2e::scenarios;
use groupcast_e2e::worker_harness::{worker_world, worker_world_with};

#[tokio::test]
async fn the_preflight_check_leaves_out_groups_that_would_not_get_the_post() {
    let w = worker_world().await;
    scenarios::the_preflight_check_leaves_out_groups_that_would_not_get_the_post(&w, 7511).await;
}

#[tokio::test]
async fn a_canary_whose_first_posts_stay_undelivered_stops_the_rest() {
    let w = worker_world_with(|vars| {
        vars.insert("CANARY_WAIT_SECS".into(), "2".into());
    })
    .await;
    scenarios::a_canary_whose_first_posts_stay_undelivered_stops_the_rest(&w, 7512).await;
}
