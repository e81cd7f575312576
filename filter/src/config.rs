//! The plugin configuration (docs/architecture.md, "Plugin configuration"): JSON from
//! `envoy.yaml`, parsed once in `on_configure` into types that cannot hold an invalid value.
//! Every error names the field.

use crate::assertion::{self, AssertionConfig};
use crate::cookie::CookieSpec;
use crate::store::cookie::{CookieKey, CookieKeyring};
use crate::token::{KeyId, Keyring, SigningKey};
use base64::Engine;
use proto::secrets::{self, Weakness};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_CACHE_ENTRIES: usize = 1_000_000;
/// The most memory the cache may be given: half of the 1 GiB Envoy gives a VM
/// (`PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES` in proxy-wasm-cpp-host), so the rest of the
/// module (streams in flight, headers, replies) keeps the other half whatever the traffic.
pub const MAX_CACHE_BYTES: usize = 512 << 20;
const MIN_CACHE_BYTES: usize = 64 << 10;
const MIN_SESSION_BYTES: usize = 1 << 10;
const MAX_HEADER_BYTES_LIMIT: usize = 65_536;

/// A configuration the filter can run with.
#[derive(Clone, Debug)]
pub struct Config {
    pub cookie: CookieSpec,
    pub keys: Keyring,
    /// Where sessions live (docs/architecture.md, "Stores").
    pub store: StoreMode,
    /// Required with the companion store; optional with the cookie store.
    pub companion: Option<Companion>,
    /// `None`: caching disabled (`ttl_ms` 0).
    pub cache: Option<CacheConfig>,
    pub headers: HeaderNames,
    pub on_store_error: StoreErrorPolicy,
    pub on_write_error: WriteErrorPolicy,
    pub forward_cookie: bool,
    pub ttl_seconds: u64,
    pub sliding: bool,
    pub max_header_bytes: usize,
    /// When the response renews the cookie of a session it did not otherwise write.
    pub refresh_cookie: RefreshCookie,
    /// The longest a session lives from its creation, however active; sent on create. The
    /// companion's own limit applies too, and the smaller wins.
    pub absolute_ttl_seconds: Option<u64>,
    /// New sessions are browser sessions (no `Max-Age`) unless the app sets an expiry.
    pub expire_at_browser_close: bool,
    /// Which control headers a 5xx response applies.
    pub controls_on_server_error: ServerErrorControls,
    /// Following the companion's revocation feed; `None`: off.
    pub revocation_feed: Option<FeedConfig>,
    /// Weak secrets accepted because `allow_development_secrets` is on, one line each (the
    /// field and why, never the secret): `on_configure` logs them loudly.
    pub development_secrets: Vec<String>,
    /// The signed session assertion sent upstream; `None` when not configured.
    pub assertion: Option<AssertionConfig>,
    /// How often the sessions served are reported to the companion (`crate::seen`); `None`:
    /// off, or no companion to report to.
    pub seen_reports: Option<Duration>,
    /// The route whose requests get the user's list of sessions; `None`: none.
    pub session_list: Option<SessionListConfig>,
}

/// `session_list` (docs/architecture.md, "Session listing").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionListConfig {
    /// The request path (without its query) that gets the list.
    pub path: String,
    /// The most bytes the injected list takes; sessions past it are left out.
    pub max_bytes: usize,
}

/// Where sessions live (docs/architecture.md, "Stores").
#[derive(Clone, Debug)]
pub enum StoreMode {
    /// In the companion, named by a signed id in the cookie.
    Companion,
    /// In the cookie itself, sealed with these keys (`cookie_store.keys`), which are
    /// separate from the signing keys.
    Cookie(CookieKeyring),
}

impl StoreMode {
    pub fn is_cookie(&self) -> bool {
        matches!(self, Self::Cookie(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoreKind {
    Companion,
    Cookie,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Companion {
    pub cluster: String,
    pub authority: String,
    /// The whole `authorization` header value, `Bearer <token>`, built once.
    pub authorization: String,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub max_entries: NonZeroUsize,
    /// The most memory the cache may hold, as `cache::entry_bytes` counts it.
    pub max_bytes: usize,
    /// Sessions that take more than this are injected as usual but not cached.
    pub max_session_bytes: usize,
}

/// What to do when the companion cannot answer a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorPolicy {
    /// Continue with `x-session-state: unavailable`.
    FailOpen,
    /// Answer 503.
    FailClosed,
}

/// What to do when the companion fails during a write (the response path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteErrorPolicy {
    Pass,
    Fail,
}

/// How often the feed is polled, and how long the poller's lease lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    pub interval: Duration,
    pub lease: Duration,
}

/// When a response carries the session cookie again, with `Max-Age` up to the session's
/// expiry, though the app wrote nothing. Only sessions with `Max-Age` (not browser sessions)
/// and only with `sliding` on does it change anything: without sliding the expiry never moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshCookie {
    /// When a sliding-expiry touch moved the expiry, with the expiry the store answered.
    OnTouch,
    /// On every response for a valid session, from the expiry last read (no extra write).
    EveryRequest,
    /// Only on create, cycle and expiry changes.
    Never,
}

/// Which control headers a response with a 5xx status applies. An app that failed may have
/// written half a session; as Django does, such a response saves nothing, but a logout still
/// logs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerErrorControls {
    /// `flush` applies; `set`, `user`, `expiry` and `cycle` are skipped and counted.
    FlushOnly,
    /// Every control header applies, as on any other status.
    All,
}

/// Names of the injected headers, lowercased and prefixed once at configure time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderNames {
    pub prefix: String,
    pub state: String,
    pub id: String,
    pub user: String,
    pub data: String,
    pub expires: String,
    /// `1` for a browser session (its cookie has no `Max-Age`), `0` otherwise.
    pub browser: String,
    /// The session's handle: names it in listings and revocations, never enough to use it.
    pub handle: String,
    /// The user's list of sessions, on the `session_list` route.
    pub list: String,
    /// Data key to header name, e.g. `roles` to `x-user-roles`.
    pub map: BTreeMap<String, String>,
}

impl HeaderNames {
    fn new(prefix: String, map: BTreeMap<String, String>) -> Self {
        let name = |suffix: &str| format!("{prefix}{suffix}");
        Self {
            state: name("state"),
            id: name("id"),
            user: name("user"),
            data: name("data"),
            expires: name("expires"),
            browser: name("browser"),
            handle: name("handle"),
            list: name("list"),
            prefix,
            map,
        }
    }

