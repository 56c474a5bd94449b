//! The Worker's settings, read from its vars and secrets (names per CONTRACT.md, the same as
//! the server's `settings.rs`). Pure: it takes a lookup function, so it is tested natively.
//! A missing or malformed setting is one line naming the variable.

use groupcast_core::billing;
use groupcast_core::payments::Payments;
use groupcast_core::ports::PacingConfig;
use groupcast_core::robokassa::{HashAlg, Merchant};
use groupcast_core::services::{CoreSettings, EngineConfig};
use groupcast_core::Secret;
use std::net::IpAddr;

/// A setting that is missing or malformed; `Display` is the one line shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub var: &'static str,
    pub problem: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for SettingError {}

fn bad(var: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        var,
        problem: problem.into(),
    }
}

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
    /// Test-only fault hooks (`GROUPCAST_TEST_HOOKS=1`).
    pub test_hooks: TestHooks,
    pub core: CoreSettings,
}

/// Fault injection for the Worker-specific end-to-end tests; all off unless
/// `GROUPCAST_TEST_HOOKS=1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// `GROUPCAST_TEST_HOOKS=1`: also enables `POST /__test/queue`.
    pub enabled: bool,
    /// The runner's alarm throws once, right after its N-th successful Wappi send (counted
    /// per runner in its storage) and before the ledger records it
    /// (`GROUPCAST_TEST_CRASH_AFTER_SEND`).
    pub crash_after_send: Option<u32>,
}

/// A lookup of one variable.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

struct Src<'a>(&'a dyn Vars);

impl Src<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .var(name)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        what: &str,
    ) -> Result<T, SettingError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| bad(var, format!("expected {what}, got {v:?}"))),
        }
    }

    fn flag(&self, var: &'static str) -> Result<bool, SettingError> {
        match self.get(var).as_deref() {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(bad(var, format!("expected 0 or 1, got {v:?}"))),
        }
    }

    fn url(&self, var: &'static str, default: &str) -> Result<String, SettingError> {
        let v = self.get(var).unwrap_or_else(|| default.to_string());
        check_url(var, &v)
    }

    fn list<T>(
        &self,
        var: &'static str,
        parse: impl Fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<Vec<T>, SettingError> {
        match self.get(var) {
            None => Ok(Vec::new()),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| parse(s).ok_or_else(|| bad(var, format!("{s:?} is not {what}"))))
                .collect(),
        }
    }
}

fn check_url(var: &'static str, v: &str) -> Result<String, SettingError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.trim_end_matches('/').to_string())
    } else {
        Err(bad(var, format!("expected an http(s) URL, got {v:?}")))
    }
}

