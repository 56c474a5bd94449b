//! The self-hosted groupcast server: adapters of the core's ports (SQLite, embedded state,
//! HTTP clients of Telegram and Wappi), the mailing runner, the HTTP surface and start-up.
//! The `groupcast` binary (`main.rs`) is a thin command line over this library.
//!
//! Imports point down only: `settings`, `metrics`, `export`, `serve_lock` and the storage and Telegram
//! adapters (`db`, `state`, `redis_state`, `telegram`) at the bottom; `logging`, `wappi`,
//! `updates`, `broadcast`, `notices`, `runner` (over `lease_keeper`, `lease_tries` and
//! `lease_waits`) and `ops` above them; `http` (takes an `http::Surface`) above `updates`; `app`
//! (start-up: ties the adapters into `Services`) above those; `serve` (the serve loop, over
//! `app`, `http` and `runner`) at the top.

pub mod app;
pub mod broadcast;
pub mod export;
pub mod http;
pub mod lease_keeper;
pub mod lease_tries;
pub mod lease_waits;
pub mod logging;
pub mod metrics;
pub mod notices;
pub mod ops;
pub mod runner;
pub mod serve;
pub mod serve_lock;
pub mod settings;
pub mod updates;

pub mod db;
pub mod redis_state;
pub mod state;
pub mod telegram;
pub mod wappi;
