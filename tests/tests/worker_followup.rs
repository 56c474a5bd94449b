//! After the send (issue 16) on the Cloudflare Worker under `wrangler dev`: the scenarios of
//! `followup.rs`, the crash being a stop and restart of `wrangler dev` (the Durable Object
//! reset) while an edit's answer is held.

use groupcast_e2e::followup_scenarios::{self as s, RUN};
use groupcast_e2e::worker_harness::{worker_world, worker_world_with};

#[tokio::test]
async fn worker_a_post_is_fixed_then_deleted_in_every_group_once() {
    let w = worker_world().await;
    s::fix_then_delete_everywhere(&w, 5611, 91).await;
}

#[tokio::test]
async fn worker_a_restart_in_the_middle_of_a_fix_edits_no_group_twice_and_skips_none() {
    let mut w = worker_world_with(|vars| {
        vars.insert("WAPPI_TIMEOUT_SECS".into(), "10".into());
    })
    .await;
    let cut = s::a_fix_hangs_midway(&w, 5612, 92, "Воркер: гараж. Цена 300 000 ₽").await;
    w.server.stop().await;
    assert!(w.wappi.edits().len() < 10, "stopped in the middle");
    w.server.restart().await;
    w.server.wait_status(cut.id, "done", RUN).await;
    s::assert_cut_fix_settled(&w, &cut);
}

#[tokio::test]
async fn worker_after_the_edit_window_a_fix_becomes_delete_and_repost() {
    let w = worker_world_with(|vars| {
        vars.insert("EDIT_WINDOW_SECS".into(), "0".into());
    })
    .await;
    s::too_late_to_edit_offers_delete_and_repost(&w, 5613, 93).await;
}