    /// Whether a request header (or trailer) of this name must be removed before anything
    /// else: the client must never be able to set it, in any spelling an app server could
    /// read as one of ours. That is the prefix or a mapped name in any case with `_` and `-`
    /// as one character (CGI, WSGI and Rack fold both into `HTTP_X_SESSION_USER`), and any
    /// name that is not an RFC 7230 token at all (pseudo-headers such as `:path` aside):
    /// Envoy's codecs refuse those, so only a hostile or broken host delivers one, and an app
    /// server's case folding could turn its bytes into ours (Python upper-cases `ß` to `SS`).
    pub fn is_reserved(&self, name: &str) -> bool {
        let name = name.as_bytes();
        self.has_prefix_bytes(name)
            || self.map.values().any(|m| same_name(m.as_bytes(), name))
            || !is_token_bytes(name.strip_prefix(b":").unwrap_or(name))
    }

    /// Whether `name` starts with the prefix, in any case, with `_` and `-` as one character.
    pub fn has_prefix(&self, name: &str) -> bool {
        self.has_prefix_bytes(name.as_bytes())
    }

    fn has_prefix_bytes(&self, name: &[u8]) -> bool {
        name.len() >= self.prefix.len()
            && same_name(self.prefix.as_bytes(), &name[..self.prefix.len()])
    }
}

/// Whether two header names are the same to an app server: ASCII case and `_` versus `-` do
/// not count. `ours` is lowercase with no `_` (the configuration parser makes sure).
fn same_name(ours: &[u8], theirs: &[u8]) -> bool {
    ours.len() == theirs.len()
        && ours
            .iter()
            .zip(theirs)
            .all(|(a, b)| *a == FOLD[usize::from(*b)])
}

/// Each byte as `same_name` compares it: ASCII lowercased, `_` as `-`.
const FOLD: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        };
        i += 1;
    }
    table
};

/// Whether each byte may appear in an RFC 7230 `token`.
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    table
};

fn is_token_bytes(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(|b| TOKEN[usize::from(*b)])
}

/// A configuration error: the field (`cookie.same_site`, `keys[1].secret`) and what is wrong.
/// Never contains a secret or token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn error(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

// ----- the JSON as written --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cookie: RawCookie,
    keys: Vec<RawKey>,
    #[serde(default = "default_store")]
    store: StoreKind,
    #[serde(default)]
    cookie_store: Option<RawCookieStore>,
    #[serde(default)]
    companion: Option<RawCompanion>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default = "default_store_policy")]
    on_store_error: StoreErrorPolicy,
    #[serde(default = "default_write_policy")]
    on_write_error: WriteErrorPolicy,
    #[serde(default)]
    forward_cookie: bool,
    #[serde(default = "default_ttl_seconds")]
    ttl_seconds: u64,
    #[serde(default = "default_true")]
    sliding: bool,
    #[serde(default = "default_max_header_bytes")]
    max_header_bytes: usize,
    /// Accept weak secrets (never placeholders), logging each at start: development only.
    #[serde(default)]
    allow_development_secrets: bool,
    #[serde(default = "default_refresh_cookie")]
    refresh_cookie: RefreshCookie,
    #[serde(default)]
    absolute_ttl_seconds: Option<u64>,
    #[serde(default)]
    expire_at_browser_close: bool,
    #[serde(default = "default_server_error_controls")]
    controls_on_server_error: ServerErrorControls,
    #[serde(default)]
    revocation_feed: RawFeed,
    #[serde(default)]
    assertion: Option<RawAssertion>,
    #[serde(default)]
    session_list: Option<RawSessionList>,
    #[serde(default)]
    seen_reports: RawSeenReports,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSeenReports {
    interval_ms: u64,
}

impl Default for RawSeenReports {
    fn default() -> Self {
        Self {
            interval_ms: 60_000,
        }
    }
}

