//! The filter's counters (docs/architecture.md, "Observability").

/// Every counter, by the name Envoy exposes it under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Valid,
    None,
    Invalid,
    Expired,
    Unavailable,
    CacheHit,
    CacheMiss,
    CalloutError,
    Writes,
    WriteError,
    BadControl,
    HeaderOmitted,
    RevocationFailed,
    /// Control headers on a 5xx response, not applied (`controls_on_server_error`).
    ControlSkipped,
    /// A sliding-expiry touch the store did not confirm: the expiry may not have moved.
    TouchFailed,
    /// A revocation feed poll that failed (not sent, no answer, or not a page).
    FeedFailed,
    /// The feed could not continue from its cursor: every worker dropped its cache.
    FeedResync,
    /// The user's list of sessions could not be read for the listing route.
    ListFailed,
    /// "Seen" reports not sent: the call failed, or more sessions than a report holds.
    SeenFailed,
    /// The cookie store: a write refused because its cookie would pass 4096 bytes.
    CookieTooLarge,
    /// The cookie store: a revocation the companion did not record (its feed will not carry
    /// it to other proxies).
    RevocationPostFailed,
}

impl Counter {
    pub const ALL: [Counter; 21] = [
        Self::Valid,
        Self::None,
        Self::Invalid,
        Self::Expired,
        Self::Unavailable,
        Self::CacheHit,
        Self::CacheMiss,
        Self::CalloutError,
        Self::Writes,
        Self::WriteError,
        Self::BadControl,
        Self::HeaderOmitted,
        Self::RevocationFailed,
        Self::ControlSkipped,
        Self::TouchFailed,
        Self::FeedFailed,
        Self::FeedResync,
        Self::ListFailed,
        Self::SeenFailed,
        Self::CookieTooLarge,
        Self::RevocationPostFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "edge_session_valid",
            Self::None => "edge_session_none",
            Self::Invalid => "edge_session_invalid",
            Self::Expired => "edge_session_expired",
            Self::Unavailable => "edge_session_unavailable",
            Self::CacheHit => "edge_session_cache_hit",
            Self::CacheMiss => "edge_session_cache_miss",
            Self::CalloutError => "edge_session_callout_error",
            Self::Writes => "edge_session_writes",
            Self::WriteError => "edge_session_write_error",
            Self::BadControl => "edge_session_bad_control",
            Self::HeaderOmitted => "edge_session_header_omitted",
            Self::RevocationFailed => "edge_session_revocation_failed",
            Self::ControlSkipped => "edge_session_control_skipped",
            Self::TouchFailed => "edge_session_touch_failed",
            Self::FeedFailed => "edge_session_feed_failed",
            Self::FeedResync => "edge_session_feed_resync",
            Self::ListFailed => "edge_session_list_failed",
            Self::SeenFailed => "edge_session_seen_failed",
            Self::CookieTooLarge => "edge_session_cookie_too_large",
            Self::RevocationPostFailed => "edge_session_revocation_post_failed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
