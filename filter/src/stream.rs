//! One HTTP stream: the request path of DESIGN.md section 2 and the response path of
//! section 3. Moves data between Envoy and the pure core; decides nothing itself.

use crate::cache::Resolved;
use crate::config::{StoreErrorPolicy, WriteErrorPolicy};
use crate::control::{self, WritePlan};
use crate::cookie;
use crate::inject::{self, Injection};
use crate::metrics::Counter;
use crate::resolve::{self, Resolution};
use crate::revocation::RevocationTag;
use crate::root::Filter;
use proto::{PatchSession, Session, SessionId};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

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

/// A write to the companion in flight, and what follows it.
enum WriteStep {
    Create,
    /// The old id; then the changes to apply on the new one.
    Cycle {
        old: SessionId,
        then: Option<PatchSession>,
    },
    /// `reissue`: the cookie must be sent again (new id, or new expiry).
    Patch {
        id: SessionId,
        reissue: bool,
    },
    Flush {
        id: SessionId,
    },
}

/// The callout this stream waits for.
enum Pending {
    Read { token: u32, id: SessionId },
    Write { token: u32, step: WriteStep },
}

pub struct SessionStream {
    filter: Rc<Filter>,
    pending: Option<Pending>,
    /// The valid session the request carried.
    session: Option<SessionId>,
    /// The response must delete the cookie (bad token, gone session, logout).
    clear_cookie: bool,
    /// A cookie a write issued.
    set_cookie: Option<String>,
    /// The response depends on the session: shared caches must not serve it to others.
    session_dependent: bool,
}

impl SessionStream {
    pub fn new(filter: Rc<Filter>) -> Self {
        Self {
            filter,
            pending: None,
            session: None,
            clear_cookie: false,
            set_cookie: None,
            session_dependent: false,
        }
    }

