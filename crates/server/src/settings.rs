//! Typed settings from the environment (and a `.env` file), per CONTRACT.md. A missing or
//! malformed setting stops start-up with one line naming the variable; secrets are wrapped in
//! [`Secret`] so they never reach a log line.

use groupcast_core::payments::Payments;
use groupcast_core::ports::PacingConfig;
use groupcast_core::robokassa::{HashAlg, Merchant};
use groupcast_core::services::{CoreSettings, EngineConfig};
use groupcast_core::Secret;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A setting that is missing or malformed: `Display` is the one line shown to the operator.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct SettingError {
    pub var: &'static str,
    pub problem: String,
}

fn bad(var: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        var,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub telegram_token: Secret,
    pub telegram_api_url: String,
    pub webhook_secret: Option<Secret>,
    pub public_url: Option<String>,
    pub listen_addr: SocketAddr,
    pub database_path: PathBuf,
    pub redis_url: Option<Secret>,
    /// Namespace of every Redis key (`REDIS_PREFIX`, default `groupcast:`): deployments that
    /// share a Redis must differ here and must not differ within one deployment.
    pub redis_prefix: String,
    pub wappi_api_url: String,
    /// Per-request timeout of Wappi calls (`WAPPI_TIMEOUT_SECS`, default 10: shorter than the
    /// lease, so a hung call cannot outlive the runner's hold on the profile).
    pub wappi_timeout_secs: u64,
    /// `ENCRYPTION_KEY` as given; `None` = use or create the key file in the data folder.
    pub encryption_key: Option<Secret>,
    /// JSON log lines (`LOG_FORMAT=json`).
    pub log_json: bool,
    /// Addresses allowed to call `/robokassa/result`; empty = any (`ROBOKASSA_ALLOWED_IPS`).
    pub robokassa_allowed_ips: Vec<std::net::IpAddr>,
    /// How often subscription reminders are looked for (`REMINDER_INTERVAL_SECS`, default 300).
    pub reminder_interval_secs: u64,
    pub core: CoreSettings,
}

/// Where variables come from: the process environment first, then a `.env` file.
pub struct Source {
    vars: HashMap<String, String>,
}

impl Source {
    /// The process environment plus `.env` in the working directory (environment wins).
    pub fn from_env() -> Source {
        let mut vars = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(".env") {
            vars.extend(parse_dotenv(&text));
        }
        vars.extend(std::env::vars());
        Source { vars }
    }

    pub fn from_map(vars: HashMap<String, String>) -> Source {
        Source { vars }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|s| s.trim())
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
}

/// `KEY=value` lines; `#` comments; optional `export `; surrounding quotes removed.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn valid_webhook_secret(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn url(var: &'static str, v: &str) -> Result<String, SettingError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.trim_end_matches('/').to_string())
    } else {
        Err(bad(var, format!("expected an http(s) URL, got {v:?}")))
    }
}

fn flag(src: &Source, var: &'static str) -> Result<bool, SettingError> {
    match src.get(var) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(bad(var, format!("expected 0 or 1, got {v:?}"))),
    }
}

/// The Robokassa shop: all three credentials, or none (payments off).
fn robokassa(src: &Source) -> Result<Option<Payments>, SettingError> {
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
        merchant.hash = HashAlg::parse(h).ok_or_else(|| {
            bad(
                "ROBOKASSA_HASH",
                "expected md5, sha1, sha256, sha384, sha512 or ripemd160",
            )
        })?;
    }
    merchant.test_mode = flag(src, "ROBOKASSA_TEST_MODE")?;
    if let Some(u) = src.get("ROBOKASSA_PAYMENT_URL") {
        merchant.payment_url = url("ROBOKASSA_PAYMENT_URL", u)?;
    }
    Ok(Some(Payments {
        merchant,
        receipt: flag(src, "ROBOKASSA_RECEIPT")?,
        receipt_tax: src
            .get("ROBOKASSA_RECEIPT_TAX")
            .unwrap_or("none")
            .to_string(),
    }))
}

