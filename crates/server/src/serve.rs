//! The serve loop: `groupcast serve` runs the HTTP surface, the update intake (long polling
//! when no `PUBLIC_URL` is set, else the webhook route), the mailing runner and the periodic
//! chores, all until a shutdown signal; in-flight work finishes (or, for updates still in hand
//! after a short grace, is handed back to the next process) before it returns.

use crate::app::App;
use crate::http::{self, Surface};
use crate::runner::Runner;
use crate::serve_lock::ServeLock;
use crate::settings::Settings;
use crate::updates::STALE_CLAIM_MS;
use anyhow::Context;
use groupcast_core::telegram::TelegramError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// `groupcast serve`: builds the server and serves until SIGTERM or Ctrl-C.
/// Without Redis the database is held exclusively for as long as this runs ([`ServeLock`]).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let _alone = match settings.redis_url {
        None => Some(ServeLock::take(&settings.database_path)?),
        Some(_) => None,
    };
    let app = App::build(settings).await?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received: finishing in-flight work");
        let _ = tx.send(true);
    });
    serve(app, rx).await
}

/// Serves until `shutdown` turns true: HTTP, update intake, mailing runner.
pub async fn serve(app: Arc<App>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.settings.listen_addr)
        .await
        .with_context(|| format!("LISTEN_ADDR {}: cannot listen", app.settings.listen_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, mode = if app.settings.public_url.is_some() { "webhook" } else { "polling" }, "groupcast serving");

    match app.telegram.get_me().await {
        Ok(me) => {
            if let Some(name) = me.username {
                let _ = app.bot_url.set(format!("https://t.me/{name}"));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "getMe failed; payment pages will not link back to the bot")
        }
    }
    let runner_id = format!("{}-{}", hostname(), std::process::id());
    let db = Arc::clone(&app.db);
    let runner = Runner::new(
        app.engine.clone(),
        app.state.queue.clone(),
        app.state.heartbeats.clone(),
        app.state.releases.clone(),
        runner_id,
        Box::new(move || {
            let db = Arc::clone(&db);
            Box::pin(async move { db.cancelled_running().await })
        }),
    );
    let runner_task = tokio::spawn(runner.run(shutdown.clone(), Duration::from_secs(8)));

    // Updates a previous process took and never finished. Without Redis this process is the
    // database's only server (the serve lock), so every unfinished one is a dead process's;
    // with Redis another live process may be handling some, so only stale or handed-back ones.
    let now = app.svc.now_ms();
    let left_over = match app.settings.redis_url {
        None => now + 1,
        Some(_) => now - STALE_CLAIM_MS,
    };
    if let Err(e) = app.dispatcher.take_back(left_over).await {
        tracing::warn!(error = %e, "could not read updates left unfinished");
    }
    let take_back = tokio::spawn(take_back(Arc::clone(&app), shutdown.clone()));

    let polling = if app.settings.public_url.is_none() {
        Some(tokio::spawn(poll(Arc::clone(&app), shutdown.clone())))
    } else {
        None
    };

    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&app), shutdown.clone()));
    let scheduler = tokio::spawn(scheduler(Arc::clone(&app), shutdown.clone()));
    let auditor = tokio::spawn(auditor(Arc::clone(&app), shutdown.clone()));

    let mut http_shutdown = shutdown.clone();
    axum::serve(
        listener,
        http::router(Arc::new(surface(&app)))
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = http_shutdown.wait_for(|s| *s).await;
    })
    .await
    .context("http server")?;
    if let Some(p) = polling {
        let _ = p.await;
    }
    let _ = take_back.await;
    app.dispatcher.shut_down(UPDATES_GRACE).await;
    let _ = runner_task.await;
    if !app.notices.flush(UPDATES_GRACE).await {
        tracing::warn!("some mailing notices were not delivered before the shutdown");
    }
    let _ = housekeeping.await;
    let _ = scheduler.await;
    let _ = auditor.await;
    tracing::info!("groupcast stopped");
    Ok(())
}

/// How long a shutdown waits for updates in hand before handing the rest back.
const UPDATES_GRACE: Duration = Duration::from_secs(5);

/// Every few seconds, takes the updates other processes handed back at their shutdown or left
/// when they died (claims gone stale).
async fn take_back(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    const EVERY: Duration = Duration::from_secs(5);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => break,
        }
        if let Err(e) = app
            .dispatcher
            .take_back(app.svc.now_ms() - STALE_CLAIM_MS)
            .await
        {
            tracing::warn!(error = %e, "could not read updates left unfinished");
        }
    }
}

