//! Several `groupcast serve` processes on one Redis and one database file, against the real
//! binary and the fake Wappi: they share the mailings, each profile's mailing is driven by
//! exactly one process at a time, a dead driver's mailing is taken over within the lease
//! timeout and continued from the ledger, SIGTERM hands the work over at once (lease released,
//! in-flight send recorded, exit within 10 s), and a new process started next to an old one,
//! then the old one stopped, is a deploy that skips and doubles nothing.
//!
//! Which process made which send is seen by a [`WappiTap`] in front of the fake for each
//! process; counts, timings and pacing are taken where the fake Wappi received the calls.

use groupcast_e2e::fake_wappi::{Fault, Request};
use groupcast_e2e::harness::{events_in, test_seed, wait_until, Server, TapSend, WappiTap};
use groupcast_e2e::world::{Account, Person, World, JITTER_MS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// World settings: a server whose Wappi calls go through a new tap, which is stored in `tap`.
fn tapped(tap: &mut Option<WappiTap>) -> impl FnOnce(&mut HashMap<String, String>) + '_ {
    move |env| {
        let t = WappiTap::start(&env["WAPPI_API_URL"]);
        env.insert("WAPPI_API_URL".into(), t.url());
        *tap = Some(t);
    }
}

fn min_gap_ms(reqs: &[Request]) -> i64 {
    reqs.windows(2)
        .map(|p| p[1].at.duration_since(p[0].at).as_millis() as i64)
        .min()
        .unwrap_or(i64::MAX)
}

fn max_gap_ms(reqs: &[Request]) -> i64 {
    reqs.windows(2)
        .map(|p| p[1].at.duration_since(p[0].at).as_millis() as i64)
        .max()
        .unwrap_or(0)
}

