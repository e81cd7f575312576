//! The request path (docs/architecture.md, "Request path"): strip spoofed headers, find and
//! verify the cookie, serve the session from the cache or ask the store for it, inject it, and
//! tell the shell what to do next. Written against [`RequestHost`]; pure otherwise.

use crate::cache::Resolved;
use crate::config::{StoreErrorPolicy, StoreMode};
use crate::cookie::{self, Found};
use crate::core::{Core, Host};
use crate::inject::{self, Injection};
use crate::listing;
use crate::metrics::Counter;
use crate::revocation::{self, RevocationTag, Sequence};
use crate::store::Resolution;
use crate::store::cookie::CookieKeyring;
use crate::store::cookie_cache::OpenedCookie;
use crate::store::cookie_session::{self, Refused};
use crate::token::{Presented, TokenError, Verified};
use proto::{Session, SessionHandle, SessionId};
use std::borrow::Cow;
use std::rc::Rc;

/// What the request path needs from the proxy besides [`Host`]: the request's headers.
pub trait RequestHost: Host {
    /// Every request header, names lowercased, in order.
    fn read_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Replaces every request header with these.
    fn replace_headers(&self, headers: &[Header<'_>]);
    /// Appends a request header.
    fn add_header(&self, name: &str, value: &[u8]);
    /// Removes every request header of this name.
    fn remove_header(&self, name: &str);
    /// The request's `User-Agent`, handed over once the headers have gone back to the proxy
    /// (moved, not copied): a create or a cycle on the response sends it to the store, and not
    /// every host lets a filter read request headers once the request has gone on.
    fn keep_user_agent(&self, _value: Vec<u8>) {}
}

/// What the response needs to know of its request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestOutcome {
    /// The session the app's writes go to: the valid one the request carried, or the one its
    /// verified cookie names when the store could not answer (`fail_open`). Never a new
    /// session in its place: that would log the user out over a passing outage.
    pub session: Option<SessionId>,
    /// The response must delete the cookie (a bad token, a session that is gone).
    pub clear_cookie: bool,
    /// The response depends on the session: shared caches must not serve it to others.
    pub session_dependent: bool,
    /// The valid session's expiry as last read, for renewing its cookie.
    pub lifetime: Option<Lifetime>,
    /// The valid session as resolved (shared with the cache, not copied): its user and
    /// handle, for `x-session-revoke`.
    pub resolved: Option<Rc<Resolved>>,
    /// The cookie store: the whole session the cookie carried (with its expiry moved by
    /// sliding expiry), which the response's writes change and re-seal.
    pub cookie_session: Option<Box<Session>>,
}

/// A session's expiry as the filter last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// Nanoseconds since the epoch.
    pub expires_at_nanos: i128,
    /// Its cookie carries no `Max-Age`: nothing to renew.
    pub browser_session: bool,
    /// A sliding-expiry touch moved the expiry, and this is the store's answer.
    pub renewed: bool,
}

/// What the shell does next with the request.
#[derive(Debug, PartialEq)]
pub enum RequestNext {
    /// The request goes on. `touch`: send the store a sliding-expiry touch for this session,
    /// without waiting for it.
    Continue {
        outcome: RequestOutcome,
        touch: Option<SessionId>,
    },
    /// As `Continue`, but first ask the companion for the list of the session's user's
    /// sessions (`crate::listing`) and inject it: the request is on the `session_list` route.
    /// `outcome.resolved` names the user and the current session.
    List {
        outcome: RequestOutcome,
        touch: Option<SessionId>,
    },
    /// Ask the store for this session and pause the request; hand the answer to
    /// [`Core::handle_lookup`] with the revocation `Sequence` read before asking.
    Lookup(SessionId, Sequence),
    /// Answer 503: the store could not answer and `on_store_error` is `fail_closed`.
    Unavailable,
}

/// The request headers as read once, with the filter's changes. Each host call crosses the
/// VM boundary and copies, so the changes go back in one call: a single added header as an
/// `add`, anything more as one `set` of the whole map (what Envoy does for either is the
/// same: the headers end up in this order).
///
/// Except past Envoy's limits for a whole map (more than [`MAX_MAP_PAIRS`] pairs or
/// [`MAX_MAP_BYTES`] serialised): there Envoy's `set_header_map_pairs` would remove every
/// header and report success (proxy-wasm-cpp-host, `PairsUtil::toPairs`), so the changes go
/// back one header at a time instead.
///
/// Headers the filter adds borrow their names and values from the configuration and the
/// resolved session, so a cache hit copies nothing into the list.
struct HeaderEdits<'a> {
    headers: Vec<Header<'a>>,
    removed: bool,
    added: usize,
}

