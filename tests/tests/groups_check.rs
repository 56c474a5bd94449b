//! Groups that really get the post (issue 15) against the real binary: the pre-flight check
//! of the preview. The same scenario runs on the Worker (`worker_groups_check.rs`).

use groupcast_e2e::scenarios;
use groupcast_e2e::world::World;

#[tokio::test]
async fn the_preflight_check_leaves_out_groups_that_would_not_get_the_post() {
    let w = World::start().await;
    scenarios::the_preflight_check_leaves_out_groups_that_would_not_get_the_post(&w, 7501).await;
}

/// A canary start stops at undelivered first posts; ▶️ sends the rest (`CANARY_WAIT_SECS` is
/// two seconds here).
#[tokio::test]
async fn a_canary_whose_first_posts_stay_undelivered_stops_the_rest() {
    let w = World::start_with(|env| {
        env.insert("CANARY_WAIT_SECS".into(), "2".into());
    })
    .await;
    scenarios::a_canary_whose_first_posts_stay_undelivered_stops_the_rest(&w, 7502).await;
}
