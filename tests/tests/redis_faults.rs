//! Faults on the Redis backend, against the real binary, a real Redis and the fake Wappi:
//! `kill -9` at 20 random moments of one 200-group mailing (each followed by a restart), a
//! runner frozen with SIGSTOP past its lease and then resumed, Redis itself restarted empty
//! mid-mailing, and a Wappi that answers 5xx, drops connections after delivering and rate-limits
//! with `Retry-After`. Every check is on what the fake Wappi received (which group, how many
//! times, when) and on the ledger. Randomized tests print their seed (`GROUPCAST_SEED` replays).

use groupcast_e2e::fake_wappi::{Fault, Outcome, Request};
use groupcast_e2e::harness::{test_seed, unix_ms, wait_until, PrivateRedis, Server, WappiTap};
use groupcast_e2e::world::{Person, World, JITTER_MS};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The ledger row of one group: state, attempts, error, updated_at.
fn row(s: &Server, id: i64, jid: &str) -> (String, i64, Option<String>, i64) {
    s.db()
        .query_row(
            "SELECT state, attempts, error, updated_at FROM deliveries WHERE mailing_id = ?1 AND group_jid = ?2",
            rusqlite::params![id, jid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

/// Spec A.1 on the Redis backend: `kill -9` at 20 random moments of one 200-group mailing at
/// 50/s, each followed by a restart of the same process (which must wait for the dead run's
/// lease to expire). Every group ends `sent` or `failed` with a reason, with reconciliation
/// (always on) none is delivered twice, every restart drives with a larger fencing number.
#[tokio::test]
async fn twenty_kill_9s_in_a_200_group_mailing_each_group_once() {
    let seed = test_seed("twenty_kill_9s");
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "50".into());
        env.insert("LEASE_TTL_SECS".into(), "2".into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let (acc, jids) = {
        let (_, acc, jids) = w.ready(6001, 61, 200, "Двадцать падений").await;
        (acc, jids)
    };
    // Answers take 0–25 ms, so a kill right after an arrival often lands while the send is in
    // flight (delivered, not yet recorded): the `in_doubt` path.
    for _ in 0..600 {
        w.wappi
            .push_fault(Fault::Delay(Duration::from_millis(rng.gen_range(0..=25))));
    }
    let mut moments: Vec<usize> = (1..=190)
        .collect::<Vec<_>>()
        .choose_multiple(&mut rng, 20)
        .copied()
        .collect();
    moments.sort_unstable();
    eprintln!("kill after these delivery counts: {moments:?}");

    let started = Instant::now();
    // ✅ without waiting for the start message: the posts begin at the press, and the first
    // kills may come before the bot said anything (the start message is then never sent).
    let p = w.person(6001);
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    w.wappi
        .wait_for_deliveries(1, Duration::from_secs(30))
        .await
        .unwrap();
    let id: i64 = w
        .server
        .db()
        .query_row("SELECT MAX(id) FROM mailings", [], |r| r.get(0))
        .unwrap();
    let mut w = w;
    let mut at_kill = Vec::new();
    for &n in &moments {
        w.wappi
            .wait_for_deliveries(n, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", w.server.logs()));
        // Half of the kills right at the arrival, half a random moment later (between sends).
        if rng.gen_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(1..=30))).await;
        }
        w.server.kill9();
        at_kill.push(w.wappi.deliveries().len());
        w.server.restart().await;
    }
    eprintln!("deliveries at each kill: {at_kill:?}");
    assert!(
        at_kill.iter().all(|n| *n < 200),
        "a kill landed after the end: {at_kill:?}"
    );
    w.server.wait_done(id, Duration::from_secs(60)).await;
    let took = started.elapsed();

    // Ledger: every row final, failures with a reason.
    let states = w.server.delivery_states(id);
    let failed: Vec<(String, Option<String>)> = {
        let db = w.server.db();
        let mut st = db.prepare("SELECT group_jid, error FROM deliveries WHERE mailing_id = ?1 AND state = 'failed'").unwrap();
        let rows = st
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows
    };
    assert!(
        states.keys().all(|s| s == "sent" || s == "failed"),
        "{states:?}"
    );
    assert!(
        failed
            .iter()
            .all(|(_, e)| e.as_deref().is_some_and(|e| !e.is_empty())),
        "{failed:?}"
    );
    // Fake: no group twice; every `sent` row delivered once; nothing outside the list.
    let counts = w.wappi.delivery_count_by_recipient();
    assert!(
        counts.values().all(|n| *n == 1),
        "duplicates: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert_eq!(counts.len(), jids.len() - failed.len(), "{states:?}");
    assert!(jids
        .iter()
        .filter(|j| !failed.iter().any(|(f, _)| f == *j))
        .all(|j| counts.get(j) == Some(&1)));
    assert_eq!(
        states.get("sent").copied().unwrap_or(0),
        200 - failed.len() as i64
    );
    // Each run that took the lease drove with a larger fence than the one before.
    let fences = w.server.driving_fences(id);
    assert!(
        fences.len() >= 2 && fences.windows(2).all(|f| f[0] < f[1]),
        "fences {fences:?}"
    );
    assert_eq!(w.server.mailing_fence(id), *fences.last().unwrap());
    let reads = w
        .wappi
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages/get"))
        .count();
    let sent = w.sends(&acc.profile).len();
    eprintln!(
        "20 kills: {took:?} in all, {} runs drove, {reads} history reads (in-doubt rows settled), {sent} send requests, {} failed",
        fences.len(),
        failed.len()
    );
    // One report, from the run that finished.
    let report = w.person(6001).hears("завершена").await;
    assert!(
        report.text.starts_with('✅') || report.text.starts_with('⚠'),
        "{}",
        report.text
    );
    let reports =
        w.tg.sent_to(6001)
            .into_iter()
            .filter(|m| m.text.starts_with('✅') || m.text.starts_with('⚠'))
            .count();
    assert_eq!(reports, 1, "one report");
}

/// Spec A.10 and A.11: the driving runner is frozen with SIGSTOP while a send is in flight,
/// for longer than its lease. The other runner takes over after the lease expires (settling
/// the in-flight row from the group's history, not resending it). When the frozen runner is
/// resumed it sends nothing more, the outcome of its in-flight call is not written (its fence
/// is stale), its release leaves the new holder's lease in place, and every group is delivered
/// once.
#[tokio::test]
async fn a_runner_frozen_past_its_lease_sends_nothing_more_and_its_stale_write_is_refused() {
    let mut tap_a = None;
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "20".into());
        env.insert("LEASE_TTL_SECS".into(), "2".into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
        let tap = WappiTap::start(&env["WAPPI_API_URL"]);
        env.insert("WAPPI_API_URL".into(), tap.url());
        tap_a = Some(tap);
    })
    .await;
    let tap_a = tap_a.unwrap();
    // 200 groups: B's part (~8 s at 20/s) outlasts a resumed A noticing its lost lease on a
    // busy machine, so B still holds the lease when A's release is checked.
    let (p, acc, jids) = w.ready(6002, 62, 200, "Заморозка").await;
    // The 30th send is answered after 3 s (the client gives up after 1 s): the runner is
    // frozen while it waits for that answer.
    for _ in 0..29 {
        w.wappi.push_fault(Fault::Delay(Duration::ZERO));
    }
    w.wappi.push_fault(Fault::Delay(Duration::from_secs(3)));
    let id = p.starts_mailing().await;
    // B starts next to A: its start-up scan resumes every running mailing, so its driver
    // waits for the profile's lease.
    let (b, tap_b) = w.second_process_once_driving(id, "b", false).await;
    w.wappi
        .wait_for_deliveries(30, Duration::from_secs(20))
        .await
        .unwrap();
    w.server.pause();
    let frozen = Instant::now();
    let in_flight = w.wappi.deliveries()[29].recipient.clone().unwrap();
    assert_eq!(tap_a.sends().len(), 30, "A made the 30 sends");
    assert!(tap_b.sends().is_empty(), "B waited for the lease");

    // B takes over once A's lease has expired, and not before.
    wait_until("B sends", Duration::from_secs(10), || {
        tap_b.sends().len() >= 5
    })
    .await;
    let b_first = tap_b.sends()[0].at;
    let a_last = tap_a.sends().last().unwrap().at;
    let handover = b_first.duration_since(a_last);
    eprintln!(
        "handover: B's first send {handover:?} after A's last (frozen {:?} after it)",
        frozen.duration_since(a_last)
    );
    assert!(
        handover >= Duration::from_millis(2000 - 100),
        "B sent {handover:?} after A's last send: the lease is 2 s"
    );
    assert!(
        handover <= Duration::from_millis(2000 + 1500),
        "B took {handover:?} to take over a 2 s lease"
    );
    let b_fence = *b.driving_fences(id).first().expect("B drives");
    assert!(b_fence > w.server.driving_fences(id)[0]);
    // The row of the send in flight was settled by B from the group's history.
    wait_until(
        "B settles the in-flight row",
        Duration::from_secs(10),
        || row(&w.server, id, &in_flight).0 == "sent",
    )
    .await;
    let reads: Vec<_> = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages/get"))
        .collect();
    assert!(
        reads
            .iter()
            .any(|r| r.chat_id.as_deref() == Some(in_flight.as_str())),
        "no history read for {in_flight}"
    );

    // Resume A, frozen well past its lease.
    assert!(frozen.elapsed() > Duration::from_secs(2));
    let before_resume = w.server.logs().len();
    let settled_row = row(&w.server, id, &in_flight);
    let resumed = Instant::now();
    let resumed_ms = unix_ms();
    w.server.resume();
    wait_until(
        "A notices it lost the lease",
        Duration::from_secs(10),
        || {
            groupcast_e2e::harness::events_in(&w.server.logs()[before_resume..], "driver stopped")
                .iter()
                .any(|e| e["outcome"] == "lease lost")
        },
    )
    .await;
    // A's release was a compare-and-delete: B's lease is still there.
    let ns = w.redis.as_ref().unwrap();
    let lease = groupcast_e2e::harness::redis_cli(
        &ns.url,
        &["GET", &format!("{}mailing_lock_{}", ns.prefix, acc.profile)],
    )
    .unwrap();
    assert!(
        lease.trim().contains(&format!("|{b_fence}|")),
        "lease after A's release: {lease:?}"
    );
    // The mailing still carries B's fence: nothing of A's was accepted.
    assert_eq!(w.server.mailing_fence(id), b_fence);

    w.server.wait_done(id, Duration::from_secs(30)).await;
    p.hears("✅").await;
    // A sent nothing after it was resumed; B did the rest.
    assert!(
        tap_a.sends().iter().all(|s| s.at < resumed),
        "A sent after resuming: {:?}",
        tap_a
            .sends()
            .iter()
            .filter(|s| s.at >= resumed)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        tap_a.sends().len() + tap_b.sends().len(),
        w.sends(&acc.profile).len()
    );
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 200)])
    );
    // A's call in flight ended after the resume with an outcome (logged), whose write with the
    // stale fence was refused: the row is still as B's settlement left it.
    let after = w.server.logs()[before_resume..].to_string();
    let outcome_logged = ["sent", "send failed"]
        .iter()
        .flat_map(|m| groupcast_e2e::harness::events_in(&after, m))
        .any(|e| e["group"] == in_flight.as_str());
    assert!(
        outcome_logged,
        "A's in-flight call had no outcome after the resume:\n{after}"
    );
    let said: Vec<String> = after
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["level"] != "DEBUG")
        .map(|e| e["fields"].to_string())
        .collect();
    eprintln!("A after the resume: {said:?}");
    let final_row = row(&w.server, id, &in_flight);
    assert_eq!(
        final_row, settled_row,
        "the in-flight row changed after A resumed"
    );
    assert!(final_row.3 < resumed_ms);
    drop(b);
}