impl Settings {
    pub fn load(src: &Source) -> Result<Settings, SettingError> {
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
        let public_url = src
            .get("PUBLIC_URL")
            .map(|v| url("PUBLIC_URL", v))
            .transpose()?;
        let webhook_secret = match src.get("TELEGRAM_WEBHOOK_SECRET") {
            Some(s) if valid_webhook_secret(s) => Some(Secret::new(s)),
            Some(_) => {
                return Err(bad(
                    "TELEGRAM_WEBHOOK_SECRET",
                    "must be 1-256 characters of A-Z a-z 0-9 _ -",
                ))
            }
            None if public_url.is_some() => {
                return Err(bad(
                    "TELEGRAM_WEBHOOK_SECRET",
                    "is required when PUBLIC_URL is set (webhook mode)",
                ))
            }
            None => None,
        };
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
        let admin_ids = match src.get("ADMIN_TELEGRAM_IDS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<i64>().map_err(|_| {
                        bad(
                            "ADMIN_TELEGRAM_IDS",
                            format!("{s:?} is not a Telegram user id"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let progress_secs: f64 = src.parse("PROGRESS_INTERVAL_SECS", 3.0, "a number of seconds")?;
        let max_attempts: u32 = src.parse("MAX_SEND_ATTEMPTS", 5, "a whole number")?;
        let core = CoreSettings {
            pacing: PacingConfig {
                profile_rate_per_sec: rate,
                chat_burst,
                chat_window_ms: (window * 1000.0) as u64,
            },
            trial_days: src.parse("TRIAL_DAYS", 0, "a whole number of days")?,
            max_groups: src.parse("MAX_GROUPS_PER_USER", 500, "a whole number")?,
            admin_ids,
            plans: groupcast_core::billing::parse_plans(
                src.get("SUBSCRIPTION_PLANS").unwrap_or("30:490"),
            )
            .map_err(|e| bad("SUBSCRIPTION_PLANS", e))?,
            payments: robokassa(src)?,
            engine: EngineConfig {
                max_attempts: max_attempts.max(1),
                backoff_base_ms: src.parse("RETRY_BASE_MS", 1000, "milliseconds")?,
                progress_interval_ms: (progress_secs * 1000.0) as i64,
                lease_ttl_ms: src
                    .parse::<u64>("LEASE_TTL_SECS", 15, "a whole number of seconds")?
                    .max(1)
                    * 1000,
                ..EngineConfig::default()
            },
        };
        Ok(Settings {
            telegram_token,
            telegram_api_url: url(
                "TELEGRAM_API_URL",
                src.get("TELEGRAM_API_URL")
                    .unwrap_or("https://api.telegram.org"),
            )?,
            webhook_secret,
            public_url,
            listen_addr: src.parse(
                "LISTEN_ADDR",
                "0.0.0.0:8080".parse().expect("literal"),
                "host:port",
            )?,
            database_path: PathBuf::from(src.get("DATABASE_PATH").unwrap_or("./data/groupcast.db")),
            redis_url: src.get("REDIS_URL").map(Secret::new),
            redis_prefix: src.get("REDIS_PREFIX").unwrap_or("groupcast:").to_string(),
            wappi_api_url: url(
                "WAPPI_API_URL",
                src.get("WAPPI_API_URL").unwrap_or("https://wappi.pro"),
            )?,
            wappi_timeout_secs: src.parse("WAPPI_TIMEOUT_SECS", 10, "a whole number of seconds")?,
            encryption_key: src.get("ENCRYPTION_KEY").map(Secret::new),
            log_json: src
                .get("LOG_FORMAT")
                .is_some_and(|v| v.eq_ignore_ascii_case("json")),
            robokassa_allowed_ips: match src.get("ROBOKASSA_ALLOWED_IPS") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse().map_err(|_| {
                            bad(
                                "ROBOKASSA_ALLOWED_IPS",
                                format!("{s:?} is not an IP address"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
            reminder_interval_secs: src
                .parse("REMINDER_INTERVAL_SECS", 300, "a whole number of seconds")?
                .max(1),
            core,
        })
    }

    /// The folder that holds the database (and the generated encryption key).
    pub fn data_dir(&self) -> &Path {
        self.database_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> Source {
        Source::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults() {
        let s = Settings::load(&src(&[("TELEGRAM_BOT_TOKEN", "123:abc")])).unwrap();
        assert_eq!(s.telegram_api_url, "https://api.telegram.org");
        assert_eq!(s.wappi_api_url, "https://wappi.pro");
        assert_eq!(s.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(s.core.pacing, PacingConfig::default());
        assert!(s.public_url.is_none() && s.redis_url.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "TELEGRAM_BOT_TOKEN"),
            (
                vec![("TELEGRAM_BOT_TOKEN", "nocolon")],
                "TELEGRAM_BOT_TOKEN",
            ),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("PUBLIC_URL", "https://x.example"),
                ],
                "TELEGRAM_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("TELEGRAM_WEBHOOK_SECRET", "bad secret!"),
                ],
                "TELEGRAM_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("PROFILE_RATE_PER_SEC", "fast"),
                ],
                "PROFILE_RATE_PER_SEC",
            ),
            (
                vec![("TELEGRAM_BOT_TOKEN", "1:a"), ("LISTEN_ADDR", "nowhere")],
                "LISTEN_ADDR",
            ),
            (
                vec![("TELEGRAM_BOT_TOKEN", "1:a"), ("ADMIN_TELEGRAM_IDS", "1,x")],
                "ADMIN_TELEGRAM_IDS",
            ),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("WAPPI_API_URL", "wappi.pro"),
                ],
                "WAPPI_API_URL",
            ),
        ];
        for (pairs, var) in cases {
            let err = Settings::load(&src(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn robokassa_settings() {
        let base = [("TELEGRAM_BOT_TOKEN", "1:a")];
        assert!(Settings::load(&src(&base)).unwrap().core.payments.is_none());
        let err = Settings::load(&src(&[
            base[0],
            ("ROBOKASSA_MERCHANT_LOGIN", "shop"),
            ("ROBOKASSA_PASSWORD1", "p1"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "ROBOKASSA_PASSWORD2");
        let full = [
            base[0],
            ("ROBOKASSA_MERCHANT_LOGIN", "shop"),
            ("ROBOKASSA_PASSWORD1", "p1"),
            ("ROBOKASSA_PASSWORD2", "p2"),
        ];
        let s = Settings::load(&src(&full)).unwrap();
        let p = s.core.payments.unwrap();
        assert_eq!(
            (p.merchant.hash, p.merchant.test_mode, p.receipt),
            (HashAlg::Md5, false, false)
        );
        let mut more = full.to_vec();
        more.extend([
            ("ROBOKASSA_HASH", "sha256"),
            ("ROBOKASSA_TEST_MODE", "1"),
            ("SUBSCRIPTION_PLANS", "30:490,90:1290"),
        ]);
        let s = Settings::load(&src(&more)).unwrap();
        assert_eq!(s.core.plans.len(), 2);
        assert!(s.core.payments.unwrap().merchant.test_mode);
        for (var, val) in [
            ("ROBOKASSA_HASH", "crc32"),
            ("ROBOKASSA_TEST_MODE", "yes"),
            ("SUBSCRIPTION_PLANS", "30"),
            ("ROBOKASSA_ALLOWED_IPS", "x"),
        ] {
            let mut v = full.to_vec();
            v.push((var, val));
            assert_eq!(Settings::load(&src(&v)).unwrap_err().var, var);
        }
    }

    #[test]
    fn secret_not_in_error() {
        let err = Settings::load(&src(&[
            ("TELEGRAM_BOT_TOKEN", "1:supersecret"),
            ("TELEGRAM_WEBHOOK_SECRET", "bad secret!"),
        ]))
        .unwrap_err();
        assert!(
            !err.to_string().contains("supersecret") && !err.to_string().contains("bad secret")
        );
    }

    #[test]
    fn dotenv() {
        let v = parse_dotenv("# c\nA=1\nexport B = \"two words\"\n\nC='x'\nbroken\n");
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into())
            ]
        );
    }
}
