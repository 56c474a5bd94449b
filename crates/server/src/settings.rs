//! Typed settings from the environment (and a `.env` file), per CONTRACT.md. The variables
//! both runtimes share are read by [`groupcast_core::config`]; this file adds the server's own
//! (database, listen address, Redis, log format, lease, reminders) and the `.env` reading
//! (through `dotenvy`; the real environment wins over the file, which never changes it).
//! A missing or malformed setting stops start-up with one line naming the variable; secrets
//! are wrapped in [`Secret`] so they never reach a log line.

use groupcast_core::config::CoreSettings;
use groupcast_core::config::{bad, Lookup, SharedSettings, Vars};
use groupcast_core::Secret;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use groupcast_core::config::SettingError;

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
}

impl Vars for Source {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.var(name)
    }
}

/// The variables of a `.env` text, in order, read by [`dotenvy`] (`KEY=value` lines, `#`
/// comments, optional `export `, quotes, escapes in double quotes, `${VAR}` substitution). A
/// line it cannot read is skipped, as if it were not there.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    dotenvy::from_read_iter(text.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// The lease must outlast one Wappi call: it is renewed right before every send, so with a
/// lease at or below `WAPPI_TIMEOUT_SECS` a send still in flight could outlive it, and a second
/// runner could take the profile over and send to the same group meanwhile.
fn check_lease_outlasts_wappi_call(lease_secs: u64, wappi_secs: u64) -> Result<(), SettingError> {
    if lease_secs > wappi_secs {
        return Ok(());
    }
    Err(bad(
        "LEASE_TTL_SECS",
        format!(
            "is {lease_secs} s, not longer than WAPPI_TIMEOUT_SECS ({wappi_secs} s): a send in \
             flight could outlive the lease; make LEASE_TTL_SECS larger than WAPPI_TIMEOUT_SECS"
        ),
    ))
}

