//! The self-hosted groupcast server: adapters of the core's ports (SQLite, embedded state,
//! HTTP clients of Telegram and Wappi), the mailing runner, the HTTP surface and start-up.
//! The `groupcast` binary (`main.rs`) is a thin command line over this library.

// WIP pub mod app;
// WIP pub mod http;
pub mod logging;
// WIP pub mod ops;
// WIP pub mod runner;
pub mod settings;
// WIP pub mod updates;

pub mod wappi;
pub mod telegram;
