//! groupcast core: everything that is the same on Cloudflare Workers and on the self-hosted
//! server. It never reads the clock, spawns tasks or does I/O itself: time arrives as a value
//! or through the [`ports::Clock`] port, and every side effect goes through a port trait
//! (`ports`), which each runtime implements with its own adapters.
//!
//! # Layout
//!
//! Every import points down this list; nothing imports a module above it.
//!
//! - [`bot`]: a Telegram update becomes actions: [`bot::dialogue`] is the pure routing table,
//!   one file per concern (registration, content, import, mailing, pace, schedule,
//!   subscription, operator, images) holds the `impl Ctx` that carries it out.
//! - [`mailing`]: the engine's `step` (load, guards, settle, pick, the pace's hold, slot, send,
//!   record); `slot.rs` is where pacing is waited for (the operator's pacer and the user's pace
//!   plan), `outcome.rs` the one place a delivery row's state changes, `settle.rs` the history
//!   reconciliation, `breaker.rs` the ban signals, `report.rs` progress and the report;
//!   `scheduled.rs` turns a series' due run into a mailing (or a ⏭ skip), for the runtimes'
//!   timers.
//! - [`payments`]: a Robokassa notification is verified and an invoice settled; [`robokassa`]
//!   is the protocol (signatures, links).
//! - [`config`]: every settings type and its parsing; [`services`]: the bundle of ports a
//!   runtime builds.
//! - [`ports`]: the traits each runtime implements (stores, state, Telegram, Wappi, deferral).
//! - [`wappi`]: Wappi's wire models and the one client, over the `HttpTransport` port;
//!   [`telegram`]: the Bot API wire (types, api, markup) and our `callback_data` codec.
//! - [`texts`]: every word the bot says, Russian first; [`collage`] and [`crypto`]: pure
//!   image and token-encryption work.
//! - [`model`]: pure data and rules (ids, language, ledger rows, groups, secrets, billing,
//!   pacing maths with the user's pace and its plan, time zones, the `/schedule` parser and
//!   due times); imports nothing above it.
//! - `testing` (feature `testing`): fakes of every port and the contract suites every backend
//!   runs.

pub mod bot;
pub mod collage;
pub mod config;
pub mod crypto;
pub mod mailing;
pub mod memory_state;
pub mod model;
pub mod payments;
pub mod ports;
pub mod robokassa;
pub mod services;
pub mod telegram;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod texts;
pub mod wappi;

pub use model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
pub use model::secret::Secret;

#[cfg(test)]
mod collage_tests;
