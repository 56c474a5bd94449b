//! `groupcast`: the self-hosted groupcast server and its operator commands.

use clap::{Parser, Subcommand};
use groupcast_server::app::{self, App};
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
    groupcast_server::logging::init(settings.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(settings).await,
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
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        app::shutdown_signal().await;
        tracing::info!("shutdown signal received: finishing in-flight work");
        let _ = tx.send(true);
    });
    app.serve(rx).await
}
