//! The bundles of ports and settings that the bot and the mailing engine run on. Each runtime
//! builds them at start-up from its own adapters:
//!
//! - [`Ports`]: what every part shares (storage, Telegram, Wappi, clock, entropy, the token
//!   cipher, settings, image work, and the hand-offs of long work);
//! - [`Services`]: what the bot runs on (and payments, collages, operator tools): the shared
//!   ports, the cancel flags and the intake queue's producer end;
//! - [`EngineServices`]: what the mailing engine runs on: the shared ports, profile leases,
//!   cancel flags and the pacer.
//!
//! Both bundles dereference to their [`Ports`], so `svc.db` or `svc.now_ms()` read the same
//! in either; a coordination capability is named by its field (`svc.intake.enqueue(..)`,
//! `svc.pacer.pace(..)`).

use crate::crypto::TokenCipher;
use crate::ports::{
    Cancels, Clock, Db, Entropy, Intake, Leases, Pacer, PacingConfig, TelegramApi, WappiApi,
};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Behaviour settings shared by both runtimes (names per CONTRACT.md where they exist there).
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub pacing: PacingConfig,
    /// Free days for a new user (`TRIAL_DAYS`).
    pub trial_days: u32,
    /// Cap on groups per user (`MAX_GROUPS_PER_USER`).
    pub max_groups: usize,
    /// Operators (`ADMIN_TELEGRAM_IDS`).
    pub admin_ids: Vec<i64>,
    /// Plans on sale (`SUBSCRIPTION_PLANS`).
    pub plans: Vec<crate::model::billing::Plan>,
    /// The Robokassa shop; `None` when payments are not configured.
    pub payments: Option<crate::payments::Payments>,
    pub engine: EngineConfig,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            pacing: PacingConfig::default(),
            trial_days: 0,
            max_groups: 500,
            admin_ids: Vec::new(),
            plans: vec![crate::model::billing::Plan {
                days: 30,
                price_kopecks: 49_000,
            }],
            payments: None,
            engine: EngineConfig::default(),
        }
    }
}

/// Retry and progress tuning of the mailing engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Attempts per row before it fails (5xx, network errors, failed reconciliations).
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Minimum time between two edits of the progress message (`PROGRESS_INTERVAL_SECS`).
    pub progress_interval_ms: i64,
    /// How long to wait before reading the chat history to settle an `in_doubt` row.
    pub settle_delay_ms: i64,
    /// How many recent messages of the group reconciliation reads.
    pub settle_lookback: u32,
    /// The profile lease's time-to-live; the lease is renewed right before every send, so a
    /// runner that was paused past it sends nothing more (`LEASE_TTL_SECS`).
    pub lease_ttl_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_attempts: 5,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            progress_interval_ms: 3000,
            settle_delay_ms: 2000,
            settle_lookback: 50,
            lease_ttl_ms: 15_000,
        }
    }
}

/// The ports and settings that every part of the core shares, cheap to clone.
#[derive(Clone)]
pub struct Ports {
    pub db: Arc<dyn Db>,
    pub telegram: Arc<dyn TelegramApi>,
    pub wappi: Arc<dyn WappiApi>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub cipher: Arc<TokenCipher>,
    pub settings: Arc<CoreSettings>,
    /// Decoding and encoding of photos and collages (see [`crate::ports::ImageWork`]).
    pub image_work: Arc<dyn crate::ports::ImageWork>,
    /// Delivers operator broadcasts in the background; `None` where the runtime has none.
    pub broadcaster: Option<Arc<dyn crate::bot::operator::Broadcaster>>,
    /// Where long work (building a collage) goes; `None` runs it inline while answering.
    pub deferrer: Option<Arc<dyn crate::long_work::Deferrer>>,
}

/// What the bot runs on: the shared [`Ports`], the cancel flags and the producer end of the
/// intake queue. Dereferences to its ports.
#[derive(Clone)]
pub struct Services {
    pub ports: Ports,
    pub cancels: Arc<dyn Cancels>,
    pub intake: Arc<dyn Intake>,
}

impl Services {
    /// The bundle over `ports` with both capabilities from one backend.
    pub fn new<S: Cancels + Intake + 'static>(ports: Ports, state: Arc<S>) -> Self {
        Services {
            ports,
            cancels: state.clone(),
            intake: state,
        }
    }
}

/// What the mailing engine runs on: the shared [`Ports`], the profile leases, the cancel
/// flags and the pacer. Dereferences to its ports.
#[derive(Clone)]
pub struct EngineServices {
    pub ports: Ports,
    pub leases: Arc<dyn Leases>,
    pub cancels: Arc<dyn Cancels>,
    pub pacer: Arc<dyn Pacer>,
}

impl EngineServices {
    /// The bundle over `ports` with all three capabilities from one backend.
    pub fn new<S: Leases + Cancels + Pacer + 'static>(ports: Ports, state: Arc<S>) -> Self {
        EngineServices {
            ports,
            leases: state.clone(),
            cancels: state.clone(),
            pacer: state,
        }
    }
}

impl Deref for Services {
    type Target = Ports;
    fn deref(&self) -> &Ports {
        &self.ports
    }
}

impl DerefMut for Services {
    fn deref_mut(&mut self) -> &mut Ports {
        &mut self.ports
    }
}

impl Deref for EngineServices {
    type Target = Ports;
    fn deref(&self) -> &Ports {
        &self.ports
    }
}

impl DerefMut for EngineServices {
    fn deref_mut(&mut self) -> &mut Ports {
        &mut self.ports
    }
}

impl Ports {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A fresh AES-GCM nonce.
    pub fn nonce(&self) -> [u8; 12] {
        let mut n = [0u8; 12];
        self.entropy.fill(&mut n);
        n
    }

    /// Seconds per send at the profile's pace, for ETAs.
    pub fn send_interval_secs(&self) -> f64 {
        1.0 / self.settings.pacing.profile_rate_per_sec.max(0.001)
    }

    /// ETA in seconds for `sends` messages at the profile's pace.
    pub fn eta_secs(&self, sends: usize) -> u64 {
        (sends as f64 * self.send_interval_secs()).ceil() as u64
    }
}

impl Ports {
    /// The additional authenticated data binding an encrypted token to its user, so a
    /// ciphertext copied into another user's row does not decrypt.
    pub fn token_aad(user: crate::model::ids::UserId) -> Vec<u8> {
        format!("groupcast:user:{}", user.0).into_bytes()
    }

    pub fn encrypt_token(
        &self,
        user: crate::model::ids::UserId,
        token: &crate::model::secret::Secret,
    ) -> String {
        self.cipher
            .encrypt(token, &Self::token_aad(user), self.nonce())
    }

    pub fn decrypt_token(
        &self,
        user: crate::model::ids::UserId,
        stored: &str,
    ) -> Result<crate::model::secret::Secret, crate::crypto::CryptoError> {
        self.cipher.decrypt(stored, &Self::token_aad(user))
    }

    /// A registered user's Wappi credentials.
    pub fn creds_of(&self, user: &crate::ports::UserRecord) -> Option<crate::wappi::WappiCreds> {
        let token = self
            .decrypt_token(user.id, user.wappi_token_enc.as_deref()?)
            .ok()?;
        Some(crate::wappi::WappiCreds {
            token,
            profile_id: user.profile_id.clone()?,
        })
    }
}
