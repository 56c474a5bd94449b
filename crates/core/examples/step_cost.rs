//! The CPU time of one engine step, natively, over the in-memory ports (`testing`): one
//! account, one mailing of `groups` groups at random gaps of 5–15 s (the clock jumps to each
//! wake-up), stepped to the end. Prints µs per step and per post, and steps per post.
//! `cargo run --release -p groupcast-core --features testing --example step_cost [groups] [rounds]`
//! (`scripts/bench step`).

use groupcast_core::config::CoreSettings;
use groupcast_core::mailing::{self, Cursor, Step};
use groupcast_core::model::lang::Lang;
use groupcast_core::model::pacing::pace::{PaceSettings, Span};
use groupcast_core::testing::*;
use groupcast_core::UserId;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let groups = args.first().copied().unwrap_or(20);
    let rounds = args.get(1).copied().unwrap_or(200);
    let pace = serde_json::to_string(&PaceSettings {
        gap: Span::new(5_000, 15_000),
        batch: None,
        pause: Span::new(0, 0),
        window: None,
        hour: None,
        day: None,
    })
    .expect("a pace serialises");
    let (mut busy, mut steps, mut posts) = (Duration::ZERO, 0u64, 0u64);
    for round in 0..rounds {
        let mut settings = CoreSettings::default();
        settings.pacing.profile_rate_per_sec = 5.0;
        let (svc, f) = services(settings);
        let svc = f.engine(&svc);
        let user = UserId(1000 + round as i64);
        let prof = profile("2f099bc3-478d");
        register_user(&svc, user, &prof, Lang::En).await;
        svc.db.set_pace(user, &pace).await.expect("set_pace");
        let id = create_mailing(&svc, user, &prof, &jids(groups), "Step cost post").await;
        let lease = take_mailing(&svc, id, DRIVER_LEASE_TTL_MS).await;
        let mut cursor = Cursor::default();
        loop {
            let t = Instant::now();
            let step = mailing::step(&svc, id, &lease, &mut cursor)
                .await
                .expect("engine step");
            busy += t.elapsed();
            steps += 1;
            match step {
                Step::Continue => {}
                Step::SleepUntil(at) => f.clock.advance_to(at),
                Step::Finished | Step::LostLease => break,
            }
        }
        posts += groups;
    }
    let us = busy.as_secs_f64() * 1e6;
    println!(
        "engine step over the in-memory ports (gaps 5-15 s, {groups} groups, {rounds} mailings): {:.1} µs per step, {:.1} steps per post, {:.0} µs per post",
        us / steps as f64,
        steps as f64 / posts as f64,
        us / posts as f64
    );
}
