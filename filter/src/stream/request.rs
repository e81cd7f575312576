//! The request path (DESIGN.md section 2): strip spoofed headers, verify the cookie, serve the
//! session from the cache or the companion, inject it.

use super::{Pending, SessionStream};
use crate::cache::Resolved;
use crate::config::StoreErrorPolicy;
use crate::metrics::Counter;
use crate::request_path::{Header, Lookup, Reply, RequestHost, State};
use crate::revocation::Sequence;
use crate::root::Filter;
use proto::{PatchSession, SessionId};
use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::Action;

/// The request path's host operations, as proxy-wasm host calls.
impl RequestHost for SessionStream {
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.get_http_request_headers_bytes()
    }

    fn set_request_headers(&self, headers: &[Header<'_>]) {
        self.set_http_request_headers_bytes(
            headers
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_ref()))
                .collect(),
        );
    }

    fn add_request_header(&self, name: &str, value: &[u8]) {
        self.add_http_request_header_bytes(name, value);
    }

    fn remove_request_header(&self, name: &str) {
        self.set_http_request_header(name, None);
    }

    fn now_nanos(&self) -> i128 {
        SessionStream::now_nanos(self)
    }

    fn count(&self, counter: Counter) {
        self.filter.count(counter);
    }
}

impl SessionStream {
    /// The cookie is no good (bad token, gone session): delete it on the response.
    fn clear_bad_cookie(&mut self) {
        self.clear_cookie = true;
        self.session_dependent = true;
    }

    /// A valid session was injected: remember it for the response path.
    fn with_session(&mut self, filter: &Filter, resolved: &Resolved) {
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
                filter.report_now(self, State::Unavailable);
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

    pub(super) fn request_headers(&mut self, filter: &Filter) -> Action {
        let (id, sequence) = match filter.request_headers(self) {
            Lookup::NoCookie => return Action::Continue,
            Lookup::Invalid => {
                self.clear_bad_cookie();
                return Action::Continue;
            }
            Lookup::Ambiguous => {
                self.session_dependent = true;
                return Action::Continue;
            }
            Lookup::Hit(resolved) => {
                self.with_session(filter, &resolved);
                return Action::Continue;
            }
            Lookup::Miss(id, sequence) => (id, sequence),
        };
        let path = format!("/v1/sessions/{}", id.as_str());
        match self.companion_call(filter, "GET", &path, None) {
            Ok(token) => {
                self.pending = Some(Pending::Read {
                    token,
                    id,
                    sequence,
                });
                Action::Pause
            }
            Err(()) => {
                filter.count(Counter::CalloutError);
                self.store_unavailable(filter, &id)
            }
        }
    }

    pub(super) fn read_response(
        &mut self,
        filter: &Filter,
        (id, sequence): (SessionId, Sequence),
        status: Option<Vec<u8>>,
        body: &[u8],
    ) {
        match filter.read_reply(self, &id, sequence, status.as_deref(), body) {
            Reply::Found(resolved) => {
                self.with_session(filter, &resolved);
                self.resume_http_request();
            }
            Reply::Expired => {
                self.clear_bad_cookie();
                self.resume_http_request();
            }
            Reply::Unavailable(_) => {
                if self.store_unavailable(filter, &id) == Action::Continue {
                    self.resume_http_request();
                }
            }
        }
    }
}
