//! Log set-up: human-readable lines by default, JSON lines with `LOG_FORMAT=json`; the level
//! comes from `RUST_LOG` (default `info`). Secrets never reach here: they are wrapped in
//! `Secret`, and HTTP clients strip URLs (which carry the bot token) from their errors.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