fn row_state(s: &Server, id: i64, jid: &str) -> (String, Option<String>) {
    s.db()
        .query_row(
            "SELECT state, error FROM deliveries WHERE mailing_id = ?1 AND group_jid = ?2",
            rusqlite::params![id, jid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Reports sent to a user (messages starting with ✅ or ⚠️).
fn reports(w: &World, user: i64) -> usize {
    w.tg.sent_to(user)
        .iter()
        .filter(|m| m.text.starts_with('✅') || m.text.starts_with('⚠'))
        .count()
}

/// Where each send request of `profile` started, by the process's own account: the time of
/// its "wappi call ok" log line minus the call's latency (unix ms, ±1 ms), over `servers`.
fn request_starts(servers: &[&Server], profile: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for s in servers {
        for line in s.logs().lines() {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let f = &e["fields"];
            if f["message"] != "wappi call ok"
                || f["profile"] != profile
                || f["path"] != "/api/sync/message/send"
            {
                continue;
            }
            // "2026-11-27T01:56:05.244877Z": ms of the day, plus today's start from the fake's clock.
            let ts = e["timestamp"].as_str().expect("timestamp");
            let hms: Vec<f64> = ts[11..ts.len() - 1]
                .split(':')
                .map(|x| x.parse().expect("time"))
                .collect();
            let of_day = ((hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]) * 1000.0) as i64;
            out.push(of_day - f["latency_ms"].as_i64().expect("latency"));
        }
    }
    out.sort_unstable();
    out
}

/// Issue, first sentence, and spec B.17 for several processes: two processes on one Redis and
/// one database, 50 users start a 6-group mailing each at once (on 50 Wappi profiles, 2 sends
/// per second each). The processes share the mailings; each mailing's sends all come from one
/// process; every group gets its own user's text once; per profile no two sends arrive at the
/// fake closer than 1/rate − `jitter_ms`.
async fn fifty_profiles_on_two_processes(jitter_ms: i64) {
    const USERS: usize = 50;
    const GROUPS: usize = 6;
    const INTERVAL_MS: i64 = 500;
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "2".into());
    })
    .await;
    let b = w.add_server("b", World::no_polling).await;
    let accounts: Vec<Account> = (0..USERS as u32)
        .map(|i| Account::numbered(100 + i))
        .collect();
    let mut jids: Vec<Vec<String>> = Vec::new();
    for (i, acc) in accounts.iter().enumerate() {
        w.wappi.add_profile(&acc.profile, &acc.token);
        jids.push(w.groups(acc, GROUPS, 100 + i as u64));
    }
    let people: Vec<Person> = (0..USERS).map(|i| w.person(7100 + i as i64)).collect();
    let text = |i: usize| format!("Объявление пользователя {i}");
    // Every dialogue step for all 50 users, then every answer: the users talk at the same time.
    let started = Instant::now();
    for p in &people {
        p.says("/start");
    }
    for (i, p) in people.iter().enumerate() {
        p.hears("токен").await;
        p.says(&accounts[i].token);
    }
    for (i, p) in people.iter().enumerate() {
        p.hears("профиля").await;
        p.says(&accounts[i].profile);
    }
    for p in &people {
        p.hears("✔️").await;
        p.says("/text");
    }
    for (i, p) in people.iter().enumerate() {
        p.hears("📝").await;
        p.says(&text(i));
    }
    for p in &people {
        p.hears("Текст сохранён").await;
        p.says("/groups");
    }
    for (i, p) in people.iter().enumerate() {
        p.hears("👥").await;
        p.says(&jids[i].join("\n"));
    }
    for p in &people {
        p.hears("Сохранено групп").await;
        p.says("/mailing");
    }
    let mut previews = Vec::new();
    for p in &people {
        previews.push(p.hears("Предпросмотр").await);
    }
    // ✅ from all 50, back to back.
    for (p, preview) in people.iter().zip(&previews) {
        p.presses(preview.message_id, &Person::button(preview, "✅"));
    }
    let dialogue = started.elapsed();
    let mut ids = Vec::new();
    for p in &people {
        let m = p.hears("🚀 Рассылка #").await;
        ids.push(
            m.text["🚀 Рассылка #".len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    let all_done = || {
        let n: i64 = w
            .server
            .db()
            .query_row(
                "SELECT COUNT(*) FROM mailings WHERE status = 'done'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        n == USERS as i64
    };
    wait_until("all 50 mailings done", Duration::from_secs(90), all_done).await;
    let mailing_time = started.elapsed() - dialogue;

    // Every group once, with its own user's text, from its own profile.
    let all_jids: Vec<String> = jids.iter().flatten().cloned().collect();
    w.assert_each_delivered_once(&all_jids);
    for (i, acc) in accounts.iter().enumerate() {
        let s = w.sends(&acc.profile);
        assert_eq!(s.len(), GROUPS, "profile {i}");
        assert!(s
            .iter()
            .all(|r| r.body_text.as_deref() == Some(text(i).as_str())
                && jids[i].contains(r.recipient.as_ref().unwrap())));
    }
    for id in &ids {
        assert_eq!(
            w.server.delivery_states(*id),
            HashMap::from([("sent".to_string(), GROUPS as i64)])
        );
    }
    // Each mailing's sends all came from one process, and the work was shared (a driver logs
    // "sent" for each send it made).
    let senders = |s: &Server| -> HashMap<i64, usize> {
        let mut out = HashMap::new();
        for e in s.log_events("sent") {
            *out.entry(e["mailing"].as_i64().unwrap()).or_insert(0) += 1;
        }
        out
    };
    let (by_a, by_b) = (senders(&w.server), senders(&b));
    let both: Vec<&i64> = by_a.keys().filter(|m| by_b.contains_key(m)).collect();
    assert!(both.is_empty(), "mailings sent by both processes: {both:?}");
    for id in &ids {
        let n = by_a.get(id).or(by_b.get(id)).copied().unwrap_or(0);
        assert_eq!(n, GROUPS, "mailing {id}: {n} sends logged");
    }
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "the work was not shared: A {by_a:?}, B {by_b:?}"
    );
    // Pacing per profile, measured where the fake received the calls.
    let gaps: Vec<i64> = accounts
        .iter()
        .map(|a| min_gap_ms(&w.sends(&a.profile)))
        .collect();
    let worst = *gaps.iter().min().unwrap();
    let worst_profile = &accounts[gaps.iter().position(|g| *g == worst).unwrap()].profile;
    let arrivals: Vec<i64> = w
        .sends(worst_profile)
        .iter()
        .map(|r| r.at_ms % 86_400_000)
        .collect();
    let starts = request_starts(&[&w.server, &b], worst_profile);
    let start_gap = starts.windows(2).map(|p| p[1] - p[0]).min().unwrap_or(0);
    eprintln!(
        "50 profiles: dialogues {dialogue:?}, mailings {mailing_time:?}; A sent for {} mailings, B for {}; \
         smallest per-profile gap at the fake {worst} ms at {INTERVAL_MS} ms (that profile: arrivals {arrivals:?}, \
         request starts by the server's log {starts:?}, smallest gap there {start_gap} ms)",
        by_a.len(),
        by_b.len()
    );
    assert!(worst >= INTERVAL_MS - jitter_ms, "per-profile gaps (ms): {gaps:?}; the worst profile: arrivals {arrivals:?}, request starts {starts:?}");
}

/// The scenario above with a tolerance for this machine: every gap is checked against 1/rate −
/// 25 ms, which two drivers on one profile, a burst or a lost pause would all break (see the
/// strict variant below for the spec's 5 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_fifty_profiles_one_sender_per_mailing_paced() {
    fifty_profiles_on_two_processes(25).await;
}

/// Spec B.17's bound exactly: per-profile gaps at the fake never below 1/rate − 5 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_fifty_profiles_gaps_never_below_interval_minus_5_ms() {
    fifty_profiles_on_two_processes(JITTER_MS).await;
}

