//! Start-up: builds the adapters from the settings and ties them into [`Services`], then runs
//! the server (HTTP, update intake by polling or webhook, mailing runner) until a shutdown
//! signal.

use crate::db::SqliteDb;
use crate::http;
use crate::redis_state::RedisState;
use crate::runner::Runner;
use crate::settings::Settings;
use crate::state::EmbeddedState;
use crate::telegram::HttpTelegram;
use crate::updates::Dispatcher;
use crate::wappi::HttpWappi;
use anyhow::Context;
use base64::Engine as _;
use groupcast_core::collage::{self, Collage, CollageError, CollageOptions};
use groupcast_core::crypto::TokenCipher;
use groupcast_core::ports::{async_trait, Clock, Entropy, ImageWork, InlineImageWork, State};
use groupcast_core::services::Services;
use groupcast_core::telegram::TelegramError;
use rand::RngCore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// The operating system's random source.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// Photo and collage work on tokio's blocking pool, so a decode never holds up the runtime
/// threads that drive mailings (a send due meanwhile leaves on time).
pub struct BlockingImageWork;

#[async_trait]
impl ImageWork for BlockingImageWork {
    async fn normalise(
        &self,
        photo: Vec<u8>,
        max_side: u32,
        max_bytes: usize,
    ) -> Result<Vec<u8>, CollageError> {
        let work = move || collage::normalise_photo(&photo, max_side, max_bytes);
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    async fn collage(
        &self,
        photos: Vec<Vec<u8>>,
        opts: CollageOptions,
    ) -> Result<Collage, CollageError> {
        tokio::task::spawn_blocking(move || InlineImageWork::build(&photos, &opts))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// Everything a running server holds.
pub struct App {
    /// `https://t.me/<bot>`, learnt from getMe at start (for the payment pages).
    bot_url: std::sync::OnceLock<String>,
    pub settings: Settings,
    pub svc: Services,
    pub db: Arc<SqliteDb>,
    /// The Redis backend when `REDIS_URL` is set (its queue chores are not on the port).
    pub redis: Option<Arc<RedisState>>,
    pub telegram: Arc<HttpTelegram>,
    pub dispatcher: Arc<Dispatcher>,
}

/// The key that encrypts Wappi tokens: `ENCRYPTION_KEY`, or the key file in the data folder,
/// created on first start.
pub fn load_or_create_key(settings: &Settings) -> anyhow::Result<TokenCipher> {
    if let Some(key) = &settings.encryption_key {
        return TokenCipher::from_base64_key(key.expose())
            .map_err(|e| anyhow::anyhow!("ENCRYPTION_KEY: {e}"));
    }
    let path = settings.data_dir().join("encryption.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return TokenCipher::from_base64_key(text.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    write_private(&path, &encoded).with_context(|| format!("creating {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "created a new ENCRYPTION_KEY for Wappi tokens; back this file up (without it stored tokens cannot be read)"
    );
    TokenCipher::from_base64_key(&encoded).map_err(|e| anyhow::anyhow!("{e}"))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)?.write_all(text.as_bytes())
}

/// Opens the database and applies pending migrations.
pub fn open_db(settings: &Settings) -> anyhow::Result<Arc<SqliteDb>> {
    let db = SqliteDb::open(&settings.database_path)
        .map_err(|e| anyhow::anyhow!("DATABASE_PATH {}: {e}", settings.database_path.display()))?;
    let applied = db
        .migrate()
        .map_err(|e| anyhow::anyhow!("migrations: {e}"))?;
    for name in applied {
        tracing::info!(migration = %name, "applied migration");
    }
    Ok(Arc::new(db))
}

impl App {
    pub fn bot_url(&self) -> Option<String> {
        self.bot_url.get().cloned()
    }

    pub async fn build(settings: Settings) -> anyhow::Result<Arc<App>> {
        let (state, redis): (Arc<dyn State>, Option<Arc<RedisState>>) = match &settings.redis_url {
            Some(url) => {
                let redis = RedisState::connect(url.expose(), &settings.redis_prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
                let redis = Arc::new(redis);
                (redis.clone(), Some(redis))
            }
            None => (Arc::new(EmbeddedState::new()), None),
        };
        let cipher = load_or_create_key(&settings)?;
        let db = open_db(&settings)?;
        let telegram = Arc::new(HttpTelegram::new(
            &settings.telegram_api_url,
            settings.telegram_token.clone(),
        ));
        let wappi = HttpWappi::new(
            &settings.wappi_api_url,
            Duration::from_secs(settings.wappi_timeout_secs),
        );
        let svc = Services {
            db: db.clone(),
            state,
            telegram: telegram.clone(),
            wappi: Arc::new(wappi),
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            cipher: Arc::new(cipher),
            settings: Arc::new(settings.core.clone()),
            image_work: Arc::new(BlockingImageWork),
            broadcaster: Some(crate::broadcast::ServerBroadcaster::new(
                telegram.clone(),
                db.clone(),
            )),
            // Collages are built inline, on the blocking pool (BlockingImageWork).
            deferrer: None,
        };
        let dispatcher = Dispatcher::new(svc.clone());
        Ok(Arc::new(App {
            bot_url: std::sync::OnceLock::new(),
            settings,
            svc,
            db,
            redis,
            telegram,
            dispatcher,
        }))
    }

    /// Serves until `shutdown` turns true: HTTP, update intake, mailing runner.
    pub async fn serve(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.settings.listen_addr)
            .await
            .with_context(|| format!("LISTEN_ADDR {}: cannot listen", self.settings.listen_addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, mode = if self.settings.public_url.is_some() { "webhook" } else { "polling" }, "groupcast serving");

        match self.telegram.get_me().await {
            Ok(me) => {
                if let Some(name) = me.username {
                    let _ = self.bot_url.set(format!("https://t.me/{name}"));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "getMe failed; payment pages will not link back to the bot")
            }
        }
        let runner_id = format!("{}-{}", hostname(), std::process::id());
        let runner = Runner::new(self.svc.clone(), runner_id, self.redis.clone());
        let runner_task = tokio::spawn(runner.run(shutdown.clone(), Duration::from_secs(8)));

        let polling = if self.settings.public_url.is_none() {
            let me = Arc::clone(&self);
            Some(tokio::spawn(me.poll(shutdown.clone())))
        } else {
            None
        };

        let housekeeping = tokio::spawn(Arc::clone(&self).housekeeping(shutdown.clone()));

        let mut http_shutdown = shutdown.clone();
        axum::serve(
            listener,
            http::router(Arc::clone(&self))
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
        let _ = runner_task.await;
        let _ = housekeeping.await;
        tracing::info!("groupcast stopped");
        Ok(())
    }

    /// Periodic chores: subscription reminders every `REMINDER_INTERVAL_SECS`, and once an
    /// hour forgetting update ids older than a week (Telegram redelivers for far less).
    async fn housekeeping(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        const PRUNE_EVERY_MS: i64 = 3_600_000;
        const KEEP_MS: i64 = 7 * 86_400_000;
        let every = Duration::from_secs(self.settings.reminder_interval_secs);
        let mut pruned_at: Option<i64> = None;
        while !*shutdown.borrow() {
            match groupcast_core::payments::send_due_reminders(&self.svc).await {
                Ok(n) if n > 0 => tracing::info!(sent = n, "subscription reminders sent"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "subscription reminders failed"),
            }
            let now = self.svc.now_ms();
            if pruned_at.is_none_or(|t| now - t >= PRUNE_EVERY_MS) {
                match self.db.prune_updates(now - KEEP_MS).await {
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
    async fn poll(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.telegram.delete_webhook().await {
            tracing::warn!(error = %e, "deleteWebhook failed");
        }
        let mut offset = 0i64;
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let got = tokio::select! {
                r = self.telegram.get_updates(offset, 25) => r,
                _ = shutdown.changed() => break,
            };
            match got {
                Ok(updates) => {
                    failures = 0;
                    for u in updates {
                        let id = u.update_id;
                        match self.dispatcher.accept(u).await {
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
