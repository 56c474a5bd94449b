//! The Worker's `Env`, opened in one place: its vars and secrets as text ([`env_vars`], what
//! the settings are read from) and each binding under its name from [`crate::bindings`], plus
//! the two calls on bindings that are counted here (`crate::counts`): a Queue send
//! ([`send_to_queue`]) and a request to a Durable Object ([`call_object`]). JS errors stay
//! `worker::Error`s here; each caller turns them into its own port's error.

use crate::bindings;
use crate::counts;
use serde::Serialize;
use worker::{D1Database, Env, Queue, Request, Response, Stub};

/// Reads a var or a secret as text.
pub fn env_vars(env: &Env) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        env.var(name)
            .map(|v| v.to_string())
            .or_else(|_| env.secret(name).map(|v| v.to_string()))
            .ok()
    }
}

/// The ledger (`DB`).
pub fn d1(env: &Env) -> worker::Result<D1Database> {
    env.d1(bindings::DB)
}

/// The queue of long work (`MAILING_QUEUE`).
fn mailing_queue(env: &Env) -> worker::Result<Queue> {
    env.queue(bindings::MAILING_QUEUE)
}

/// Puts one message on `MAILING_QUEUE` (awaited).
pub async fn send_to_queue<T: Serialize>(env: &Env, message: T) -> worker::Result<()> {
    let queue = mailing_queue(env)?;
    counts::queue_send();
    queue.send(message).await
}

/// Sends one request to a Durable Object through its stub.
pub async fn call_object(stub: &Stub, req: Request) -> worker::Result<Response> {
    counts::stub_fetch();
    stub.fetch_with_request(req).await
}

/// The `ProfileRunner` of a Wappi profile (`RUNNER.idFromName(profile)`).
pub fn profile_runner(env: &Env, profile: &str) -> worker::Result<Stub> {
    env.durable_object(bindings::RUNNER)
        .and_then(|ns| ns.id_from_name(profile)?.get_stub())
}

/// The `BroadcastRunner` of one broadcast (`BROADCAST.idFromName(job)`).
pub fn broadcast_runner(env: &Env, job: &str) -> worker::Result<Stub> {
    env.durable_object(bindings::BROADCAST)
        .and_then(|ns| ns.id_from_name(job)?.get_stub())
}

/// The `Scheduler` (`SCHEDULER.idFromName(name)`; there is one, see `scheduler`).
pub fn scheduler(env: &Env, name: &str) -> worker::Result<Stub> {
    env.durable_object(bindings::SCHEDULER)
        .and_then(|ns| ns.id_from_name(name)?.get_stub())
}
