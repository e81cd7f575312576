//! One HTTP stream: proxy-wasm's callbacks in, the core's decisions out. It reads headers and
//! replies, makes the store's calls on the companion cluster, and applies what the request
//! path (`crate::request`) and the response path (`crate::response`) decide; it decides
//! nothing itself.

use super::root::Filter;
use crate::core::Host;
use crate::listing;
use crate::metrics::Counter;
use crate::request::{Header, RequestHost, RequestNext, RequestOutcome};
use crate::response::{FinalHeaders, ResponseNext, ResponseWrite};
use crate::revocation::{Sequence, SetError, SharedStore};
use crate::store::companion::{self, Client, HttpCall};
use crate::store::cookie_session;
use crate::store::{Failure, StoreOp, WriteOutcome};
use proto::{Session, SessionId};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

/// The store call this stream waits for.
enum Waiting {
    /// A lookup of the cookie's session, sent at revocation `sequence`.
    Lookup {
        token: u32,
        id: SessionId,
        sequence: Sequence,
    },
    /// The user's list of sessions, for the listing route; the request waits.
    List { token: u32 },
    /// A write the response waits for.
    Write {
        token: u32,
        write: Box<ResponseWrite>,
    },
    /// The cookie store: a revocation sent to the companion's feed, and the write's outcome,
    /// which the response continues with once it is answered.
    Announce {
        token: u32,
        write: Box<ResponseWrite>,
        outcome: WriteOutcome,
    },
}

pub struct SessionStream {
    filter: Rc<Filter>,
    waiting: Option<Waiting>,
    /// What the request path left for the response.
    outcome: RequestOutcome,
    /// The sliding-expiry touch in flight: its call token and session.
    touch: Option<(u32, SessionId)>,
    /// The response headers arrived while the touch was in flight, and wait for it.
    response_waits: bool,
    /// The request's `User-Agent`, taken when the request headers are read (every host lets
    /// a filter read them then; not every one once the response has started), for a create
    /// or a cycle.
    user_agent: RefCell<Option<Vec<u8>>>,
    /// The time as read in the current callback (`None`: not read yet in this one).
    now: Cell<Option<i128>>,
    /// The cookie store's side of the response's writes: the session as the last write left
    /// it (the request's, at first).
    cookie_session: Option<Box<Session>>,
}

impl SessionStream {
    pub fn new(filter: Rc<Filter>) -> Self {
        Self {
            filter,
            waiting: None,
            outcome: RequestOutcome::default(),
            touch: None,
            response_waits: false,
            user_agent: RefCell::new(None),
            now: Cell::new(None),
            cookie_session: None,
        }
    }

    /// The 503 the filter answers when the store fails a read (`fail_closed`) or a write
    /// (`fail`).
    fn send_store_unavailable(&self) {
        self.send_http_response(
            503,
            vec![
                ("content-type", "text/plain"),
                ("cache-control", "no-store"),
            ],
            Some(b"session store unavailable\n"),
        );
    }

    /// One HTTP call to the companion cluster; `None` when Envoy refused to send it.
    fn call(&self, call: &HttpCall) -> Option<u32> {
        // Only a cookie-store configuration may have no companion, and it calls none.
        let companion = self.filter.core.config.companion.as_ref()?;
        super::dispatch(self, companion, call)
    }

    /// Does what the request path decided. `in_callback`: the request is paused, waiting on
    /// a lookup, and goes on from here.
    fn follow_request(&mut self, mut next: RequestNext, in_callback: bool) -> Action {
        loop {
            match next {
                RequestNext::Continue { outcome, touch } => {
                    self.go_on(outcome, touch);
                    if in_callback {
                        self.resume_http_request();
                    }
                    return Action::Continue;
                }
                RequestNext::List { outcome, touch } => {
                    let user = outcome.resolved.as_ref().and_then(|r| r.user.clone());
                    self.go_on(outcome, touch);
                    match user.and_then(|user| self.call(&listing::call(&user))) {
                        Some(token) => {
                            self.waiting = Some(Waiting::List { token });
                            return Action::Pause;
                        }
                        None => {
                            self.listed(Err(Failure::CallFailed));
                            if in_callback {
                                self.resume_http_request();
                            }
                            return Action::Continue;
                        }
                    }
                }
                RequestNext::Lookup(id, sequence) => match self.call(&companion::read_call(&id)) {
                    Some(token) => {
                        self.waiting = Some(Waiting::Lookup {
                            token,
                            id,
                            sequence,
                        });
                        return Action::Pause;
                    }
                    None => next = self.filter.clone().core.lookup_not_sent(self, &id),
                },
                RequestNext::Unavailable => {
                    self.send_store_unavailable();
                    return Action::Pause;
                }
            }
        }
    }

