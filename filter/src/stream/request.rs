//! The request path (DESIGN.md section 2): strip spoofed headers, verify the cookie, serve the
//! session from the cache or the companion, inject it.

use super::{Pending, SessionStream};
use crate::cache::Resolved;
use crate::config::StoreErrorPolicy;
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

impl SessionStream {
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

    /// The store could not answer a read of the cookie's session `id`: the configured policy
    /// decides. Under fail_open the app gets no session, but its writes still go to `id`.
    fn store_unavailable(&mut self, filter: &Filter, id: &SessionId) -> Action {
        match filter.config.on_store_error {
            StoreErrorPolicy::FailOpen => {
                self.without_session(filter, State::Unavailable);
                self.session = Some(id.clone());
                Action::Continue
            }
            StoreErrorPolicy::FailClosed => {
                filter.count(Counter::Unavailable);
                self.send_store_unavailable();
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

    pub(super) fn request_headers(&mut self, filter: &Filter) -> Action {
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
                self.store_unavailable(filter, &id)
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

    pub(super) fn read_response(
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
                if self.store_unavailable(filter, &id) == Action::Continue {
                    self.resume_http_request();
                }
            }
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
