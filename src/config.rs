//! Every setting, from command-line flags or the environment.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A database URL whose `Debug`/`Display` hide the password.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL with every password masked: the `user:pass@` part and the `password` /
    /// `sslpassword` query parameters that the drivers also accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(mut u) = url::Url::parse(&self.0) else {
            return f.write_str(if self.0.contains("password") {
                "<unparseable URL with a password>"
            } else {
                &self.0
            });
        };
        if u.password().is_some() {
            let _ = u.set_password(Some("****"));
        }
        if u.query().is_some() {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret = k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
                    (k.into_owned(), if secret { "****".to_owned() } else { v.into_owned() })
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        write!(f, "{u}")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

/// Any URL that may carry a password (the SMTP server's): shown masked like a database URL.
pub type SecretUrl = DatabaseUrl;

/// Where the database is and how to reach it (shared by every subcommand).
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// `postgres://…` for PostgreSQL, `sqlite:FILE` for the embedded database.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:bizkit-mirror.db")]
    pub database_url: DatabaseUrl,
    /// Connections in the pool (SQLite uses at most 8: it has one writer anyway).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Seconds to wait for a free connection before answering 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value_t = 5)]
    pub database_acquire_timeout: u64,
    /// Seconds a PostgreSQL statement may run before it is cancelled (the request is 503).
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub database_statement_timeout: u64,
    /// SQLite only: `full` makes every acknowledged write survive a power cut; `normal` is
    /// faster and survives a crash of the process, not a power cut.
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSynchronous::Full)]
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

