//! `groupcast`: the self-hosted groupcast server and its operator commands.

use clap::{Parser, Subcommand};
use groupcast_server::app;
use groupcast_server::settings::{Settings, Source};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "groupcast",
    version,
    about = "Post into many WhatsApp groups from Telegram (self-hosted server)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server, the update intake and the mailing runner.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Register PUBLIC_URL/telegram/webhook with Telegram, with the webhook secret.
    SetWebhook,
    /// Check the configuration and reach Telegram, the database and Redis; one line each.
    Check,
    /// Write a user's mailing reports as CSV (one row per group and part).
    Export {
        /// The user's Telegram id.
        #[arg(long)]
        user: i64,
        /// Only this mailing.
        #[arg(long)]
        mailing: Option<i64>,
        /// The file to write; `-` (the default) is standard output.
        #[arg(long, default_value = "-")]
        out: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&Source::from_env()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    groupcast_server::logging::init(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => groupcast_server::serve::run(settings).await,
            Command::Migrate => {
                let db = app::open_db(&settings)?;
                let pending = db
                    .pending_migrations()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("migrations up to date ({} pending)", pending.len());
                Ok(())
            }
            Command::SetWebhook => groupcast_server::ops::set_webhook(&settings).await,
            Command::Check => groupcast_server::ops::check(&settings).await,
            Command::Export { user, mailing, out } => export(&settings, user, mailing, &out),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                groupcast_server::logging::scrub(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// `groupcast export`: the CSV is built first, so a refused export leaves no file behind.
fn export(settings: &Settings, user: i64, mailing: Option<i64>, out: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut csv = Vec::new();
    let rows = groupcast_server::export::export(&settings.database_path, user, mailing, &mut csv)?;
    if out == "-" {
        std::io::stdout().lock().write_all(&csv)?;
    } else {
        std::fs::write(out, &csv).map_err(|e| anyhow::anyhow!("--out {out}: {e}"))?;
    }
    eprintln!("exported {rows} row(s)");
    Ok(())
}
