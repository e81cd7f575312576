//! One HTTP stream: the request path of DESIGN.md section 2 (`request`) and the response path
//! of section 3 (`response`). Moves data between Envoy and the pure core; decides nothing
//! itself.

mod request;
mod response;

use crate::revocation::{Sequence, SetError, SharedStore};
use crate::root::Filter;
use proto::{PatchSession, SessionId};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Status};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

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
    /// A lookup, sent at revocation `sequence`.
    Read {
        token: u32,
        id: SessionId,
        sequence: Sequence,
    },
    Write {
        token: u32,
        step: WriteStep,
    },
}

pub struct SessionStream {
    filter: Rc<Filter>,
    pending: Option<Pending>,
    /// The session the app's writes go to: the valid one the request carried, or the one its
    /// verified cookie names when the store could not answer (fail_open). Never a new session
    /// in its place: that would log the user out over a passing outage.
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

    /// The 503 the filter answers when the session store fails a read (`fail_closed`) or a
    /// write (`fail`).
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
}

/// The revocation table's shared data, as proxy-wasm host calls.
impl SharedStore for SessionStream {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match self.get_shared_data(key) {
            (Some(value), cas) => Some((value, cas.unwrap_or(0))),
            (None, _) => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let cas = (cas != 0).then_some(cas);
        self.set_shared_data(key, Some(value), cas)
            .map_err(|status| match status {
                Status::CasMismatch => SetError::CasMismatch,
                _ => SetError::Refused,
            })
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
            Some(Pending::Read { id, sequence, .. }) => {
                self.read_response(&filter, (id, sequence), status, &body)
            }
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

    /// Request trailers reach the app too (gRPC, chunked uploads): a client must not forge
    /// session headers there either, in any spelling.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let headers = &self.filter.config.headers;
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
        let headers = &self.filter.config.headers;
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