/// The most pairs Envoy takes in one header map from the module.
pub const MAX_MAP_PAIRS: usize = 1024;
/// The largest serialised header map Envoy takes from the module.
pub const MAX_MAP_BYTES: usize = 1 << 20;

/// A request header as the request path edits it: read from the proxy (owned) or added by
/// the filter (usually borrowed).
pub type Header<'a> = (Cow<'a, str>, Cow<'a, [u8]>);

impl<'a> HeaderEdits<'a> {
    fn read(host: &impl RequestHost) -> Self {
        Self {
            headers: host
                .read_headers()
                .into_iter()
                .map(|(name, value)| (Cow::Owned(name), Cow::Owned(value)))
                .collect(),
            removed: false,
            added: 0,
        }
    }

    /// Removes every header `keep` refuses, every value of a name alike. Only before any
    /// `add`: the added headers are the list's tail.
    fn remove(&mut self, keep: impl Fn(&str) -> bool) {
        debug_assert_eq!(self.added, 0, "removal after an addition");
        let before = self.headers.len();
        self.headers.retain(|(name, _)| keep(name));
        self.removed |= self.headers.len() != before;
    }

    fn add(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, [u8]>>) {
        self.headers.push((name.into(), value.into()));
        self.added += 1;
    }

    /// The first value of a header the request came with, moved out of the list (which is
    /// not applied again): no copy when it was read from the host.
    fn take(&mut self, name: &str) -> Option<Vec<u8>> {
        let first_added = self.headers.len() - self.added;
        let (_, value) = self.headers[..first_added]
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(std::mem::take(value).into_owned())
    }

    /// Whether Envoy would take the whole map in one `set`.
    fn fits_one_set(&self) -> bool {
        let bytes = 4 + self
            .headers
            .iter()
            .map(|(name, value)| 10 + name.len() + value.len())
            .sum::<usize>();
        self.headers.len() <= MAX_MAP_PAIRS && bytes <= MAX_MAP_BYTES
    }

    fn apply(&self, host: &impl RequestHost) {
        match (self.removed, self.added) {
            (false, 0) => {}
            (false, 1) => {
                if let Some((name, value)) = self.headers.last() {
                    host.add_header(name, value);
                }
            }
            _ if self.fits_one_set() => host.replace_headers(&self.headers),
            _ => self.apply_one_by_one(host),
        }
    }

    /// The edits as single-header calls: remove each name the filter dropped (read back from
    /// the proxy: this path is rare, and a removal takes every value of its name), then add
    /// each added header in order.
    fn apply_one_by_one(&self, host: &impl RequestHost) {
        let first_added = self.headers.len() - self.added;
        let kept = &self.headers[..first_added];
        let mut removed: Vec<String> = Vec::new();
        for (name, _) in host.read_headers() {
            let gone = !kept.iter().any(|(k, _)| k.eq_ignore_ascii_case(&name));
            if gone && !removed.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                removed.push(name);
            }
        }
        for name in &removed {
            host.remove_header(name);
        }
        for (name, value) in &self.headers[first_added..] {
            host.add_header(name, value);
        }
    }
}

/// The session states the filter reports upstream when there is no valid session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    None,
    Invalid,
    Expired,
    Unavailable,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Unavailable => "unavailable",
        }
    }

    fn counter(self) -> Counter {
        match self {
            Self::None => Counter::None,
            Self::Invalid => Counter::Invalid,
            Self::Expired => Counter::Expired,
            Self::Unavailable => Counter::Unavailable,
        }
    }
}

/// A token whose signature holds.
enum Checked<'t> {
    /// The token last verified for a session the cache holds, recognised as written: its id.
    Known(&'t str),
    /// A signature computed and matched now: the cache remembers it if it holds the session.
    New(SessionId, Verified),
}