    fn now_nanos(&self) -> i128 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    }

    // ----- request path ---------------------------------------------------------------------

    /// Continues without a session: reports the state, counts it, and for a cookie that is no
    /// good, deletes it on the response.
    fn without_session(&mut self, filter: &Filter, state: State) {
        filter.count(state.counter());
        self.add_http_request_header(&filter.config.headers.state, state.as_str());
        if matches!(state, State::Invalid | State::Expired) {
            self.clear_cookie = true;
            self.session_dependent = true;
        }
    }

    fn inject(&mut self, filter: &Filter, resolved: &Resolved) {
        filter.count(Counter::Valid);
        let Injection { headers, omitted } = &resolved.injection;
        for (name, value) in headers {
            self.add_http_request_header(name, value);
        }
        for name in omitted {
            filter.count(Counter::HeaderOmitted);
            log::warn!(
                "edge-session: session #{}: {name} not injected, its value is over max_header_bytes ({})",
                resolved.id.short_hash(),
                filter.config.max_header_bytes
            );
        }
        self.session = Some(resolved.id.clone());
        self.session_dependent = true;
        self.slide(filter, resolved);
    }

    /// Sliding expiry: past half its lifetime, a session is touched without pausing anything.
    /// The local copy is dropped so the next request sees the new expiry.
    fn slide(&mut self, filter: &Filter, resolved: &Resolved) {
        let half_life = i128::from(resolved.ttl_seconds) * 500_000_000;
        if !filter.config.sliding || self.now_nanos() < resolved.expires_at_nanos - half_life {
            return;
        }
        let body = serde_json::to_vec(&PatchSession {
            touch: true,
            ..Default::default()
        })
        .unwrap_or_default();
        let path = format!("/v1/sessions/{}", resolved.id.as_str());
        if self
            .companion_call(filter, "PATCH", &path, Some(&body))
            .is_err()
        {
            filter.count(Counter::CalloutError);
        }
        if let Some(cache) = filter.cache.borrow_mut().as_mut() {
            cache.remove(&resolved.id);
        }
    }

    /// The store could not answer a read: the configured policy decides.
    fn store_unavailable(&mut self, filter: &Filter) -> Action {
        match filter.config.on_store_error {
            StoreErrorPolicy::FailOpen => {
                self.without_session(filter, State::Unavailable);
                Action::Continue
            }
            StoreErrorPolicy::FailClosed => {
                filter.count(Counter::Unavailable);
                self.send_http_response(
                    503,
                    vec![
                        ("content-type", "text/plain"),
                        ("cache-control", "no-store"),
                    ],
                    Some(b"session store unavailable\n"),
                );
                Action::Pause
            }
        }
    }

    /// Removes spoofed session headers and returns the values of the `cookie` headers.
    fn strip_reserved_headers(&self, filter: &Filter) -> Vec<Vec<u8>> {
        let mut cookies = Vec::new();
        let mut reserved: Vec<String> = Vec::new();
        for (name, value) in self.get_http_request_headers_bytes() {
            if name.eq_ignore_ascii_case("cookie") {
                cookies.push(value);
            } else if filter.config.headers.is_reserved(&name) && !reserved.contains(&name) {
                reserved.push(name);
            }
        }
        for name in reserved {
            self.set_http_request_header(&name, None);
        }
        cookies
    }

    /// Rewrites the `cookie` headers without the session cookie (DESIGN.md section 2 step 7).
    fn drop_session_cookie(&self, filter: &Filter, cookies: &[Vec<u8>]) {
        let name = filter.config.cookie.name();
        self.set_http_request_header("cookie", None);
        for header in cookies {
            if let Some(rest) = cookie::without(header, name) {
                self.add_http_request_header_bytes("cookie", &rest);
            }
        }
    }

    fn request_headers(&mut self, filter: &Filter) -> Action {
        let cookies = self.strip_reserved_headers(filter);
        let token = match cookie::find(
            cookies.iter().map(Vec::as_slice),
            filter.config.cookie.name(),
        ) {
            Some(token) => token.to_vec(),
            None => {
                self.without_session(filter, State::None);
                return Action::Continue;
            }
        };
        if !filter.config.forward_cookie {
            self.drop_session_cookie(filter, &cookies);
        }
        let id = match filter.config.keys.verify(&token) {
            Ok(id) => id,
            Err(err) => {
                log::debug!(
                    "edge-session: cookie #{} refused: {err}",
                    proto::short_hash(&token)
                );
                self.without_session(filter, State::Invalid);
                return Action::Continue;
            }
        };
        if let Some(resolved) = self.cached(filter, &id) {
            filter.count(Counter::CacheHit);
            self.inject(filter, &resolved);
            return Action::Continue;
        }
        if filter.cache.borrow().is_some() {
            filter.count(Counter::CacheMiss);
        }
        let path = format!("/v1/sessions/{}", id.as_str());
        match self.companion_call(filter, "GET", &path, None) {
            Ok(token) => {
                self.pending = Some(Pending::Read { token, id });
                Action::Pause
            }
            Err(()) => {
                filter.count(Counter::CalloutError);
                self.store_unavailable(filter)
            }
        }
    }

    /// A fresh cached copy, unless another worker announced a change since it was cached.
    fn cached(&self, filter: &Filter, id: &SessionId) -> Option<Rc<Resolved>> {
        let now = self.now_nanos();
        let (resolved, cached_at) = filter.cache.borrow_mut().as_mut()?.get(id, now)?;
        if let (Some(value), _) = self.get_shared_data(&resolved.revocation.key)
            && resolved.revocation.revokes(&value, cached_at)
        {
            if let Some(cache) = filter.cache.borrow_mut().as_mut() {
                cache.remove(id);
            }
            return None;
        }
        Some(resolved)
    }

    /// One HTTP call to the companion cluster.
    fn companion_call(
        &mut self,
        filter: &Filter,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<u32, ()> {
        let companion = &filter.config.companion;
        let mut headers = vec![
            (":method", method),
            (":path", path),
            (":authority", companion.authority.as_str()),
            ("authorization", companion.authorization.as_str()),
            ("accept", "application/json"),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.dispatch_http_call(&companion.cluster, headers, body, vec![], companion.timeout)
            .map_err(|status| {
                log::error!(
                    "edge-session: cannot call cluster {:?}: {status:?}",
                    companion.cluster
                );
            })
    }

    fn read_response(
        &mut self,
        filter: &Filter,
        id: SessionId,
        status: Option<Vec<u8>>,
        body: &[u8],
    ) {
        let now = self.now_nanos();
        match resolve::classify(status.as_deref(), body, &id, now) {
            Resolution::Found(session) => {
                let resolved = Rc::new(resolved(filter, &session));
                if let Some(cache) = filter.cache.borrow_mut().as_mut() {
                    cache.insert(resolved.clone(), now);
                }
                self.inject(filter, &resolved);
                self.resume_http_request();
            }
            Resolution::Expired => {
                log::debug!("edge-session: session #{} is gone", id.short_hash());
                self.without_session(filter, State::Expired);
                self.resume_http_request();
            }
            Resolution::Unavailable(failure) => {
                filter.count(Counter::CalloutError);
                log::warn!("edge-session: session #{}: {failure}", id.short_hash());
                if self.store_unavailable(filter) == Action::Continue {
                    self.resume_http_request();
                }
            }
        }
    }

    // ----- response path --------------------------------------------------------------------

    fn response_headers(&mut self, filter: &Filter) -> Action {
        let headers = self.get_http_response_headers_bytes();
        let config = &filter.config;
        let controls = control::parse(&config.headers, &headers, config.max_header_bytes);
        // Control headers are for the filter only: they never reach the client.
        for (name, _) in &headers {
            if config.headers.has_prefix(name) {
                self.set_http_response_header(name, None);
            }
        }
        let plan = match controls {
            Ok(Some(controls)) => {
                control::plan(controls, self.session.as_ref(), config.ttl_seconds)
            }
            Ok(None) => None,
            Err(err) => {
                filter.count(Counter::BadControl);
                log::warn!("edge-session: control header refused, session left as it was: {err}");
                None
            }
        };
        match plan {
            None => {
                self.finish_response_headers(filter);
                Action::Continue
            }
            Some(plan) => self.start_write(filter, plan),
        }
    }

    fn start_write(&mut self, filter: &Filter, plan: WritePlan) -> Action {
        let (method, path, body, step) = match plan {
            WritePlan::Flush(None) => {
                filter.count(Counter::Writes);
                self.clear_cookie = true;
                self.session_dependent = true;
                self.finish_response_headers(filter);
                return Action::Continue;
            }
            WritePlan::Flush(Some(id)) => (
                "DELETE",
                format!("/v1/sessions/{}", id.as_str()),
                None,
                WriteStep::Flush { id },
            ),
            WritePlan::Create(create) => (
                "POST",
                "/v1/sessions".to_string(),
                Some(json(&create)),
                WriteStep::Create,
            ),
            WritePlan::Cycle(old, then) => (
                "POST",
                format!("/v1/sessions/{}/cycle", old.as_str()),
                None,
                WriteStep::Cycle { old, then },
            ),
            WritePlan::Patch(id, patch) => {
                let reissue = patch.ttl_seconds.is_some() || patch.browser_session.is_some();
                (
                    "PATCH",
                    format!("/v1/sessions/{}", id.as_str()),
                    Some(json(&patch)),
                    WriteStep::Patch { id, reissue },
                )
            }
        };
        match self.companion_call(filter, method, &path, body.as_deref()) {
            Ok(token) => {
                self.pending = Some(Pending::Write { token, step });
                Action::Pause
            }
            Err(()) => self.write_failed(filter, false),
        }
    }

    fn write_response(
        &mut self,
        filter: &Filter,
        step: WriteStep,
        status: Option<u16>,
        body: &[u8],
    ) {
        let session = || serde_json::from_slice::<Session>(body).ok();
        match (step, status) {
            (WriteStep::Flush { id }, Some(204 | 404)) => {
                self.announce_change(filter, &id);
                self.clear_cookie = true;
                self.complete_write(filter);
            }
            (WriteStep::Create, Some(201)) => match session() {
                Some(created) => {
                    self.issue_cookie(filter, &created);
                    self.complete_write(filter);
                }
                None => self.write_failed_in_callout(filter),
            },
            (WriteStep::Cycle { old, then }, Some(201)) => match session() {
                Some(cycled) => {
                    self.announce_change(filter, &old);
                    self.issue_cookie(filter, &cycled);
                    match then {
                        None => self.complete_write(filter),
                        Some(patch) => {
                            let path = format!("/v1/sessions/{}", cycled.id.as_str());
                            let step = WriteStep::Patch {
                                id: cycled.id,
                                reissue: true,
                            };
                            match self.companion_call(filter, "PATCH", &path, Some(&json(&patch))) {
                                Ok(token) => self.pending = Some(Pending::Write { token, step }),
                                Err(()) => self.write_failed_in_callout(filter),
                            }
                        }
                    }
                }
                None => self.write_failed_in_callout(filter),
            },
            (WriteStep::Patch { id, reissue }, Some(200)) => match session() {
                Some(patched) => {
                    self.announce_change(filter, &id);
                    if reissue {
                        self.issue_cookie(filter, &patched);
                    }
                    self.complete_write(filter);
                }
                None => self.write_failed_in_callout(filter),
            },
            (_, status) => {
                log::warn!("edge-session: write answered {status:?}");
                self.write_failed_in_callout(filter);
            }
        }
    }

    /// Drops the local copy and tells the other workers (DESIGN.md section 7).
    fn announce_change(&self, filter: &Filter, id: &SessionId) {
        if let Some(cache) = filter.cache.borrow_mut().as_mut() {
            cache.remove(id);
        }
        let tag = RevocationTag::of(id);
        if self
            .set_shared_data(&tag.key, Some(&tag.entry(self.now_nanos())), None)
            .is_err()
        {
            log::warn!(
                "edge-session: session #{}: change not announced to other workers",
                id.short_hash()
            );
        }
    }

    /// The cookie for a stored session: its token, and `Max-Age` up to its expiry unless it is
    /// a browser session.
    fn issue_cookie(&mut self, filter: &Filter, session: &Session) {
        let config = &filter.config;
        let max_age = (!session.browser_session).then(|| {
            let left = (session.expires_at.unix_nanos() - self.now_nanos()) / 1_000_000_000;
            u64::try_from(left).unwrap_or(0).max(1)
        });
        self.set_cookie = Some(
            config
                .cookie
                .set_header(&config.keys.sign(&session.id), max_age),
        );
        self.clear_cookie = false;
        self.session_dependent = true;
    }

    fn complete_write(&mut self, filter: &Filter) {
        filter.count(Counter::Writes);
        self.finish_response_headers(filter);
        self.resume_http_response();
    }

    /// The companion failed a write: never a cookie for a session that was not stored.
    /// `pass` lets the app's response out without any cookie change; `fail` answers 503.
    fn write_failed(&mut self, filter: &Filter, paused: bool) -> Action {
        filter.count(Counter::WriteError);
        log::warn!(
            "edge-session: session write failed ({:?})",
            filter.config.on_write_error
        );
        self.set_cookie = None;
        match filter.config.on_write_error {
            WriteErrorPolicy::Pass => {
                self.finish_response_headers(filter);
                if paused {
                    self.resume_http_response();
                }
                Action::Continue
            }
            WriteErrorPolicy::Fail => {
                self.send_http_response(
                    503,
                    vec![
                        ("content-type", "text/plain"),
                        ("cache-control", "no-store"),
                    ],
                    Some(b"session store unavailable\n"),
                );
                Action::Pause
            }
        }
    }

    /// `write_failed` from a callout callback, where the stream is resumed or answered there.
    fn write_failed_in_callout(&mut self, filter: &Filter) {
        let _ = self.write_failed(filter, true);
    }

    /// The headers a session decision calls for on the response.
    fn finish_response_headers(&mut self, filter: &Filter) {
        if let Some(set_cookie) = self.set_cookie.take() {
            self.add_http_response_header("set-cookie", &set_cookie);
        } else if self.clear_cookie {
            self.add_http_response_header("set-cookie", filter.config.cookie.clear_header());
        }
        if !self.session_dependent {
            return;
        }
        let headers = self.get_http_response_headers_bytes();
        let varies = headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("vary")
                && value.split(|b| *b == b',').any(|v| {
                    let v = v.trim_ascii();
                    v == b"*" || v.eq_ignore_ascii_case(b"cookie")
                })
        });
        if !varies {
            self.add_http_response_header("vary", "Cookie");
        }
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
        {
            self.add_http_response_header("cache-control", "private");
        }
    }
}

