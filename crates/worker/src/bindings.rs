//! Every name the Worker shares with `wrangler.toml`, in one place: the bindings (D1, the
//! Durable Object namespaces, the Queue, KV) and the vars and secrets this crate reads itself.
//! The code names a binding only through these constants (`env.rs` opens them); a test
//! checks that `wrangler.toml` declares each binding under the same name.
//!
//! The settings both runtimes share (`TELEGRAM_BOT_TOKEN`, `WAPPI_API_URL`, …) are read by
//! `groupcast_core::config` under the names of CONTRACT.md and are not repeated here. Pure, so it
//! builds natively.

/// The D1 database (the ledger): `[[d1_databases]] binding`.
pub const DB: &str = "DB";
/// The Durable Object namespace of the `ProfileRunner`s: `[[durable_objects.bindings]] name`.
pub const RUNNER: &str = "RUNNER";
/// The Durable Object namespace of the `BroadcastRunner`s: `[[durable_objects.bindings]] name`.
pub const BROADCAST: &str = "BROADCAST";
/// The Durable Object namespace of the `Scheduler` (scheduled runs): `[[durable_objects.bindings]] name`.
pub const SCHEDULER: &str = "SCHEDULER";
/// The Queue of long work (producer and consumer in this Worker): `[[queues.producers]] binding`.
pub const MAILING_QUEUE: &str = "MAILING_QUEUE";
/// KV for caches only (declared, not used yet): `[[kv_namespaces]] binding`.
pub const CACHE: &str = "CACHE";

/// Secret: the webhook's `X-Telegram-Bot-Api-Secret-Token` (required on the Worker).
pub const TELEGRAM_WEBHOOK_SECRET: &str = "TELEGRAM_WEBHOOK_SECRET";
/// Secret: the token cipher key, base64 of 32 bytes (required on the Worker).
pub const ENCRYPTION_KEY: &str = "ENCRYPTION_KEY";
/// Var, tests only: `1` turns the test hooks on (`crate::test_hooks`).
pub const GROUPCAST_TEST_HOOKS: &str = "GROUPCAST_TEST_HOOKS";
/// Var, tests only: the runner crashes right after its N-th successful Wappi send.
pub const GROUPCAST_TEST_CRASH_AFTER_SEND: &str = "GROUPCAST_TEST_CRASH_AFTER_SEND";

#[cfg(test)]
mod tests {
    use super::*;

    const WRANGLER_TOML: &str = include_str!("../../../wrangler.toml");

    /// The value of `key = "…"` on the lines of `wrangler.toml` that set that key.
    fn values_of(key: &str) -> Vec<&'static str> {
        WRANGLER_TOML
            .lines()
            .filter_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"'))
            })
            .collect()
    }

    #[test]
    fn bindings_match_wrangler_toml() {
        let bindings = values_of("binding");
        for name in [DB, MAILING_QUEUE, CACHE] {
            assert!(bindings.contains(&name), "{name} not in {bindings:?}");
        }
        let namespaces = values_of("name");
        for name in [RUNNER, BROADCAST, SCHEDULER] {
            assert!(namespaces.contains(&name), "{name} not in {namespaces:?}");
        }
    }

    #[test]
    fn secrets_are_named_in_wrangler_toml() {
        for name in [TELEGRAM_WEBHOOK_SECRET, ENCRYPTION_KEY] {
            assert!(WRANGLER_TOML.contains(name), "{name}");
        }
    }
}