/// How the request headers were handled.
#[derive(Debug)]
enum Lookup {
    /// No session cookie: `x-session-state: none` was added.
    NoCookie,
    /// A bad token: `x-session-state: invalid` was added; the cookie must be cleared.
    Invalid,
    /// The session cookie came with different values: `x-session-state: invalid` was added,
    /// and the cookie must NOT be cleared (that would delete the user's own and leave the
    /// tossed one in place).
    Ambiguous,
    /// Served from the cache: the session's headers were injected.
    Hit(Rc<Resolved>),
    /// A valid token whose session must be asked from the companion; the revocation
    /// sequence read before the lookup goes out, to cache its answer under.
    Miss(SessionId, Sequence),
    /// The cookie store: the cookie opened to this session (injected like a hit);
    /// `renewed`: sliding expiry moved its expiry.
    Opened {
        resolved: Rc<Resolved>,
        session: Box<Session>,
        renewed: bool,
    },
    /// The cookie store: a cookie past its expiry, or revoked: `expired`, to be cleared.
    Gone,
}

impl Core {
    /// The request headers arrived: strip spoofed headers, find and verify the cookie, drop it
    /// from what goes upstream, and serve the session from the cache when it can.
    pub fn handle_request(&self, host: &impl RequestHost) -> RequestNext {
        let mut edits = HeaderEdits::read(host);
        let listing = self.on_listing_route(&edits);
        let lookup = self.find_session(host, &mut edits);
        if let Lookup::Hit(resolved) | Lookup::Opened { resolved, .. } = &lookup {
            self.inject(host, &mut edits, resolved);
        }
        edits.apply(host);
        if let Some(user_agent) = edits.take("user-agent") {
            host.keep_user_agent(user_agent);
        }
        match lookup {
            Lookup::NoCookie => Self::go_on(RequestOutcome::default()),
            Lookup::Invalid => Self::go_on(Self::cookie_to_clear()),
            Lookup::Ambiguous => Self::go_on(RequestOutcome {
                session_dependent: true,
                ..RequestOutcome::default()
            }),
            Lookup::Hit(resolved) => Self::listed(self.with_session(host, &resolved), listing),
            Lookup::Miss(id, sequence) => RequestNext::Lookup(id, sequence),
            Lookup::Gone => Self::go_on(Self::cookie_to_clear()),
            Lookup::Opened {
                resolved,
                session,
                renewed,
            } => Self::go_on(RequestOutcome {
                session: Some(resolved.id.clone()),
                clear_cookie: false,
                session_dependent: true,
                lifetime: Some(Lifetime {
                    expires_at_nanos: session.expires_at.unix_nanos(),
                    browser_session: session.browser_session,
                    renewed,
                }),
                resolved: Some(resolved),
                cookie_session: Some(session),
            }),
        }
    }

    /// Whether the request is on the `session_list` route (read before the session's headers
    /// are added; the app's own `:path` is never changed by the filter).
    fn on_listing_route(&self, edits: &HeaderEdits<'_>) -> bool {
        let Some(list) = &self.config.session_list else {
            return false;
        };
        edits
            .headers
            .iter()
            .find(|(name, _)| name == ":path")
            .is_some_and(|(_, path)| listing::on_route(&list.path, path))
    }

    /// A valid session on the listing route, bound to a user, asks for the list first.
    fn listed(next: RequestNext, on_route: bool) -> RequestNext {
        match next {
            RequestNext::Continue { outcome, touch }
                if on_route
                    && outcome
                        .resolved
                        .as_ref()
                        .is_some_and(|resolved| resolved.user.is_some()) =>
            {
                RequestNext::List { outcome, touch }
            }
            next => next,
        }
    }

    /// The store's answer to the lookup of session `id`, asked at revocation `sequence`.
    pub fn handle_lookup(
        &self,
        host: &impl RequestHost,
        id: &SessionId,
        sequence: Sequence,
        answer: Resolution,
    ) -> RequestNext {
        let now = host.now_nanos();
        match answer {
            Resolution::Found(session) => {
                let resolved = Rc::new(self.resolved(&session));
                // An answer overtaken by a change announced while it was on its way serves
                // the request that asked (it was sent first), but is not kept.
                if let Some(cache) = self.cache.borrow_mut().as_mut()
                    && self.still_trusted(host, &resolved.revocation, sequence)
                    && !cache.insert(resolved.clone(), now, sequence)
                {
                    log::debug!(
                        "edge-session: session #{} not cached (over cache.max_session_bytes, \
                         or expiring)",
                        id.short_hash()
                    );
                }
                let mut edits = HeaderEdits::read(host);
                let listing = self.on_listing_route(&edits);
                self.inject(host, &mut edits, &resolved);
                edits.apply(host);
                Self::listed(self.with_session(host, &resolved), listing)
            }
            Resolution::Expired => self.expired(host, id),
            Resolution::Unavailable(failure) => {
                log::warn!("edge-session: session #{}: {failure}", id.short_hash());
                self.store_unavailable(host, id)
            }
        }
    }

