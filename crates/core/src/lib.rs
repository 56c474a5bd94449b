//! groupcast core: everything that is the same on Cloudflare Workers and on the self-hosted
//! server. It never reads the clock, spawns tasks or does I/O itself: time arrives as a value
//! or through the [`ports::Clock`] port, and every side effect goes through a port trait
//! (`ports`), which each runtime implements with its own adapters.

pub mod billing;
pub mod bot;
pub mod broadcast;
pub mod collage;
pub mod config;
pub mod crypto;
pub mod dialogue;
pub mod engine;
pub mod groups;
pub mod ids;
pub mod ledger;
pub mod long_work;
pub mod pacing;
pub mod payments;
pub mod ports;
pub mod robokassa;
pub mod secret;
pub mod services;
pub mod telegram;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod texts;
pub mod wappi;

pub use ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
pub use secret::Secret;

#[cfg(test)]
mod bot_tests;
#[cfg(test)]
mod collage_tests;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod images_tests;
#[cfg(test)]
mod testing_tests;
