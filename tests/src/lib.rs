pub mod fake_telegram;
pub mod fake_wappi;
pub mod harness;
pub mod world;
pub mod worker_harness;
