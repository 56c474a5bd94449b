//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by hand.
//!
//! Counters live in process-wide atomics, bumped where things happen: updates in the
//! dispatcher, Wappi latencies in the Wappi client, pacing waits in the runner. Send outcomes
//! are decided by the core's engine, which knows nothing of this module: it logs one line per
//! outcome with an `event = "send"` field, and [`EventCounter`] (a layer of the log subscriber)
//! counts those lines. Gauges (mailings by status, queue depth, heartbeat age) are read from the
//! database and the state backend at each scrape.
//!
//! Metric names (README lists them):
//! - `groupcast_updates_received_total` counter: Telegram updates accepted (duplicates excluded)
//! - `groupcast_mailings{status}` gauge: mailings per status (running, paused, done, cancelled)
//! - `groupcast_sends_total{outcome}` counter: send attempts by outcome (sent, failed, retried,
//!   in_doubt, rate_limited, paused)
//! - `groupcast_pacing_wait_seconds` summary (`_sum`, `_count`): time drivers slept before a
//!   send slot
//! - `groupcast_wappi_request_duration_seconds` histogram: latency of every Wappi call
//! - `groupcast_queue_depth` gauge: mailings waiting in the intake queue
//! - `groupcast_runner_heartbeat_age_seconds` gauge: age of the newest runner heartbeat
//! - `groupcast_broadcast_messages_total{outcome}` counter: operator broadcast messages (sent,
//!   failed)

use crate::app::App;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{filter_fn, Filtered};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// The outcomes of a send the engine reports (`outcome` field of its `send` events).
pub const SEND_OUTCOMES: [&str; 6] = [
    "sent",
    "failed",
    "retried",
    "in_doubt",
    "rate_limited",
    "paused",
];