    /// The request goes on with `outcome`; a sliding-expiry touch is sent without waiting.
    fn go_on(&mut self, outcome: RequestOutcome, touch: Option<SessionId>) {
        self.outcome = outcome;
        if let Some(id) = touch {
            match self.call(&companion::touch_call(&id)) {
                Some(token) => self.touch = Some((token, id)),
                None => self.count(Counter::CalloutError),
            }
        }
    }

    /// Injects the user's list of sessions, or says it could not be read.
    fn listed(&self, value: Result<String, Failure>) {
        let headers = &self.filter.core.config.headers;
        let value = value.unwrap_or_else(|failure| {
            self.count(Counter::ListFailed);
            log::warn!("edge-session: the user's sessions could not be listed ({failure})");
            listing::UNAVAILABLE.to_string()
        });
        self.add_http_request_header(&headers.list, &value);
    }

    /// Does what the response path decided. `in_callback`: the response is paused, waiting
    /// on a write, and goes on from here.
    fn follow_response(
        &mut self,
        mut write: ResponseWrite,
        mut next: ResponseNext,
        in_callback: bool,
    ) -> Action {
        loop {
            match next {
                ResponseNext::Store(op) if self.filter.core.config.store.is_cookie() => {
                    let filter = self.filter.clone();
                    let mut current = self.cookie_session.take();
                    let (outcome, revoked) =
                        cookie_session::write(self, &filter.core.config, &mut current, &op);
                    self.cookie_session = current;
                    if let Some(revoked) = revoked {
                        match self.call(&cookie_session::revoke_call(&revoked)) {
                            Some(token) => {
                                self.waiting = Some(Waiting::Announce {
                                    token,
                                    write: Box::new(write),
                                    outcome,
                                });
                                return Action::Pause;
                            }
                            None => self.count(Counter::RevocationPostFailed),
                        }
                    }
                    next = filter.core.continue_response(self, &mut write, outcome);
                }
                ResponseNext::Store(op) => {
                    match self.call(&companion::write_call(&op, &self.client(&op))) {
                        Some(token) => {
                            self.waiting = Some(Waiting::Write {
                                token,
                                write: Box::new(write),
                            });
                            return Action::Pause;
                        }
                        None => {
                            let failed = WriteOutcome::Failed(Failure::CallFailed);
                            next = self
                                .filter
                                .clone()
                                .core
                                .continue_response(self, &mut write, failed);
                        }
                    }
                }
                ResponseNext::Finish(headers) => {
                    self.add_final_headers(headers);
                    if in_callback {
                        self.resume_http_response();
                    }
                    return Action::Continue;
                }
                ResponseNext::Unavailable => {
                    self.send_store_unavailable();
                    return Action::Pause;
                }
            }
        }
    }

    /// The response path, from the response headers on. `in_callback`: the response is
    /// paused (it waited for the touch's answer) and goes on from here.
    fn start_response(&mut self, in_callback: bool) -> Action {
        let filter = self.filter.clone();
        let headers = self.get_http_response_headers_bytes();
        self.cookie_session = self.outcome.cookie_session.clone();
        let start = filter.core.start_response(self, &self.outcome, &headers);
        // Control headers are for the filter only: they never reach the client.
        for name in &start.remove {
            self.set_http_response_header(name, None);
        }
        self.follow_response(start.write, start.next, in_callback)
    }

    /// Who the client is, for the writes that keep it (a create, a cycle).
    fn client(&self, op: &StoreOp) -> Client {
        if !matches!(op, StoreOp::Create(_) | StoreOp::Cycle(_)) {
            return Client::default();
        }
        Client {
            user_agent: self.user_agent.borrow().as_deref().map(Client::user_agent),
            address: self
                .get_property(vec!["source", "address"])
                .and_then(|raw| Client::address(&raw)),
        }
    }

    fn add_final_headers(&self, headers: FinalHeaders) {
        if let Some(cookie) = &headers.set_cookie {
            self.add_http_response_header("set-cookie", cookie);
        }
        if headers.vary_cookie {
            self.add_http_response_header("vary", "Cookie");
        }
        if let Some(cache_control) = &headers.cache_control {
            // Replaces every value the app set with this one.
            self.set_http_response_header("cache-control", Some(cache_control));
        }
    }
}

/// The core's host operations, as proxy-wasm host calls.
impl Host for SessionStream {
    /// Read from the host once per callback: the request and response paths ask for the time
    /// several times within one, and a host call crosses the VM boundary each time.
    fn now_nanos(&self) -> i128 {
        if let Some(now) = self.now.get() {
            return now;
        }
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.now.set(Some(now));
        now
    }

