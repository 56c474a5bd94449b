//! `GET /metrics`: the server's Prometheus metrics, typed and registered once in a
//! [`prometheus_client`] registry, and their exposition in the Prometheus text format (0.0.4).
//!
//! The process keeps one [`Metrics`] ([`global`]); its counters and histograms are bumped where
//! things happen: updates in the dispatcher, Wappi latencies in the Wappi transport, pacing
//! waits in the runner, operator broadcast messages in the broadcaster, and send outcomes through
//! the core's [`Figures`] port ([`EngineFigures`]), which the engine tells of every send it
//! settles on. Gauges (mailings by status, queue depth, heartbeat age) are read from the
//! database and the state backend at each scrape and handed to [`render`] as [`Readings`].
//! This module depends on nothing else of the crate.
//!
//! Metric names (README lists them):
//! - `groupcast_updates_received_total` counter: Telegram updates accepted (duplicates excluded)
//! - `groupcast_mailings{status}` gauge: mailings per status (running, paused, done, cancelled)
//! - `groupcast_sends_total{outcome}` counter: send attempts by outcome (sent, failed, retried,
//!   in_doubt, rate_limited, paused)
//! - `groupcast_pacing_wait_seconds` histogram (`_sum`, `_count` and the `+Inf` bucket only):
//!   time drivers slept before a send slot
//! - `groupcast_wappi_request_duration_seconds` histogram: latency of every Wappi call
//! - `groupcast_queue_depth` gauge: mailings waiting in the intake queue
//! - `groupcast_runner_heartbeat_age_seconds` gauge: age of the newest runner heartbeat
//! - `groupcast_broadcast_messages_total{outcome}` counter: operator broadcast messages (sent,
//!   failed)

use groupcast_core::model::ledger::SendOutcome;
use groupcast_core::ports::Figures;
use prometheus_client::encoding::LabelValueEncoder;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the Wappi latency histogram buckets.
const WAPPI_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The mailing statuses the `groupcast_mailings` gauge always shows (others are not exposed).
const MAILING_STATUSES: [&str; 4] = ["running", "paused", "done", "cancelled"];

/// A send outcome of the core's engine as a metric label (its own word: `sent`, `in_doubt`, …).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct OutcomeLabel(SendOutcome);

/// The engine's [`Figures`] port on this process's [`global`] metrics.
pub struct EngineFigures;

impl Figures for EngineFigures {
    fn send(&self, outcome: SendOutcome) {
        global().send(outcome);
    }
}

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// How one operator broadcast message ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum BroadcastOutcome {
    Sent,
    Failed,
}

impl EncodeLabelValue for BroadcastOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            BroadcastOutcome::Sent => "sent",
            BroadcastOutcome::Failed => "failed",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    outcome: OutcomeLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BroadcastLabels {
    outcome: BroadcastOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The process's counters and histograms, and the registry that holds them.
pub struct Metrics {
    registry: Registry,
    updates: Counter,
    sends: Family<SendLabels, Counter>,
    pacing_wait: Histogram,
    wappi_latency: Histogram,
    broadcasts: Family<BroadcastLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric; each labelled series starts at zero, so a scrape shows them all
    /// before anything happened.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let updates = Counter::default();
        registry.register(
            "groupcast_updates_received",
            "Telegram updates accepted (duplicates excluded)",
            updates.clone(),
        );
        let sends = Family::<SendLabels, Counter>::default();
        for outcome in SendOutcome::ALL {
            drop(sends.get_or_create(&SendLabels {
                outcome: OutcomeLabel(outcome),
            }));
        }
        registry.register(
            "groupcast_sends",
            "Send attempts to WhatsApp groups by outcome",
            sends.clone(),
        );
        // Only the sum and the count are of interest (the mean wait): no buckets but `+Inf`.
        let pacing_wait = Histogram::new(std::iter::empty());
        registry.register(
            "groupcast_pacing_wait_seconds",
            "Time mailing drivers slept waiting for a send slot",
            pacing_wait.clone(),
        );
        let wappi_latency = Histogram::new(WAPPI_BUCKETS);
        registry.register(
            "groupcast_wappi_request_duration_seconds",
            "Latency of Wappi calls, any outcome",
            wappi_latency.clone(),
        );
        let broadcasts = Family::<BroadcastLabels, Counter>::default();
        for outcome in [BroadcastOutcome::Sent, BroadcastOutcome::Failed] {
            drop(broadcasts.get_or_create(&BroadcastLabels { outcome }));
        }
        registry.register(
            "groupcast_broadcast_messages",
            "Operator broadcast messages by outcome",
            broadcasts.clone(),
        );
        Metrics {
            registry,
            updates,
            sends,
            pacing_wait,
            wappi_latency,
            broadcasts,
        }
    }

    /// The registry to [`render`].
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A Telegram update was accepted (first time seen).
    pub fn update_received(&self) {
        self.updates.inc();
    }

    /// A send to a group ended with `outcome`.
    pub fn send(&self, outcome: SendOutcome) {
        self.sends
            .get_or_create(&SendLabels {
                outcome: OutcomeLabel(outcome),
            })
            .inc();
    }

    /// A mailing driver slept this long waiting for its next send slot.
    pub fn pacing_wait(&self, waited: Duration) {
        self.pacing_wait.observe(waited.as_secs_f64());
    }

    /// One Wappi call took this long (any outcome).
    pub fn wappi_call(&self, took: Duration) {
        self.wappi_latency.observe(took.as_secs_f64());
    }

    /// One operator broadcast message was delivered or given up on.
    pub fn broadcast_message(&self, outcome: BroadcastOutcome) {
        self.broadcasts
            .get_or_create(&BroadcastLabels { outcome })
            .inc();
    }
}

