//! The response path (DESIGN.md section 3): control headers applied through the companion
//! while the response waits, then the cookie and the cache headers.

use super::{Pending, SessionStream, WriteStep};
use crate::caching;
use crate::config::WriteErrorPolicy;
use crate::control::{self, WritePlan};
use crate::metrics::Counter;
use crate::revocation::{self, RevocationTag};
use crate::root::Filter;
use proto::{Session, SessionId};
use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::Action;

impl SessionStream {
    pub(super) fn response_headers(&mut self, filter: &Filter) -> Action {
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
                self.finish_response_headers(filter, Some(&headers));
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
                self.finish_response_headers(filter, None);
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

    pub(super) fn write_response(
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

    /// Drops the local copy and tells the other workers (docs/architecture.md, "Revocation").
    fn announce_change(&self, filter: &Filter, id: &SessionId) {
        if let Some(cache) = filter.cache.borrow_mut().as_mut() {
            cache.remove(id);
        }
        if let Err(err) = revocation::announce(self, &RevocationTag::of(id)) {
            filter.count(Counter::RevocationFailed);
            log::error!(
                "edge-session: session #{}: change not announced to other workers ({err}); \
                 their cached copies live up to cache.ttl_ms",
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
        self.finish_response_headers(filter, None);
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
                self.finish_response_headers(filter, None);
                if paused {
                    self.resume_http_response();
                }
                Action::Continue
            }
            WriteErrorPolicy::Fail => {
                self.send_store_unavailable();
                Action::Pause
            }
        }
    }

    /// `write_failed` from a callout callback, where the stream is resumed or answered there.
    fn write_failed_in_callout(&mut self, filter: &Filter) {
        let _ = self.write_failed(filter, true);
    }

    /// The headers a session decision calls for on the response. `known`: the response
    /// headers as already read in this callback (the common path reads them only once);
    /// `None` reads them now, after a write the response waited for.
    fn finish_response_headers(&mut self, filter: &Filter, known: Option<&[(String, Vec<u8>)]>) {
        let cookie_written = self.set_cookie.is_some() || self.clear_cookie;
        if let Some(set_cookie) = self.set_cookie.take() {
            self.add_http_response_header("set-cookie", &set_cookie);
        } else if self.clear_cookie {
            self.add_http_response_header("set-cookie", filter.config.cookie.clear_header());
        }
        if !self.session_dependent {
            return;
        }
        let read;
        let headers = match known {
            Some(headers) => headers,
            None => {
                read = self.get_http_response_headers_bytes();
                &read
            }
        };
        let values = |wanted: &str| -> Vec<&[u8]> {
            headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.as_slice())
                .collect()
        };
        if !caching::varies_by_cookie(values("vary")) {
            self.add_http_response_header("vary", "Cookie");
        }
        let app_cache_control = values("cache-control");
        if let Some(value) = caching::cache_control(&app_cache_control, cookie_written) {
            if !app_cache_control.is_empty() {
                self.set_http_response_header("cache-control", None);
            }
            self.add_http_response_header("cache-control", &value);
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // The wire types serialize to JSON without fail.
    serde_json::to_vec(value).unwrap_or_default()
}
