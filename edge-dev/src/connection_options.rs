//! The connection manager's options `edge-dev` honours, read from `envoy.yaml`'s
//! `HttpConnectionManager`: `common_http_protocol_options.headers_with_underscores_action`,
//! which Envoy's codec applies to request headers before any filter runs, and
//! `stream_idle_timeout`, which ends a stream nothing has happened on.

use crate::envoy_config::{ConfigError, error};
use serde_yaml::Value;
use std::time::Duration;

/// Envoy's default `stream_idle_timeout` when the connection manager sets none.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Envoy's `HttpProtocolOptions.HeadersWithUnderscoresAction`: what its codec does with a
/// request header (or trailer) whose name contains `_`, before any filter sees the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnderscoresAction {
    /// Envoy's default: such headers pass.
    #[default]
    Allow,
    /// The header is dropped and counted (`http1.dropped_headers_with_underscores`).
    DropHeader,
    /// The request is answered 400 and counted
    /// (`http1.requests_rejected_with_underscores_in_headers`); the HTTP/1 codec then closes
    /// the connection.
    RejectRequest,
}

/// A request (or its trailers) has a header name with `_` under `REJECT_REQUEST`.
#[derive(Debug, PartialEq, Eq)]
pub struct RejectedForUnderscores;

impl UnderscoresAction {
    /// Applies the action to `headers` the way Envoy's HTTP/1 codec does
    /// (`ServerConnectionImpl::checkHeaderNameForUnderscores`): returns how many headers it
    /// dropped, or that the request is to be rejected.
    pub fn apply(
        self,
        headers: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<usize, RejectedForUnderscores> {
        let has_underscore = |name: &[u8]| name.contains(&b'_');
        match self {
            Self::Allow => Ok(0),
            Self::DropHeader => {
                let before = headers.len();
                headers.retain(|(name, _)| !has_underscore(name));
                Ok(before - headers.len())
            }
            Self::RejectRequest => match headers.iter().any(|(name, _)| has_underscore(name)) {
                true => Err(RejectedForUnderscores),
                false => Ok(0),
            },
        }
    }
}

/// Envoy's counter of request headers its codec dropped for an underscore.
pub const DROPPED_COUNTER: &str = "http1.dropped_headers_with_underscores";
/// Envoy's counter of requests its codec refused for an underscore.
pub const REJECTED_COUNTER: &str = "http1.requests_rejected_with_underscores_in_headers";

/// The part of Envoy's codec that acts before any filter: the underscore rule, counted on the
/// proxy's host as Envoy counts it.
#[derive(Clone)]
pub(crate) struct Codec {
    pub underscores: UnderscoresAction,
    pub host: harness::Host,
}

impl Codec {
    /// Applies the rule to a request's headers or trailers and counts what it did.
    pub fn check(
        &self,
        headers: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), RejectedForUnderscores> {
        match self.underscores.apply(headers) {
            Ok(0) => Ok(()),
            Ok(dropped) => {
                self.host.add_to_counter(DROPPED_COUNTER, dropped as u64);
                Ok(())
            }
            Err(rejected) => {
                self.host.add_to_counter(REJECTED_COUNTER, 1);
                Err(rejected)
            }
        }
    }
}

/// What `edge-dev` takes from the connection manager besides routes and filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub underscores: UnderscoresAction,
    /// How long a stream may wait with nothing happening before Envoy's idle timeout answers
    /// it; `None` when set to 0 (Envoy: disabled).
    pub stream_idle_timeout: Option<Duration>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            underscores: UnderscoresAction::Allow,
            stream_idle_timeout: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
        }
    }
}

impl ConnectionOptions {
    /// Reads the options from the `HttpConnectionManager` config `hcm`, noting in `warnings`
    /// the ones `edge-dev` does not honour.
    pub fn read(hcm: &Value, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let mut options = Self::default();
        if let Some(common) = hcm.get("common_http_protocol_options") {
            let path = "common_http_protocol_options";
            let map = common
                .as_mapping()
                .ok_or_else(|| error(path, "must be a mapping"))?;
            for (key, value) in map {
                match key.as_str() {
                    Some("headers_with_underscores_action") => {
                        options.underscores = underscores_action(value)?;
                    }
                    // The connection's own idle timeout: edge-dev leaves connections to hyper.
                    Some("idle_timeout") => {}
                    other => warnings.push(format!(
                        "{path}.{} ignored",
                        other.unwrap_or("(a key that is not text)")
                    )),
                }
            }
        }
        if let Some(timeout) = hcm.get("stream_idle_timeout") {
            let timeout = duration("stream_idle_timeout", timeout)?;
            options.stream_idle_timeout = (!timeout.is_zero()).then_some(timeout);
        }
        if hcm.get("request_timeout").is_some() {
            warnings.push(
                "request_timeout ignored: edge-dev ends a waiting stream only at \
                 stream_idle_timeout (and gives an upstream 60 s to answer)"
                    .to_string(),
            );
        }
        Ok(options)
    }
}

fn underscores_action(value: &Value) -> Result<UnderscoresAction, ConfigError> {
    const PATH: &str = "common_http_protocol_options.headers_with_underscores_action";
    match value.as_str() {
        Some("ALLOW") => Ok(UnderscoresAction::Allow),
        Some("DROP_HEADER") => Ok(UnderscoresAction::DropHeader),
        Some("REJECT_REQUEST") => Ok(UnderscoresAction::RejectRequest),
        _ => Err(error(
            PATH,
            format!("must be ALLOW, DROP_HEADER or REJECT_REQUEST, not {value:?}"),
        )),
    }
}

