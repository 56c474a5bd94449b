//! Reading the settings both runtimes share (names and defaults per CONTRACT.md) from named
//! variables. The self-hosted server takes them from its environment and `.env`, the Worker
//! from its vars and secrets; each hands a [`Vars`] lookup to [`SharedSettings::from_vars`]
//! and then reads only its own extras with the same [`Lookup`] helpers, so a variable means
//! the same thing, has the same default and fails with the same words on both.
//!
//! A missing or malformed setting is a [`SettingError`]: one line naming the variable, which
//! stops start-up. Secret values are never quoted in it.

use crate::model::billing;
use crate::model::pacing::pace::Preset;
use crate::model::pacing::PacingConfig;
use crate::model::secret::Secret;
use crate::robokassa::{HashAlg, Merchant};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::net::IpAddr;

/// Where variables come from: a lookup of one variable by name.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Vars for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

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

/// A [`SettingError`] for `var`.
pub fn bad(var: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        var,
        problem: problem.into(),
    }
}

/// Typed reads of variables: values are trimmed, and an empty value counts as unset.
pub struct Lookup<'a>(&'a dyn Vars);

impl<'a> Lookup<'a> {
    pub fn new(vars: &'a dyn Vars) -> Lookup<'a> {
        Lookup(vars)
    }

    /// The trimmed value, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .var(name)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The value parsed as `T`, `default` when unset; `what` names the expected kind.
    pub fn parse<T: std::str::FromStr>(
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

    /// `1` = on; `0` or unset = off.
    pub fn flag(&self, var: &'static str) -> Result<bool, SettingError> {
        match self.get(var).as_deref() {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(bad(var, format!("expected 0 or 1, got {v:?}"))),
        }
    }

    /// An http(s) URL without its trailing slash, `default` when unset.
    pub fn url(&self, var: &'static str, default: &str) -> Result<String, SettingError> {
        let v = self.get(var).unwrap_or_else(|| default.to_string());
        check_url(var, &v)
    }

    /// An http(s) URL without its trailing slash, `None` when unset.
    pub fn optional_url(&self, var: &'static str) -> Result<Option<String>, SettingError> {
        self.get(var).map(|v| check_url(var, &v)).transpose()
    }

    /// A comma list; empty when unset. `parse` reads one item, `what` names its kind.
    pub fn list<T>(
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

/// What Telegram accepts as a webhook `secret_token`.
fn valid_webhook_secret(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Behaviour settings shared by both runtimes (names per CONTRACT.md where they exist there).
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub pacing: PacingConfig,
    /// Free days for a new user (`TRIAL_DAYS`).
    pub trial_days: u32,
    /// Cap on groups per user (`MAX_GROUPS_PER_USER`).
    pub max_groups: usize,
    /// A mailing to more groups than this is a canary start unless the user switches it off
    /// (`CANARY_MIN_GROUPS`).
    pub canary_min_groups: usize,
    /// Operators (`ADMIN_TELEGRAM_IDS`).
    pub admin_ids: Vec<i64>,
    /// Plans on sale (`SUBSCRIPTION_PLANS`).
    pub plans: Vec<crate::model::billing::Plan>,
    /// The Robokassa shop; `None` when payments are not configured.
    pub payments: Option<Payments>,
    pub engine: EngineConfig,
    /// The pace a new account starts with (`DEFAULT_PACE`).
    pub default_pace: Preset,
    /// The time zone a new user starts with (`DEFAULT_TZ`).
    pub default_tz: Tz,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            pacing: PacingConfig::default(),
            trial_days: 0,
            max_groups: 500,
            canary_min_groups: crate::model::ledger::CANARY_MIN_GROUPS,
            admin_ids: Vec::new(),
            plans: vec![crate::model::billing::Plan {
                days: 30,
                price_kopecks: 49_000,
            }],
            payments: None,
            engine: EngineConfig::default(),
            default_pace: Preset::Careful,
            default_tz: chrono_tz::Europe::Moscow,
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
    /// How long at least to wait before reading the chat history to settle an `in_doubt` row.
    pub settle_delay_ms: i64,
    /// The time allowed for each Wappi call (`WAPPI_TIMEOUT_SECS`): a send may be carried out
    /// until its start plus this, so its row is not settled before (see `settle_margin_ms`).
    pub wappi_timeout_ms: i64,
    /// Added to a send's start and the Wappi timeout before its row may be settled: the time
    /// between marking a row `sending` and the call, and a Wappi that carries a send out a
    /// little after we gave up on it. For a Wappi slower than that, raise `WAPPI_TIMEOUT_SECS`.
    pub settle_margin_ms: i64,
    /// Messages per page when settling reads a group's history back.
    pub history_page: u32,
    /// The most pages read to settle one row: a history longer than that back to the row's
    /// first attempt leaves the row in doubt (never resent on a partial look).
    pub history_max_pages: u32,
    /// The profile lease's time-to-live; the lease is renewed right before every send, so a
    /// runner that was paused past it sends nothing more (`LEASE_TTL_SECS`).
    pub lease_ttl_ms: u64,
    /// How long after its last canary post a canary start reads their delivery back
    /// (`CANARY_WAIT_SECS`).
    pub canary_wait_ms: i64,
    /// How long after a mailing ends its delivery audit reads each post's delivery back
    /// (`DELIVERY_AUDIT_DELAY_SECS`).
    pub audit_delay_ms: i64,
    /// How long after a post WhatsApp still lets it be edited (`EDIT_WINDOW_SECS`).
    pub edit_window_ms: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_attempts: 5,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            progress_interval_ms: 3000,
            settle_delay_ms: 2000,
            wappi_timeout_ms: 10_000,
            settle_margin_ms: 5000,
            history_page: 100,
            history_max_pages: 20,
            lease_ttl_ms: 15_000,
            canary_wait_ms: 60_000,
            audit_delay_ms: 300_000,
            edit_window_ms: crate::model::followup::EDIT_WINDOW_MS,
        }
    }
}

/// The configured shop.
#[derive(Debug, Clone)]
pub struct Payments {
    pub merchant: Merchant,
    /// Add a 54-FZ receipt (one service item) to links (`ROBOKASSA_RECEIPT=1`).
    pub receipt: bool,
    /// The receipt's VAT code (`ROBOKASSA_RECEIPT_TAX`, default `none`).
    pub receipt_tax: String,
}

/// The settings read the same way on both runtimes. Each runtime adds its own rules on top
/// (the Worker always needs the webhook secret; the server only with `PUBLIC_URL`).
#[derive(Debug, Clone)]
pub struct SharedSettings {
    /// `TELEGRAM_BOT_TOKEN` (required, `<id>:<secret>`).
    pub telegram_token: Secret,
    /// `TELEGRAM_API_URL`.
    pub telegram_api_url: String,
    /// `TELEGRAM_WEBHOOK_SECRET` when set (checked for the characters Telegram accepts).
    pub webhook_secret: Option<Secret>,
    /// `PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `WAPPI_API_URL`.
    pub wappi_api_url: String,
    /// Per-request timeout of Wappi calls (`WAPPI_TIMEOUT_SECS`, default 10, at least 1:
    /// shorter than the lease, so a hung call cannot outlive the runner's hold on the profile).
    pub wappi_timeout_secs: u64,
    /// Addresses allowed to call `/robokassa/result`; empty = any (`ROBOKASSA_ALLOWED_IPS`).
    pub robokassa_allowed_ips: Vec<IpAddr>,
    pub core: CoreSettings,
}

impl SharedSettings {
    pub fn from_vars(src: &Lookup<'_>) -> Result<SharedSettings, SettingError> {
        let wappi_timeout_secs = src
            .parse::<u64>("WAPPI_TIMEOUT_SECS", 10, "a whole number of seconds")?
            .max(1);
        let mut core = CoreSettings::from_vars(src)?;
        // The engine must know it: a send is not settled before it could have finished.
        core.engine.wappi_timeout_ms = (wappi_timeout_secs as i64).saturating_mul(1000);
        Ok(SharedSettings {
            telegram_token: telegram_token(src)?,
            public_url: src.optional_url("PUBLIC_URL")?,
            webhook_secret: webhook_secret(src)?,
            core,
            telegram_api_url: src.url("TELEGRAM_API_URL", "https://api.telegram.org")?,
            wappi_api_url: src.url("WAPPI_API_URL", "https://wappi.pro")?,
            wappi_timeout_secs,
            robokassa_allowed_ips: src.list(
                "ROBOKASSA_ALLOWED_IPS",
                |s| s.parse().ok(),
                "an IP address",
            )?,
        })
    }
}

fn telegram_token(src: &Lookup<'_>) -> Result<Secret, SettingError> {
    let token = src
        .get("TELEGRAM_BOT_TOKEN")
        .map(Secret::new)
        .ok_or_else(|| {
            bad(
                "TELEGRAM_BOT_TOKEN",
                "is not set (the bot token from @BotFather)",
            )
        })?;
    if !token.expose().contains(':') {
        return Err(bad(
            "TELEGRAM_BOT_TOKEN",
            "does not look like a bot token (<id>:<secret>)",
        ));
    }
    Ok(token)
}

fn webhook_secret(src: &Lookup<'_>) -> Result<Option<Secret>, SettingError> {
    match src.get("TELEGRAM_WEBHOOK_SECRET") {
        Some(s) if valid_webhook_secret(&s) => Ok(Some(Secret::new(s))),
        Some(_) => Err(bad(
            "TELEGRAM_WEBHOOK_SECRET",
            "must be 1-256 characters of A-Z a-z 0-9 _ -",
        )),
        None => Ok(None),
    }
}

impl CoreSettings {
    /// Pacing, plans, trial, payments and engine tuning. The lease's time-to-live keeps its
    /// default: only the server lets the operator change it (`LEASE_TTL_SECS`).
    pub fn from_vars(src: &Lookup<'_>) -> Result<CoreSettings, SettingError> {
        let progress_secs: f64 = src.parse("PROGRESS_INTERVAL_SECS", 3.0, "a number of seconds")?;
        let max_attempts: u32 = src.parse("MAX_SEND_ATTEMPTS", 5, "a whole number")?;
        let canary_secs: f64 = src.parse("CANARY_WAIT_SECS", 60.0, "a number of seconds")?;
        let audit_secs: f64 =
            src.parse("DELIVERY_AUDIT_DELAY_SECS", 300.0, "a number of seconds")?;
        let edit_window_secs: f64 = src.parse("EDIT_WINDOW_SECS", 900.0, "a number of seconds")?;
        Ok(CoreSettings {
            pacing: pacing(src)?,
            trial_days: src.parse("TRIAL_DAYS", 0, "a whole number of days")?,
            max_groups: src.parse("MAX_GROUPS_PER_USER", 500, "a whole number")?,
            canary_min_groups: src.parse(
                "CANARY_MIN_GROUPS",
                crate::model::ledger::CANARY_MIN_GROUPS,
                "a whole number of groups",
            )?,
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
            payments: payments(src)?,
            engine: EngineConfig {
                max_attempts: max_attempts.max(1),
                backoff_base_ms: src.parse("RETRY_BASE_MS", 1000, "milliseconds")?,
                progress_interval_ms: (progress_secs * 1000.0) as i64,
                canary_wait_ms: (canary_secs.max(0.0) * 1000.0) as i64,
                audit_delay_ms: (audit_secs.max(0.0) * 1000.0) as i64,
                edit_window_ms: (edit_window_secs.max(0.0) * 1000.0) as i64,
                ..EngineConfig::default()
            },
            default_pace: match src.get("DEFAULT_PACE") {
                None => Preset::Careful,
                Some(word) => Preset::parse(&word)
                    .ok_or_else(|| bad("DEFAULT_PACE", "must be careful, normal or fast"))?,
            },
            default_tz: match src.get("DEFAULT_TZ") {
                None => chrono_tz::Europe::Moscow,
                Some(name) => crate::model::zone::parse(&name).ok_or_else(|| {
                    bad(
                        "DEFAULT_TZ",
                        "must be a time zone name such as Europe/Moscow",
                    )
                })?,
            },
        })
    }
}

/// `PROFILE_RATE_PER_SEC`, `CHAT_BURST`, `CHAT_BURST_WINDOW_SECS`.
pub fn pacing(src: &Lookup<'_>) -> Result<PacingConfig, SettingError> {
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

/// The Robokassa shop: all three credentials, or none (payments off).
pub fn payments(src: &Lookup<'_>) -> Result<Option<Payments>, SettingError> {
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
    if let Some(url) = src.optional_url("ROBOKASSA_PAYMENT_URL")? {
        merchant.payment_url = url;
    }
    Ok(Some(Payments {
        merchant,
        receipt: src.flag("ROBOKASSA_RECEIPT")?,
        receipt_tax: src
            .get("ROBOKASSA_RECEIPT_TAX")
            .unwrap_or_else(|| "none".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<SharedSettings, SettingError> {
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert("TELEGRAM_BOT_TOKEN".into(), "123:abc".into());
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        SharedSettings::from_vars(&Lookup::new(&map))
    }

    #[test]
    fn config_defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(s.telegram_api_url, "https://api.telegram.org");
        assert_eq!(s.wappi_api_url, "https://wappi.pro");
        assert_eq!(s.wappi_timeout_secs, 10);
        assert_eq!(s.core.engine.wappi_timeout_ms, 10_000);
        assert!(s.public_url.is_none() && s.webhook_secret.is_none());
        assert!(s.robokassa_allowed_ips.is_empty());
        let core = &s.core;
        assert_eq!(core.pacing, PacingConfig::default());
        assert!(core.payments.is_none() && core.admin_ids.is_empty());
        assert_eq!((core.trial_days, core.max_groups), (0, 500));
        assert_eq!(core.plans, CoreSettings::default().plans);
        assert_eq!(core.engine.max_attempts, 5);
        assert_eq!(
            core.engine.lease_ttl_ms,
            EngineConfig::default().lease_ttl_ms
        );
    }

    #[test]
    fn config_errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TELEGRAM_BOT_TOKEN", "")], "TELEGRAM_BOT_TOKEN"),
            (&[("TELEGRAM_BOT_TOKEN", "nocolon")], "TELEGRAM_BOT_TOKEN"),
            (
                &[("TELEGRAM_WEBHOOK_SECRET", "bad secret!")],
                "TELEGRAM_WEBHOOK_SECRET",
            ),
            (&[("PUBLIC_URL", "x.example")], "PUBLIC_URL"),
            (&[("PROFILE_RATE_PER_SEC", "fast")], "PROFILE_RATE_PER_SEC"),
            (&[("DEFAULT_PACE", "slow")], "DEFAULT_PACE"),
            (&[("DEFAULT_TZ", "Mars/Olympus")], "DEFAULT_TZ"),
            (&[("PROFILE_RATE_PER_SEC", "0")], "PROFILE_RATE_PER_SEC"),
            (&[("CHAT_BURST", "x")], "CHAT_BURST"),
            (&[("CHAT_BURST", "0")], "CHAT_BURST"),
            (&[("CHAT_BURST_WINDOW_SECS", "0")], "CHAT_BURST_WINDOW_SECS"),
            (&[("ADMIN_TELEGRAM_IDS", "1,x")], "ADMIN_TELEGRAM_IDS"),
            (&[("WAPPI_API_URL", "wappi.pro")], "WAPPI_API_URL"),
            (&[("WAPPI_API_URL", "ftp://x")], "WAPPI_API_URL"),
            (
                &[("TELEGRAM_API_URL", "api.telegram.org")],
                "TELEGRAM_API_URL",
            ),
            (
                &[("ROBOKASSA_ALLOWED_IPS", "1.2.3.4,nope")],
                "ROBOKASSA_ALLOWED_IPS",
            ),
            (&[("SUBSCRIPTION_PLANS", "30")], "SUBSCRIPTION_PLANS"),
            (&[("TRIAL_DAYS", "-1")], "TRIAL_DAYS"),
            (&[("MAX_SEND_ATTEMPTS", "many")], "MAX_SEND_ATTEMPTS"),
        ];
        for (pairs, var) in cases {
            let e = load(pairs).unwrap_err();
            assert_eq!(e.var, *var, "{pairs:?}");
            assert!(!e.to_string().contains('\n'));
            assert!(e.to_string().starts_with(&format!("{var}: ")), "{e}");
        }
    }

    #[test]
    fn config_robokassa() {
        let creds = [
            ("ROBOKASSA_MERCHANT_LOGIN", "shop"),
            ("ROBOKASSA_PASSWORD1", "p1"),
            ("ROBOKASSA_PASSWORD2", "p2"),
        ];
        for missing in 0..3 {
            let mut partial = creds.to_vec();
            let (var, _) = partial.remove(missing);
            assert_eq!(load(&partial).unwrap_err().var, var);
        }
        let p = load(&creds).unwrap().core.payments.unwrap();
        assert_eq!(
            (p.merchant.hash, p.merchant.test_mode, p.receipt),
            (HashAlg::Md5, false, false)
        );
        assert_eq!(p.receipt_tax, "none");
        let mut more = creds.to_vec();
        more.extend([
            ("ROBOKASSA_HASH", "sha256"),
            ("ROBOKASSA_TEST_MODE", "1"),
            ("ROBOKASSA_RECEIPT", "1"),
            ("ROBOKASSA_PAYMENT_URL", "http://127.0.0.1:9/pay/"),
            ("SUBSCRIPTION_PLANS", "30:490,90:1290"),
        ]);
        let s = load(&more).unwrap();
        assert_eq!(s.core.plans.len(), 2);
        let p = s.core.payments.unwrap();
        assert_eq!(
            (p.merchant.hash, p.merchant.test_mode, p.receipt),
            (HashAlg::Sha256, true, true)
        );
        assert_eq!(p.merchant.payment_url, "http://127.0.0.1:9/pay");
        for (var, val) in [
            ("ROBOKASSA_HASH", "crc32"),
            ("ROBOKASSA_TEST_MODE", "yes"),
            ("ROBOKASSA_RECEIPT", "2"),
            ("ROBOKASSA_PAYMENT_URL", "auth.robokassa.ru"),
        ] {
            let mut v = creds.to_vec();
            v.push((var, val));
            assert_eq!(load(&v).unwrap_err().var, var);
        }
    }

    #[test]
    fn config_secrets_never_in_errors() {
        for pairs in [
            &[("TELEGRAM_BOT_TOKEN", "supersecret")][..],
            &[
                ("TELEGRAM_BOT_TOKEN", "1:supersecret"),
                ("TELEGRAM_WEBHOOK_SECRET", "bad secret!"),
            ],
        ] {
            let e = load(pairs).unwrap_err().to_string();
            assert!(
                !e.contains("supersecret") && !e.contains("bad secret"),
                "{e}"
            );
        }
    }

    #[test]
    fn config_values() {
        let s = load(&[
            ("PROFILE_RATE_PER_SEC", "10"),
            ("CHAT_BURST", "3"),
            ("CHAT_BURST_WINDOW_SECS", "1.5"),
            ("WAPPI_API_URL", "http://127.0.0.1:9/"),
            ("WAPPI_TIMEOUT_SECS", "0"),
            ("PUBLIC_URL", "https://bot.example/"),
            ("TELEGRAM_WEBHOOK_SECRET", "s3cret_-"),
            ("ROBOKASSA_ALLOWED_IPS", "127.0.0.1, ::1"),
            ("ADMIN_TELEGRAM_IDS", " 5, ,7 "),
            ("PROGRESS_INTERVAL_SECS", "0.5"),
            ("MAX_SEND_ATTEMPTS", "0"),
            ("RETRY_BASE_MS", "20"),
            ("TRIAL_DAYS", "3"),
            ("MAX_GROUPS_PER_USER", "7"),
        ])
        .unwrap();
        assert_eq!(s.core.pacing.profile_rate_per_sec, 10.0);
        assert_eq!(s.core.pacing.chat_burst, 3);
        assert_eq!(s.core.pacing.chat_window_ms, 1500);
        assert_eq!(s.wappi_api_url, "http://127.0.0.1:9");
        assert_eq!(s.wappi_timeout_secs, 1);
        assert_eq!(
            s.core.engine.wappi_timeout_ms, 1000,
            "the engine knows the timeout"
        );
        assert_eq!(s.public_url.as_deref(), Some("https://bot.example"));
        assert_eq!(s.webhook_secret.unwrap().expose(), "s3cret_-");
        assert_eq!(s.robokassa_allowed_ips.len(), 2);
        assert_eq!(s.core.admin_ids, vec![5, 7]);
        assert_eq!(s.core.engine.progress_interval_ms, 500);
        assert_eq!(s.core.engine.max_attempts, 1);
        assert_eq!(s.core.engine.backoff_base_ms, 20);
        assert_eq!((s.core.trial_days, s.core.max_groups), (3, 7));
        assert_eq!(s.core.default_pace, Preset::Careful, "careful by default");
        assert_eq!(s.core.default_tz, chrono_tz::Europe::Moscow);
        let s = load(&[("DEFAULT_PACE", "fast"), ("DEFAULT_TZ", "Asia/Omsk")]).unwrap();
        assert_eq!(s.core.default_pace, Preset::Fast);
        assert_eq!(s.core.default_tz, chrono_tz::Asia::Omsk);
    }

    #[test]
    fn config_closure_lookup() {
        let lookup = |name: &str| (name == "TELEGRAM_BOT_TOKEN").then(|| " 1:a ".to_string());
        let s = SharedSettings::from_vars(&Lookup::new(&lookup)).unwrap();
        assert_eq!(s.telegram_token.expose(), "1:a");
    }
}