/// Issue: "when that process dies, another takes over within the lease timeout and continues
/// from the ledger". A drives; B runs next to it (started while the mailing runs: its start-up
/// scan resumes running mailings, so it waits on the profile's lease). `kill -9` of A at a
/// random moment: B's first send comes no earlier than A's lease allows (A's last send + TTL)
/// and at most one lease poll later; every send of A precedes every send of B (one driver at a
/// time); every group is delivered once, the ledger is all `sent`, one report is sent.
#[tokio::test]
async fn kill_9_of_the_driver_the_other_process_takes_over_within_the_lease() {
    let seed = test_seed("kill_9_handover");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tap_a = None;
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "20".into());
        env.insert("LEASE_TTL_SECS".into(), "2".into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
        tapped(&mut tap_a)(env);
    })
    .await;
    let tap_a = tap_a.unwrap();
    let (acc, jids, id) = {
        let (p, acc, jids) = w.ready(7001, 71, 120, "Передача при сбое").await;
        (acc, jids, p.starts_mailing().await)
    };
    let (b, tap_b) = w.second_process_once_driving(id, "b", false).await;
    let kill_at = rng.gen_range(15..=60);
    w.wappi
        .wait_for_deliveries(kill_at, Duration::from_secs(20))
        .await
        .unwrap();
    let mut w = w;
    w.server.kill9();
    let killed = Instant::now();
    assert!(tap_b.sends().is_empty(), "B sent while A held the lease");
    b.wait_done(id, Duration::from_secs(30)).await;

    let (a_sends, b_sends) = (tap_a.sends(), tap_b.sends());
    let a_last = a_sends.last().unwrap().at;
    let b_first = b_sends.first().unwrap().at;
    let after_last = b_first.duration_since(a_last);
    let after_kill = b_first.duration_since(killed);
    eprintln!("killed after {kill_at} deliveries; B's first send {after_last:?} after A's last, {after_kill:?} after the kill");
    assert!(
        after_last >= Duration::from_millis(1900),
        "B sent {after_last:?} after A's last send: A's lease (2 s) was still valid"
    );
    assert!(
        after_kill <= Duration::from_millis(2000 + 1500),
        "B took {after_kill:?} to take over a 2 s lease"
    );
    assert!(
        a_sends.iter().all(|s| s.at < b_first),
        "the two processes' sends interleave"
    );
    assert_eq!(a_sends.len() + b_sends.len(), w.sends(&acc.profile).len());
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        b.delivery_states(id),
        HashMap::from([("sent".to_string(), 120)])
    );
    let (fa, fb) = (w.server.driving_fences(id), b.driving_fences(id));
    assert_eq!(
        (fa.len(), fb.len()),
        (1, 1),
        "A drove {fa:?}, B drove {fb:?}"
    );
    assert!(fb[0] > fa[0] && b.mailing_fence(id) == fb[0]);
    w.person(7001).hears("✅").await;
    assert_eq!(reports(&w, 7001), 1);
}