/// Upper bounds (seconds) of the Wappi latency histogram buckets.
const WAPPI_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Registry {
    updates: AtomicU64,
    sends: [AtomicU64; SEND_OUTCOMES.len()],
    pacing_wait_us: AtomicU64,
    pacing_waits: AtomicU64,
    wappi_buckets: [AtomicU64; WAPPI_BUCKETS.len()],
    wappi_count: AtomicU64,
    wappi_sum_us: AtomicU64,
    broadcast_sent: AtomicU64,
    broadcast_failed: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

static METRICS: Registry = Registry {
    updates: ZERO,
    sends: [ZERO; SEND_OUTCOMES.len()],
    pacing_wait_us: ZERO,
    pacing_waits: ZERO,
    wappi_buckets: [ZERO; WAPPI_BUCKETS.len()],
    wappi_count: ZERO,
    wappi_sum_us: ZERO,
    broadcast_sent: ZERO,
    broadcast_failed: ZERO,
};

/// A Telegram update was accepted (first time seen).
pub fn update_received() {
    METRICS.updates.fetch_add(1, Ordering::Relaxed);
}

/// A send ended with `outcome` (one of [`SEND_OUTCOMES`]; others are ignored).
pub fn send_outcome(outcome: &str) {
    if let Some(i) = SEND_OUTCOMES.iter().position(|o| *o == outcome) {
        METRICS.sends[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A mailing driver slept this long waiting for its next send slot.
pub fn pacing_wait(waited: Duration) {
    METRICS
        .pacing_wait_us
        .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    METRICS.pacing_waits.fetch_add(1, Ordering::Relaxed);
}

/// One Wappi call took this long (any outcome).
pub fn wappi_latency(took: Duration) {
    let secs = took.as_secs_f64();
    for (i, bound) in WAPPI_BUCKETS.iter().enumerate() {
        if secs <= *bound {
            METRICS.wappi_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    METRICS.wappi_count.fetch_add(1, Ordering::Relaxed);
    METRICS
        .wappi_sum_us
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
}

/// One operator broadcast message was delivered (`true`) or given up on.
pub fn broadcast_message(sent: bool) {
    let counter = if sent {
        &METRICS.broadcast_sent
    } else {
        &METRICS.broadcast_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The exposition text: process counters plus gauges read now from `app`'s storage.
pub async fn render(app: &App) -> String {
    let mut out = String::new();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);

    header(
        &mut out,
        "groupcast_updates_received_total",
        "counter",
        "Telegram updates accepted (duplicates excluded).",
    );
    let _ = writeln!(
        out,
        "groupcast_updates_received_total {}",
        get(&METRICS.updates)
    );

    header(
        &mut out,
        "groupcast_mailings",
        "gauge",
        "Mailings per status, from the database.",
    );
    let counts = app.db.mailing_status_counts().await.unwrap_or_default();
    for status in ["running", "paused", "done", "cancelled"] {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "groupcast_mailings{{status=\"{status}\"}} {n}");
    }

    header(
        &mut out,
        "groupcast_sends_total",
        "counter",
        "Send attempts to WhatsApp groups by outcome.",
    );
    for (i, outcome) in SEND_OUTCOMES.iter().enumerate() {
        let _ = writeln!(
            out,
            "groupcast_sends_total{{outcome=\"{outcome}\"}} {}",
            get(&METRICS.sends[i])
        );
    }

    header(
        &mut out,
        "groupcast_pacing_wait_seconds",
        "summary",
        "Time mailing drivers slept waiting for a send slot.",
    );
    let _ = writeln!(
        out,
        "groupcast_pacing_wait_seconds_sum {}",
        secs(get(&METRICS.pacing_wait_us))
    );
    let _ = writeln!(
        out,
        "groupcast_pacing_wait_seconds_count {}",
        get(&METRICS.pacing_waits)
    );

    header(
        &mut out,
        "groupcast_wappi_request_duration_seconds",
        "histogram",
        "Latency of Wappi calls, any outcome.",
    );
    for (i, bound) in WAPPI_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "groupcast_wappi_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            get(&METRICS.wappi_buckets[i])
        );
    }
    let count = get(&METRICS.wappi_count);
    let _ = writeln!(
        out,
        "groupcast_wappi_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "groupcast_wappi_request_duration_seconds_sum {}",
        secs(get(&METRICS.wappi_sum_us))
    );
    let _ = writeln!(
        out,
        "groupcast_wappi_request_duration_seconds_count {count}"
    );

    if let Ok(Some(depth)) = app.svc.state.queue_depth().await {
        header(
            &mut out,
            "groupcast_queue_depth",
            "gauge",
            "Mailings waiting in the intake queue.",
        );
        let _ = writeln!(out, "groupcast_queue_depth {depth}");
    }

    if let Ok(Some(beat)) = app.svc.state.last_heartbeat().await {
        header(
            &mut out,
            "groupcast_runner_heartbeat_age_seconds",
            "gauge",
            "Seconds since the newest mailing runner heartbeat.",
        );
        let age = (app.svc.now_ms() - beat).max(0) as f64 / 1000.0;
        let _ = writeln!(out, "groupcast_runner_heartbeat_age_seconds {age}");
    }

    header(
        &mut out,
        "groupcast_broadcast_messages_total",
        "counter",
        "Operator broadcast messages by outcome.",
    );
    let _ = writeln!(
        out,
        "groupcast_broadcast_messages_total{{outcome=\"sent\"}} {}",
        get(&METRICS.broadcast_sent)
    );
    let _ = writeln!(
        out,
        "groupcast_broadcast_messages_total{{outcome=\"failed\"}} {}",
        get(&METRICS.broadcast_failed)
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// A log layer counting the engine's `send` events by their `outcome` field. It sees only
/// events that declare an `event` field (decided once per call site), whatever `RUST_LOG` says.
pub struct EventCounter;

impl EventCounter {
    pub fn layer<S>() -> Filtered<EventCounter, impl tracing_subscriber::layer::Filter<S>, S>
    where
        S: tracing::Subscriber,
    {
        EventCounter.with_filter(filter_fn(|meta| {
            meta.is_event() && meta.fields().field("event").is_some()
        }))
    }
}

impl<S: tracing::Subscriber> Layer<S> for EventCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        if fields.event.as_deref() == Some("send") {
            if let Some(outcome) = &fields.outcome {
                send_outcome(outcome);
            }
        }
    }
}

#[derive(Default)]
struct EventFields {
    event: Option<String>,
    outcome: Option<String>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.event = Some(value.to_string()),
            "outcome" => self.outcome = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "event" => self.event = Some(format!("{value:?}").trim_matches('"').to_string()),
            "outcome" => self.outcome = Some(format!("{value:?}").trim_matches('"').to_string()),
            _ => {}
        }
    }
}
