//! `/history` and its 📄 CSV (issue 16) on the Cloudflare Worker under `wrangler dev`, as in
//! `history.rs`.

use groupcast_e2e::history_scenarios;
use groupcast_e2e::worker_harness::worker_world_with;

#[tokio::test]
async fn history_lists_the_mailing_and_its_csv_names_every_group() {
    let w = worker_world_with(|vars| {
        vars.insert("DELIVERY_AUDIT_DELAY_SECS".into(), "1".into());
    })
    .await;
    // Crons never fire by themselves under `wrangler dev`: the scenario runs it while it waits
    // for the delivery audit.
    history_scenarios::history_lists_the_mailing_and_its_csv_names_every_group(
        &w,
        7611,
        172,
        async || w.server.run_cron("* * * * *").await,
    )
    .await;
}