/// The same takeover when the dead driver's mailing is young and the survivor never took it
/// from the queue: both processes run before the mailing starts, and the driver dies at a
/// random moment of its first 5 s, at a random phase of the survivor's database rescan (every
/// 5 s; it is how the survivor learns of a mailing it did not dequeue, now at any age once the
/// start message is recorded). The survivor takes over within max(lease, rescan interval):
/// with the 2 s lease here, within 5 s plus a lease poll and a step; never through the 30 s
/// stale-claim requeue or the old 10 s "fresh" wait. (With a lease shorter than the 5 s rescan
/// the "within the lease timeout" does not strictly hold: see the report.)
#[tokio::test]
async fn kill_9_of_the_driver_of_a_young_mailing_is_taken_over_within_lease_or_rescan() {
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "20".into());
        env.insert("LEASE_TTL_SECS".into(), "2".into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let mut b = w.add_server("b", World::no_polling).await;
    let seed = test_seed("young_mailing_takeover");
    let mut rng = StdRng::seed_from_u64(seed);
    let kill_at = rng.gen_range(5..=100);
    // The dialogue's timing is fixed (the bot paces its messages), so without this the
    // mailing would always start at the same phase of B's rescan.
    let phase = Duration::from_millis(rng.gen_range(0..5000));
    tokio::time::sleep(phase).await;
    let (jids, id) = {
        let (p, _, jids) = w.ready(7002, 72, 150, "Молодая рассылка").await;
        (jids, p.starts_mailing().await)
    };
    w.wappi
        .wait_for_deliveries(kill_at, Duration::from_secs(20))
        .await
        .unwrap();
    let mut w = w;
    let a_drives = !w.server.driving_fences(id).is_empty();
    let killed = Instant::now();
    let before = w.wappi.deliveries().len();
    if a_drives {
        w.server.kill9();
    } else {
        b.kill9();
    }
    let survivor = if a_drives { &b } else { &w.server };
    let taken = tokio::time::timeout(Duration::from_secs(30), async {
        while w.wappi.deliveries().len() <= before + 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let after = killed.elapsed();
    eprintln!(
        "phase {phase:?}: driver {} killed after {kill_at} deliveries; next sends {after:?} later",
        if a_drives { "A" } else { "B" }
    );
    assert!(taken.is_ok(), "no takeover within 30 s");
    assert!(
        after <= Duration::from_millis(5000 + 1500),
        "the survivor took {after:?} to take over (2 s lease, 5 s rescan)"
    );
    survivor.wait_done(id, Duration::from_secs(30)).await;
    w.assert_each_delivered_once(&jids);
}

/// Issue: "SIGTERM: stop taking new work, finish or abandon-and-record the in-flight send,
/// release leases, exit within 10 s." A drives with B waiting; SIGTERM reaches A while a send
/// is in flight whose answer comes later than A's Wappi timeout. A records that row `in_doubt`
/// (it gave up on an answer that may have been sent), sends nothing more, releases the lease
/// and exits in under 10 s; B takes over at once (well before the 5 s lease could have
/// expired), settles the row from the group's history without resending it, and finishes.
#[tokio::test]
async fn sigterm_records_the_in_flight_send_releases_the_lease_and_exits_within_10_s() {
    let mut tap_a = None;
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "20".into());
        env.insert("LEASE_TTL_SECS".into(), "5".into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
        tapped(&mut tap_a)(env);
    })
    .await;
    let tap_a = tap_a.unwrap();
    let (acc, jids, id) = {
        let (p, acc, jids) = w.ready(7003, 73, 80, "Плавная остановка").await;
        // The 40th send is delivered but answered after 1.5 s.
        for _ in 0..39 {
            w.wappi.push_fault(Fault::Delay(Duration::ZERO));
        }
        w.wappi
            .push_fault(Fault::Delay(Duration::from_millis(1500)));
        (acc, jids, p.starts_mailing().await)
    };
    let (b, tap_b) = w.second_process_once_driving(id, "b", false).await;
    w.wappi
        .wait_for_deliveries(40, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(tap_b.sends().is_empty(), "B sent while A held the lease");
    let in_flight = w.wappi.deliveries()[39].recipient.clone().unwrap();
    let mut w = w;
    let term = Instant::now();
    let exit = w.server.terminate_async(Duration::from_secs(10)).await;
    let exited = Instant::now();
    let took = exit.expect("A did not exit within 10 s of SIGTERM");
    // The abandoned send is recorded, not forgotten: B cannot have settled it yet (2 s delay).
    let recorded = row_state(&w.server, id, &in_flight);

    b.wait_done(id, Duration::from_secs(30)).await;
    let logs = w.server.logs();
    eprintln!("A exited {took:?} after SIGTERM; the in-flight row then: {recorded:?}");
    assert_eq!(recorded.0, "in_doubt", "{recorded:?}");
    assert!(logs.contains("shutdown signal received"));
    assert!(
        events_in(&logs, "send failed")
            .iter()
            .any(|e| e["group"] == in_flight.as_str()),
        "the in-flight call's outcome was not logged"
    );
    assert!(events_in(&logs, "driver stopped")
        .iter()
        .any(|e| e["outcome"] == "shutdown"));
    assert!(logs.contains("groupcast stopped"));
    // No new work after SIGTERM: the only send of A after it is none at all.
    let a_sends: Vec<TapSend> = tap_a.sends();
    assert!(a_sends.iter().all(|s| s.at < term), "A sent after SIGTERM");
    // Lease released: B's first send well before A's lease (5 s from its last send) expired.
    let b_first = tap_b.sends().first().unwrap().at;
    let a_last = a_sends.last().unwrap().at;
    eprintln!(
        "B's first send {:?} after A exited, {:?} after A's last send",
        b_first.duration_since(exited),
        b_first.duration_since(a_last)
    );
    assert!(b_first.duration_since(exited) <= Duration::from_millis(1500));
    assert!(
        b_first.duration_since(a_last) < Duration::from_millis(5000 - 1000),
        "B waited for the lease to expire: it was not released"
    );
    // The abandoned row was settled from history, not resent.
    let reads = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages/get"))
        .collect::<Vec<_>>();
    assert!(
        reads
            .iter()
            .any(|r| r.chat_id.as_deref() == Some(in_flight.as_str())),
        "no history read for {in_flight}"
    );
    assert_eq!(
        tap_a.sends().len() + tap_b.sends().len(),
        w.sends(&acc.profile).len()
    );
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        b.delivery_states(id),
        HashMap::from([("sent".to_string(), 80)])
    );
    w.person(7003).hears("✅").await;
    assert_eq!(reports(&w, 7003), 1);
}