fn valid_webhook_secret(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The Robokassa shop: all three credentials, or none (payments off).
fn robokassa(src: &Src<'_>) -> Result<Option<Payments>, SettingError> {
    let login = src.get("ROBOKASSA_MERCHANT_LOGIN");
    let p1 = src.get("ROBOKASSA_PASSWORD1");
    let p2 = src.get("ROBOKASSA_PASSWORD2");
    let (login, p1, p2) = match (login, p1, p2) {
        (None, None, None) => return Ok(None),
        (Some(l), Some(a), Some(b)) => (l, a, b),
        (None, _, _) => {
            return Err(bad(
                "ROBOKASSA_MERCHANT_LOGIN",
                "is required with the Robokassa passwords",
            ))
        }
        (_, None, _) => {
            return Err(bad(
                "ROBOKASSA_PASSWORD1",
                "is required with ROBOKASSA_MERCHANT_LOGIN",
            ))
        }
        (_, _, None) => {
            return Err(bad(
                "ROBOKASSA_PASSWORD2",
                "is required with ROBOKASSA_MERCHANT_LOGIN",
            ))
        }
    };
    let mut merchant = Merchant::new(login, Secret::new(p1), Secret::new(p2));
    if let Some(h) = src.get("ROBOKASSA_HASH") {
        merchant.hash = HashAlg::parse(&h).ok_or_else(|| {
            bad(
                "ROBOKASSA_HASH",
                "expected md5, sha1, sha256, sha384, sha512 or ripemd160",
            )
        })?;
    }
    merchant.test_mode = src.flag("ROBOKASSA_TEST_MODE")?;
    if src.get("ROBOKASSA_PAYMENT_URL").is_some() {
        merchant.payment_url = src.url("ROBOKASSA_PAYMENT_URL", "")?;
    }
    Ok(Some(Payments {
        merchant,
        receipt: src.flag("ROBOKASSA_RECEIPT")?,
        receipt_tax: src
            .get("ROBOKASSA_RECEIPT_TAX")
            .unwrap_or_else(|| "none".into()),
    }))
}

fn pacing(src: &Src<'_>) -> Result<PacingConfig, SettingError> {
    let rate: f64 = src.parse("PROFILE_RATE_PER_SEC", 1.0, "a number of sends per second")?;
    if rate.is_nan() || rate <= 0.0 || rate > 1000.0 {
        return Err(bad(
            "PROFILE_RATE_PER_SEC",
            "must be above 0 and at most 1000",
        ));
    }
    let chat_burst: u32 = src.parse("CHAT_BURST", 12, "a whole number")?;
    if chat_burst == 0 {
        return Err(bad("CHAT_BURST", "must be at least 1"));
    }
    let window: f64 = src.parse("CHAT_BURST_WINDOW_SECS", 2.0, "a number of seconds")?;
    if window.is_nan() || window <= 0.0 {
        return Err(bad("CHAT_BURST_WINDOW_SECS", "must be above 0"));
    }
    Ok(PacingConfig {
        profile_rate_per_sec: rate,
        chat_burst,
        chat_window_ms: (window * 1000.0) as u64,
    })
}

fn core(src: &Src<'_>) -> Result<CoreSettings, SettingError> {
    let progress_secs: f64 = src.parse("PROGRESS_INTERVAL_SECS", 3.0, "a number of seconds")?;
    let max_attempts: u32 = src.parse("MAX_SEND_ATTEMPTS", 5, "a whole number")?;
    Ok(CoreSettings {
        pacing: pacing(src)?,
        trial_days: src.parse("TRIAL_DAYS", 0, "a whole number of days")?,
        max_groups: src.parse("MAX_GROUPS_PER_USER", 500, "a whole number")?,
        admin_ids: src.list(
            "ADMIN_TELEGRAM_IDS",
            |s| s.parse().ok(),
            "a Telegram user id",
        )?,
        plans: billing::parse_plans(
            &src.get("SUBSCRIPTION_PLANS")
                .unwrap_or_else(|| "30:490".into()),
        )
        .map_err(|e| bad("SUBSCRIPTION_PLANS", e))?,
        payments: robokassa(src)?,
        engine: EngineConfig {
            max_attempts: max_attempts.max(1),
            backoff_base_ms: src.parse("RETRY_BASE_MS", 1000, "milliseconds")?,
            progress_interval_ms: (progress_secs * 1000.0) as i64,
            ..EngineConfig::default()
        },
    })
}

impl WorkerSettings {
    pub fn load(vars: &dyn Vars) -> Result<WorkerSettings, SettingError> {
        let src = Src(vars);
        let telegram_token = src
            .get("TELEGRAM_BOT_TOKEN")
            .map(Secret::new)
            .ok_or_else(|| {
                bad(
                    "TELEGRAM_BOT_TOKEN",
                    "is not set (the bot token from @BotFather)",
                )
            })?;
        if !telegram_token.expose().contains(':') {
            return Err(bad(
                "TELEGRAM_BOT_TOKEN",
                "does not look like a bot token (<id>:<secret>)",
            ));
        }
        let webhook_secret = match src.get("TELEGRAM_WEBHOOK_SECRET") {
            Some(s) if valid_webhook_secret(&s) => Secret::new(s),
            Some(_) => {
                return Err(bad(
                    "TELEGRAM_WEBHOOK_SECRET",
                    "must be 1-256 characters of A-Z a-z 0-9 _ -",
                ))
            }
            None => {
                return Err(bad(
                    "TELEGRAM_WEBHOOK_SECRET",
                    "is not set (the Worker always runs in webhook mode)",
                ))
            }
        };
        let encryption_key = src.get("ENCRYPTION_KEY").map(Secret::new).ok_or_else(|| {
            bad(
                "ENCRYPTION_KEY",
                "is not set (base64 of 32 random bytes: openssl rand -base64 32)",
            )
        })?;
        groupcast_core::crypto::TokenCipher::from_base64_key(encryption_key.expose())
            .map_err(|e| bad("ENCRYPTION_KEY", e.to_string()))?;
        let test_hooks = if src.flag("GROUPCAST_TEST_HOOKS")? {
            TestHooks {
                enabled: true,
                crash_after_send: match src.get("GROUPCAST_TEST_CRASH_AFTER_SEND") {
                    None => None,
                    Some(_) => {
                        Some(src.parse("GROUPCAST_TEST_CRASH_AFTER_SEND", 0, "a whole number")?)
                    }
                },
            }
        } else {
            TestHooks::default()
        };
        Ok(WorkerSettings {
            telegram_token,
            telegram_api_url: src.url("TELEGRAM_API_URL", "https://api.telegram.org")?,
            webhook_secret,
            wappi_api_url: src.url("WAPPI_API_URL", "https://wappi.pro")?,
            wappi_timeout_ms: src
                .parse::<u64>("WAPPI_TIMEOUT_SECS", 10, "a whole number of seconds")?
                .max(1)
                * 1000,
            encryption_key,
            public_url: match src.get("PUBLIC_URL") {
                Some(v) => Some(check_url("PUBLIC_URL", &v)?),
                None => None,
            },
            robokassa_allowed_ips: src.list(
                "ROBOKASSA_ALLOWED_IPS",
                |s| s.parse().ok(),
                "an IP address",
            )?,
            test_hooks,
            core: core(&src)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    }

    #[test]
    fn required_and_malformed_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TELEGRAM_BOT_TOKEN", "")], "TELEGRAM_BOT_TOKEN"),
            (&[("TELEGRAM_BOT_TOKEN", "nocolon")], "TELEGRAM_BOT_TOKEN"),
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
            (&[("PROFILE_RATE_PER_SEC", "0")], "PROFILE_RATE_PER_SEC"),
            (&[("CHAT_BURST", "x")], "CHAT_BURST"),
            (&[("WAPPI_API_URL", "ftp://x")], "WAPPI_API_URL"),
            (
                &[("ROBOKASSA_ALLOWED_IPS", "1.2.3.4,nope")],
                "ROBOKASSA_ALLOWED_IPS",
            ),
            (
                &[("ROBOKASSA_MERCHANT_LOGIN", "shop")],
                "ROBOKASSA_PASSWORD1",
            ),
            (&[("SUBSCRIPTION_PLANS", "30")], "SUBSCRIPTION_PLANS"),
            (&[("GROUPCAST_TEST_HOOKS", "yes")], "GROUPCAST_TEST_HOOKS"),
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
            ("PROFILE_RATE_PER_SEC", "10"),
            ("CHAT_BURST", "3"),
            ("CHAT_BURST_WINDOW_SECS", "1.5"),
            ("WAPPI_API_URL", "http://127.0.0.1:9/"),
            ("ROBOKASSA_ALLOWED_IPS", "127.0.0.1, ::1"),
            ("ROBOKASSA_MERCHANT_LOGIN", "shop"),
            ("ROBOKASSA_PASSWORD1", "p1"),
            ("ROBOKASSA_PASSWORD2", "p2"),
            ("PROGRESS_INTERVAL_SECS", "0.5"),
            ("GROUPCAST_TEST_HOOKS", "1"),
            ("GROUPCAST_TEST_CRASH_AFTER_SEND", "2"),
        ])
        .unwrap();
        assert_eq!(s.core.pacing.profile_rate_per_sec, 10.0);
        assert_eq!(s.core.pacing.chat_burst, 3);
        assert_eq!(s.core.pacing.chat_window_ms, 1500);
        assert_eq!(s.wappi_api_url, "http://127.0.0.1:9");
        assert_eq!(s.robokassa_allowed_ips.len(), 2);
        assert!(s.core.payments.is_some());
        assert_eq!(s.core.engine.progress_interval_ms, 500);
        assert_eq!(s.test_hooks.crash_after_send, Some(2));
        // Hooks stay off without the master switch.
        let s = load(&[("GROUPCAST_TEST_CRASH_AFTER_SEND", "2")]).unwrap();
        assert_eq!(s.test_hooks.crash_after_send, None);
    }
}