/// The largest duration read: far beyond any timeout, and what a `Duration` holds exactly.
const MAX_SECONDS: u64 = 315_576_000_000;

/// A protobuf `Duration` as Envoy's YAML spells it: a string of seconds with up to nine
/// decimals and an `s` (`"60s"`, `"0.5s"`), or a `{seconds, nanos}` mapping.
pub fn duration(path: &str, value: &Value) -> Result<Duration, ConfigError> {
    let invalid = || {
        error(
            path,
            format!("must be a duration such as \"60s\" or \"0.5s\", not {value:?}"),
        )
    };
    if let Some(map) = value.as_mapping() {
        let field = |name: &str| match map.get(name) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(invalid),
        };
        let known = |key: &Value| matches!(key.as_str(), Some("seconds" | "nanos"));
        if !map.keys().all(known) {
            return Err(invalid());
        }
        let (seconds, nanos) = (field("seconds")?, field("nanos")?);
        if seconds > MAX_SECONDS || nanos >= 1_000_000_000 {
            return Err(invalid());
        }
        return Ok(Duration::new(seconds, nanos as u32));
    }
    let text = value.as_str().ok_or_else(invalid)?;
    let number = text.strip_suffix('s').ok_or_else(invalid)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) || fraction.len() > 9 {
        return Err(invalid());
    }
    let seconds: u64 = whole.parse().map_err(|_| invalid())?;
    if seconds > MAX_SECONDS {
        return Err(invalid());
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
    Ok(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn durations_read_as_envoy_writes_them() {
        for (text, expected) in [
            ("60s", Duration::from_secs(60)),
            ("0.5s", Duration::from_millis(500)),
            ("300s", Duration::from_secs(300)),
            ("0s", Duration::ZERO),
            ("1.000000001s", Duration::new(1, 1)),
            ("{seconds: 2, nanos: 5}", Duration::new(2, 5)),
            ("315576000000s", Duration::from_secs(MAX_SECONDS)),
        ] {
            assert_eq!(duration("t", &yaml(text)), Ok(expected), "{text}");
        }
        for text in [
            "60",
            "-1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "1e3s",
            "s",
            "\"\"",
            "5m",
            "60 s",
            "315576000001s",
            "{seconds: -1}",
            "{nanos: 1000000000}",
            "{seconds: 1, extra: 2}",
            "[1]",
            "1.5",
        ] {
            let err = duration("stream_idle_timeout", &yaml(text)).unwrap_err();
            assert_eq!(err.path, "stream_idle_timeout", "{text}");
        }
    }

    #[test]
    fn the_connection_managers_options_and_their_defaults() {
        let mut warnings = Vec::new();
        let defaults = ConnectionOptions::read(&yaml("stat_prefix: x"), &mut warnings).unwrap();
        assert_eq!(defaults, ConnectionOptions::default());
        assert_eq!(defaults.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert!(warnings.is_empty());

        let set = yaml(
            "common_http_protocol_options: { headers_with_underscores_action: REJECT_REQUEST, \
             idle_timeout: 3600s }\nstream_idle_timeout: 60s\nrequest_timeout: 120s",
        );
        let options = ConnectionOptions::read(&set, &mut warnings).unwrap();
        assert_eq!(options.underscores, UnderscoresAction::RejectRequest);
        assert_eq!(options.stream_idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("request_timeout ignored"));

        let off = yaml("stream_idle_timeout: 0s");
        let options = ConnectionOptions::read(&off, &mut warnings).unwrap();
        assert_eq!(
            options.stream_idle_timeout, None,
            "0 disables it, as in Envoy"
        );

        for bad in [
            "common_http_protocol_options: { headers_with_underscores_action: drop_header }",
            "common_http_protocol_options: { headers_with_underscores_action: 1 }",
            "common_http_protocol_options: 3",
        ] {
            assert!(
                ConnectionOptions::read(&yaml(bad), &mut warnings)
                    .unwrap_err()
                    .path
                    .starts_with("common_http_protocol_options"),
                "{bad}"
            );
        }
    }

    #[test]
    fn underscores_are_dropped_counted_or_rejected() {
        let headers = || {
            vec![
                (b":path".to_vec(), b"/".to_vec()),
                (b"x_session_user".to_vec(), b"forged".to_vec()),
                (b"x-session-user".to_vec(), b"also".to_vec()),
                (b"a_b".to_vec(), b"c".to_vec()),
            ]
        };
        let mut allowed = headers();
        assert_eq!(UnderscoresAction::Allow.apply(&mut allowed), Ok(0));
        assert_eq!(allowed, headers());
        let mut dropped = headers();
        assert_eq!(UnderscoresAction::DropHeader.apply(&mut dropped), Ok(2));
        assert_eq!(dropped.len(), 2);
        assert!(dropped.iter().all(|(name, _)| !name.contains(&b'_')));
        assert_eq!(
            UnderscoresAction::RejectRequest.apply(&mut headers()),
            Err(RejectedForUnderscores)
        );
        let mut clean = vec![(b"x-a".to_vec(), b"1".to_vec())];
        assert_eq!(UnderscoresAction::RejectRequest.apply(&mut clean), Ok(0));
    }
}
