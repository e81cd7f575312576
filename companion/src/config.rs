//! The companion's configuration, from flags or the environment.

use clap::Parser;
use proto::secrets::{self, Weakness};
use std::net::SocketAddr;
use std::time::Duration;

/// The longest lifetime `--max-ttl-seconds` may allow: 100 years of 365 days. Far past any
/// cookie (browsers cap `Max-Age` at 400 days), and it keeps every expiry well inside the
/// years an API timestamp can show (up to 9999); past that a session would be stored and
/// then answered with 503.
pub const MAX_TTL_LIMIT_SECONDS: u64 = 100 * 365 * 24 * 60 * 60;

/// edge-session companion: the session API over MongoDB.
#[derive(Clone, Debug, Parser)]
#[command(name = "edge-session-companion", version)]
pub struct Config {
    /// MongoDB connection string (a replica set in production).
    #[arg(long, env = "MONGODB_URI", default_value = "mongodb://127.0.0.1:27017")]
    pub mongodb_uri: String,
    /// Database holding the sessions collection.
    #[arg(long, env = "COMPANION_DATABASE", default_value = "edge_session")]
    pub database: String,
    /// Collection of sessions.
    #[arg(long, env = "COMPANION_COLLECTION", default_value = "sessions")]
    pub collection: String,
    /// Collection of the revocation feed (GET /v1/revocations).
    #[arg(
        long,
        env = "COMPANION_REVOCATIONS_COLLECTION",
        default_value = "revocations"
    )]
    pub revocations_collection: String,
    /// Address to listen on.
    #[arg(long, env = "COMPANION_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Bearer token every /v1 call must present: at least 32 characters, random (`openssl
    /// rand -hex 24`). Required unless --insecure-no-token.
    #[arg(long, env = "COMPANION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Run without a token (development only: anyone who reaches the port owns every session).
    #[arg(long, env = "COMPANION_INSECURE_NO_TOKEN")]
    pub insecure_no_token: bool,
    /// Accept a weak --token (short or repetitive; never a placeholder) and warn at start:
    /// development only.
    #[arg(long, env = "COMPANION_ALLOW_DEVELOPMENT_SECRETS")]
    pub allow_development_secrets: bool,
    /// Lifetime of a session that does not ask for its own, in seconds (two weeks, as Django).
    #[arg(
        long,
        env = "COMPANION_DEFAULT_TTL_SECONDS",
        default_value_t = proto::DEFAULT_TTL_SECONDS
    )]
    pub default_ttl_seconds: u64,
    /// Longest lifetime a session may ask for, in seconds.
    #[arg(long, env = "COMPANION_MAX_TTL_SECONDS", default_value_t = 34_560_000)]
    pub max_ttl_seconds: u64,
    /// Absolute lifetime of every session, in seconds from its creation (a cycle keeps it):
    /// no touch extends a session past it. A session may ask for a shorter one
    /// (absolute_ttl_seconds); the smaller applies. Off when not given.
    #[arg(long, env = "COMPANION_ABSOLUTE_TTL_SECONDS")]
    pub absolute_ttl_seconds: Option<u64>,
    /// Most live sessions one user may hold: binding a user to one more (a login) ends
    /// their least recently seen sessions past it. Off when not given.
    #[arg(long, env = "COMPANION_MAX_SESSIONS_PER_USER")]
    pub max_sessions_per_user: Option<u64>,
    /// How long revocation feed entries are kept, in seconds: at least the longest time a
    /// proxy may cache a session, and for sessions kept in cookies, their cookie lifetime. A
    /// proxy whose cursor is older must drop its cache and start again (410).
    #[arg(
        long,
        env = "COMPANION_REVOCATION_RETENTION_SECONDS",
        default_value_t = 3_600
    )]
    pub revocation_retention_seconds: u64,
    /// How long a revocation's number may wait for its entry, in milliseconds: a reader's
    /// cursor waits this long at a missing number before it moves past it.
    #[arg(long, env = "COMPANION_REVOCATION_GRACE_MS", default_value_t = 10_000)]
    pub revocation_grace_ms: u64,
    /// Largest session data, in bytes of its JSON.
    #[arg(long, env = "COMPANION_MAX_DATA_BYTES", default_value_t = 65_536)]
    pub max_data_bytes: usize,
    /// Longest data key, in bytes.
    #[arg(long, env = "COMPANION_MAX_KEY_BYTES", default_value_t = 256)]
    pub max_key_bytes: usize,
    /// Time a database operation may take before the request answers 503, in milliseconds.
    #[arg(long, env = "COMPANION_DB_TIMEOUT_MS", default_value_t = 1_000)]
    pub db_timeout_ms: u64,
    /// Time a whole request may take, in milliseconds.
    #[arg(long, env = "COMPANION_REQUEST_TIMEOUT_MS", default_value_t = 5_000)]
    pub request_timeout_ms: u64,
    /// Time in-flight requests get to finish after SIGTERM, in milliseconds.
    #[arg(long, env = "COMPANION_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Without a subcommand the service starts.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the running service's /readyz (at --listen; a wildcard address is reached on
    /// loopback) and exit 0 if it answered 200, else 1: a container health check for images
    /// without a shell or curl.
    Healthcheck {
        /// Time the whole check may take, in milliseconds.
        #[arg(long, default_value_t = 2_000)]
        timeout_ms: u64,
    },
}