impl DbConfig {
    pub fn pool_settings(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            max_connections: self.database_max_connections.max(1),
            acquire_timeout: Duration::from_secs(self.database_acquire_timeout.max(1)),
            statement_timeout: Duration::from_secs(self.database_statement_timeout),
            sqlite_durable: self.sqlite_synchronous == SqliteSynchronous::Full,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub db: DbConfig,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Seed the reference's public example data (keys, customers, session).
    #[arg(long, env = "BIZKIT_DEMO", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false, num_args = 0, default_missing_value = "1")]
    pub demo: bool,
    /// Seconds a key lookup is cached; revocations through this server evict at once.
    #[arg(long, env = "KEY_CACHE_SECONDS", default_value_t = 5)]
    pub key_cache_seconds: u64,
    /// Sustained requests per hour for a PROD key (unless the key overrides it).
    #[arg(long, env = "RATE_LIMIT_PROD_PER_HOUR", default_value_t = 100_000)]
    pub rate_limit_prod_per_hour: u32,
    /// Requests a PROD key may send at once.
    #[arg(long, env = "RATE_LIMIT_PROD_BURST", default_value_t = 1_000)]
    pub rate_limit_prod_burst: u32,
    /// Sustained requests per hour for a DEV_ key (unless the key overrides it).
    #[arg(long, env = "RATE_LIMIT_DEV_PER_HOUR", default_value_t = 1_000)]
    pub rate_limit_dev_per_hour: u32,
    /// Requests a DEV_ key may send at once.
    #[arg(long, env = "RATE_LIMIT_DEV_BURST", default_value_t = 50)]
    pub rate_limit_dev_burst: u32,
    /// Confirm storefront registrations at once, without a token (by default on with
    /// --demo and off otherwise; an explicit setting wins either way).
    #[arg(long, env = "BIZKIT_AUTO_CONFIRM", value_parser = clap::builder::FalseyValueParser::new(), num_args = 0..=1, default_missing_value = "1")]
    pub auto_confirm: Option<bool>,
    /// Failed logins per address within the window before E006 (too many attempts).
    #[arg(long, env = "LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,
    /// Failed logins one client address may have within the window, across every account.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_CLIENT", default_value_t = 50)]
    pub login_max_failures_per_client: u32,
    /// Length of the failed-login window, in seconds.
    #[arg(long, env = "LOGIN_FAILURE_WINDOW_SECONDS", default_value_t = 900)]
    pub login_failure_window_seconds: u32,
    /// Seconds before an address may register again (E004 until then).
    #[arg(long, env = "REGISTER_RETRY_SECONDS", default_value_t = 600)]
    pub register_retry_seconds: u32,
    /// Hours a confirmation token stays valid.
    #[arg(long, env = "CONFIRM_TOKEN_HOURS", default_value_t = 48)]
    pub confirm_token_hours: u32,
    /// The page confirmation links open, `?token=…` appended: usually the storefront's
    /// own page, which calls confirm-account with its key.
    #[arg(long, env = "CONFIRM_URL", default_value = "http://127.0.0.1:8080/contact/v1/confirm-account")]
    pub confirm_url: String,
    /// SMTP server for the mail outbox (`smtp://user:pass@host:587?tls=required`,
    /// `smtps://…`); unset, messages stay queued in mail_outbox.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<SecretUrl>,
    /// SMTP server for the sandbox (DEV_) spaces' messages; unset, they stay queued in
    /// mail_outbox and never reach a real address.
    #[arg(long, env = "SANDBOX_SMTP_URL")]
    pub sandbox_smtp_url: Option<SecretUrl>,
    /// Sender of outgoing mail.
    #[arg(long, env = "MAIL_FROM", default_value = "BizKit Mirror <no-reply@localhost>")]
    pub mail_from: String,
    /// Region of phone numbers written without a country prefix (ISO 3166-1, e.g. CZ).
    #[arg(long, env = "DEFAULT_PHONE_REGION", default_value = "CZ", value_parser = parse_region)]
    pub default_phone_region: crate::normalize::Region,

    /// Import items written per database transaction.
    #[arg(long, env = "IMPORT_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub import_batch_size: u32,

    /// Items one import may carry at most.
    #[arg(long, env = "IMPORT_MAX_ITEMS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub import_max_items: u64,
    /// Bytes one import may carry at most.
    #[arg(long, env = "IMPORT_MAX_BYTES", default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub import_max_bytes: u64,
    /// Failed items after which an import stops (IMPORT_TOO_MANY_ERRORS).
    #[arg(long, env = "IMPORT_MAX_FAILED_ITEMS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub import_max_failed_items: u64,

    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Open connections at most; one past it is closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a client has to send a request's headers before its connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_seconds: u64,
    /// Seconds a request body may pause between two chunks before the request is 408.
    #[arg(long, env = "BODY_IDLE_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout_seconds: u64,
    /// Seconds within which a request is answered (408 past it); imports stream and are
    /// bounded by the body's idle timeout alone.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_seconds: u64,
    /// Lookups of keys this server has not seen lately that one client address may cause
    /// a minute; past it such keys are refused (429) without a lookup.
    #[arg(long, env = "AUTH_FAILURES_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_per_minute: u32,

    /// Redis (`redis://host:6379/0`) through which every instance shares the keys' rate
    /// limits; unset, each process limits alone.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<SecretUrl>,
    /// Put before every Redis key this server writes, so deployments can share a Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "bizkit:")]
    pub redis_prefix: String,
    /// Milliseconds a request waits for Redis before this process limits it alone.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
    /// Balancers and proxies (addresses or networks, comma-separated, e.g. `10.0.0.0/8`)
    /// whose `X-Forwarded-For` names the client; from anywhere else it is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve `/metrics` on this address of its own (and not on BIND).
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Origins whose pages may call the API (comma-separated, exactly as browsers send
    /// them, e.g. `http://localhost:5173`); empty turns CORS off. Unset: off, or `*`
    /// under --demo.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<String>,
    /// Accept `CORS_ALLOWED_ORIGINS=*` outside --demo.
    #[arg(long, env = "CORS_ALLOW_ANY_ORIGIN", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false, num_args = 0, default_missing_value = "1")]
    pub cors_allow_any_origin: bool,
    /// Let webhook endpoints be on private networks (and loopback). Off: public addresses
    /// only, plus loopback under --demo.
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE_TARGETS", value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false, num_args = 0, default_missing_value = "1")]
    pub webhook_allow_private_targets: bool,
    /// The first webhook retry's delay; each further one doubles it (up to 6 hours), for
    /// 3 days after the event.
    #[arg(long, env = "WEBHOOK_RETRY_BASE_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub webhook_retry_base_seconds: u64,
    /// Webhook attempts in flight at once, per process; 0 delivers none here (instances
    /// that only serve the API while others deliver).
    #[arg(long, env = "WEBHOOK_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub webhook_concurrency: u32,
}

impl ServeConfig {
    pub fn account_settings(&self) -> crate::accounts::AccountSettings {
        use chrono::TimeDelta;
        crate::accounts::AccountSettings {
            auto_confirm: self.auto_confirm.unwrap_or(self.demo),
            login_max_failures: i64::from(self.login_max_failures.max(1)),
            login_max_failures_per_client: i64::from(self.login_max_failures_per_client.max(1)),
            login_failure_window: TimeDelta::seconds(i64::from(self.login_failure_window_seconds)),
            register_retry: TimeDelta::seconds(i64::from(self.register_retry_seconds)),
            confirm_token_lifetime: TimeDelta::hours(i64::from(self.confirm_token_hours.max(1))),
            confirm_url: self.confirm_url.clone(),
        }
    }

    pub fn contact_settings(&self) -> crate::contacts::ContactSettings {
        crate::contacts::ContactSettings {
            phone_region: self.default_phone_region,
            import_batch: self.import_batch_size as usize,
            import_limits: crate::import::ImportLimits {
                max_items: self.import_max_items,
                max_bytes: self.import_max_bytes,
                max_failed: self.import_max_failed_items,
            },
        }
    }

    /// Which addresses webhook endpoints may have.
    pub fn webhook_reach(&self) -> crate::webhooks::Reach {
        use crate::webhooks::Reach;
        match (self.webhook_allow_private_targets, self.demo) {
            (true, _) => Reach::Private,
            (false, true) => Reach::Loopback,
            (false, false) => Reach::Public,
        }
    }

    pub fn webhook_settings(&self) -> crate::webhooks::WebhookSettings {
        crate::webhooks::WebhookSettings {
            reach: self.webhook_reach(),
            retry_base: Duration::from_secs(self.webhook_retry_base_seconds),
            concurrency: self.webhook_concurrency as usize,
            ..Default::default()
        }
    }

    pub fn cors_policy(&self) -> anyhow::Result<crate::http::cors::CorsPolicy> {
        crate::http::cors::CorsPolicy::parse(
            self.cors_allowed_origins.as_deref(),
            self.demo,
            self.cors_allow_any_origin,
        )
        .map_err(anyhow::Error::msg)
    }

    pub fn connection_limits(&self) -> crate::http::serve::ConnectionLimits {
        crate::http::serve::ConnectionLimits {
            max_connections: self.max_connections as usize,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            trusted_proxies: self.trusted_proxies.clone().into(),
        }
    }

    pub fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_seconds),
        }
    }

    /// The plans, kept in Redis when `REDIS_URL` is set (the connection is made lazily:
    /// only a malformed URL fails here).
    pub fn rate_limits(&self) -> anyhow::Result<crate::ratelimit::RateLimits> {
        use crate::ratelimit::{Plan, RateLimits, SharedLimits, SharedSettings};
        let limits = RateLimits::new(
            Plan { per_hour: self.rate_limit_prod_per_hour, burst: self.rate_limit_prod_burst },
            Plan { per_hour: self.rate_limit_dev_per_hour, burst: self.rate_limit_dev_burst },
        );
        let Some(url) = &self.redis_url else { return Ok(limits) };
        let shared = SharedLimits::connect(&SharedSettings {
            url: url.expose().to_owned(),
            prefix: self.redis_prefix.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
        })
        .map_err(|e| anyhow::anyhow!("cannot use REDIS_URL {url}: {e}"))?;
        Ok(limits.shared(shared))
    }
}

