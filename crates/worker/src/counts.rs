//! What the Worker spends on Cloudflare's metered resources, counted where it is spent: one
//! function per kind, called from the one wrapper each resource goes through. Durable Object
//! storage calls ([`storage`], from `crate::store::Store`), D1 statements with the rows D1
//! reports read and written ([`d1`], from `D1Db`'s `all`/`run`/`batch` and the broadcast's
//! user list), outgoing `fetch`es by destination ([`subrequest`], from `crate::fetch::call`),
//! Queue sends ([`queue_send`]), Durable Object stub fetches ([`stub_fetch`]), and the
//! invocations Cloudflare bills as requests ([`invocation`]: the Worker's fetch, queue and
//! Cron handlers, each Durable Object's requests and alarms).
//!
//! The counters are always compiled in (a relaxed atomic add each, nothing else) and only
//! readable through `GET /__test/counts` when `GROUPCAST_TEST_HOOKS=1` (`crate::test_hooks`).
//! They are module statics, so they count per isolate, from its start. Under `wrangler dev`
//! the stateless handlers and the Durable Objects of this Worker were found to run in the
//! same isolate: the route's own numbers and the ones it asks the profile's `ProfileRunner`
//! for (`GET https://runner/counts`) are the same counters (the route answers both, so a
//! test sees it). On Cloudflare a Durable Object usually runs in another isolate, and these
//! counters would be per isolate; they are a test instrument, not production metrics.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A call on a Durable Object's storage.
#[derive(Debug, Clone, Copy)]
pub enum StorageOp {
    Get,
    Put,
    Delete,
    GetAlarm,
    SetAlarm,
}

/// Where an outgoing `fetch` goes.
#[derive(Debug, Clone, Copy)]
pub enum Dest {
    Wappi,
    Telegram,
}

/// A Durable Object class of this Worker.
#[derive(Debug, Clone, Copy)]
pub enum Class {
    Runner,
    Scheduler,
    Broadcast,
}

/// An invocation Cloudflare bills as a request.
#[derive(Debug, Clone, Copy)]
pub enum Invocation {
    /// The Worker's `fetch` handler (a webhook, a Robokassa call, a test route).
    Fetch,
    /// One batch handed to the queue consumer.
    QueueBatch,
    /// One message of such a batch.
    QueueMessage,
    /// The Cron handler.
    Cron,
    /// A request to a Durable Object (its `fetch`).
    DoRequest(Class),
    /// A Durable Object's alarm.
    DoAlarm(Class),
}

/// The counters, by name (the names are what `/__test/counts` answers).
const NAMES: [&str; 24] = [
    "do_storage_get",
    "do_storage_put",
    "do_storage_delete",
    "do_storage_get_alarm",
    "do_storage_set_alarm",
    "d1_statements",
    "d1_calls",
    "d1_rows_read",
    "d1_rows_written",
    "fetch_wappi",
    "fetch_telegram",
    "queue_sends",
    "do_stub_fetches",
    "worker_fetches",
    "queue_batches",
    "queue_messages",
    "cron_runs",
    "runner_requests",
    "runner_alarms",
    "scheduler_requests",
    "scheduler_alarms",
    "broadcast_requests",
    "broadcast_alarms",
    "counts_reads",
];

static COUNTERS: [AtomicU64; NAMES.len()] = [const { AtomicU64::new(0) }; NAMES.len()];

fn add(name: &str, n: u64) {
    if let Some(i) = NAMES.iter().position(|x| *x == name) {
        COUNTERS[i].fetch_add(n, Ordering::Relaxed);
    }
}

/// One call on a Durable Object's storage.
pub fn storage(op: StorageOp) {
    add(
        match op {
            StorageOp::Get => "do_storage_get",
            StorageOp::Put => "do_storage_put",
            StorageOp::Delete => "do_storage_delete",
            StorageOp::GetAlarm => "do_storage_get_alarm",
            StorageOp::SetAlarm => "do_storage_set_alarm",
        },
        1,
    );
}

/// One call to D1 (a statement, or a batch of `statements`), with the rows D1 reported.
pub fn d1(statements: usize, rows_read: usize, rows_written: usize) {
    add("d1_calls", 1);
    add("d1_statements", statements as u64);
    add("d1_rows_read", rows_read as u64);
    add("d1_rows_written", rows_written as u64);
}

/// One outgoing `fetch` (each try of a repeated call counts).
pub fn subrequest(dest: Dest) {
    add(
        match dest {
            Dest::Wappi => "fetch_wappi",
            Dest::Telegram => "fetch_telegram",
        },
        1,
    );
}

/// One message sent to a Queue.
pub fn queue_send() {
    add("queue_sends", 1);
}

/// One request sent to a Durable Object through its stub.
pub fn stub_fetch() {
    add("do_stub_fetches", 1);
}

/// One billed invocation.
pub fn invocation(what: Invocation) {
    add(
        match what {
            Invocation::Fetch => "worker_fetches",
            Invocation::QueueBatch => "queue_batches",
            Invocation::QueueMessage => "queue_messages",
            Invocation::Cron => "cron_runs",
            Invocation::DoRequest(Class::Runner) => "runner_requests",
            Invocation::DoAlarm(Class::Runner) => "runner_alarms",
            Invocation::DoRequest(Class::Scheduler) => "scheduler_requests",
            Invocation::DoAlarm(Class::Scheduler) => "scheduler_alarms",
            Invocation::DoRequest(Class::Broadcast) => "broadcast_requests",
            Invocation::DoAlarm(Class::Broadcast) => "broadcast_alarms",
        },
        1,
    );
}

/// A copy of every counter, by name. Reading counts itself (`counts_reads`, after the copy),
/// so a reader can tell its own reads from the rest.
pub fn snapshot() -> Snapshot {
    let counts = NAMES
        .iter()
        .zip(COUNTERS.iter())
        .map(|(name, c)| (*name, c.load(Ordering::Relaxed)))
        .collect();
    add("counts_reads", 1);
    Snapshot(counts)
}

/// The counters at one moment, serialized as a JSON object of name → count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot(pub BTreeMap<&'static str, u64>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_lands_in_its_own_counter() {
        let before = snapshot().0;
        storage(StorageOp::SetAlarm);
        d1(3, 7, 2);
        subrequest(Dest::Wappi);
        invocation(Invocation::DoAlarm(Class::Runner));
        let after = snapshot().0;
        let grew = |name: &str| after[name] - before[name];
        assert_eq!(grew("do_storage_set_alarm"), 1);
        assert_eq!(grew("do_storage_put"), 0);
        assert_eq!(
            (grew("d1_calls"), grew("d1_statements")),
            (1, 3),
            "a batch is one call of several statements"
        );
        assert_eq!((grew("d1_rows_read"), grew("d1_rows_written")), (7, 2));
        assert_eq!(grew("fetch_wappi"), 1);
        assert_eq!(grew("runner_alarms"), 1);
        assert_eq!(grew("counts_reads"), 1, "the first read counted itself");
    }
}