/// Scheduled runs: decides every due run, then sleeps until the soonest next one (looking at
/// least every [`SCHEDULER_LOOK`], which also finds a run scheduled meanwhile, possibly by
/// another process). Every process sharing the database may run this: a run is decided once
/// in the database, so a second pass over the same run starts nothing.
async fn scheduler(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    use groupcast_core::mailing::scheduled;
    while !*shutdown.borrow() {
        match scheduled::fire_due(&app.svc).await {
            Ok(f) if !f.started.is_empty() || f.skipped > 0 => tracing::info!(
                started = f.started.len(),
                skipped = f.skipped,
                waiting = f.waiting,
                "scheduled runs decided"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled runs not read"),
        }
        let now = app.svc.now_ms();
        let wait = match app.svc.db.earliest_due().await {
            Ok(Some(at)) if at > now => {
                Duration::from_millis((at - now) as u64).min(SCHEDULER_LOOK)
            }
            _ => SCHEDULER_LOOK,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Delivery audits: every few seconds, the finished mailings whose audit is due are read back
/// (`mailing::audit`), in a task of their own so that their reads never hold up a post or a
/// scheduled run. An audit is taken once in the database, so several processes may run this.
async fn auditor(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    const EVERY: Duration = Duration::from_secs(5);
    while !*shutdown.borrow() {
        match groupcast_core::mailing::audit::audit_due(&app.svc).await {
            Ok(n) if n > 0 => tracing::info!(audited = n, "delivery audits done"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "delivery audits not read"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The longest the scheduler sleeps between two looks.
const SCHEDULER_LOOK: Duration = Duration::from_secs(5);

/// Periodic chores: subscription reminders (and warnings that one ends before a scheduled
/// run) every `REMINDER_INTERVAL_SECS`, and once an hour forgetting update ids older than a week (Telegram redelivers for far less).
async fn housekeeping(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    const PRUNE_EVERY_MS: i64 = 3_600_000;
    const KEEP_MS: i64 = 7 * 86_400_000;
    let every = Duration::from_secs(app.settings.reminder_interval_secs);
    let mut pruned_at: Option<i64> = None;
    while !*shutdown.borrow() {
        match groupcast_core::payments::send_due_reminders(&app.svc).await {
            Ok(n) if n > 0 => tracing::info!(sent = n, "subscription reminders sent"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "subscription reminders failed"),
        }
        match groupcast_core::mailing::scheduled::warn_before_runs(&app.svc).await {
            Ok(n) if n > 0 => {
                tracing::info!(warned = n, "warned of subscriptions ending before a run")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "warnings before scheduled runs failed"),
        }
        let now = app.svc.now_ms();
        if pruned_at.is_none_or(|t| now - t >= PRUNE_EVERY_MS) {
            match app.db.prune_updates(now - KEEP_MS).await {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "forgot old update ids"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning update ids failed"),
            }
            pruned_at = Some(now);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Long polling: used when no `PUBLIC_URL` is configured.
async fn poll(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    if let Err(e) = app.telegram.delete_webhook().await {
        tracing::warn!(error = %e, "deleteWebhook failed");
    }
    let mut offset = 0i64;
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let got = tokio::select! {
            r = app.telegram.get_updates(offset, 25) => r,
            _ = shutdown.changed() => break,
        };
        match got {
            Ok(updates) => {
                failures = 0;
                for u in updates {
                    let id = u.update_id;
                    match app.dispatcher.accept(u).await {
                        Ok(_) => offset = offset.max(id + 1),
                        Err(e) => {
                            // Not recorded: do not confirm it, it comes again.
                            tracing::error!(error = %e, "could not record update");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let wait = match e {
                    TelegramError::RetryAfter(s) => Duration::from_secs(s),
                    _ => Duration::from_millis(500 * u64::from(failures.min(10))),
                };
                tracing::warn!(error = %e, "getUpdates failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "groupcast".into())
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// What the HTTP routes read of the server.
fn surface(app: &App) -> Surface {
    Surface {
        webhook_secret: app.settings.webhook_secret.clone(),
        robokassa_allowed_ips: app.settings.robokassa_allowed_ips.clone(),
        webhook_mode: app.settings.public_url.is_some(),
        bot_url: Arc::clone(&app.bot_url),
        svc: app.svc.clone(),
        db: Arc::clone(&app.db),
        state: app.state.clone(),
        dispatcher: Arc::clone(&app.dispatcher),
        metrics: crate::metrics::global(),
    }
}