/// Redis is killed mid-mailing and started again empty (no persistence): leases, pacing and the
/// intake queue are gone. The runner stops sending while Redis is away, the database rescan
/// finds the mailing again, a new lease is taken with a larger fence (fences never go back even
/// though the counter was lost), and the mailing completes with every group once.
#[tokio::test]
async fn redis_restarted_empty_mid_mailing_the_mailing_completes() {
    let mut redis = PrivateRedis::start().await;
    let w = World::start_redis_with(|env| {
        env.insert("REDIS_URL".into(), redis.url());
        env.insert("PROFILE_RATE_PER_SEC".into(), "50".into());
        env.insert("LEASE_TTL_SECS".into(), "2".into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let (p, _acc, jids) = w.ready(6003, 63, 200, "Redis перезапущен").await;
    let id = p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(50, Duration::from_secs(20))
        .await
        .unwrap();
    redis.kill9();
    let down_at = Instant::now();
    wait_until(
        "the server notices Redis is gone",
        Duration::from_secs(10),
        || w.server.logs().contains("redis unreachable"),
    )
    .await;
    // Down long enough for the driver to give up: it cannot confirm its lease.
    wait_until("the driver stops", Duration::from_secs(10), || {
        w.server
            .log_events("driver stopped")
            .iter()
            .any(|e| e["mailing"] == id)
    })
    .await;
    let delivered_down = w.wappi.deliveries().len();
    redis.restart().await;
    let up_at = Instant::now();
    w.server.wait_done(id, Duration::from_secs(40)).await;
    p.hears("✅").await;

    // Nothing was sent while Redis was away (but a send already in flight at the kill).
    let during: Vec<_> = w
        .wappi
        .deliveries()
        .into_iter()
        .filter(|r| r.at > down_at + Duration::from_millis(50) && r.at < up_at)
        .collect();
    assert!(
        during.is_empty(),
        "{} sends while Redis was down",
        during.len()
    );
    assert!(delivered_down < 200);
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 200)])
    );
    let fences = w.server.driving_fences(id);
    assert!(
        fences.len() >= 2 && fences.windows(2).all(|f| f[0] < f[1]),
        "fences {fences:?}"
    );
    eprintln!(
        "redis down for {:?}; resumed after {:?}; fences {fences:?}",
        up_at - down_at,
        w.wappi
            .deliveries()
            .iter()
            .find(|r| r.at > up_at)
            .map(|r| r.at - up_at)
    );
}

