//! After the send (issue 16) on the server: a post fixed and deleted in every group, a
//! `kill -9` in the middle of a fix, and the edit window refused with delete-and-repost
//! offered. Judged by what the fake Wappi carried out.

use groupcast_e2e::followup_scenarios::{self as s, RUN};
use groupcast_e2e::world::World;

#[tokio::test]
async fn a_post_is_fixed_then_deleted_in_every_group_once() {
    let w = World::start().await;
    s::fix_then_delete_everywhere(&w, 5601, 81).await;
}

#[tokio::test]
async fn a_kill_9_in_the_middle_of_a_fix_edits_no_group_twice_and_skips_none() {
    let mut w = World::start().await; // WAPPI_TIMEOUT_SECS=3
    let cut = s::a_fix_hangs_midway(&w, 5602, 82, "Гараж, 18 м². Цена 300 000 ₽").await;
    w.server.kill9();
    assert!(w.wappi.edits().len() < 10, "killed in the middle");
    w.server.restart().await;
    w.server.wait_done(cut.id, RUN).await;
    s::assert_cut_fix_settled(&w, &cut);
}

#[tokio::test]
async fn after_the_edit_window_a_fix_becomes_delete_and_repost() {
    let w = World::start_with(|env| {
        env.insert("EDIT_WINDOW_SECS".into(), "0".into());
    })
    .await;
    s::too_late_to_edit_offers_delete_and_repost(&w, 5603, 83).await;
}
