//! The companion's configuration, from flags or the environment.

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// Address to listen on.
    #[arg(long, env = "COMPANION_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Bearer token every /v1 call must present. Required unless --insecure-no-token.
    #[arg(long, env = "COMPANION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Run without a token (development only: anyone who reaches the port owns every session).
    #[arg(long, env = "COMPANION_INSECURE_NO_TOKEN")]
    pub insecure_no_token: bool,
    /// Lifetime of a session that does not ask for its own, in seconds (two weeks, as Django).
    #[arg(
        long,
        env = "COMPANION_DEFAULT_TTL_SECONDS",
        default_value_t = 1_209_600
    )]
    pub default_ttl_seconds: u64,
    /// Longest lifetime a session may ask for, in seconds.
    #[arg(long, env = "COMPANION_MAX_TTL_SECONDS", default_value_t = 34_560_000)]
    pub max_ttl_seconds: u64,
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

/// A configuration the service must not start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "no --token (COMPANION_TOKEN) given; pass --insecure-no-token to run without one in development"
    )]
    MissingToken,
    #[error("--token must be at least 16 characters")]
    WeakToken,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--default-ttl-seconds must not exceed --max-ttl-seconds")]
    TtlOverMax,
}

impl Config {
    /// Checks what clap cannot: the token rule and the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.token, self.insecure_no_token) {
            (None, false) => return Err(ConfigError::MissingToken),
            (Some(token), _) if token.len() < 16 => return Err(ConfigError::WeakToken),
            _ => {}
        }
        for (value, name) in [
            (self.default_ttl_seconds, "--default-ttl-seconds"),
            (self.max_ttl_seconds, "--max-ttl-seconds"),
            (self.max_data_bytes as u64, "--max-data-bytes"),
            (self.max_key_bytes as u64, "--max-key-bytes"),
            (self.db_timeout_ms, "--db-timeout-ms"),
            (self.request_timeout_ms, "--request-timeout-ms"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.default_ttl_seconds > self.max_ttl_seconds {
            return Err(ConfigError::TtlOverMax);
        }
        Ok(())
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
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
        Config::try_parse_from(all).unwrap()
    }

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
        assert_eq!(
            parse(&["--token", "short"]).validate(),
            Err(ConfigError::WeakToken)
        );
        assert_eq!(
            parse(&["--token", "a-long-enough-token"]).validate(),
            Ok(())
        );
    }

    #[test]
    fn refuses_zero_limits_and_inverted_ttls() {
        let base = ["--token", "a-long-enough-token"];
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