/// The process's metrics, registered on first use.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The gauges, read from the database and the state backend at a scrape.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Mailings per status (statuses missing here count 0).
    pub mailings: Vec<(String, u64)>,
    /// Mailings waiting in the intake queue; `None` when the backend cannot tell (not shown).
    pub queue_depth: Option<u64>,
    /// Seconds since the newest runner heartbeat; `None` before any (not shown).
    pub heartbeat_age_secs: Option<f64>,
}

/// The exposition text: everything in `registry`, then the gauges of `readings`.
pub fn render(registry: &Registry, readings: &Readings) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, registry);
    let _ = prometheus_text::encode(&mut out, &gauges(readings));
    out
}

/// A registry of this scrape's gauges.
fn gauges(readings: &Readings) -> Registry {
    let mut registry = Registry::default();
    let mailings = Family::<StatusLabels, Gauge>::default();
    for status in MAILING_STATUSES {
        let n = readings
            .mailings
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        mailings
            .get_or_create(&StatusLabels { status })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "groupcast_mailings",
        "Mailings per status, from the database",
        mailings,
    );
    if let Some(depth) = readings.queue_depth {
        let gauge = Gauge::<u64, AtomicU64>::default();
        gauge.set(depth);
        registry.register(
            "groupcast_queue_depth",
            "Mailings waiting in the intake queue",
            gauge,
        );
    }
    if let Some(age) = readings.heartbeat_age_secs {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(age);
        registry.register(
            "groupcast_runner_heartbeat_age_seconds",
            "Seconds since the newest mailing runner heartbeat",
            gauge,
        );
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_shows_every_series_at_zero() {
        let m = Metrics::new();
        let text = render(m.registry(), &Readings::default());
        for line in [
            "# HELP groupcast_updates_received_total Telegram updates accepted (duplicates excluded).",
            "# TYPE groupcast_updates_received_total counter",
            "groupcast_updates_received_total 0",
            "# TYPE groupcast_sends_total counter",
            "groupcast_sends_total{outcome=\"sent\"} 0",
            "groupcast_sends_total{outcome=\"failed\"} 0",
            "groupcast_sends_total{outcome=\"retried\"} 0",
            "groupcast_sends_total{outcome=\"in_doubt\"} 0",
            "groupcast_sends_total{outcome=\"rate_limited\"} 0",
            "groupcast_sends_total{outcome=\"paused\"} 0",
            "# TYPE groupcast_pacing_wait_seconds histogram",
            "groupcast_pacing_wait_seconds_count 0",
            "# TYPE groupcast_wappi_request_duration_seconds histogram",
            "groupcast_wappi_request_duration_seconds_bucket{le=\"0.01\"} 0",
            "groupcast_wappi_request_duration_seconds_bucket{le=\"1\"} 0",
            "groupcast_wappi_request_duration_seconds_bucket{le=\"+Inf\"} 0",
            "groupcast_broadcast_messages_total{outcome=\"sent\"} 0",
            "groupcast_broadcast_messages_total{outcome=\"failed\"} 0",
            "# TYPE groupcast_mailings gauge",
            "groupcast_mailings{status=\"running\"} 0",
            "groupcast_mailings{status=\"cancelled\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Gauges the backend cannot give are left out, not shown as 0.
        assert!(!text.contains("groupcast_queue_depth"), "{text}");
        assert!(!text.contains("heartbeat"), "{text}");
    }

    #[test]
    fn recordings_and_readings_show() {
        let m = Metrics::new();
        m.update_received();
        m.update_received();
        m.send(SendOutcome::InDoubt);
        m.pacing_wait(Duration::from_millis(250));
        m.pacing_wait(Duration::from_millis(750));
        m.wappi_call(Duration::from_millis(30));
        m.broadcast_message(BroadcastOutcome::Failed);
        let readings = Readings {
            mailings: vec![("done".into(), 3), ("draft".into(), 9)],
            queue_depth: Some(2),
            heartbeat_age_secs: Some(1.5),
        };
        let text = render(m.registry(), &readings);
        for line in [
            "groupcast_updates_received_total 2",
            "groupcast_sends_total{outcome=\"in_doubt\"} 1",
            "groupcast_sends_total{outcome=\"sent\"} 0",
            "groupcast_pacing_wait_seconds_sum 1.0",
            "groupcast_pacing_wait_seconds_count 2",
            "groupcast_wappi_request_duration_seconds_bucket{le=\"0.025\"} 0",
            "groupcast_wappi_request_duration_seconds_bucket{le=\"0.05\"} 1",
            "groupcast_wappi_request_duration_seconds_bucket{le=\"+Inf\"} 1",
            "groupcast_wappi_request_duration_seconds_count 1",
            "groupcast_broadcast_messages_total{outcome=\"failed\"} 1",
            "groupcast_mailings{status=\"done\"} 3",
            "groupcast_mailings{status=\"paused\"} 0",
            "groupcast_queue_depth 2",
            "groupcast_runner_heartbeat_age_seconds 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("draft"), "{text}");
    }
}
