//! The bundle of ports and settings that the bot and the mailing engine run on. Each runtime
//! builds one at start-up from its own adapters.

use crate::crypto::TokenCipher;
use crate::ports::{Clock, Db, Entropy, State, TelegramApi, WappiApi};
use std::sync::Arc;

pub use crate::config::{CoreSettings, EngineConfig};

/// Ports plus settings: everything the core needs, cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub db: Arc<dyn Db>,
    pub state: Arc<dyn State>,
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
}

impl Services {
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

impl Services {
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
