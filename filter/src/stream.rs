//! One HTTP stream: the request path of DESIGN.md section 2, and the response headers a session
//! decision calls for. Moves data between Envoy and the pure core; decides nothing itself.

use crate::cache::Resolved;
use crate::config::StoreErrorPolicy;
use crate::cookie;
use crate::inject::{self, Injection};
use crate::metrics::Counter;
use crate::resolve::{self, Resolution};
use crate::root::Filter;
use proto::SessionId;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

/// The session states the filter reports upstream.
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

/// The callout in flight for this stream.
struct Pending {
    token: u32,
    id: SessionId,
}

pub struct SessionStream {
    filter: Rc<Filter>,
    pending: Option<Pending>,
    /// The response must delete the cookie (bad token, or the session is gone).
    clear_cookie: bool,
    /// The response depends on the session: shared caches must not serve it to others.
    session_dependent: bool,
}

impl SessionStream {
    pub fn new(filter: Rc<Filter>) -> Self {
        Self {
            filter,
            pending: None,
            clear_cookie: false,
            session_dependent: false,
        }
    }

    fn now_nanos(&self) -> i128 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    }

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
        self.session_dependent = true;
    }

    /// The store could not answer: the configured policy decides.
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
        let now = self.now_nanos();
        let cached = filter
            .cache
            .borrow_mut()
            .as_mut()
            .and_then(|cache| cache.get(&id, now));
        if let Some(resolved) = cached {
            filter.count(Counter::CacheHit);
            self.inject(filter, &resolved);
            return Action::Continue;
        }
        if filter.cache.borrow().is_some() {
            filter.count(Counter::CacheMiss);
        }
        self.dispatch(filter, id)
    }

    fn dispatch(&mut self, filter: &Filter, id: SessionId) -> Action {
        let companion = &filter.config.companion;
        let path = format!("/v1/sessions/{}", id.as_str());
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", companion.authority.as_str()),
            ("authorization", companion.authorization.as_str()),
            ("accept", "application/json"),
        ];
        match self.dispatch_http_call(&companion.cluster, headers, None, vec![], companion.timeout)
        {
            Ok(token) => {
                self.pending = Some(Pending { token, id });
                Action::Pause
            }
            Err(status) => {
                filter.count(Counter::CalloutError);
                log::error!(
                    "edge-session: session #{}: cannot call cluster {:?}: {status:?}",
                    id.short_hash(),
                    companion.cluster
                );
                self.store_unavailable(filter)
            }
        }
    }

    fn call_response(
        &mut self,
        filter: &Filter,
        pending: Pending,
        num_headers: usize,
        body_size: usize,
    ) {
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
        let now = self.now_nanos();
        match resolve::classify(status.as_deref(), &body, &pending.id, now) {
            Resolution::Found(session) => {
                let config = &filter.config;
                let resolved = Rc::new(Resolved {
                    injection: inject::for_session(
                        &config.headers,
                        &session,
                        config.max_header_bytes,
                    ),
                    expires_at_nanos: session.expires_at.unix_nanos(),
                    id: pending.id,
                });
                if let Some(cache) = filter.cache.borrow_mut().as_mut() {
                    cache.insert(resolved.clone(), now);
                }
                self.inject(filter, &resolved);
                self.resume_http_request();
            }
            Resolution::Expired => {
                log::debug!("edge-session: session #{} is gone", pending.id.short_hash());
                self.without_session(filter, State::Expired);
                self.resume_http_request();
            }
            Resolution::Unavailable(failure) => {
                filter.count(Counter::CalloutError);
                log::warn!(
                    "edge-session: session #{}: {failure}",
                    pending.id.short_hash()
                );
                if self.store_unavailable(filter) == Action::Continue {
                    self.resume_http_request();
                }
            }
        }
    }

    /// The headers a session decision calls for on the response.
    fn response_headers(&mut self, filter: &Filter) {
        let headers = self.get_http_response_headers_bytes();
        // Control headers are for the filter only: never let them reach the client.
        for (name, _) in &headers {
            if filter.config.headers.has_prefix(name) {
                self.set_http_response_header(name, None);
            }
        }
        if self.clear_cookie {
            self.add_http_response_header("set-cookie", filter.config.cookie.clear_header());
        }
        if self.session_dependent {
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
        match self.pending.take() {
            Some(pending) if pending.token == token => {
                self.call_response(&filter, pending, num_headers, body_size)
            }
            other => self.pending = other,
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
        self.response_headers(&filter);
        Action::Continue
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
