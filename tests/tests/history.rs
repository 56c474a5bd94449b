//! `/history` and its 📄 CSV (issue 16) against the real binary. The same scenario runs on the
//! Worker (`worker_history.rs`).

use groupcast_e2e::history_scenarios;
use groupcast_e2e::world::World;

#[tokio::test]
async fn history_lists_the_mailing_and_its_csv_names_every_group() {
    let w = World::start_with(|env| {
        env.insert("DELIVERY_AUDIT_DELAY_SECS".into(), "1".into());
    })
    .await;
    // The server's timer looks for due audits by itself.
    history_scenarios::history_lists_the_mailing_and_its_csv_names_every_group(
        &w,
        7601,
        171,
        async || {},
    )
    .await;
}