    /// The store could not be asked for session `id` at all (the call was refused): as an
    /// unavailable store.
    pub fn lookup_not_sent(&self, host: &impl RequestHost, id: &SessionId) -> RequestNext {
        self.store_unavailable(host, id)
    }

    fn go_on(outcome: RequestOutcome) -> RequestNext {
        RequestNext::Continue {
            outcome,
            touch: None,
        }
    }

    fn cookie_to_clear() -> RequestOutcome {
        RequestOutcome {
            clear_cookie: true,
            session_dependent: true,
            ..RequestOutcome::default()
        }
    }

    fn expired(&self, host: &impl RequestHost, id: &SessionId) -> RequestNext {
        log::debug!("edge-session: session #{} is gone", id.short_hash());
        self.report_now(host, State::Expired);
        Self::go_on(Self::cookie_to_clear())
    }

    /// The store failed to answer a read of the cookie's session `id`: the configured policy
    /// decides. Under `fail_open` the app gets no session, but its writes still go to `id`.
    fn store_unavailable(&self, host: &impl RequestHost, id: &SessionId) -> RequestNext {
        host.count(Counter::CalloutError);
        match self.config.on_store_error {
            StoreErrorPolicy::FailOpen => {
                self.report_now(host, State::Unavailable);
                Self::go_on(RequestOutcome {
                    session: Some(id.clone()),
                    ..RequestOutcome::default()
                })
            }
            StoreErrorPolicy::FailClosed => {
                host.count(Counter::Unavailable);
                RequestNext::Unavailable
            }
        }
    }

    /// A valid session was injected. Sliding expiry: past half its lifetime the session is
    /// touched in the store without waiting, and the local copy dropped so the next request
    /// sees the new expiry.
    fn with_session(&self, host: &impl RequestHost, resolved: &Rc<Resolved>) -> RequestNext {
        if let Some(seen) = self.seen.borrow_mut().as_mut()
            && !seen.note(resolved)
        {
            host.count(Counter::SeenFailed);
        }
        let half_life = i128::from(resolved.ttl_seconds) * 500_000_000;
        let touch = (self.config.sliding
            && host.now_nanos() >= resolved.expires_at_nanos - half_life)
            .then(|| {
                if let Some(cache) = self.cache.borrow_mut().as_mut() {
                    cache.remove(&resolved.id);
                }
                resolved.id.clone()
            });
        RequestNext::Continue {
            outcome: RequestOutcome {
                session: Some(resolved.id.clone()),
                clear_cookie: false,
                session_dependent: true,
                lifetime: Some(Lifetime {
                    expires_at_nanos: resolved.expires_at_nanos,
                    browser_session: resolved.browser_session,
                    renewed: false,
                }),
                resolved: Some(resolved.clone()),
                cookie_session: None,
            },
            touch,
        }
    }

