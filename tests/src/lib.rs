
pub mod fake_wappi;