/// What to inject and cache for a session the companion returned.
fn resolved(filter: &Filter, session: &Session) -> Resolved {
    let config = &filter.config;
    Resolved {
        injection: inject::for_session(&config.headers, session, config.max_header_bytes),
        expires_at_nanos: session.expires_at.unix_nanos(),
        ttl_seconds: session.ttl_seconds,
        revocation: RevocationTag::of(&session.id),
        id: session.id.clone(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // The wire types serialize to JSON without fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Context for SessionStream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let filter = self.filter.clone();
        let matches = match &self.pending {
            Some(Pending::Read { token: t, .. } | Pending::Write { token: t, .. }) => *t == token,
            None => false,
        };
        if !matches {
            // A sliding-expiry touch, answered: nothing waits for it.
            return;
        }
        // With no headers the call failed and Envoy holds no reply maps: reading them would trap.
        let (status, body) = if num_headers == 0 {
            (None, Vec::new())
        } else {
            (
                self.get_http_call_response_header_bytes(":status"),
                self.get_http_call_response_body(0, body_size)
                    .unwrap_or_default(),
            )
        };
        match self.pending.take() {
            Some(Pending::Read { id, .. }) => self.read_response(&filter, id, status, &body),
            Some(Pending::Write { step, .. }) => {
                let code = status
                    .as_deref()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse().ok());
                self.write_response(&filter, step, code, &body);
            }
            None => {}
        }
    }
}

impl HttpContext for SessionStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let filter = self.filter.clone();
        self.request_headers(&filter)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let filter = self.filter.clone();
        self.response_headers(&filter)
    }
}

/// A stream on a plugin without a configuration. Envoy never creates one (it refuses the
/// plugin first), but if it did, nothing unchecked may reach the app: answer 503.
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        log::error!("edge-session: stream on an unconfigured plugin refused");
        self.send_http_response(
            503,
            vec![("content-type", "text/plain")],
            Some(b"session filter not configured\n"),
        );
        Action::Pause
    }
}