    /// Everything but the injection of a cached session (the caller does it, so the headers
    /// can borrow from the session).
    fn find_session<'a>(&'a self, host: &impl RequestHost, edits: &mut HeaderEdits<'a>) -> Lookup {
        let cookies: Vec<Vec<u8>> = edits
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .map(|(_, value)| value.to_vec())
            .collect();
        let names = &self.config.headers;
        edits.remove(|name| !names.is_reserved(name));
        let token = match cookie::find(cookies.iter().map(Vec::as_slice), self.config.cookie.name())
        {
            Found::One(token) => token.to_vec(),
            Found::None => {
                self.report(host, edits, State::None);
                return Lookup::NoCookie;
            }
            Found::Several => {
                log::warn!(
                    "edge-session: the session cookie came with several values (a tossed \
                     cookie?); the request has no session"
                );
                if !self.config.forward_cookie {
                    self.drop_session_cookie(edits, &cookies);
                }
                self.report(host, edits, State::Invalid);
                return Lookup::Ambiguous;
            }
        };
        if !self.config.forward_cookie {
            self.drop_session_cookie(edits, &cookies);
        }
        if let StoreMode::Cookie(ring) = &self.config.store {
            return self.open_cookie(host, edits, ring, &token);
        }
        let checked = Presented::parse(&token).and_then(|presented| self.check(&presented));
        let checked = match checked {
            Ok(checked) => checked,
            Err(err) => {
                log::debug!(
                    "edge-session: cookie #{} refused: {err}",
                    proto::short_hash(&token)
                );
                self.report(host, edits, State::Invalid);
                return Lookup::Invalid;
            }
        };
        let hit = match &checked {
            Checked::Known(text) => self.cached(host, *text),
            Checked::New(id, _) => self.cached(host, id),
        };
        if let Some(resolved) = hit {
            if let (Checked::New(id, verified), Some(cache)) =
                (checked, self.cache.borrow_mut().as_mut())
            {
                cache.remember(&id, verified);
            }
            host.count(Counter::CacheHit);
            return Lookup::Hit(resolved);
        }
        let id = match checked {
            Checked::New(id, _) => id,
            // A cache key, so a well-formed id; its entry went stale or was revoked.
            Checked::Known(text) => match SessionId::parse(text) {
                Ok(id) => id,
                Err(_) => {
                    self.report(host, edits, State::Invalid);
                    return Lookup::Invalid;
                }
            },
        };
        let sequence = match self.cache.borrow().is_some() {
            true => {
                host.count(Counter::CacheMiss);
                revocation::current(host)
            }
            false => 0,
        };
        Lookup::Miss(id, sequence)
    }

    /// The cookie store: the session is the cookie itself, opened with no I/O (every key
    /// opens; a removed key's cookie is invalid, an expired or revoked one is gone).
    fn open_cookie<'a>(
        &'a self,
        host: &impl RequestHost,
        edits: &mut HeaderEdits<'a>,
        ring: &CookieKeyring,
        value: &[u8],
    ) -> Lookup {
        let now = host.now_nanos();
        match self.opened_cookie(host, ring, value, now) {
            Ok(cookie) => {
                let mut session = cookie.opened.session.clone();
                let renewed = self.config.sliding && cookie_session::slide(&mut session, now);
                Lookup::Opened {
                    resolved: cookie.resolved.clone(),
                    session: Box::new(session),
                    renewed,
                }
            }
            Err(Refused::Gone(why)) => {
                log::debug!(
                    "edge-session: cookie #{} refused: {why}",
                    proto::short_hash(value)
                );
                self.report(host, edits, State::Expired);
                Lookup::Gone
            }
            Err(Refused::Invalid(err)) => {
                log::debug!(
                    "edge-session: cookie #{} refused: {err}",
                    proto::short_hash(value)
                );
                self.report(host, edits, State::Invalid);
                Lookup::Invalid
            }
        }
    }

    /// The cookie value opened and checked: from the cache of opened cookies when it holds
    /// this exact value (checked again for expiry and revocation, as a value just opened is),
    /// otherwise opened and rendered once and kept.
    fn opened_cookie(
        &self,
        host: &impl RequestHost,
        ring: &CookieKeyring,
        value: &[u8],
        now: i128,
    ) -> Result<Rc<OpenedCookie>, Refused> {
        let mut cache = self.cookies.borrow_mut();
        if let Some(cookie) = cache.as_mut().and_then(|c| c.get(value, now)) {
            let checked = cookie.opened.recheck(host, cookie_session::seconds(now));
            if checked.is_err()
                && let Some(cache) = cache.as_mut()
            {
                cache.remove(value);
            }
            return checked.map(|()| cookie);
        }
        let opened = cookie_session::open_checked(host, ring, value, now)?;
        let resolved = Rc::new(self.resolved_with(&opened.session, opened.handle.clone()));
        let cookie = Rc::new(OpenedCookie { opened, resolved });
        if let Some(cache) = cache.as_mut()
            && !cache.insert(value, cookie.clone(), now)
        {
            log::debug!(
                "edge-session: cookie #{} not cached (over cache.max_session_bytes)",
                proto::short_hash(value)
            );
        }
        Ok(cookie)
    }

    /// Continues without a session: reports the state upstream (one header, added at once)
    /// and counts it.
    fn report_now(&self, host: &impl RequestHost, state: State) {
        host.count(state.counter());
        host.add_header(&self.config.headers.state, state.as_str().as_bytes());
    }

    fn report<'a>(&'a self, host: &impl RequestHost, edits: &mut HeaderEdits<'a>, state: State) {
        host.count(state.counter());
        edits.add(
            self.config.headers.state.as_str(),
            state.as_str().as_bytes(),
        );
    }

    /// Injects a resolved session's headers and counts what was left out.
    fn inject<'a>(
        &'a self,
        host: &impl RequestHost,
        edits: &mut HeaderEdits<'a>,
        resolved: &'a Resolved,
    ) {
        host.count(Counter::Valid);
        let Injection { headers, omitted } = &resolved.injection;
        for (name, value) in headers {
            edits.add(name.as_str(), value.as_bytes());
        }
        let assertion = self
            .config
            .assertion
            .as_ref()
            .zip(resolved.assertion.as_deref());
        if let Some((name, token)) =
            assertion.and_then(|(a, p)| a.for_request(p, &edits.headers, host.now_nanos()))
        {
            edits.add(name, token);
        }
        for name in omitted {
            host.count(Counter::HeaderOmitted);
            log::warn!(
                "edge-session: session #{}: {name} not injected, its value is over max_header_bytes ({})",
                resolved.id.short_hash(),
                self.config.max_header_bytes
            );
        }
    }

    /// Rewrites the `cookie` headers without the session cookie (step 7).
    fn drop_session_cookie(&self, edits: &mut HeaderEdits<'_>, cookies: &[Vec<u8>]) {
        let name = self.config.cookie.name();
        edits.remove(|header| !header.eq_ignore_ascii_case("cookie"));
        for header in cookies {
            if let Some(rest) = cookie::without(header, name) {
                edits.add("cookie", rest);
            }
        }
    }

    /// Checks the token's signature, unless it is the very token last verified for a session
    /// the cache holds: that one is recognised as written, in constant time, with neither
    /// decoding nor HMAC.
    fn check<'t>(&self, presented: &Presented<'t>) -> Result<Checked<'t>, TokenError> {
        let cache = self.cache.borrow();
        if let (Some(cache), Some(text)) = (cache.as_ref(), presented.id_text())
            && cache.knows(text, presented)
        {
            return Ok(Checked::Known(text));
        }
        let id = presented.session_id()?;
        let verified = self.config.keys.check(presented)?;
        Ok(Checked::New(id, verified))
    }

    /// A fresh cached copy, unless a change to its session was announced since its lookup
    /// was sent (on any worker of this proxy).
    fn cached(
        &self,
        host: &impl RequestHost,
        id: &(impl AsRef<str> + ?Sized),
    ) -> Option<Rc<Resolved>> {
        let now = host.now_nanos();
        let (resolved, sequence) = self.cache.borrow_mut().as_mut()?.get(id, now)?;
        if !self.still_trusted(host, &resolved.revocation, sequence) {
            if let Some(cache) = self.cache.borrow_mut().as_mut() {
                cache.remove(id);
            }
            return None;
        }
        Some(resolved)
    }

    /// Whether no change to the session was announced after `sequence`.
    fn still_trusted(
        &self,
        host: &impl RequestHost,
        tag: &RevocationTag,
        sequence: Sequence,
    ) -> bool {
        let bucket = host.get(&tag.key).map(|(value, _)| value);
        tag.trusts(bucket.as_deref(), sequence)
    }

    /// What to inject and cache for a session the companion returned.
    pub(crate) fn resolved(&self, session: &Session) -> Resolved {
        self.resolved_with(session, session.id.handle())
    }

    /// [`Self::resolved`] with the session's handle already computed.
    pub(crate) fn resolved_with(&self, session: &Session, handle: SessionHandle) -> Resolved {
        let config = &self.config;
        let mut injection =
            inject::for_session_with(&config.headers, session, &handle, config.max_header_bytes);
        let assertion = (config.assertion.as_ref())
            .and_then(|a| a.prepare(session, &mut injection, config.max_header_bytes));
        Resolved {
            injection,
            assertion,
            expires_at_nanos: session.expires_at.unix_nanos(),
            ttl_seconds: session.ttl_seconds,
            browser_session: session.browser_session,
            revocation: RevocationTag::of_handle(&handle),
            user: session.user.clone(),
            handle,
            id: session.id.clone(),
            seen: std::cell::Cell::new(crate::seen::NEVER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::revocation::SharedStore;
    use std::cell::{Cell, RefCell};

    use testkit::keys::{COMPANION_TOKEN, UNIT_SIGNING as SECRET};

    /// A proxy that records how the headers were changed.
    #[derive(Default)]
    struct FakeHost {
        headers: RefCell<Vec<(String, Vec<u8>)>>,
        sets: Cell<u32>,
        adds: Cell<u32>,
        removes: Cell<u32>,
    }

    impl FakeHost {
        fn with(headers: &[(&str, &str)]) -> Self {
            let host = Self::default();
            *host.headers.borrow_mut() = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            host
        }

        fn names(&self) -> Vec<String> {
            self.headers
                .borrow()
                .iter()
                .map(|(k, _)| k.clone())
                .collect()
        }
    }

    impl RequestHost for FakeHost {
        fn read_headers(&self) -> Vec<(String, Vec<u8>)> {
            self.headers.borrow().clone()
        }
        fn replace_headers(&self, headers: &[Header<'_>]) {
            self.sets.set(self.sets.get() + 1);
            *self.headers.borrow_mut() = headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect();
        }
        fn add_header(&self, name: &str, value: &[u8]) {
            self.adds.set(self.adds.get() + 1);
            self.headers
                .borrow_mut()
                .push((name.to_string(), value.to_vec()));
        }
        fn remove_header(&self, name: &str) {
            self.removes.set(self.removes.get() + 1);
            self.headers
                .borrow_mut()
                .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }

    impl Host for FakeHost {
        fn now_nanos(&self) -> i128 {
            0
        }
        fn count(&self, _counter: Counter) {}
    }

    impl SharedStore for FakeHost {
        fn get(&self, _key: &str) -> Option<(Vec<u8>, u32)> {
            None
        }
        fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), revocation::SetError> {
            Err(revocation::SetError::Refused)
        }
    }

    /// A bad token: state invalid, the cookie to be cleared.
    fn is_invalid(next: RequestNext) -> bool {
        next == RequestNext::Continue {
            outcome: Core::cookie_to_clear(),
            touch: None,
        }
    }

    fn core() -> Core {
        let config = serde_json::json!({"keys": [{"id": "k1", "secret": SECRET}],
            "companion": {"cluster": "companion", "token": COMPANION_TOKEN},
            "revocation_feed": {"interval_ms": 0}});
        Core::new(Config::parse(config.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn a_request_without_cookie_gets_its_state_in_one_add() {
        let host = FakeHost::with(&[(":path", "/"), ("accept", "*/*")]);
        assert!(matches!(
            core().handle_request(&host),
            RequestNext::Continue { .. }
        ));
        assert_eq!((host.adds.get(), host.sets.get()), (1, 0));
        assert_eq!(host.names(), [":path", "accept", "x-session-state"]);
    }

    #[test]
    fn spoofed_headers_and_the_session_cookie_go_in_one_set() {
        let host = FakeHost::with(&[
            (":path", "/"),
            ("x-session-user", "admin"),
            ("cookie", "theme=dark; sid=k1.bad.token"),
            ("X-Session-Data", "{}"),
        ]);
        assert!(is_invalid(core().handle_request(&host)));
        assert_eq!((host.adds.get(), host.sets.get()), (0, 1));
        assert_eq!(host.names(), [":path", "cookie", "x-session-state"]);
        assert_eq!(host.headers.borrow()[1].1, b"theme=dark");
        assert_eq!(host.headers.borrow()[2].1, b"invalid");
    }

    /// Past Envoy's limits a whole-map `set` would empty the map: the edits go back one
    /// header at a time, with the same result.
    #[test]
    fn huge_header_maps_are_edited_header_by_header() {
        let mut headers: Vec<(String, String)> = (0..MAX_MAP_PAIRS)
            .map(|i| (format!("x-filler-{i}"), "v".to_string()))
            .collect();
        headers.push(("X_Session_User".into(), "admin".into()));
        headers.push(("x-session-user".into(), "root".into()));
        headers.push(("cookie".into(), "theme=dark; sid=k1.bad.token".into()));
        let list: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let host = FakeHost::with(&list);
        assert!(is_invalid(core().handle_request(&host)));
        assert_eq!(host.sets.get(), 0, "no whole-map set past the limit");
        assert_eq!((host.removes.get(), host.adds.get()), (3, 2));
        let names = host.names();
        assert_eq!(names.len(), MAX_MAP_PAIRS + 2);
        assert!(
            !names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("x-session-user")
                    || n.eq_ignore_ascii_case("x_session_user"))
        );
        let kept = host.headers.borrow();
        assert_eq!(
            kept[MAX_MAP_PAIRS],
            ("cookie".into(), b"theme=dark".to_vec())
        );
        assert_eq!(
            kept[MAX_MAP_PAIRS + 1],
            ("x-session-state".into(), b"invalid".to_vec())
        );

        // Exactly at the limit (1022 fillers, cookie and state) one set takes it all; one
        // pair more goes header by header.
        let host = FakeHost::with(&list[2..]);
        core().handle_request(&host);
        assert_eq!((host.sets.get(), host.removes.get()), (1, 0));
        assert_eq!(host.names().len(), MAX_MAP_PAIRS);
        let host = FakeHost::with(&list[1..]);
        core().handle_request(&host);
        assert_eq!((host.sets.get(), host.removes.get()), (0, 3));
        assert_eq!(host.names().len(), MAX_MAP_PAIRS + 1);

        // Bytes count too: a few huge headers.
        let big = "v".repeat(MAX_MAP_BYTES / 2);
        let host = FakeHost::with(&[
            ("x-a", big.as_str()),
            ("x-b", big.as_str()),
            ("x-session-user", "admin"),
        ]);
        core().handle_request(&host);
        assert_eq!(host.sets.get(), 0);
        assert_eq!(host.names(), ["x-a", "x-b", "x-session-state"]);
    }

    #[test]
    fn a_cached_sessions_token_is_checked_once_and_a_forged_one_never_passes() {
        let core = core();
        let id = SessionId::from_bytes(&[9; 32]);
        let token = core.config.keys.sign(&id);
        let cookie = format!("sid={token}");
        let request = || FakeHost::with(&[(":path", "/"), ("cookie", cookie.as_str())]);
        let body = testkit::session(&id)
            .created_at("1970-01-01T00:00:00Z")
            .ttl_seconds(60)
            .body();
        let host = request();
        assert!(matches!(
            core.handle_request(&host),
            RequestNext::Lookup(..)
        ));
        let session = Box::new(serde_json::from_str::<Session>(&body).unwrap());
        assert!(matches!(
            core.handle_lookup(&host, &id, 0, Resolution::Found(session)),
            RequestNext::Continue {
                outcome: RequestOutcome {
                    session: Some(_),
                    ..
                },
                ..
            }
        ));
        let known = |token: &str| {
            let presented = Presented::parse(token.as_bytes()).unwrap();
            core.cache.borrow().as_ref().unwrap().knows(&id, &presented)
        };
        assert!(!known(&token), "nothing is remembered before a hit");
        assert!(matches!(
            core.handle_request(&request()),
            RequestNext::Continue {
                outcome: RequestOutcome {
                    session: Some(_),
                    ..
                },
                ..
            }
        ));
        assert!(known(&token), "the hit remembers the checked token");
        assert!(matches!(
            core.handle_request(&request()),
            RequestNext::Continue {
                outcome: RequestOutcome {
                    session: Some(_),
                    ..
                },
                ..
            }
        ));

        // The same session id with any other tag is checked in full, and refused.
        let mut forged = token.clone().into_bytes();
        let at = forged.len() - 2;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let host = FakeHost::with(&[(":path", "/"), ("cookie", &format!("sid={forged}"))]);
        assert!(is_invalid(core.handle_request(&host)));
        assert_eq!(host.headers.borrow().last().unwrap().1, b"invalid");
        assert!(
            known(&token),
            "a forgery does not displace the checked token"
        );
        assert!(matches!(
            core.handle_request(&request()),
            RequestNext::Continue {
                outcome: RequestOutcome {
                    session: Some(_),
                    ..
                },
                ..
            }
        ));
    }
}