/// `seen_reports.interval_ms`: 0 turns reports off; at most 5 minutes, the staleness the
/// companion's `last_seen_at` promises.
fn parse_seen_reports(
    raw: RawSeenReports,
    companion: bool,
) -> Result<Option<Duration>, ConfigError> {
    if raw.interval_ms == 0 || !companion {
        return Ok(None);
    }
    let ms = in_range(
        usize::try_from(raw.interval_ms).unwrap_or(usize::MAX),
        1000,
        300_000,
        "seen_reports.interval_ms",
    )?;
    Ok(Some(Duration::from_millis(ms as u64)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionList {
    path: String,
    #[serde(default = "default_session_list_bytes")]
    max_bytes: usize,
}

fn default_session_list_bytes() -> usize {
    16 * 1024
}

/// The most a listing may take: Envoy's default limit for all request headers is 60 KiB.
const MAX_SESSION_LIST_BYTES: usize = 32 * 1024;

/// `session_list`: an absolute path without query or fragment; it needs the companion (which
/// keeps the user index) and a bound on the header.
fn parse_session_list(
    raw: RawSessionList,
    companion: bool,
) -> Result<SessionListConfig, ConfigError> {
    let path_ok = raw.path.starts_with('/')
        && raw.path.len() <= 1024
        && raw
            .path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if !path_ok {
        return Err(error(
            "session_list.path",
            "must be an absolute path of visible ASCII, without '?' or '#', at most 1024 bytes",
        ));
    }
    if !companion {
        return Err(error(
            "session_list",
            "needs the companion: it keeps the list of a user's sessions",
        ));
    }
    Ok(SessionListConfig {
        path: raw.path,
        max_bytes: in_range(
            raw.max_bytes,
            256,
            MAX_SESSION_LIST_BYTES,
            "session_list.max_bytes",
        )?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFeed {
    interval_ms: u64,
    lease_ms: Option<u64>,
}

impl Default for RawFeed {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            lease_ms: None,
        }
    }
}

/// `revocation_feed`: `interval_ms` 0 turns it off; the lease defaults to three intervals.
fn parse_feed(raw: RawFeed) -> Result<Option<FeedConfig>, ConfigError> {
    if raw.interval_ms == 0 {
        return Ok(None);
    }
    // Saturated, never truncated: `as usize` on wasm32 would turn 2^32 + 100 into 100.
    let interval_ms = in_range(
        usize::try_from(raw.interval_ms).unwrap_or(usize::MAX),
        100,
        MAX_TIMEOUT_MS as usize,
        "revocation_feed.interval_ms",
    )? as u64;
    let lease_ms = raw.lease_ms.unwrap_or(3 * interval_ms);
    if lease_ms <= interval_ms || lease_ms > 10 * MAX_TIMEOUT_MS {
        return Err(error(
            "revocation_feed.lease_ms",
            format!(
                "must be more than interval_ms ({interval_ms}) and at most {}",
                10 * MAX_TIMEOUT_MS
            ),
        ));
    }
    Ok(Some(FeedConfig {
        interval: Duration::from_millis(interval_ms),
        lease: Duration::from_millis(lease_ms),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssertion {
    keys: Vec<RawKey>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default = "default_assertion_ttl_seconds")]
    ttl_seconds: u64,
}

fn default_assertion_ttl_seconds() -> u64 {
    assertion::DEFAULT_TTL_SECONDS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCookie {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    max_age_seconds: u64,
}

impl Default for RawCookie {
    fn default() -> Self {
        Self {
            name: "sid".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age_seconds: default_ttl_seconds(),
        }
    }
}

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SameSite {
    #[serde(alias = "strict")]
    Strict,
    #[serde(alias = "lax")]
    Lax,
    #[serde(alias = "none")]
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookieStore {
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompanion {
    cluster: String,
    authority: Option<String>,
    token: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    ttl_ms: u64,
    max_entries: usize,
    max_bytes: usize,
    max_session_bytes: usize,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            ttl_ms: 2000,
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_session_bytes: 64 << 10,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHeaders {
    prefix: String,
    map: BTreeMap<String, String>,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            prefix: "x-session-".into(),
            map: BTreeMap::new(),
        }
    }
}

fn default_store() -> StoreKind {
    StoreKind::Companion
}
fn default_store_policy() -> StoreErrorPolicy {
    StoreErrorPolicy::FailOpen
}
fn default_write_policy() -> WriteErrorPolicy {
    WriteErrorPolicy::Pass
}
fn default_refresh_cookie() -> RefreshCookie {
    RefreshCookie::OnTouch
}
fn default_server_error_controls() -> ServerErrorControls {
    ServerErrorControls::FlushOnly
}
fn default_ttl_seconds() -> u64 {
    proto::DEFAULT_TTL_SECONDS
}
fn default_true() -> bool {
    true
}
fn default_max_header_bytes() -> usize {
    8192
}
fn default_timeout_ms() -> u64 {
    200
}

// ----- parsing --------------------------------------------------------------------------------

impl Config {
    /// Parses and checks the plugin configuration. Nothing is half-applied: either every field
    /// is valid and a `Config` comes back, or the first bad field is named.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let message = redact(e.inner());
            error(field_of(&path, &message), message)
        })?;
        if raw.companion.is_none() && raw.store == StoreKind::Companion {
            // What serde said of the missing field before the cookie store made it optional.
            return Err(error("companion", "missing field `companion`"));
        }
        let headers = parse_headers(raw.headers)?;
        let mut secrets = SecretCheck {
            development: raw.allow_development_secrets,
            accepted_weak: Vec::new(),
        };
        let cookie = parse_cookie(raw.cookie)?;
        let (keys, signing_secrets) = parse_keys(raw.keys, &mut secrets)?;
        let store = parse_store(raw.store, raw.cookie_store, &signing_secrets, &mut secrets)?;
        let assertion = raw
            .assertion
            .map(|raw| parse_assertion(raw, &headers, &signing_secrets, &mut secrets))
            .transpose()?;
        let companion = raw
            .companion
            .map(|companion| parse_companion(companion, &mut secrets))
            .transpose()?;
        // The feed is the companion's: without one (the cookie store) there is none.
        let revocation_feed = parse_feed(raw.revocation_feed)?.filter(|_| companion.is_some());
        Ok(Self {
            cookie,
            keys,
            store,
            cache: parse_cache(raw.cache)?,
            headers,
            on_store_error: raw.on_store_error,
            on_write_error: raw.on_write_error,
            forward_cookie: raw.forward_cookie,
            ttl_seconds: positive(raw.ttl_seconds, "ttl_seconds")?,
            sliding: raw.sliding,
            max_header_bytes: in_range(
                raw.max_header_bytes,
                1,
                MAX_HEADER_BYTES_LIMIT,
                "max_header_bytes",
            )?,
            refresh_cookie: raw.refresh_cookie,
            absolute_ttl_seconds: raw
                .absolute_ttl_seconds
                .map(|seconds| positive(seconds, "absolute_ttl_seconds"))
                .transpose()?,
            expire_at_browser_close: raw.expire_at_browser_close,
            controls_on_server_error: raw.controls_on_server_error,
            revocation_feed,
            development_secrets: secrets.accepted_weak,
            assertion,
            seen_reports: parse_seen_reports(raw.seen_reports, companion.is_some())?,
            session_list: raw
                .session_list
                .map(|raw| parse_session_list(raw, companion.is_some()))
                .transpose()?,
            companion,
        })
    }
}

/// Applies the shared secret rules (`proto::secrets`) with the development switch.
struct SecretCheck {
    development: bool,
    accepted_weak: Vec<String>,
}

impl SecretCheck {
    fn check(&mut self, field: String, weakness: Option<Weakness>) -> Result<(), ConfigError> {
        let Some(weakness) = weakness else {
            return Ok(());
        };
        if self.development && weakness.allowed_in_development() {
            self.accepted_weak.push(format!("{field} {weakness}"));
            return Ok(());
        }
        let hint = if weakness.allowed_in_development() {
            " (allow_development_secrets accepts it for development only)"
        } else {
            ""
        };
        Err(error(field, format!("{weakness}{hint}")))
    }
}

/// The field an error is about. For a missing field serde reports the enclosing object's path
/// and names the field only in its message; join the two.
fn field_of(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if path.is_empty() => name.to_string(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_string(),
    }
}

/// serde_json quotes a mistyped string value in its message ("invalid type: string \"...\"");
/// a secret or token must not reach the log that way, so strings are cut from the message.
fn redact(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let message = match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    match (message.find("string \""), message.rfind('"')) {
        (Some(start), Some(end)) if end > start + 7 => {
            format!("{}string{}", &message[..start], &message[end + 1..])
        }
        _ => message,
    }
}

fn positive(value: u64, field: &str) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(error(field, "must be at least 1"))
    } else {
        Ok(value)
    }
}

fn in_range(value: usize, min: usize, max: usize, field: &str) -> Result<usize, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(error(field, format!("must be between {min} and {max}")))
    }
}

/// RFC 7230 `token` characters, which header and cookie names are made of.
pub fn is_token(text: &str) -> bool {
    is_token_bytes(text.as_bytes())
}

/// Visible ASCII and spaces: safe to put in a header or cookie attribute as is.
fn is_visible(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn parse_cookie(raw: RawCookie) -> Result<CookieSpec, ConfigError> {
    if !is_token(&raw.name) || raw.name.len() > 64 {
        return Err(error(
            "cookie.name",
            "must be 1 to 64 token characters (letters, digits, !#$%&'*+-.^_`|~)",
        ));
    }
    if !raw.path.starts_with('/') || !is_visible(&raw.path) || raw.path.contains(';') {
        return Err(error(
            "cookie.path",
            "must start with / and hold no ';' or control characters",
        ));
    }
    if let Some(domain) = &raw.domain {
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid {
            return Err(error(
                "cookie.domain",
                "must be a host name (letters, digits, '.' and '-')",
            ));
        }
    }
    if raw.same_site == SameSite::None && !raw.secure {
        return Err(error(
            "cookie.same_site",
            "None requires secure: true (browsers drop such cookies otherwise)",
        ));
    }
    if raw.name.starts_with("__Secure-") && !raw.secure {
        return Err(error("cookie.secure", "a __Secure- cookie must be secure"));
    }
    if raw.name.starts_with("__Host-") && (!raw.secure || raw.path != "/" || raw.domain.is_some()) {
        return Err(error(
            "cookie.name",
            "a __Host- cookie must be secure, with path / and no domain",
        ));
    }
    let max_age = positive(raw.max_age_seconds, "cookie.max_age_seconds")?;
    Ok(CookieSpec::new(
        raw.name,
        raw.path,
        raw.domain,
        raw.secure,
        raw.http_only,
        raw.same_site,
        max_age,
    ))
}

/// The signing key ring, and the secrets (for the cookie store to refuse them).
fn parse_keys(
    raw: Vec<RawKey>,
    secrets: &mut SecretCheck,
) -> Result<(Keyring, Vec<Vec<u8>>), ConfigError> {
    let keys = parse_key_list(
        raw,
        "keys",
        "at least one key is required; the first signs, all verify",
        secrets,
    )?;
    let ring = Keyring::new(
        keys.iter()
            .map(|(id, secret)| SigningKey::new(id.clone(), secret))
            .collect(),
    );
    Ok((ring, keys.into_iter().map(|(_, secret)| secret).collect()))
}

fn parse_store(
    kind: StoreKind,
    raw: Option<RawCookieStore>,
    signing_secrets: &[Vec<u8>],
    secrets: &mut SecretCheck,
) -> Result<StoreMode, ConfigError> {
    match (kind, raw) {
        (StoreKind::Companion, None) => Ok(StoreMode::Companion),
        (StoreKind::Companion, Some(_)) => Err(error(
            "cookie_store",
            "is only read with \"store\": \"cookie\"",
        )),
        (StoreKind::Cookie, None) => Err(error(
            "cookie_store",
            "is required with \"store\": \"cookie\" (its keys encrypt the cookie)",
        )),
        (StoreKind::Cookie, Some(raw)) => {
            let keys = parse_key_list(
                raw.keys,
                "cookie_store.keys",
                "at least one key is required; the first encrypts, all decrypt",
                secrets,
            )?;
            // Key separation (docs/security.md, "Cookie store"): one secret, one use.
            if let Some(i) = keys
                .iter()
                .position(|(_, secret)| signing_secrets.contains(secret))
            {
                return Err(error(
                    format!("cookie_store.keys[{i}].secret"),
                    "is also a signing key's secret; the cookie store needs keys of its own",
                ));
            }
            let keys = keys
                .iter()
                .map(|(id, secret)| CookieKey::new(id.clone(), secret))
                .collect();
            CookieKeyring::new(keys)
                .map(StoreMode::Cookie)
                .ok_or_else(|| error("cookie_store.keys", "at least one key is required"))
        }
    }
}

/// A list of `{id, secret}` under `field`: ids well formed and unique, secrets base64 of at
/// least 32 bytes that pass the secret rules.
fn parse_key_list(
    raw: Vec<RawKey>,
    field: &str,
    empty: &str,
    secrets: &mut SecretCheck,
) -> Result<Vec<(KeyId, Vec<u8>)>, ConfigError> {
    if raw.is_empty() {
        return Err(error(field, empty));
    }
    let mut keys: Vec<(KeyId, Vec<u8>)> = Vec::with_capacity(raw.len());
    for (i, key) in raw.into_iter().enumerate() {
        let id = KeyId::parse(&key.id).ok_or_else(|| {
            error(
                format!("{field}[{i}].id"),
                "must be 1 to 16 of A-Z a-z 0-9 _ -",
            )
        })?;
        if keys.iter().any(|(k, _)| k == &id) {
            return Err(error(
                format!("{field}[{i}].id"),
                "is used by an earlier key",
            ));
        }
        let secret = decode_secret(&key.secret).ok_or_else(|| {
            error(
                format!("{field}[{i}].secret"),
                "must be base64 (standard or URL-safe alphabet, padding optional)",
            )
        })?;
        if secret.len() < secrets::MIN_KEY_BYTES {
            return Err(error(
                format!("{field}[{i}].secret"),
                format!(
                    "decodes to {} bytes; at least {} are required",
                    secret.len(),
                    secrets::MIN_KEY_BYTES
                ),
            ));
        }
        secrets.check(
            format!("{field}[{i}].secret"),
            secrets::key_weakness(&key.secret, &secret),
        )?;
        keys.push((id, secret));
    }
    Ok(keys)
}

/// `assertion`: its own key ring (never a cookie key: whoever verifies an assertion holds
/// its key, and must not be able to sign cookies with it), a header under the injected
/// prefix (so the strip removes a client's copy in every spelling), and a short lifetime.
fn parse_assertion(
    raw: RawAssertion,
    headers: &HeaderNames,
    cookie_keys: &[Vec<u8>],
    secrets: &mut SecretCheck,
) -> Result<AssertionConfig, ConfigError> {
    let keys = parse_key_list(
        raw.keys,
        "assertion.keys",
        "at least one key is required; the first signs, all verify",
        secrets,
    )?;
    for (i, (_, secret)) in keys.iter().enumerate() {
        if cookie_keys.iter().any(|cookie| cookie == secret) {
            return Err(error(
                format!("assertion.keys[{i}].secret"),
                "is also a cookie key; the apps that verify assertions must not be able to sign cookies",
            ));
        }
    }
    let header = raw
        .header
        .map(|name| name.to_ascii_lowercase())
        .unwrap_or_else(|| format!("{}assertion", headers.prefix));
    if !is_token(&header) || header.contains('_') {
        return Err(error(
            "assertion.header",
            "must be a header name without '_'",
        ));
    }
    let builtin = [
        &headers.state,
        &headers.id,
        &headers.user,
        &headers.data,
        &headers.expires,
        &headers.browser,
        &headers.handle,
    ];
    if !headers.has_prefix(&header)
        || header.len() == headers.prefix.len()
        || builtin.contains(&&header)
    {
        return Err(error(
            "assertion.header",
            "must start with headers.prefix (so a client's copy is removed) and not be one of the injected names",
        ));
    }
    let ttl_seconds = in_range(
        usize::try_from(raw.ttl_seconds).unwrap_or(usize::MAX),
        1,
        assertion::MAX_TTL_SECONDS as usize,
        "assertion.ttl_seconds",
    )? as u64;
    AssertionConfig::new(header, ttl_seconds, &keys)
        .ok_or_else(|| error("assertion.keys", "at least one key is required"))
}

fn decode_secret(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

fn parse_companion(raw: RawCompanion, secrets: &mut SecretCheck) -> Result<Companion, ConfigError> {
    if raw.cluster.is_empty() || !is_visible(&raw.cluster) {
        return Err(error(
            "companion.cluster",
            "must name the Envoy cluster of the companion",
        ));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if authority.is_empty() || !is_visible(&authority) || authority.contains(' ') {
        return Err(error(
            "companion.authority",
            "must be a host name, optionally with a port",
        ));
    }
    if raw.token.is_empty() || !raw.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(error(
            "companion.token",
            "must be non-empty visible ASCII without spaces",
        ));
    }
    secrets.check(
        "companion.token".to_string(),
        secrets::token_weakness(&raw.token),
    )?;
    if raw.timeout_ms == 0 || raw.timeout_ms > MAX_TIMEOUT_MS {
        return Err(error(
            "companion.timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(Companion {
        cluster: raw.cluster,
        authority,
        authorization: format!("Bearer {}", raw.token),
        timeout: Duration::from_millis(raw.timeout_ms),
    })
}

fn parse_cache(raw: RawCache) -> Result<Option<CacheConfig>, ConfigError> {
    if raw.ttl_ms == 0 {
        return Ok(None);
    }
    let entries = in_range(raw.max_entries, 1, MAX_CACHE_ENTRIES, "cache.max_entries")?;
    let max_entries = NonZeroUsize::new(entries)
        .ok_or_else(|| error("cache.max_entries", "must be at least 1"))?;
    let max_bytes = in_range(
        raw.max_bytes,
        MIN_CACHE_BYTES,
        MAX_CACHE_BYTES,
        "cache.max_bytes",
    )?;
    let max_session_bytes = in_range(
        raw.max_session_bytes,
        MIN_SESSION_BYTES,
        max_bytes,
        "cache.max_session_bytes",
    )?;
    Ok(Some(CacheConfig {
        ttl: Duration::from_millis(raw.ttl_ms),
        max_entries,
        max_bytes,
        max_session_bytes,
    }))
}

/// App servers fold `_` into `-` (or drop such headers, as nginx does by default), so a name
/// with `_` would be injected under a name the app may never see as written.
const UNDERSCORE: &str =
    "must use '-', not '_': app servers read the two as one, or drop the header";

fn parse_headers(raw: RawHeaders) -> Result<HeaderNames, ConfigError> {
    let prefix = raw.prefix.to_ascii_lowercase();
    if !is_token(&prefix) || prefix.len() > 64 {
        return Err(error(
            "headers.prefix",
            "must be 1 to 64 header-name characters",
        ));
    }
    if prefix.contains('_') {
        return Err(error("headers.prefix", UNDERSCORE));
    }
    let mut map = BTreeMap::new();
    for (key, header) in raw.map {
        let field = format!("headers.map.{key}");
        let header = header.to_ascii_lowercase();
        if key.is_empty() {
            return Err(error("headers.map", "data keys must not be empty"));
        }
        if !is_token(&header) {
            return Err(error(field, "must be a header name"));
        }
        if header.contains('_') {
            return Err(error(field, UNDERSCORE));
        }
        if header.starts_with(&prefix) {
            return Err(error(
                field,
                "must not start with headers.prefix: the filter's own headers use those names",
            ));
        }
        if map.values().any(|other| other == &header) {
            return Err(error(field, "is already mapped from another data key"));
        }
        if matches!(
            header.as_str(),
            "cookie"
                | "host"
                | "authorization"
                | "content-length"
                | "transfer-encoding"
                | "connection"
        ) {
            return Err(error(
                field,
                "must not replace a header the proxy or the app depends on",
            ));
        }
        map.insert(key, header);
    }
    Ok(HeaderNames::new(prefix, map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use testkit::keys::{
        ASSERTION as ASSERTION_SECRET, ASSERTION_OLD, COMPANION_TOKEN, SIGNING_OLD,
        UNIT_SIGNING as SECRET,
    };

    fn minimal() -> Value {
        json!({
            "keys": [{"id": "k1", "secret": SECRET}],
            "companion": {"cluster": "companion", "token": COMPANION_TOKEN}
        })
    }

    fn parse(value: &Value) -> Result<Config, ConfigError> {
        Config::parse(value.to_string().as_bytes())
    }

    #[test]
    fn the_assertion_is_off_by_default_and_each_field_is_checked_by_name() {
        assert!(parse(&minimal()).unwrap().assertion.is_none());
        let with = |assertion: Value| {
            let mut value = minimal();
            value["assertion"] = assertion;
            parse(&value)
        };
        let key = json!({"id": "a1", "secret": ASSERTION_SECRET});
        let on = with(json!({"keys": [key, {"id": "a0", "secret": ASSERTION_OLD}]}))
            .unwrap()
            .assertion
            .unwrap();
        assert_eq!(on.header, "x-session-assertion");
        assert_eq!(on.ttl_seconds, 30);
        let ids: Vec<&str> = on.key_ids.iter().map(KeyId::as_str).collect();
        assert_eq!(ids, ["a1", "a0"]);
        let field = |assertion: Value| with(assertion).unwrap_err().field;
        assert_eq!(field(json!({})), "assertion.keys");
        assert_eq!(field(json!({"keys": []})), "assertion.keys");
        assert_eq!(
            field(json!({"keys": [{"id": "k1", "secret": SECRET}]})),
            "assertion.keys[0].secret",
            "a cookie key never signs assertions"
        );
        assert_eq!(
            field(json!({"keys": [{"id": "a", "secret": "REPLACE-ME"}]})),
            "assertion.keys[0].secret"
        );
        assert_eq!(
            field(json!({"keys": [{"id": "a", "secret": "c2hvcnQ="}]})),
            "assertion.keys[0].secret"
        );
        assert_eq!(
            field(json!({"keys": [key, {"id": "a1", "secret": ASSERTION_OLD}]})),
            "assertion.keys[1].id"
        );
        for header in [
            "x-assertion",
            "x-session-",
            "x-session-user",
            "x_session-a",
            "a b",
        ] {
            assert_eq!(
                field(json!({"keys": [key], "header": header})),
                "assertion.header",
                "{header}"
            );
        }
        let custom = with(json!({"keys": [key], "header": "X-Session-Signed", "ttl_seconds": 300}))
            .unwrap()
            .assertion
            .unwrap();
        assert_eq!(
            (custom.header.as_str(), custom.ttl_seconds),
            ("x-session-signed", 300)
        );
        for ttl in [0, 301] {
            assert_eq!(
                field(json!({"keys": [key], "ttl_seconds": ttl})),
                "assertion.ttl_seconds"
            );
        }
        assert_eq!(field(json!({"keys": [key], "extra": 1})), "assertion.extra");
    }

    #[test]
    fn defaults_match_the_design() {
        let config = parse(&minimal()).unwrap();
        assert_eq!(config.cookie.name(), "sid");
        assert_eq!(
            config.cookie.clear_header(),
            "sid=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        assert_eq!(config.cookie.max_age_seconds(), 1_209_600);
        assert_eq!(config.companion.as_ref().unwrap().authority, "companion");
        assert_eq!(
            config.companion.as_ref().unwrap().authorization,
            format!("Bearer {COMPANION_TOKEN}")
        );
        assert_eq!(
            config.companion.as_ref().unwrap().timeout,
            Duration::from_millis(200)
        );
        let cache = config.cache.unwrap();
        assert_eq!(
            (cache.ttl, cache.max_entries.get()),
            (Duration::from_millis(2000), 10_000)
        );
        assert_eq!(
            (cache.max_bytes, cache.max_session_bytes),
            (64 << 20, 64 << 10)
        );
        assert_eq!(config.headers.prefix, "x-session-");
        assert_eq!(config.headers.state, "x-session-state");
        assert!(config.headers.map.is_empty());
        assert_eq!(config.on_store_error, StoreErrorPolicy::FailOpen);
        assert_eq!(config.on_write_error, WriteErrorPolicy::Pass);
        assert!(!config.forward_cookie);
        assert_eq!(config.ttl_seconds, 1_209_600);
        assert!(config.sliding);
        assert_eq!(config.max_header_bytes, 8192);
    }

    #[test]
    fn every_field_can_be_set() {
        let value = json!({
            "cookie": {"name": "__Host-s", "path": "/", "secure": true, "http_only": false,
                       "same_site": "Strict", "max_age_seconds": 60},
            "keys": [{"id": "new", "secret": SECRET}, {"id": "old", "secret": SECRET}],
            "companion": {"cluster": "c", "authority": "sessions.internal:8080", "token": COMPANION_TOKEN, "timeout_ms": 50},
            "cache": {"ttl_ms": 0, "max_entries": 5},
            "headers": {"prefix": "X-Sess-", "map": {"roles": "X-User-Roles"}},
            "on_store_error": "fail_closed",
            "on_write_error": "fail",
            "forward_cookie": true,
            "ttl_seconds": 300,
            "sliding": false,
            "max_header_bytes": 100
        });
        let config = parse(&value).unwrap();
        assert_eq!(
            config.cookie.clear_header(),
            "__Host-s=; Max-Age=0; Path=/; Secure; SameSite=Strict"
        );
        assert_eq!(config.keys.signing_key().id().as_str(), "new");
        assert_eq!(
            config.companion.as_ref().unwrap().authority,
            "sessions.internal:8080"
        );
        assert!(config.cache.is_none(), "ttl_ms 0 disables the cache");
        assert_eq!(config.headers.state, "x-sess-state");
        assert_eq!(
            config.headers.map.get("roles").map(String::as_str),
            Some("x-user-roles")
        );
        assert!(config.headers.is_reserved("X-User-Roles"));
        assert!(config.headers.is_reserved("X-SESS-anything"));
        assert!(!config.headers.is_reserved("x-session-state"));
        assert_eq!(config.on_store_error, StoreErrorPolicy::FailClosed);
        assert_eq!(config.on_write_error, WriteErrorPolicy::Fail);
        assert!(config.forward_cookie && !config.sliding);
        assert_eq!((config.ttl_seconds, config.max_header_bytes), (300, 100));
    }

    /// A cookie store key apart from the signing key.
    const COOKIE_SECRET: &str = testkit::keys::COOKIE_STORE_C0;

    /// The minimal cookie-store configuration: no companion.
    fn minimal_cookie() -> Value {
        json!({
            "keys": [{"id": "k1", "secret": SECRET}],
            "store": "cookie",
            "cookie_store": {"keys": [{"id": "c1", "secret": COOKIE_SECRET}]}
        })
    }

    #[test]
    fn the_store_defaults_to_the_companion_and_needs_it() {
        let config = parse(&minimal()).unwrap();
        assert!(matches!(config.store, StoreMode::Companion));
        assert!(config.companion.is_some());
        let mut value = minimal();
        value["store"] = json!("companion");
        assert!(matches!(parse(&value).unwrap().store, StoreMode::Companion));
        value.as_object_mut().unwrap().remove("companion");
        let err = parse(&value).err().unwrap();
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            ("companion", "missing field `companion`"),
            "the same error as before the cookie store"
        );
    }

    #[test]
    fn the_cookie_store_needs_its_keys_and_no_companion() {
        let config = parse(&minimal_cookie()).unwrap();
        let StoreMode::Cookie(keys) = &config.store else {
            panic!("not the cookie store: {:?}", config.store);
        };
        assert_eq!(keys.sealing_key().id().as_str(), "c1");
        assert!(config.companion.is_none());
        let mut value = minimal_cookie();
        value["companion"] = minimal()["companion"].clone();
        let config = parse(&value).unwrap();
        assert_eq!(
            config.companion.map(|c| c.cluster),
            Some("companion".into()),
            "a companion may still be configured"
        );
        let mut value = minimal_cookie();
        value["cookie_store"]["keys"] = json!([
            {"id": "new", "secret": COOKIE_SECRET},
            {"id": "old", "secret": SIGNING_OLD}
        ]);
        let StoreMode::Cookie(keys) = parse(&value).unwrap().store else {
            panic!("not the cookie store");
        };
        assert_eq!(keys.sealing_key().id().as_str(), "new", "the first seals");
    }

    #[test]
    fn bad_cookie_store_configurations_name_the_field() {
        let text_key = base64::engine::general_purpose::STANDARD
            .encode("dev-only-secret-do-not-use-in-production!");
        let cases: Vec<(&str, Mutation)> = vec![
            ("store", Box::new(|v| v["store"] = json!("redis"))),
            ("store", Box::new(|v| v["store"] = json!("Cookie"))),
            (
                "cookie_store",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("cookie_store");
                }),
            ),
            (
                "cookie_store",
                Box::new(|v| {
                    v["store"] = json!("companion");
                    v["companion"] = minimal()["companion"].clone();
                }),
            ),
            (
                "cookie_store.keys",
                Box::new(|v| v["cookie_store"] = json!({})),
            ),
            (
                "cookie_store.keys",
                Box::new(|v| v["cookie_store"]["keys"] = json!([])),
            ),
            (
                "cookie_store.extra",
                Box::new(|v| v["cookie_store"]["extra"] = json!(1)),
            ),
            (
                "cookie_store.keys[0].id",
                Box::new(|v| v["cookie_store"]["keys"][0]["id"] = json!("has.dot")),
            ),
            (
                "cookie_store.keys[1].id",
                Box::new(|v| {
                    v["cookie_store"]["keys"] = json!([
                        {"id": "c", "secret": COOKIE_SECRET}, {"id": "c", "secret": COOKIE_SECRET}
                    ])
                }),
            ),
            (
                "cookie_store.keys[0].secret",
                Box::new(|v| v["cookie_store"]["keys"][0]["secret"] = json!("not base64!")),
            ),
            (
                "cookie_store.keys[0].secret",
                Box::new(|v| {
                    v["cookie_store"]["keys"][0]["secret"] =
                        json!("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==")
                }),
            ),
            (
                "cookie_store.keys[0].secret",
                Box::new(move |v| v["cookie_store"]["keys"][0]["secret"] = json!(text_key)),
            ),
            (
                "cookie_store.keys[0].secret",
                Box::new(|v| v["cookie_store"]["keys"][0]["secret"] = json!(SECRET)),
            ),
            (
                "cookie_store.keys[0].extra",
                Box::new(|v| v["cookie_store"]["keys"][0]["extra"] = json!(true)),
            ),
            (
                "companion.cluster",
                Box::new(|v| v["companion"] = json!({"cluster": "", "token": "x"})),
            ),
        ];
        for (field, mutate) in cases {
            let mut value = minimal_cookie();
            mutate(&mut value);
            match parse(&value) {
                Ok(_) => panic!("accepted a bad {field:?}: {value}"),
                Err(err) => assert_eq!(err.field, field, "{err}"),
            }
        }
    }

    #[test]
    fn cookie_store_secrets_follow_the_secret_rules() {
        let placeholder = base64::engine::general_purpose::STANDARD
            .encode("REPLACE-ME: 32+ random bytes, base64");
        let uniform = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let mut value = minimal_cookie();
        value["cookie_store"]["keys"][0]["secret"] = json!(uniform);
        assert!(parse(&value).is_err());
        value["allow_development_secrets"] = json!(true);
        let config = parse(&value).unwrap();
        assert_eq!(config.development_secrets.len(), 1);
        assert!(config.development_secrets[0].starts_with("cookie_store.keys[0].secret"));
        value["cookie_store"]["keys"][0]["secret"] = json!(placeholder);
        let err = parse(&value).err().unwrap();
        assert!(err.message.contains("placeholder"), "{err}");
    }

    /// A change that makes the minimal configuration bad.
    type Mutation = Box<dyn Fn(&mut Value)>;

    #[test]
    fn bad_configurations_name_the_field() {
        let short_secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="; // 31 bytes
        let cases: Vec<(&str, Mutation)> = vec![
            ("", Box::new(|v| *v = json!("not an object"))),
            ("keys", Box::new(|v| v["keys"] = json!([]))),
            (
                "keys",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("keys");
                }),
            ),
            (
                "keys[0].id",
                Box::new(|v| v["keys"][0]["id"] = json!("has space")),
            ),
            (
                "keys[0].id",
                Box::new(|v| v["keys"][0]["id"] = json!("seventeen-chars-x")),
            ),
            (
                "keys[1].id",
                Box::new(|v| {
                    v["keys"] =
                        json!([{"id": "a", "secret": SECRET}, {"id": "a", "secret": SECRET}])
                }),
            ),
            (
                "keys[0].secret",
                Box::new(move |v| v["keys"][0]["secret"] = json!(short_secret)),
            ),
            (
                "keys[0].secret",
                Box::new(|v| v["keys"][0]["secret"] = json!("not base64 at all!")),
            ),
            (
                "keys[0].extra",
                Box::new(|v| v["keys"][0]["extra"] = json!(1)),
            ),
            (
                "companion.token",
                Box::new(|v| v["companion"]["token"] = json!("")),
            ),
            (
                "companion.token",
                Box::new(|v| v["companion"]["token"] = json!("has space")),
            ),
            (
                "companion.cluster",
                Box::new(|v| v["companion"]["cluster"] = json!("")),
            ),
            (
                "companion.timeout_ms",
                Box::new(|v| v["companion"]["timeout_ms"] = json!(0)),
            ),
            (
                "companion.timeout_ms",
                Box::new(|v| v["companion"]["timeout_ms"] = json!(60_001)),
            ),
            (
                "companion",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("companion");
                }),
            ),
            (
                "cookie.name",
                Box::new(|v| v["cookie"] = json!({"name": "bad;name"})),
            ),
            (
                "cookie.path",
                Box::new(|v| v["cookie"] = json!({"path": "relative"})),
            ),
            (
                "cookie.domain",
                Box::new(|v| v["cookie"] = json!({"domain": "evil.com; HttpOnly"})),
            ),
            (
                "cookie.same_site",
                Box::new(|v| v["cookie"] = json!({"same_site": "Sometimes"})),
            ),
            (
                "cookie.same_site",
                Box::new(|v| v["cookie"] = json!({"same_site": "None", "secure": false})),
            ),
            (
                "cookie.max_age_seconds",
                Box::new(|v| v["cookie"] = json!({"max_age_seconds": 0})),
            ),
            (
                "cookie.name",
                Box::new(|v| v["cookie"] = json!({"name": "__Host-x", "path": "/app"})),
            ),
            (
                "cookie.secure",
                Box::new(|v| v["cookie"] = json!({"name": "__Secure-x", "secure": false})),
            ),
            (
                "cache.max_entries",
                Box::new(|v| v["cache"] = json!({"ttl_ms": 10, "max_entries": 0})),
            ),
            (
                "cache.max_bytes",
                Box::new(|v| v["cache"] = json!({"max_bytes": MAX_CACHE_BYTES + 1})),
            ),
            (
                "cache.max_bytes",
                Box::new(|v| v["cache"] = json!({"max_bytes": MIN_CACHE_BYTES - 1})),
            ),
            (
                "cache.max_session_bytes",
                Box::new(|v| {
                    v["cache"] = json!({"max_bytes": 1 << 20, "max_session_bytes": (1 << 20) + 1})
                }),
            ),
            (
                "cache.max_session_bytes",
                Box::new(|v| v["cache"] = json!({"max_session_bytes": MIN_SESSION_BYTES - 1})),
            ),
            (
                "headers.prefix",
                Box::new(|v| v["headers"] = json!({"prefix": "x session"})),
            ),
            (
                "headers.map.roles",
                Box::new(|v| v["headers"] = json!({"map": {"roles": "cookie"}})),
            ),
            (
                "headers.map.roles",
                Box::new(|v| v["headers"] = json!({"map": {"roles": "bad header"}})),
            ),
            (
                "headers.prefix",
                Box::new(|v| v["headers"] = json!({"prefix": "x_session-"})),
            ),
            (
                "headers.map.roles",
                Box::new(|v| v["headers"] = json!({"map": {"roles": "x_user_roles"}})),
            ),
            (
                "headers.map.roles",
                Box::new(|v| v["headers"] = json!({"map": {"roles": "X-Session-Roles"}})),
            ),
            (
                "headers.map.roles",
                Box::new(|v| v["headers"] = json!({"map": {"groups": "x-r", "roles": "X-R"}})),
            ),
            (
                "on_store_error",
                Box::new(|v| v["on_store_error"] = json!("fail_sometimes")),
            ),
            (
                "on_write_error",
                Box::new(|v| v["on_write_error"] = json!("ignore")),
            ),
            ("ttl_seconds", Box::new(|v| v["ttl_seconds"] = json!(0))),
            (
                "max_header_bytes",
                Box::new(|v| v["max_header_bytes"] = json!(0)),
            ),
            (
                "forward_cookie",
                Box::new(|v| v["forward_cookie"] = json!("yes")),
            ),
            (
                "unknown_setting",
                Box::new(|v| v["unknown_setting"] = json!(true)),
            ),
        ];
        for (field, mutate) in cases {
            let mut value = minimal();
            mutate(&mut value);
            match parse(&value) {
                Ok(_) => panic!("accepted a bad {field:?}: {value}"),
                Err(err) => {
                    let shown = err.to_string();
                    assert_eq!(err.field, field, "{shown}");
                    assert!(
                        shown.starts_with(field),
                        "the message leads with the field: {shown}"
                    );
                }
            }
        }
    }

    #[test]
    fn cache_bounds_are_accepted_at_their_limits() {
        let mut value = minimal();
        value["cache"] =
            json!({"max_bytes": MAX_CACHE_BYTES, "max_session_bytes": MAX_CACHE_BYTES});
        let cache = parse(&value).unwrap().cache.unwrap();
        assert_eq!(
            (cache.max_bytes, cache.max_session_bytes),
            (MAX_CACHE_BYTES, MAX_CACHE_BYTES)
        );
        value["cache"] =
            json!({"max_bytes": MIN_CACHE_BYTES, "max_session_bytes": MIN_SESSION_BYTES});
        assert!(parse(&value).is_ok());
    }

    #[test]
    fn reserved_names_match_in_any_case_with_underscores_for_dashes() {
        let mut value = minimal();
        value["headers"] = json!({"map": {"roles": "x-user-roles"}});
        let names = parse(&value).unwrap().headers;
        for spoof in [
            "x-session-user",
            "X-SESSION-USER",
            "x_session_user",
            "X_Session_State",
            "x-session_data",
            "x_session-id",
            "x_session_",
            "x-session-",
            "x_user_roles",
            "X_USER-ROLES",
            "x-user-roles",
        ] {
            assert!(names.is_reserved(spoof), "{spoof}");
        }
        // Not tokens: only a hostile host delivers them, and app servers may fold them into ours.
        for odd in ["x-se\u{df}ion-user", "x session-user", "", "x:y", "::path"] {
            assert!(names.is_reserved(odd), "{odd:?}");
        }
        for fine in [
            ":path",
            ":authority",
            "x-sessions",
            "x-session",
            "xsession-user",
            "x-user-roles2",
            "x-user-role",
            "cookie",
            "accept_language",
        ] {
            assert!(!names.is_reserved(fine), "{fine}");
        }
        assert!(names.has_prefix("X_SESSION_SET"));
        assert!(
            names.is_reserved("x-sessio\u{e9}n-user"),
            "a character across the prefix's end: no panic, and not a token"
        );
        assert!(!names.has_prefix("x-sessio\u{e9}"));
        assert!(!names.has_prefix("x-sessio"));
    }

    #[test]
    fn placeholders_are_refused_and_weak_secrets_need_the_development_switch() {
        use base64::engine::general_purpose::STANDARD;
        let text_key = STANDARD.encode("dev-only-secret-do-not-use-in-production!");
        let placeholder_key = STANDARD.encode("REPLACE-ME: 32+ random bytes, base64");
        let uniform_key = STANDARD.encode([7u8; 32]);
        let weak_token = "dev-token-change-me-0123456789";
        type Case = (&'static str, Box<dyn Fn(&mut Value)>);
        let weak: Vec<Case> = vec![
            ("keys[0].secret", {
                let k = text_key.clone();
                Box::new(move |v| v["keys"][0]["secret"] = json!(k))
            }),
            ("keys[0].secret", {
                let k = uniform_key.clone();
                Box::new(move |v| v["keys"][0]["secret"] = json!(k))
            }),
            (
                "companion.token",
                Box::new(move |v| v["companion"]["token"] = json!(weak_token)),
            ),
        ];
        for (field, mutate) in &weak {
            let mut value = minimal();
            mutate(&mut value);
            let err = parse(&value).err().unwrap();
            assert_eq!(err.field, *field);
            assert!(err.message.contains("allow_development_secrets"), "{err}");
            value["allow_development_secrets"] = json!(true);
            let config = parse(&value).unwrap();
            assert_eq!(config.development_secrets.len(), 1);
            assert!(config.development_secrets[0].starts_with(field));
        }
        let placeholders: Vec<Case> = vec![
            ("keys[0].secret", {
                let k = placeholder_key.clone();
                Box::new(move |v| v["keys"][0]["secret"] = json!(k))
            }),
            (
                "companion.token",
                Box::new(|v| v["companion"]["token"] = json!("REPLACE-ME-openssl-rand-hex-24")),
            ),
        ];
        for (field, mutate) in &placeholders {
            for development in [false, true] {
                let mut value = minimal();
                mutate(&mut value);
                value["allow_development_secrets"] = json!(development);
                let err = parse(&value).err().unwrap();
                assert_eq!(err.field, *field);
                assert!(err.message.contains("placeholder"), "{err}");
            }
        }
        let strong = parse(&minimal()).unwrap();
        assert!(strong.development_secrets.is_empty());
        let mut value = minimal();
        value["companion"]["token"] = json!("0123456789abcdef0123456789abcde");
        assert_eq!(
            parse(&value).err().map(|e| e.field),
            Some("companion.token".into()),
            "31 characters"
        );
        value["companion"]["token"] = json!("0123456789abcdef0123456789abcdef");
        assert!(parse(&value).is_ok(), "32 characters");
    }

    #[test]
    fn errors_never_echo_secrets_or_tokens() {
        let mut value = minimal();
        value["keys"][0]["secret"] = json!({"nested": "TOPSECRET-VALUE"});
        let err = parse(&value).err().unwrap().to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
        let mut value = minimal();
        value["companion"]["token"] = json!("TOPSECRET with space");
        let err = parse(&value).err().unwrap().to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
        let mut value = minimal();
        value["keys"][0]["secret"] = json!("TOPSECRET!!");
        let err = parse(&value).err().unwrap().to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
        let err = Config::parse(br#"{"keys": "TOPSECRET", "companion": 1}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"{", b"\xff\xfe", b"null", b"[]"] {
            assert!(Config::parse(bytes).is_err());
        }
    }
}
