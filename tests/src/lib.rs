pub mod fake_telegram;
pub mod fake_wappi;
pub mod harness;
pub mod history_scenarios;
pub mod scenarios;
pub mod worker_harness;
pub mod world;
