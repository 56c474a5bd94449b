//! groupcast on Cloudflare Workers: the same product as the self-hosted binary, from the same
//! `groupcast-core`, on D1, Durable Objects and Queues.
//!
//! - `fetch` (`app::fetch`): `POST /telegram/webhook` (secret header, `update_id` dedup in D1,
//!   the dialogue run to the end, 200), `/robokassa/result|success|fail`, `GET /healthz`.
//! - `queue` (`app::queue`): messages on `MAILING_QUEUE` ([`wire::QueueTask`]) are sent (and
//!   awaited) by the webhook: `{"mailing_id": <i64>}` when a mailing starts or resumes (pokes
//!   the mailing's runner), `{"collage": {..}}` when 🌅 is pressed (builds and previews the
//!   collage). Each is acked on its own; a duplicate is harmless.
//! - `BroadcastRunner` (`broadcast`): one Durable Object per operator `/broadcast`, sending
//!   from its alarm at 25 messages a second and reporting "sent N, failed M".
//! - `ProfileRunner` (`runner`): one Durable Object per Wappi profile drives the mailing
//!   engine from its alarm, one send per alarm at the exact pacing slot.
//! - `Scheduler` (`scheduler`): one Durable Object whose alarm fires scheduled and repeating
//!   mailings at their time (`groupcast_core::mailing::scheduled`).
//! - `scheduled` (`app::scheduled`): reminders, pruning of update ids, recovery of running
//!   mailings, a look at due scheduled runs (and re-arming the scheduler's alarm).
//!
//! Only the pure helpers ([`bindings`], [`counts`], [`settings`], [`rows`], [`wire`] and the
//! pure half of [`test_hooks`]) build natively; everything that touches workerd is compiled
//! for `wasm32` only. Bindings, vars and the build command are in this crate's README; the
//! names the code uses are the constants of [`bindings`].
//!
//! Modules only ever use modules of a lower layer (no import circle). From the top:
//! `app` (the handlers), `runner` (`ProfileRunner`), `scheduler` (`Scheduler`) | `edge` (the
//! stateless side's `Services`) | `services` (the core's `Ports` built from the `Env`) |
//! `broadcast` | `d1`, `telegram`, `wappi`, `settings` | `rows`, `fetch`,
//! `test_hooks` | `env`, `http`, `store`, `wire` | `bindings`, `counts`.

// The core's bundles hold their ports in `Arc`s; on wasm32 (one thread) they are not
// `Send`/`Sync`, which is exactly what the core's `MaybeSendSync` allows there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod bindings;
pub mod counts;
pub mod rows;
pub mod settings;
pub mod test_hooks;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod broadcast;
#[cfg(target_arch = "wasm32")]
mod d1;
#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(target_arch = "wasm32")]
mod env;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod runner;
#[cfg(target_arch = "wasm32")]
mod scheduler;
#[cfg(target_arch = "wasm32")]
mod services;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(target_arch = "wasm32")]
mod telegram;
#[cfg(target_arch = "wasm32")]
mod wappi;

#[cfg(target_arch = "wasm32")]
pub use broadcast::BroadcastRunner;
#[cfg(target_arch = "wasm32")]
pub use runner::ProfileRunner;
#[cfg(target_arch = "wasm32")]
pub use scheduler::Scheduler;

#[cfg(target_arch = "wasm32")]
mod entry {
    use worker::{
        event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext,
        ScheduledEvent,
    };

    #[event(start)]
    fn start() {
        console_error_panic_hook::set_once();
    }

    #[event(fetch)]
    async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
        crate::app::fetch(req, env).await
    }

    #[event(queue)]
    async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> Result<()> {
        crate::app::queue(batch, env).await
    }

    #[event(scheduled)]
    async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
        crate::app::scheduled(env).await
    }
}
