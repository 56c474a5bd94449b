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

use crate::config::CoreSettings;
use crate::crypto::TokenCipher;
use crate::ports::{Cancels, Clock, Db, Entropy, Intake, Leases, Pacer, TelegramApi, WappiApi};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

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
    pub broadcaster: Option<Arc<dyn crate::ports::Broadcaster>>,
    /// Where long work (building a collage) goes; `None` runs it inline while answering.
    pub deferrer: Option<Arc<dyn crate::ports::Deferrer>>,
    /// Told when a scheduled run is due; `None` where the runtime's timer only looks
    /// regularly.
    pub run_timer: Option<Arc<dyn crate::ports::RunTimer>>,
    /// Where the engine's figures go (the server's `/metrics`); `None` keeps none.
    pub figures: Option<Arc<dyn crate::ports::Figures>>,
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

    /// A user's time zone (`DEFAULT_TZ` for a user unknown or without one).
    pub fn user_zone(&self, user: Option<&crate::ports::UserRecord>) -> chrono_tz::Tz {
        let default = self.settings.default_tz;
        user.map_or(default, |u| u.zone(default))
    }

    /// The operator's least time between two posts of an account, ms (`PROFILE_RATE_PER_SEC`):
    /// the floor under every pace.
    pub fn post_floor_ms(&self) -> u64 {
        (self.send_interval_secs() * 1000.0).ceil() as u64
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