/// A configuration the service must not start with. No message carries the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "no --token (COMPANION_TOKEN) given; pass --insecure-no-token to run without one in development"
    )]
    MissingToken,
    #[error(
        "--token (COMPANION_TOKEN) is the template's placeholder ({marker}...): put a random token there (`openssl rand -hex 24`) and the same in the filter's companion.token; --allow-development-secrets does not accept it",
        marker = secrets::PLACEHOLDER_MARKER
    )]
    PlaceholderToken,
    #[error(
        "--token (COMPANION_TOKEN) {}: use a random one (`openssl rand -hex 24`), or pass --allow-development-secrets (COMPANION_ALLOW_DEVELOPMENT_SECRETS=true) in development only",
        describe(*.0)
    )]
    WeakToken(Weakness),
    #[error(
        "--token (COMPANION_TOKEN) has a control character or leading or trailing whitespace (a newline from a file?), which no Authorization header can carry"
    )]
    UnusableToken,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--default-ttl-seconds must not exceed --max-ttl-seconds")]
    TtlOverMax,
    #[error("--max-ttl-seconds must be at most {MAX_TTL_LIMIT_SECONDS} (100 years)")]
    TtlOverLimit,
    #[error("--absolute-ttl-seconds must be at most {MAX_TTL_LIMIT_SECONDS} (100 years)")]
    AbsoluteTtlOverLimit,
    #[error(
        "--revocation-retention-seconds must be at least {MIN_RETENTION_SECONDS} and four times --revocation-grace-ms"
    )]
    RetentionTooShort,
    #[error("--revocation-grace-ms must be at least twice --db-timeout-ms")]
    GraceTooShort,
}

/// The shortest retention of the revocation feed: a proxy polling every few seconds must not
/// miss entries because of a short outage.
pub const MIN_RETENTION_SECONDS: u64 = 60;

/// A token's weakness in the words of the companion's flag (characters, not bytes).
fn describe(weakness: Weakness) -> String {
    match weakness {
        Weakness::TooShort { min } => format!("is shorter than {min} characters"),
        Weakness::TooFewDistinct { min } => {
            format!("has fewer than {min} distinct characters: not random")
        }
        other => other.to_string(),
    }
}

