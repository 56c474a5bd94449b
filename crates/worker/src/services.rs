//! The core's shared [`Ports`] on the Worker ([`ports`]): D1, Telegram and Wappi over `fetch`,
//! the broadcaster, and the small adapters plugged in beside them: the clock ([`JsClock`]), the
//! random source ([`JsEntropy`]), long work handed to the Queue ([`QueueDeferrer`]) and the
//! scheduler's alarm ([`SchedulerTimer`]). The
//! coordination capabilities are the caller's: the stateless side wraps the ports into the
//! bot's `Services` with its own, each profile runner into the engine's `EngineServices`.

use crate::bindings;
use crate::broadcast::WorkerBroadcaster;
use crate::d1::D1Db;
use crate::env;
use crate::settings::{SettingError, WorkerSettings};
use crate::telegram::FetchTelegram;
use crate::test_hooks::{self, Hooks};
use crate::wappi::FetchWappi;
use crate::wire::QueueTask;
use groupcast_core::crypto::TokenCipher;
use groupcast_core::ports::{async_trait, Clock, Entropy};
use groupcast_core::ports::{CollageJob, DeferError, Deferrer, RunTimer, StateError};
use groupcast_core::services::Ports;
use std::sync::Arc;
use std::time::Duration;
use worker::{Env, Method, Request, RequestInit};

/// `Date.now()`.
pub struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> i64 {
        worker::Date::now().as_millis() as i64
    }
}

/// `crypto.getRandomValues`.
pub struct JsEntropy;

impl Entropy for JsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("crypto.getRandomValues is available in workerd");
    }
}

/// Builds the ports: D1, Telegram and Wappi over `fetch` (`hooks`: the runner's test faults,
/// `None` elsewhere).
pub fn ports(
    env: &Env,
    settings: &WorkerSettings,
    hooks: Option<Hooks>,
) -> Result<Ports, SettingError> {
    let cipher = TokenCipher::from_base64_key(settings.encryption_key.expose()).map_err(|e| {
        SettingError {
            var: bindings::ENCRYPTION_KEY,
            problem: e.to_string(),
        }
    })?;
    let d1 = env::d1(env).map_err(|_| SettingError {
        var: bindings::DB,
        problem: "the D1 binding is missing from wrangler.toml".into(),
    })?;
    let wappi = FetchWappi::new(
        &settings.wappi_api_url,
        Duration::from_millis(settings.wappi_timeout_ms),
    );
    let ports = Ports {
        db: Arc::new(D1Db::new(d1, hooks.clone())),
        telegram: Arc::new(FetchTelegram::new(
            &settings.telegram_api_url,
            settings.telegram_token.clone(),
        )),
        wappi: test_hooks::hooked_wappi(wappi, hooks),
        clock: Arc::new(JsClock),
        entropy: Arc::new(JsEntropy),
        cipher: Arc::new(cipher),
        settings: Arc::new(settings.core.clone()),
        image_work: Arc::new(groupcast_core::ports::InlineImageWork),
        broadcaster: Some(Arc::new(WorkerBroadcaster::new(env.clone()))),
        // 🌅 goes to the queue; its consumer builds the collage.
        deferrer: Some(Arc::new(QueueDeferrer { env: env.clone() })),
        // A new or changed schedule arms the scheduler's alarm.
        run_timer: Some(Arc::new(SchedulerTimer::new(env.clone()))),
        // No metrics endpoint on Workers (Cloudflare's own analytics count requests).
        figures: None,
    };
    Ok(ports)
}

/// Long work goes on `MAILING_QUEUE` (the send is awaited before the webhook answers); the
/// consumer runs it.
pub struct QueueDeferrer {
    env: Env,
}

#[async_trait(?Send)]
impl Deferrer for QueueDeferrer {
    async fn defer(&self, collage: CollageJob) -> Result<(), DeferError> {
        let task = QueueTask::Collage { collage };
        env::send_to_queue(&self.env, task)
            .await
            .map_err(|e| DeferError(e.to_string()))
    }
}

/// The name of the one scheduler object.
pub const SCHEDULER_NAME: &str = "scheduler";

/// `POST https://scheduler/wake`: the alarm is to fire at `at` (unix ms) at the latest.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Wake {
    pub at: i64,
}

/// The `RunTimer` port: asks the `Scheduler` (`crate::scheduler`) to fire at a time.
pub struct SchedulerTimer {
    env: Env,
}

impl SchedulerTimer {
    pub fn new(env: Env) -> SchedulerTimer {
        SchedulerTimer { env }
    }
}

#[async_trait(?Send)]
impl RunTimer for SchedulerTimer {
    async fn wake_at(&self, at_ms: i64) -> std::result::Result<(), StateError> {
        wake(&self.env, at_ms)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))
    }
}

/// Asks the scheduler to fire at `at_ms` at the latest.
pub async fn wake(env: &Env, at_ms: i64) -> worker::Result<()> {
    let stub = env::scheduler(env, SCHEDULER_NAME)?;
    let body = serde_json::to_string(&Wake { at: at_ms })?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let req = Request::new_with_init("https://scheduler/wake", &init)?;
    let resp = env::call_object(&stub, req).await?;
    match resp.status_code() {
        200 => Ok(()),
        code => Err(worker::Error::RustError(format!(
            "the scheduler answered {code}"
        ))),
    }
}
