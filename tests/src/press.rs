//! The ✅ press as a new user makes it, timed for the benchmarks of both runtimes: a
//! registered user with `groups` groups previews a mailing and presses ✅; the figures are
//! taken where the fakes received the calls (the first and last post at the fake Wappi, the
//! report at the fake Telegram), against the moment the press was pushed to the bot.

use crate::harness::{unix_ms, Server};
use crate::world::{Bot, Person, World};
use std::time::Duration;

/// What one press cost, in ms (the span in seconds).
pub struct Press {
    pub first_post_ms: i64,
    pub span_s: f64,
    pub report_after_last_ms: i64,
    pub report_s: f64,
}

/// Presses ✅ on a fresh `groups`-group mailing of `user` (account `n`) and waits for its
/// report. `trace` prints the calls the fakes saw between the press and the first post.
pub async fn press<S: Bot>(
    w: &World<S>,
    user: i64,
    n: u32,
    groups: usize,
    trace: bool,
) -> anyhow::Result<Press> {
    let (p, _acc, _jids) = w.ready(user, n, groups, "Press benchmark post").await;
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    let before = w.tg.sent_to(user).len();
    let pressed = unix_ms();
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    w.wappi
        .wait_for_deliveries(groups, Duration::from_secs(60))
        .await
        .map_err(anyhow::Error::msg)?;
    let report = loop {
        let found =
            w.tg.sent_to(user)
                .into_iter()
                .skip(before)
                .find(|m| m.text.starts_with('✅') || m.text.contains("завершена"));
        if let Some(m) = found {
            break m;
        }
        anyhow::ensure!(unix_ms() - pressed < 60_000, "no report within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sends = w.wappi.deliveries();
    let first = sends.iter().map(|r| r.at_ms).min().unwrap_or(0);
    let last = sends.iter().map(|r| r.at_ms).max().unwrap_or(0);
    if trace {
        for r in w
            .wappi
            .requests()
            .iter()
            .filter(|r| r.at_ms >= pressed && r.at_ms <= first)
        {
            eprintln!("  +{} ms wappi {}", r.at_ms - pressed, r.path);
        }
        for c in w.tg.calls().iter() {
            eprintln!("  tg {c:?}");
        }
    }
    Ok(Press {
        first_post_ms: first - pressed,
        span_s: (last - first) as f64 / 1000.0,
        report_after_last_ms: report.at_ms - last,
        report_s: (report.at_ms - pressed) as f64 / 1000.0,
    })
}

impl Press {
    /// The benchmark's line for `runtime`.
    pub fn line(&self, runtime: &str, groups: usize) -> String {
        format!(
            "press [{runtime}], {groups} groups at 5/s through the bot: press -> first post {} ms \
             (target <= 300), posts span {:.2} s, last post -> report {} ms (target <= 1000), \
             press -> report {:.2} s",
            self.first_post_ms, self.span_s, self.report_after_last_ms, self.report_s
        )
    }
}
