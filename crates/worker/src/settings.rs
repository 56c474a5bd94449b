//! The Worker's settings, read from its vars and secrets (names per CONTRACT.md, the same as
//! the server's). The variables both runtimes share are read by [`groupcast_core::config`];
//! this file adds the Worker's own rules: the webhook secret and `ENCRYPTION_KEY` are always
//! required (webhook mode only, no disk to keep a generated key), and the test hooks (read by
//! [`crate::test_hooks::TestHooks`]).
//! Pure: it takes a lookup function, so it is tested natively.

use crate::bindings::{ENCRYPTION_KEY, TELEGRAM_WEBHOOK_SECRET};
use crate::test_hooks::TestHooks;
use groupcast_core::config::CoreSettings;
use groupcast_core::config::{bad, Lookup, SharedSettings};
use groupcast_core::Secret;
use std::net::IpAddr;

pub use groupcast_core::config::{SettingError, Vars};

/// Everything the Worker reads from its environment.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub telegram_token: Secret,
    pub telegram_api_url: String,
    pub webhook_secret: Secret,
    pub wappi_api_url: String,
    /// Per-call timeout of Wappi requests (`WAPPI_TIMEOUT_SECS`, default 10).
    pub wappi_timeout_ms: u64,
    /// `ENCRYPTION_KEY`, base64 of 32 bytes (required on Cloudflare: there is no disk to keep
    /// a generated one).
    pub encryption_key: Secret,
    pub public_url: Option<String>,
    /// Addresses allowed to call `/robokassa/result` (`CF-Connecting-IP`); empty = any.
    pub robokassa_allowed_ips: Vec<IpAddr>,
    /// Test-only fault hooks (`GROUPCAST_TEST_HOOKS=1`; see [`crate::test_hooks`]).
    pub test_hooks: TestHooks,
    pub core: CoreSettings,
}

/// `ENCRYPTION_KEY`: required, and it must be a usable key.
fn encryption_key(src: &Lookup<'_>) -> Result<Secret, SettingError> {
    let key = src.get(ENCRYPTION_KEY).map(Secret::new).ok_or_else(|| {
        bad(
            ENCRYPTION_KEY,
            "is not set (base64 of 32 random bytes: openssl rand -base64 32)",
        )
    })?;
    groupcast_core::crypto::TokenCipher::from_base64_key(key.expose())
        .map_err(|e| bad(ENCRYPTION_KEY, e.to_string()))?;
    Ok(key)
}

impl WorkerSettings {
    pub fn load(vars: &dyn Vars) -> Result<WorkerSettings, SettingError> {
        let src = Lookup::new(vars);
        let shared = SharedSettings::from_vars(&src)?;
        let webhook_secret = shared.webhook_secret.ok_or_else(|| {
            bad(
                TELEGRAM_WEBHOOK_SECRET,
                "is not set (the Worker always runs in webhook mode)",
            )
        })?;
        Ok(WorkerSettings {
            telegram_token: shared.telegram_token,
            telegram_api_url: shared.telegram_api_url,
            webhook_secret,
            wappi_api_url: shared.wappi_api_url,
            wappi_timeout_ms: shared.wappi_timeout_secs * 1000,
            encryption_key: encryption_key(&src)?,
            public_url: shared.public_url,
            robokassa_allowed_ips: shared.robokassa_allowed_ips,
            test_hooks: TestHooks::from_vars(&src)?,
            core: shared.core,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::model::pacing::PacingConfig;
    use std::collections::HashMap;

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn load(pairs: &[(&str, &str)]) -> Result<WorkerSettings, SettingError> {
        let mut map: HashMap<String, String> = [
            ("TELEGRAM_BOT_TOKEN", "123:abc"),
            ("TELEGRAM_WEBHOOK_SECRET", "s3cret"),
            ("ENCRYPTION_KEY", KEY),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        let lookup = move |name: &str| map.get(name).cloned();
        WorkerSettings::load(&lookup)
    }

    #[test]
    fn defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(s.telegram_api_url, "https://api.telegram.org");
        assert_eq!(s.wappi_api_url, "https://wappi.pro");
        assert_eq!(s.core.pacing, PacingConfig::default());
        assert!(s.core.payments.is_none());
        assert_eq!(s.test_hooks, TestHooks::default());
        assert_eq!(s.wappi_timeout_ms, 10_000);
        assert_eq!(s.webhook_secret.expose(), "s3cret");
    }

    #[test]
    fn required_and_malformed_name_the_variable() {
        // The Worker's own rules; the shared variables are tested in `groupcast_core::config`.
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("TELEGRAM_WEBHOOK_SECRET", "")],
                "TELEGRAM_WEBHOOK_SECRET",
            ),
            (
                &[("TELEGRAM_WEBHOOK_SECRET", "a b")],
                "TELEGRAM_WEBHOOK_SECRET",
            ),
            (&[("ENCRYPTION_KEY", "")], "ENCRYPTION_KEY"),
            (&[("ENCRYPTION_KEY", "c2hvcnQ=")], "ENCRYPTION_KEY"),
            (&[("GROUPCAST_TEST_HOOKS", "yes")], "GROUPCAST_TEST_HOOKS"),
            (
                &[
                    ("GROUPCAST_TEST_HOOKS", "1"),
                    ("GROUPCAST_TEST_CRASH_AFTER_SEND", "x"),
                ],
                "GROUPCAST_TEST_CRASH_AFTER_SEND",
            ),
            // Shared variables come through the core reader with the same errors.
            (&[("TELEGRAM_BOT_TOKEN", "")], "TELEGRAM_BOT_TOKEN"),
            (
                &[("ROBOKASSA_MERCHANT_LOGIN", "shop")],
                "ROBOKASSA_PASSWORD1",
            ),
        ];
        for (pairs, var) in cases {
            let e = load(pairs).unwrap_err();
            assert_eq!(e.var, *var, "{pairs:?}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn secrets_never_in_errors() {
        let e = load(&[("ENCRYPTION_KEY", "c2VjcmV0LXZhbHVl")]).unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0LXZhbHVl"), "{e}");
    }

    #[test]
    fn values() {
        let s = load(&[
            ("WAPPI_TIMEOUT_SECS", "3"),
            ("PUBLIC_URL", "https://bot.example/"),
            ("ROBOKASSA_ALLOWED_IPS", "127.0.0.1, ::1"),
            ("PROFILE_RATE_PER_SEC", "10"),
            ("GROUPCAST_TEST_HOOKS", "1"),
            ("GROUPCAST_TEST_CRASH_AFTER_SEND", "2"),
        ])
        .unwrap();
        assert_eq!(s.wappi_timeout_ms, 3000);
        assert_eq!(s.public_url.as_deref(), Some("https://bot.example"));
        assert_eq!(s.robokassa_allowed_ips.len(), 2);
        assert_eq!(s.core.pacing.profile_rate_per_sec, 10.0);
        assert!(s.test_hooks.enabled);
        assert_eq!(s.test_hooks.crash_after_send, Some(2));
        // Hooks stay off without the master switch.
        let s = load(&[("GROUPCAST_TEST_CRASH_AFTER_SEND", "2")]).unwrap();
        assert_eq!(s.test_hooks.crash_after_send, None);
    }
}