    fn count(&self, counter: Counter) {
        self.filter.count(counter);
    }

    fn request_id(&self) -> Vec<u8> {
        self.get_property(vec!["request", "id"]).unwrap_or_default()
    }
}

impl RequestHost for SessionStream {
    fn read_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.get_http_request_headers_bytes()
    }

    fn keep_user_agent(&self, value: Vec<u8>) {
        *self.user_agent.borrow_mut() = Some(value);
    }

    fn replace_headers(&self, headers: &[Header<'_>]) {
        self.set_http_request_headers_bytes(
            headers
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_ref()))
                .collect(),
        );
    }

    fn add_header(&self, name: &str, value: &[u8]) {
        self.add_http_request_header_bytes(name, value);
    }

    fn remove_header(&self, name: &str) {
        self.set_http_request_header(name, None);
    }
}

/// The revocation table's shared data.
impl SharedStore for SessionStream {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        super::shared_get(self, key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        super::shared_set(self, key, value, cas)
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
        self.now.set(None);
        let is_touch = self.touch.as_ref().is_some_and(|(t, _)| *t == token);
        let matches = match &self.waiting {
            Some(
                Waiting::Lookup { token: t, .. }
                | Waiting::Write { token: t, .. }
                | Waiting::List { token: t }
                | Waiting::Announce { token: t, .. },
            ) => *t == token,
            None => false,
        };
        if !matches && !is_touch {
            return;
        }
        let (status, body) = super::call_reply(self, num_headers, body_size);
        let filter = self.filter.clone();
        let core = &filter.core;
        if let Some((_, id)) = self.touch.take().filter(|_| is_touch) {
            let answer = companion::resolution(status.as_deref(), &body, &id, self.now_nanos());
            let mut outcome = std::mem::take(&mut self.outcome);
            core.touch_answered(self, &mut outcome, answer);
            self.outcome = outcome;
            if std::mem::take(&mut self.response_waits) {
                self.start_response(true);
            }
            return;
        }
        match self.waiting.take() {
            Some(Waiting::Lookup { id, sequence, .. }) => {
                let answer = companion::resolution(status.as_deref(), &body, &id, self.now_nanos());
                let next = core.handle_lookup(self, &id, sequence, answer);
                self.follow_request(next, true);
            }
            Some(Waiting::List { .. }) => {
                let value = match (&self.outcome.resolved, &core.config.session_list) {
                    (Some(resolved), Some(list)) => listing::header_value(
                        status.as_deref(),
                        &body,
                        &resolved.handle,
                        list.max_bytes,
                    ),
                    _ => Err(Failure::CallFailed),
                };
                self.listed(value);
                self.resume_http_request();
            }
            Some(Waiting::Write { mut write, .. }) => {
                let outcome = match write.pending_op() {
                    Some(op) => companion::write_outcome(op, status.as_deref(), &body),
                    None => WriteOutcome::Failed(Failure::CallFailed),
                };
                let next = core.continue_response(self, &mut write, outcome);
                self.follow_response(*write, next, true);
            }
            Some(Waiting::Announce {
                mut write, outcome, ..
            }) => {
                // Recorded on this proxy already: a companion that did not take it only
                // keeps other proxies from hearing of it (counted, and the logout goes on).
                if !cookie_session::revocation_recorded(status.as_deref()) {
                    self.count(Counter::RevocationPostFailed);
                    log::warn!(
                        "edge-session: the companion did not record a cookie session's \
                         revocation: other proxies accept its cookie until it expires"
                    );
                }
                let next = core.continue_response(self, &mut write, outcome);
                self.follow_response(*write, next, true);
            }
            None => {}
        }
    }
}

impl HttpContext for SessionStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.now.set(None);
        let filter = self.filter.clone();
        let next = filter.core.handle_request(self);
        self.follow_request(next, false)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.now.set(None);
        if self.touch.is_some() && self.filter.core.response_waits_for_touch() {
            self.response_waits = true;
            return Action::Pause;
        }
        self.start_response(false)
    }

    /// Request trailers reach the app too (gRPC, chunked uploads): a client must not forge
    /// session headers there either, in any spelling.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let headers = &self.filter.core.config.headers;
        for (name, _) in self.get_http_request_trailers_bytes() {
            if headers.is_reserved(&name) {
                self.set_http_request_trailer_bytes(&name, None);
            }
        }
        Action::Continue
    }

    /// Control headers sent as response trailers are never applied (the response has gone
    /// out by then) and never reach the client.
    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let headers = &self.filter.core.config.headers;
        for (name, _) in self.get_http_response_trailers_bytes() {
            if headers.has_prefix(&name) {
                self.set_http_response_trailer_bytes(&name, None);
            }
        }
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