impl Settings {
    pub fn load(source: &Source) -> Result<Settings, SettingError> {
        let src = Lookup::new(source);
        let shared = SharedSettings::from_vars(&src)?;
        if shared.public_url.is_some() && shared.webhook_secret.is_none() {
            return Err(bad(
                "TELEGRAM_WEBHOOK_SECRET",
                "is required when PUBLIC_URL is set (webhook mode)",
            ));
        }
        let mut core = shared.core;
        let lease_secs = src
            .parse::<u64>("LEASE_TTL_SECS", 15, "a whole number of seconds")?
            .max(1);
        check_lease_outlasts_wappi_call(lease_secs, shared.wappi_timeout_secs)?;
        core.engine.lease_ttl_ms = lease_secs * 1000;
        Ok(Settings {
            telegram_token: shared.telegram_token,
            telegram_api_url: shared.telegram_api_url,
            webhook_secret: shared.webhook_secret,
            public_url: shared.public_url,
            listen_addr: src.parse(
                "LISTEN_ADDR",
                "0.0.0.0:8080".parse().expect("literal"),
                "host:port",
            )?,
            database_path: PathBuf::from(
                src.get("DATABASE_PATH")
                    .unwrap_or_else(|| "./data/groupcast.db".into()),
            ),
            redis_url: src.get("REDIS_URL").map(Secret::new),
            redis_prefix: src
                .get("REDIS_PREFIX")
                .unwrap_or_else(|| "groupcast:".into()),
            wappi_api_url: shared.wappi_api_url,
            wappi_timeout_secs: shared.wappi_timeout_secs,
            encryption_key: src.get("ENCRYPTION_KEY").map(Secret::new),
            log_json: src
                .get("LOG_FORMAT")
                .is_some_and(|v| v.eq_ignore_ascii_case("json")),
            robokassa_allowed_ips: shared.robokassa_allowed_ips,
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
    //! The server's own variables; the shared ones are tested in `groupcast_core::config`.
    use super::*;
    use groupcast_core::model::pacing::PacingConfig;

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
        assert_eq!(s.database_path, PathBuf::from("./data/groupcast.db"));
        assert_eq!(s.data_dir(), Path::new("./data"));
        assert_eq!(s.redis_prefix, "groupcast:");
        assert_eq!((s.wappi_timeout_secs, s.reminder_interval_secs), (10, 300));
        assert_eq!(s.core.engine.lease_ttl_ms, 15_000);
        assert_eq!(s.core.pacing, PacingConfig::default());
        assert!(s.public_url.is_none() && s.redis_url.is_none() && !s.log_json);
    }

    #[test]
    fn server_values() {
        let s = Settings::load(&src(&[
            ("TELEGRAM_BOT_TOKEN", "1:a"),
            ("PUBLIC_URL", "https://x.example"),
            ("TELEGRAM_WEBHOOK_SECRET", "s3cret"),
            ("LISTEN_ADDR", "127.0.0.1:9000"),
            ("DATABASE_PATH", "/tmp/x/db.sqlite"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_PREFIX", "gc2:"),
            ("LOG_FORMAT", "JSON"),
            ("LEASE_TTL_SECS", "20"),
            ("REMINDER_INTERVAL_SECS", "0"),
            ("ROBOKASSA_ALLOWED_IPS", "127.0.0.1"),
        ]))
        .unwrap();
        assert_eq!(s.listen_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(s.data_dir(), Path::new("/tmp/x"));
        assert!(s.redis_url.is_some() && s.log_json);
        assert_eq!(s.redis_prefix, "gc2:");
        assert_eq!(s.core.engine.lease_ttl_ms, 20_000);
        assert_eq!(s.reminder_interval_secs, 1);
        assert_eq!(s.robokassa_allowed_ips.len(), 1);
        assert!(s.webhook_secret.is_some());
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "TELEGRAM_BOT_TOKEN"),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("PUBLIC_URL", "https://x.example"),
                ],
                "TELEGRAM_WEBHOOK_SECRET",
            ),
            (
                vec![("TELEGRAM_BOT_TOKEN", "1:a"), ("LISTEN_ADDR", "nowhere")],
                "LISTEN_ADDR",
            ),
            (
                vec![("TELEGRAM_BOT_TOKEN", "1:a"), ("LEASE_TTL_SECS", "long")],
                "LEASE_TTL_SECS",
            ),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("REMINDER_INTERVAL_SECS", "-5"),
                ],
                "REMINDER_INTERVAL_SECS",
            ),
            // Shared variables come through the core reader with the same errors.
            (
                vec![("TELEGRAM_BOT_TOKEN", "1:a"), ("ADMIN_TELEGRAM_IDS", "1,x")],
                "ADMIN_TELEGRAM_IDS",
            ),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("ROBOKASSA_MERCHANT_LOGIN", "shop"),
                    ("ROBOKASSA_PASSWORD1", "p1"),
                ],
                "ROBOKASSA_PASSWORD2",
            ),
        ];
        for (pairs, var) in cases {
            let err = Settings::load(&src(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn the_lease_must_outlast_a_wappi_call() {
        let load = |lease: &str, wappi: Option<&str>| {
            let mut pairs = vec![("TELEGRAM_BOT_TOKEN", "1:a"), ("LEASE_TTL_SECS", lease)];
            pairs.extend(wappi.map(|w| ("WAPPI_TIMEOUT_SECS", w)));
            Settings::load(&src(&pairs))
        };
        for (lease, wappi) in [
            ("3", Some("3")),
            ("2", Some("3")),
            ("10", None),
            ("0", None),
        ] {
            let line = load(lease, wappi).unwrap_err().to_string();
            assert!(
                line.starts_with("LEASE_TTL_SECS: ") && line.contains("WAPPI_TIMEOUT_SECS"),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
        assert_eq!(
            load("4", Some("3")).unwrap().core.engine.lease_ttl_ms,
            4_000
        );
        assert_eq!(load("11", None).unwrap().core.engine.lease_ttl_ms, 11_000);
    }

    #[test]
    fn secret_not_in_error() {
        let err = Settings::load(&src(&[
            ("TELEGRAM_BOT_TOKEN", "1:supersecret"),
            ("REDIS_URL", "redis://:hunter2@127.0.0.1"),
            ("LISTEN_ADDR", "nowhere"),
        ]))
        .unwrap_err();
        let line = err.to_string();
        assert!(
            !line.contains("supersecret") && !line.contains("hunter2"),
            "{line}"
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