impl Config {
    /// Checks what clap cannot: the token rules (`proto::secrets`, shared with the filter)
    /// and the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.token, self.insecure_no_token) {
            (None, false) => return Err(ConfigError::MissingToken),
            (None, true) => {}
            (Some(token), _) => self.check_token(token)?,
        }
        for (value, name) in [
            (self.default_ttl_seconds, "--default-ttl-seconds"),
            (self.max_ttl_seconds, "--max-ttl-seconds"),
            (self.max_data_bytes as u64, "--max-data-bytes"),
            (self.max_key_bytes as u64, "--max-key-bytes"),
            (self.db_timeout_ms, "--db-timeout-ms"),
            (self.request_timeout_ms, "--request-timeout-ms"),
            (
                self.absolute_ttl_seconds.unwrap_or(1),
                "--absolute-ttl-seconds",
            ),
            (
                self.max_sessions_per_user.unwrap_or(1),
                "--max-sessions-per-user",
            ),
            (self.revocation_grace_ms, "--revocation-grace-ms"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.default_ttl_seconds > self.max_ttl_seconds {
            return Err(ConfigError::TtlOverMax);
        }
        if self.max_ttl_seconds > MAX_TTL_LIMIT_SECONDS {
            return Err(ConfigError::TtlOverLimit);
        }
        if self
            .absolute_ttl_seconds
            .is_some_and(|seconds| seconds > MAX_TTL_LIMIT_SECONDS)
        {
            return Err(ConfigError::AbsoluteTtlOverLimit);
        }
        if self.revocation_grace_ms < self.db_timeout_ms.saturating_mul(2) {
            return Err(ConfigError::GraceTooShort);
        }
        let retention_ms = self.revocation_retention_seconds.saturating_mul(1000);
        if self.revocation_retention_seconds < MIN_RETENTION_SECONDS
            || retention_ms < self.revocation_grace_ms.saturating_mul(4)
        {
            return Err(ConfigError::RetentionTooShort);
        }
        Ok(())
    }

    fn check_token(&self, token: &str) -> Result<(), ConfigError> {
        let edge = |c: char| c.is_whitespace() || c.is_control();
        if token.chars().any(char::is_control) || token.starts_with(edge) || token.ends_with(edge) {
            return Err(ConfigError::UnusableToken);
        }
        match secrets::token_weakness(token) {
            None => Ok(()),
            Some(Weakness::Placeholder) => Err(ConfigError::PlaceholderToken),
            Some(_) if self.allow_development_secrets => Ok(()),
            Some(weakness) => Err(ConfigError::WeakToken(weakness)),
        }
    }

    /// What is weak about the token when --allow-development-secrets let it through, for the
    /// warning at start (never the token itself).
    pub fn accepted_weak_token(&self) -> Option<String> {
        let weakness = secrets::token_weakness(self.token.as_deref()?)?;
        (self.allow_development_secrets && weakness.allowed_in_development())
            .then(|| describe(weakness))
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// What the store needs of the configuration.
    pub fn store_settings(&self) -> crate::store::Settings {
        crate::store::Settings {
            collection: self.collection.clone(),
            revocations_collection: self.revocations_collection.clone(),
            timeout: self.db_timeout(),
            max_key_bytes: self.max_key_bytes,
            absolute_ttl_seconds: self.absolute_ttl_seconds,
            max_sessions_per_user: self.max_sessions_per_user,
            revocation_retention: Duration::from_secs(self.revocation_retention_seconds),
            revocation_grace: Duration::from_millis(self.revocation_grace_ms),
        }
    }

    /// A configuration for tests and embedding: defaults, the given database and token.
    pub fn for_tests(mongodb_uri: &str, database: &str, token: &str) -> Self {
        let mut config = Self::parse_from(["edge-session-companion"]);
        config.mongodb_uri = mongodb_uri.to_string();
        config.database = database.to_string();
        config.token = Some(token.to_string());
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["edge-session-companion"];
        all.extend_from_slice(args);
        let mut config = Config::try_parse_from(all).unwrap();
        // The switches come from these arguments alone, never from the test runner's
        // environment (`cargo xtask demo` and friends set them for the companions they start).
        config.allow_development_secrets = args.contains(&"--allow-development-secrets");
        config.insecure_no_token = args.contains(&"--insecure-no-token");
        config
    }

    /// A token that passes every rule: 35 characters, 25 distinct.
    const STRONG: &str = "0123456789abcdef-companion-test-tok";

    #[test]
    fn refuses_to_start_without_a_token_unless_told_to() {
        // The environment of the test runner must not leak a token in.
        let config = Config {
            token: None,
            ..parse(&[])
        };
        assert_eq!(config.validate(), Err(ConfigError::MissingToken));
        let insecure = Config {
            token: None,
            ..parse(&["--insecure-no-token"])
        };
        assert_eq!(insecure.validate(), Ok(()));
        assert_eq!(parse(&["--token", STRONG]).validate(), Ok(()));
    }

    #[test]
    fn a_placeholder_token_is_refused_even_in_development() {
        for placeholder in [
            "REPLACE-ME-openssl-rand-hex-24",
            "replace-me-with-a-long-random-token-0123456789",
            "0123456789abcdef0123456789abcdef-Replace-Me",
        ] {
            for development in [&[][..], &["--allow-development-secrets"]] {
                let mut args = vec!["--token", placeholder];
                args.extend_from_slice(development);
                let config = parse(&args);
                assert_eq!(
                    config.validate(),
                    Err(ConfigError::PlaceholderToken),
                    "{placeholder} {development:?}"
                );
                assert_eq!(config.accepted_weak_token(), None);
            }
        }
    }

    #[test]
    fn a_weak_token_is_refused_unless_development_secrets_are_allowed() {
        let exactly = &STRONG[..32];
        let one_short = &STRONG[..31];
        assert_eq!(
            parse(&["--token", exactly]).validate(),
            Ok(()),
            "32 characters"
        );
        assert_eq!(parse(&["--token", exactly]).accepted_weak_token(), None);
        let five_distinct = "abcde".repeat(8);
        for (weak, weakness) in [
            (one_short, Weakness::TooShort { min: 32 }),
            (
                "dev-token-change-me-0123456789",
                Weakness::TooShort { min: 32 },
            ),
            ("t", Weakness::TooShort { min: 32 }),
            (five_distinct.as_str(), Weakness::TooFewDistinct { min: 6 }),
        ] {
            assert_eq!(
                parse(&["--token", weak]).validate(),
                Err(ConfigError::WeakToken(weakness)),
                "{weak}"
            );
            let development = parse(&["--token", weak, "--allow-development-secrets"]);
            assert_eq!(development.validate(), Ok(()), "{weak}");
            assert_eq!(
                development.accepted_weak_token(),
                Some(describe(weakness)),
                "{weak}"
            );
        }
        // Characters, not bytes: 31 two-byte characters are 62 bytes and still too short.
        let wide = "éèêëēėęàáâäāãåæçćčñńßśšž0123456";
        assert_eq!(wide.chars().count(), 31);
        assert_eq!(
            parse(&["--token", wide]).validate(),
            Err(ConfigError::WeakToken(Weakness::TooShort { min: 32 }))
        );
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused_even_in_development() {
        for unusable in [
            format!("{STRONG}\n"),
            format!(" {STRONG}"),
            format!("{STRONG}\t"),
            format!("{}\0{}", &STRONG[..16], &STRONG[16..]),
            format!("{}\u{7f}{}", &STRONG[..16], &STRONG[16..]),
        ] {
            for development in [&[][..], &["--allow-development-secrets"]] {
                let mut args = vec!["--token", unusable.as_str()];
                args.extend_from_slice(development);
                assert_eq!(
                    parse(&args).validate(),
                    Err(ConfigError::UnusableToken),
                    "{unusable:?}"
                );
            }
        }
        let inner_space = format!("{} {}", &STRONG[..16], &STRONG[16..]);
        assert_eq!(parse(&["--token", &inner_space]).validate(), Ok(()));
    }

    #[test]
    fn token_errors_say_what_to_do_and_never_show_the_token() {
        let weak = "dev-token-change-me-0123456789";
        let placeholder = "REPLACE-ME-openssl-rand-hex-24";
        let unusable = format!("{STRONG}\n");
        for token in [weak, placeholder, unusable.as_str()] {
            let message = parse(&["--token", token])
                .validate()
                .unwrap_err()
                .to_string();
            assert!(message.contains("--token (COMPANION_TOKEN)"), "{message}");
            assert!(!message.contains(token.trim()), "{message}");
        }
        let message = parse(&["--token", weak])
            .validate()
            .unwrap_err()
            .to_string();
        for hint in [
            "openssl rand -hex 24",
            "--allow-development-secrets",
            "COMPANION_ALLOW_DEVELOPMENT_SECRETS",
            "shorter than 32 characters",
        ] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
        let message = parse(&["--token", placeholder])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("openssl rand -hex 24"), "{message}");
        assert!(message.contains("does not accept it"), "{message}");
    }

    #[test]
    fn refuses_zero_limits_and_inverted_ttls() {
        let base = ["--token", STRONG];
        let zero = parse(&[base[0], base[1], "--max-data-bytes", "0"]);
        assert_eq!(zero.validate(), Err(ConfigError::Zero("--max-data-bytes")));
        let inverted = parse(&[
            base[0],
            base[1],
            "--default-ttl-seconds",
            "100",
            "--max-ttl-seconds",
            "10",
        ]);
        assert_eq!(inverted.validate(), Err(ConfigError::TtlOverMax));
    }

    #[test]
    fn the_longest_lifetime_is_a_hundred_years() {
        let max =
            |seconds: u64| parse(&["--token", STRONG, "--max-ttl-seconds", &seconds.to_string()]);
        assert_eq!(max(MAX_TTL_LIMIT_SECONDS).validate(), Ok(()));
        assert_eq!(
            max(MAX_TTL_LIMIT_SECONDS + 1).validate(),
            Err(ConfigError::TtlOverLimit)
        );
        assert_eq!(max(u64::MAX).validate(), Err(ConfigError::TtlOverLimit));
    }

    #[test]
    fn the_new_limits_are_off_by_default_and_refuse_zero() {
        let defaults = parse(&["--token", STRONG]);
        assert_eq!(defaults.absolute_ttl_seconds, None);
        assert_eq!(defaults.max_sessions_per_user, None);
        assert_eq!(defaults.revocation_retention_seconds, 3_600);
        assert_eq!(defaults.validate(), Ok(()));
        for (flag, name) in [
            ("--absolute-ttl-seconds", "--absolute-ttl-seconds"),
            ("--max-sessions-per-user", "--max-sessions-per-user"),
        ] {
            assert_eq!(
                parse(&["--token", STRONG, flag, "0"]).validate(),
                Err(ConfigError::Zero(name))
            );
            assert_eq!(parse(&["--token", STRONG, flag, "1"]).validate(), Ok(()));
        }
        let absolute = |seconds: u64| {
            parse(&[
                "--token",
                STRONG,
                "--absolute-ttl-seconds",
                &seconds.to_string(),
            ])
        };
        assert_eq!(absolute(MAX_TTL_LIMIT_SECONDS).validate(), Ok(()));
        assert_eq!(
            absolute(MAX_TTL_LIMIT_SECONDS + 1).validate(),
            Err(ConfigError::AbsoluteTtlOverLimit)
        );
    }

    #[test]
    fn the_revocation_feed_keeps_entries_long_enough_to_wait_at_gaps() {
        let feed = |retention: u64, grace: u64| {
            parse(&[
                "--token",
                STRONG,
                "--revocation-retention-seconds",
                &retention.to_string(),
                "--revocation-grace-ms",
                &grace.to_string(),
            ])
            .validate()
        };
        assert_eq!(feed(MIN_RETENTION_SECONDS, 2_000), Ok(()));
        assert_eq!(
            feed(MIN_RETENTION_SECONDS - 1, 2_000),
            Err(ConfigError::RetentionTooShort)
        );
        assert_eq!(feed(60, 15_000), Ok(()), "exactly four times the grace");
        assert_eq!(feed(60, 15_001), Err(ConfigError::RetentionTooShort));
        // The default --db-timeout-ms is 1000: the grace must cover two of them.
        assert_eq!(feed(3_600, 2_000), Ok(()));
        assert_eq!(feed(3_600, 1_999), Err(ConfigError::GraceTooShort));
        assert_eq!(
            feed(3_600, 0),
            Err(ConfigError::Zero("--revocation-grace-ms"))
        );
    }

    #[test]
    fn healthcheck_is_a_subcommand_that_reads_the_listen_address() {
        let config = parse(&["--listen", "0.0.0.0:9999", "healthcheck"]);
        assert_eq!(
            config.command,
            Some(Command::Healthcheck { timeout_ms: 2_000 })
        );
        assert_eq!(config.listen, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(parse(&[]).command, None);
    }
}