#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log collectors. Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
}

/// An address (a network of one) or a network in CIDR notation.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a network such as 10.0.0.0/8"))
}

fn parse_region(code: &str) -> Result<crate::normalize::Region, String> {
    crate::normalize::parse_region(code).ok_or_else(|| format!("{code:?} is not a region code such as CZ or GB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeConfig,
    }

    fn demo(args: &[&str]) -> bool {
        use clap::Parser;
        let mut argv = vec!["bizkit-mirror"];
        argv.extend_from_slice(args);
        Wrap::try_parse_from(argv).expect("parses").serve.demo
    }

    #[test]
    fn demo_flag_and_environment() {
        // The only test in this binary that touches BIZKIT_DEMO, so no other test races it.
        std::env::remove_var("BIZKIT_DEMO");
        assert!(!demo(&[]));
        assert!(demo(&["--demo"]));
        for (value, expected) in [("1", true), ("true", true), ("0", false), ("false", false), ("", false)] {
            std::env::set_var("BIZKIT_DEMO", value);
            assert_eq!(demo(&[]), expected, "BIZKIT_DEMO={value:?}");
        }
        std::env::remove_var("BIZKIT_DEMO");
    }

    #[test]
    fn account_settings_from_flags() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let mut argv = vec!["bizkit-mirror"];
            argv.extend_from_slice(args);
            Wrap::try_parse_from(argv).expect("parses").serve.account_settings()
        };
        assert!(parse(&["--demo"]).auto_confirm, "--demo confirms at once by default");
        assert!(parse(&["--auto-confirm"]).auto_confirm);
        assert!(!parse(&["--demo", "--auto-confirm=0"]).auto_confirm, "an explicit setting wins over --demo");
        assert!(parse(&["--auto-confirm=1"]).auto_confirm);
        let s = parse(&[
            "--login-max-failures",
            "3",
            "--login-failure-window-seconds",
            "60",
            "--register-retry-seconds",
            "30",
        ]);
        assert_eq!(s.login_max_failures, 3);
        assert_eq!(s.login_failure_window, chrono::TimeDelta::seconds(60));
        assert_eq!(s.register_retry, chrono::TimeDelta::seconds(30));
        let smtp =
            Wrap::try_parse_from(["bizkit-mirror", "--smtp-url", "smtp://u:hunter2@mail:587"]).unwrap().serve.smtp_url;
        assert!(!format!("{smtp:?}").contains("hunter2"), "the SMTP password is masked");
    }

    #[test]
    fn database_url_hides_password() {
        let url = DatabaseUrl("postgres://bizkit:s3cret@db:5432/bizkit".into());
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(format!("{url}").contains("bizkit:****@db"));
        assert_eq!(url.expose(), "postgres://bizkit:s3cret@db:5432/bizkit");
        let query = DatabaseUrl("postgres://bizkit@db/bizkit?sslmode=require&password=hunter2&SSLPASSWORD=x2".into());
        let shown = query.to_string();
        assert!(!shown.contains("hunter2") && !shown.contains("x2"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        assert_eq!(DatabaseUrl("sqlite:bizkit-mirror.db".into()).to_string(), "sqlite:bizkit-mirror.db");
    }
}