/// Issue: "a newer binary started next to an older one, then the older one stopped, is the
/// zero-downtime deploy; no group is skipped or doubled". The old process drives a 200-group
/// mailing at 20/s; the new one (a full server: it long-polls Telegram too) starts next to it;
/// the old one gets SIGTERM at a random moment. At the fake: every group once, the old
/// process's sends all before the new one's, no pause in the sends longer than 1.5 s, the pace
/// never broken across the switch. The new process then answers the user.
#[tokio::test]
async fn deploy_new_process_next_to_the_old_then_old_stopped_skips_and_doubles_nothing() {
    let seed = test_seed("deploy");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tap_old = None;
    let w = World::start_redis_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "20".into());
        tapped(&mut tap_old)(env);
    })
    .await;
    let tap_old = tap_old.unwrap();
    let (acc, jids, id) = {
        let (p, acc, jids) = w.ready(7004, 74, 200, "Выкладка без простоя").await;
        (acc, jids, p.starts_mailing().await)
    };
    let (new, tap_new) = w.second_process_once_driving(id, "new", true).await;
    let stop_at = rng.gen_range(40..=120);
    w.wappi
        .wait_for_deliveries(stop_at, Duration::from_secs(30))
        .await
        .unwrap();
    let mut w = w;
    let took = w
        .server
        .terminate_async(Duration::from_secs(10))
        .await
        .expect("the old process did not exit within 10 s");
    new.wait_done(id, Duration::from_secs(30)).await;

    let delivered = w.wappi.deliveries();
    let all = w.sends(&acc.profile);
    let (old_sends, new_sends) = (tap_old.sends(), tap_new.sends());
    eprintln!(
        "old stopped after {stop_at} deliveries, exit took {took:?}; old sent {}, new sent {}; largest pause {} ms, smallest gap {} ms (all sends)",
        old_sends.len(),
        new_sends.len(),
        max_gap_ms(&delivered),
        min_gap_ms(&all)
    );
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        new.delivery_states(id),
        HashMap::from([("sent".to_string(), 200)])
    );
    assert!(!old_sends.is_empty() && !new_sends.is_empty());
    let new_first = new_sends[0].at;
    assert!(
        old_sends.iter().all(|s| s.at < new_first),
        "old and new sent at the same time"
    );
    let got: HashSet<String> = old_sends
        .iter()
        .chain(&new_sends)
        .map(|s| s.recipient.clone())
        .collect();
    assert_eq!(got.len(), 200);
    assert!(
        max_gap_ms(&delivered) <= 1500,
        "the sends paused {} ms during the deploy",
        max_gap_ms(&delivered)
    );
    // No burst at the switch: the new process's first send respects the pace after the old
    // one's last (the profile's pacing state is shared in Redis).
    let old_last = all
        .iter()
        .rev()
        .find(|r| r.recipient.as_deref() == Some(old_sends.last().unwrap().recipient.as_str()))
        .unwrap()
        .at;
    let new_first_at = all
        .iter()
        .find(|r| r.recipient.as_deref() == Some(new_sends[0].recipient.as_str()))
        .unwrap()
        .at;
    assert!(new_first_at.duration_since(old_last) >= Duration::from_millis(50 - JITTER_MS as u64));
    let (fo, fnew) = (w.server.driving_fences(id), new.driving_fences(id));
    assert!(
        fo.len() == 1 && fnew.len() == 1 && fnew[0] > fo[0],
        "old {fo:?}, new {fnew:?}"
    );
    let p = w.person(7004);
    p.hears("✅").await;
    assert_eq!(reports(&w, 7004), 1);
    // The new process took over the intake too.
    p.says("/status");
    p.hears("✅ Рассылка").await;
}
