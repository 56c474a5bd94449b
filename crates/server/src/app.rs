//! Start-up: builds the adapters from the settings (database, state backend, Telegram and
//! Wappi clients, the encryption key) and ties them into the core's bundles ([`Services`] for
//! the bot, [`EngineServices`] for the runner) and an [`App`], which `serve` runs.

use crate::db::SqliteDb;
use crate::notices::DetachedTelegram;
use crate::redis_state::RedisState;
use crate::settings::Settings;
use crate::state::{self, ReleaseFeed, StateHandles, StateHealth};
use crate::telegram::HttpTelegram;
use crate::updates::Dispatcher;
use crate::wappi::HttpWappi;
use anyhow::Context;
use base64::Engine as _;
use groupcast_core::collage::{self, Collage, CollageError, CollageOptions};
use groupcast_core::crypto::TokenCipher;
use groupcast_core::ports::{
    async_trait, Clock, Entropy, ImageWork, InlineImageWork, StateBackend,
};
use groupcast_core::services::{EngineServices, Ports, Services};
use rand::RngCore;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
    /// `https://t.me/<bot>`, learnt from getMe when serving starts (for the payment pages).
    pub bot_url: Arc<OnceLock<String>>,
    pub settings: Settings,
    /// What the bot (and payments) run on.
    pub svc: Services,
    /// What the runner's drivers run on.
    pub engine: EngineServices,
    /// The state backend's other handles: the runners' end of the intake queue, heartbeats,
    /// and its health.
    pub state: StateHandles,
    pub db: Arc<SqliteDb>,
    pub telegram: Arc<HttpTelegram>,
    /// The engine's Telegram: its notices, delivered in the background.
    pub notices: Arc<DetachedTelegram>,
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

/// One backend, handed out capability by capability.
struct Wiring {
    svc: Services,
    engine: EngineServices,
    state: StateHandles,
}

impl Wiring {
    fn of<S: StateBackend + StateHealth + ReleaseFeed + 'static>(
        ports: Ports,
        state: Arc<S>,
    ) -> Wiring {
        Wiring {
            svc: Services::new(ports.clone(), state.clone()),
            engine: EngineServices::new(ports, state.clone()),
            state: StateHandles {
                queue: state.clone(),
                heartbeats: state.clone(),
                health: state.clone(),
                releases: state,
            },
        }
    }
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Arc<App>> {
        let redis = match &settings.redis_url {
            Some(url) => Some(
                RedisState::connect(url.expose(), &settings.redis_prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?,
            ),
            None => None,
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
        let ports = Ports {
            db: db.clone(),
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
            // The scheduler loop looks every few seconds (see `serve::scheduler`).
            run_timer: None,
            figures: Some(Arc::new(crate::metrics::EngineFigures)),
        };
        let Wiring {
            svc,
            mut engine,
            state,
        } = match redis {
            Some(redis) => Wiring::of(ports, Arc::new(redis)),
            None => Wiring::of(ports, Arc::new(state::embedded(Arc::new(OsEntropy)))),
        };
        // The engine's messages to users never hold up a post (see `notices`).
        let notices = DetachedTelegram::new(telegram.clone());
        engine.telegram = notices.clone();
        let dispatcher = Dispatcher::new(svc.clone(), db.clone());
        Ok(Arc::new(App {
            bot_url: Arc::new(OnceLock::new()),
            settings,
            svc,
            engine,
            state,
            db,
            telegram,
            notices,
            dispatcher,
        }))
    }
}