/// Spec A.3, A.4 and the 429 part of B on Redis: the fake answers 30 % of sends with 500/502/503,
/// drops the connection after delivering 5 % of them, and rate-limits three sends in a row with
/// `Retry-After: 1` (right after one more dropped answer). Every group is delivered exactly once (dropped answers are settled from the
/// history, not resent), attempts per group stay within `MAX_SEND_ATTEMPTS`, retries wait at
/// least their backoff, and after each 429 the profile sends nothing for its Retry-After.
#[tokio::test]
async fn five_xx_dropped_answers_and_429s_everything_delivered_once_pause_honoured() {
    flaky_gateway(false).await;
}

/// The same, and during a 429 pause the profile makes no Wappi call at all: not even the
/// history reads that settle rows whose answer was lost.
#[tokio::test]
async fn during_a_429_pause_the_profile_makes_no_call_at_all() {
    flaky_gateway(true).await;
}

async fn flaky_gateway(no_reads_in_pauses: bool) {
    let seed = test_seed("five_xx_drops_429");
    let (max_attempts, base_ms) = (12u32, 50u64);
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "50".into());
        env.insert("MAX_SEND_ATTEMPTS".into(), max_attempts.to_string());
        env.insert("RETRY_BASE_MS".into(), base_ms.to_string());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
        env.insert("LEASE_TTL_SECS".into(), "3".into());
    })
    .await;
    let (p, acc, jids) = w.ready(6004, 64, 200, "Неустойчивый шлюз").await;
    w.wappi.set_random_faults(seed, 0.3, 0.05);
    let id = p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(60, Duration::from_secs(30))
        .await
        .unwrap();
    // A lost answer right before the storm: its row is due for settling (2 s later) while the
    // profile is paused.
    w.wappi.push_fault(Fault::DropAfterAccept);
    w.wappi.set_rate_limit_storm(&acc.profile, 3, 1);
    w.server.wait_done(id, Duration::from_secs(90)).await;

    w.assert_each_delivered_once(&jids);
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 200)])
    );
    let all = w.sends(&acc.profile);
    let is_5xx = |r: &Request| {
        matches!(
            r.outcome,
            Outcome::Refused {
                http: 500..=599,
                ..
            }
        )
    };
    let is_429 = |r: &Request| matches!(r.outcome, Outcome::Refused { http: 429, .. });
    let n_5xx = all.iter().filter(|r| is_5xx(r)).count();
    let dropped: Vec<&Request> = all
        .iter()
        .filter(|r| r.outcome == Outcome::DeliveredThenDropped)
        .collect();
    let limited: Vec<&Request> = all.iter().filter(|r| is_429(r)).collect();
    eprintln!(
        "{} send requests: {n_5xx} 5xx, {} dropped after delivery, {} 429",
        all.len(),
        dropped.len(),
        limited.len()
    );
    assert!(n_5xx > 20, "the 5xx fault did not fire ({n_5xx})");
    assert_eq!(limited.len(), 3);

    // A dropped answer is settled from the group's history, never resent.
    let reads: Vec<Request> = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages/get"))
        .collect();
    for d in &dropped {
        let jid = d.recipient.as_deref().unwrap();
        assert!(
            reads
                .iter()
                .any(|r| r.chat_id.as_deref() == Some(jid) && r.at > d.at),
            "{jid} was not checked in the history"
        );
    }
    // After each 429 the profile waited its Retry-After (1 s) before sending again.
    for r in &limited {
        let next = all
            .iter()
            .find(|n| n.at > r.at)
            .expect("a send after the 429");
        let waited = next.at.duration_since(r.at).as_millis() as i64;
        assert!(
            waited >= 1000 - JITTER_MS,
            "sent {waited} ms after a 429 with Retry-After: 1"
        );
    }
    let reads_in_pauses = reads
        .iter()
        .filter(|r| {
            limited
                .iter()
                .any(|l| r.at > l.at && r.at.duration_since(l.at) < Duration::from_secs(1))
        })
        .count();
    eprintln!("history reads during a 429 pause: {reads_in_pauses}");
    assert!(
        !no_reads_in_pauses || reads_in_pauses == 0,
        "{reads_in_pauses} history reads during a Retry-After pause"
    );
    // Per group: attempts within the limit (429s are not attempts), retries after their backoff.
    let mut by_group: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in &all {
        by_group
            .entry(r.recipient.as_deref().unwrap())
            .or_default()
            .push(r);
    }
    for (jid, tries) in &by_group {
        let attempts = tries.iter().filter(|r| !is_429(r)).count();
        assert!(
            attempts <= max_attempts as usize,
            "{jid}: {attempts} attempts"
        );
        let mut failures = 0u32;
        for pair in tries.windows(2) {
            if is_5xx(pair[0]) {
                failures += 1;
                let backoff = (base_ms << (failures - 1)).min(60_000) as i64;
                let gap = pair[1].at.duration_since(pair[0].at).as_millis() as i64;
                assert!(
                    gap >= backoff * 3 / 4 - JITTER_MS,
                    "{jid}: retry {gap} ms after failure {failures} (backoff {backoff} ms ±25 %)"
                );
            }
        }
    }
    // The profile's pace held throughout, retries included: in any second from a send on, at
    // most 50 sends + 1 (arrival jitter of a few ms on this 2-core machine can bring two sends
    // closer than 20 ms, but never lets more through over a window).
    for (i, r) in all.iter().enumerate() {
        let within = all[i..]
            .iter()
            .take_while(|n| n.at.duration_since(r.at) < Duration::from_secs(1))
            .count();
        assert!(within <= 51, "{within} sends within 1 s at 50/s");
    }
    let min_gap = all
        .windows(2)
        .map(|p| p[1].at.duration_since(p[0].at).as_millis() as i64)
        .min()
        .unwrap();
    eprintln!("smallest gap between sends {min_gap} ms at 20 ms");
    p.hears("✅").await;
}
