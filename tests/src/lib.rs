pub mod fake_telegram;
pub mod fake_wappi;
pub mod followup_scenarios;
pub mod harness;
pub mod history_scenarios;
pub mod scenarios;
pub mod worker_harness;
pub mod world;
