//! groupcast core: everything that is the same on Cloudflare Workers and on the self-hosted
//! server. It never reads the clock, spawns tasks or does I/O itself: time arrives as a value
//! or through the [`ports::Clock`] port, and every side effect goes through a port trait
//! (`ports`), which each runtime implements with its own adapters.

pub mod bot;
pub mod collage;
pub mod config;
pub mod crypto;
pub mod long_work;
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

// Old paths, kept while the runtimes move to the new ones.
pub use bot::dialogue;
pub use bot::operator as broadcast;
pub use mailing::engine;
pub use model::{billing, groups, ids, ledger, pacing, secret};

#[cfg(test)]
mod collage_tests;
