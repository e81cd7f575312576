//! The response path (docs/architecture.md, "Response path"): the app writes its session with
//! control headers; they are removed before the client, turned into store writes applied in
//! order while the response waits, and the response gets the cookie the writes call for, with
//! `Vary` and `Cache-Control`. Pure: [`Core::start_response`] and [`Core::continue_response`]
//! say what to do next, and the shell does it (the companion store makes each write one
//! callout; any store fits, since the outcome of each write is all this path reads).

use crate::caching;
use crate::config::WriteErrorPolicy;
use crate::control::{self, WritePlan};
use crate::core::{Core, Host};
use crate::metrics::Counter;
use crate::request::RequestOutcome;
use crate::revocation::{self, RevocationTag};
use crate::store::{Failure, StoreOp, WriteOutcome};
use proto::{PatchSession, Session, SessionId};

/// A response on its way: the write in flight, if any, and what the response will carry.
#[derive(Debug)]
pub struct ResponseWrite {
    /// The write the store is doing, and what follows it.
    pending: Option<Step>,
    cookie: CookieChange,
    session_dependent: bool,
    /// The app's `Vary` already covers `Cookie`.
    varies_by_cookie: bool,
    /// The app's `Cache-Control` values.
    cache_control: Vec<Vec<u8>>,
}

/// A store write and what its outcome leads to.
#[derive(Debug)]
struct Step {
    op: StoreOp,
    /// For a cycle: the changes to apply on the new id next.
    then: Option<PatchSession>,
    /// For a patch: the cookie must be issued again (new id, or new expiry).
    reissue: bool,
}

/// What the response does to the session cookie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum CookieChange {
    #[default]
    Keep,
    Set(String),
    Clear,
}

/// What the shell does next with the response.
#[derive(Debug, PartialEq)]
pub enum ResponseNext {
    /// Ask the store for this write and keep the response waiting; hand the outcome to
    /// [`Core::continue_response`].
    Store(StoreOp),
    /// The response goes on with these headers.
    Finish(FinalHeaders),
    /// Answer 503: a write failed and `on_write_error` is `fail`.
    Unavailable,
}

/// The headers the response leaves with, besides the app's own.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FinalHeaders {
    pub set_cookie: Option<String>,
    /// Add `Vary: Cookie`.
    pub vary_cookie: bool,
    /// `Cache-Control` to set in place of the app's, if any.
    pub cache_control: Option<String>,
}

/// How the response starts: the headers to remove before anything else (every control header,
/// in any spelling), the write in progress, and what to do next.
#[derive(Debug)]
pub struct ResponseStart {
    pub remove: Vec<String>,
    pub write: ResponseWrite,
    pub next: ResponseNext,
}

impl ResponseWrite {
    /// The store write in flight, to map the store's answer to an outcome.
    pub fn pending_op(&self) -> Option<&StoreOp> {
        self.pending.as_ref().map(|step| &step.op)
    }
}

impl Core {
    /// The app's response headers arrived, for a request that left `outcome`.
    pub fn start_response(
        &self,
        host: &impl Host,
        outcome: &RequestOutcome,
        headers: &[(String, Vec<u8>)],
    ) -> ResponseStart {
        let config = &self.config;
        let values = |wanted: &str| -> Vec<&[u8]> {
            headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.as_slice())
                .collect()
        };
        let mut write = ResponseWrite {
            pending: None,
            cookie: match outcome.clear_cookie {
                true => CookieChange::Clear,
                false => CookieChange::Keep,
            },
            session_dependent: outcome.session_dependent,
            varies_by_cookie: caching::varies_by_cookie(values("vary")),
            cache_control: values("cache-control")
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
        };
        let remove = headers
            .iter()
            .filter(|(name, _)| config.headers.has_prefix(name))
            .map(|(name, _)| name.clone())
            .collect();
        let plan = match control::parse(&config.headers, headers, config.max_header_bytes) {
            Ok(Some(controls)) => {
                control::plan(controls, outcome.session.as_ref(), config.ttl_seconds)
            }
            Ok(None) => None,
            Err(err) => {
                host.count(Counter::BadControl);
                log::warn!("edge-session: control header refused, session left as it was: {err}");
                None
            }
        };
        let next = match plan {
            None => ResponseNext::Finish(self.final_headers(&mut write)),
            Some(plan) => self.begin(host, &mut write, plan),
        };
        ResponseStart {
            remove,
            write,
            next,
        }
    }

    /// The store finished the write in flight.
    pub fn continue_response(
        &self,
        host: &impl Host,
        write: &mut ResponseWrite,
        outcome: WriteOutcome,
    ) -> ResponseNext {
        let Some(Step { op, then, reissue }) = write.pending.take() else {
            return self.write_failed(host, write, Failure::CallFailed);
        };
        match (op, outcome) {
            (StoreOp::Delete(id), WriteOutcome::Deleted) => {
                self.announce_change(host, &id);
                write.cookie = CookieChange::Clear;
                self.complete(host, write)
            }
            (StoreOp::Create(_), WriteOutcome::Stored(created)) => {
                self.issue_cookie(host, write, &created);
                self.complete(host, write)
            }
            (StoreOp::Cycle(old), WriteOutcome::Stored(cycled)) => {
                self.announce_change(host, &old);
                self.issue_cookie(host, write, &cycled);
                match then {
                    None => self.complete(host, write),
                    Some(patch) => self.store(
                        write,
                        Step {
                            op: StoreOp::Patch(cycled.id.clone(), patch),
                            then: None,
                            reissue: true,
                        },
                    ),
                }
            }
            (StoreOp::Patch(id, _), WriteOutcome::Stored(patched)) => {
                self.announce_change(host, &id);
                if reissue {
                    self.issue_cookie(host, write, &patched);
                }
                self.complete(host, write)
            }
            (_, WriteOutcome::Failed(failure)) => self.write_failed(host, write, failure),
            (op, outcome) => {
                log::warn!("edge-session: store answered {outcome:?} to {op:?}");
                self.write_failed(host, write, Failure::Unparsable)
            }
        }
    }

    /// The first store write of a plan (a logout without a session needs none).
    fn begin(&self, host: &impl Host, write: &mut ResponseWrite, plan: WritePlan) -> ResponseNext {
        let step = |op, then, reissue| Step { op, then, reissue };
        match plan {
            WritePlan::Flush(None) => {
                write.cookie = CookieChange::Clear;
                write.session_dependent = true;
                self.complete(host, write)
            }
            WritePlan::Flush(Some(id)) => self.store(write, step(StoreOp::Delete(id), None, false)),
            WritePlan::Create(create) => {
                self.store(write, step(StoreOp::Create(create), None, false))
            }
            WritePlan::Cycle(old, then) => {
                self.store(write, step(StoreOp::Cycle(old), then, false))
            }
            WritePlan::Patch(id, patch) => {
                let reissue = patch.ttl_seconds.is_some() || patch.browser_session.is_some();
                self.store(write, step(StoreOp::Patch(id, patch), None, reissue))
            }
        }
    }

    fn store(&self, write: &mut ResponseWrite, step: Step) -> ResponseNext {
        let op = step.op.clone();
        write.pending = Some(step);
        ResponseNext::Store(op)
    }

    /// Every write is done: the response goes on.
    fn complete(&self, host: &impl Host, write: &mut ResponseWrite) -> ResponseNext {
        host.count(Counter::Writes);
        ResponseNext::Finish(self.final_headers(write))
    }

    /// The store failed a write: never a cookie for a session that was not stored. `pass`
    /// lets the app's response out without any cookie change; `fail` answers 503.
    fn write_failed(
        &self,
        host: &impl Host,
        write: &mut ResponseWrite,
        failure: Failure,
    ) -> ResponseNext {
        host.count(Counter::WriteError);
        let policy = self.config.on_write_error;
        log::warn!("edge-session: session write failed ({failure}; {policy:?})");
        if let CookieChange::Set(_) = write.cookie {
            write.cookie = CookieChange::Keep;
        }
        match policy {
            WriteErrorPolicy::Pass => ResponseNext::Finish(self.final_headers(write)),
            WriteErrorPolicy::Fail => ResponseNext::Unavailable,
        }
    }

    /// Drops the local copy and tells the other workers (docs/architecture.md, "Revocation").
    fn announce_change(&self, host: &impl Host, id: &SessionId) {
        if let Some(cache) = self.cache.borrow_mut().as_mut() {
            cache.remove(id);
        }
        if let Err(err) = revocation::announce(host, &RevocationTag::of(id)) {
            host.count(Counter::RevocationFailed);
            log::error!(
                "edge-session: session #{}: change not announced to other workers ({err}); \
                 their cached copies live up to cache.ttl_ms",
                id.short_hash()
            );
        }
    }

    /// The cookie for a stored session: its token, and `Max-Age` up to its expiry unless it
    /// is a browser session.
    fn issue_cookie(&self, host: &impl Host, write: &mut ResponseWrite, session: &Session) {
        let config = &self.config;
        let max_age = (!session.browser_session).then(|| {
            let left = (session.expires_at.unix_nanos() - host.now_nanos()) / 1_000_000_000;
            u64::try_from(left).unwrap_or(0).max(1)
        });
        write.cookie = CookieChange::Set(
            config
                .cookie
                .set_header(&config.keys.sign(&session.id), max_age),
        );
        write.session_dependent = true;
    }

    /// The cookie, `Vary` and `Cache-Control` the response leaves with.
    fn final_headers(&self, write: &mut ResponseWrite) -> FinalHeaders {
        let set_cookie = match std::mem::take(&mut write.cookie) {
            CookieChange::Keep => None,
            CookieChange::Set(value) => Some(value),
            CookieChange::Clear => Some(self.config.cookie.clear_header().to_string()),
        };
        if !write.session_dependent {
            return FinalHeaders {
                set_cookie,
                ..FinalHeaders::default()
            };
        }
        let app: Vec<&[u8]> = write.cache_control.iter().map(Vec::as_slice).collect();
        FinalHeaders {
            cache_control: caching::cache_control(&app, set_cookie.is_some()),
            vary_cookie: !write.varies_by_cookie,
            set_cookie,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::revocation::{SetError, SharedStore};
    use proto::CreateSession;
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const NOW: i128 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    /// Counts what the core counted and keeps the shared data it wrote.
    #[derive(Default)]
    struct FakeHost {
        counted: RefCell<Vec<Counter>>,
        shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    }

    impl Host for FakeHost {
        fn now_nanos(&self) -> i128 {
            NOW
        }
        fn count(&self, counter: Counter) {
            self.counted.borrow_mut().push(counter);
        }
    }

    impl SharedStore for FakeHost {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.shared.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], _cas: u32) -> Result<(), SetError> {
            let mut shared = self.shared.borrow_mut();
            let stamp = shared.len() as u32 + 1;
            shared.insert(key.to_string(), (value.to_vec(), stamp));
            Ok(())
        }
    }

    impl FakeHost {
        fn counted(&self, counter: Counter) -> usize {
            self.counted
                .borrow()
                .iter()
                .filter(|c| **c == counter)
                .count()
        }
    }

    fn core(overrides: serde_json::Value) -> Core {
        let mut config = json!({"keys": [{"id": "k1", "secret": SECRET}],
            "companion": {"cluster": "c", "token": "companion-test-token-0123456789abcdef"}});
        for (k, v) in overrides.as_object().unwrap() {
            config[k] = v.clone();
        }
        Core::new(Config::parse(config.to_string().as_bytes()).unwrap())
    }

    fn id(n: u8) -> SessionId {
        SessionId::from_bytes(&[n; 32])
    }

    fn session(n: u8, browser: bool) -> Box<Session> {
        Box::new(
            serde_json::from_value(json!({"id": id(n).as_str(), "data": {}, "user": null,
                "ttl_seconds": 60, "browser_session": browser,
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "expires_at": "2026-01-01T00:01:00Z"}))
            .unwrap(),
        )
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn with_session(n: u8) -> RequestOutcome {
        RequestOutcome {
            session: Some(id(n)),
            clear_cookie: false,
            session_dependent: true,
        }
    }

    fn finish(next: ResponseNext) -> FinalHeaders {
        match next {
            ResponseNext::Finish(headers) => headers,
            other => panic!("expected the response to finish: {other:?}"),
        }
    }

    #[test]
    fn without_control_headers_only_caching_headers_follow_the_session() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let start = core.start_response(&host, &RequestOutcome::default(), &headers(&[]));
        assert_eq!(finish(start.next), FinalHeaders::default());
        let start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[("vary", "Accept"), ("cache-control", "max-age=5")]),
        );
        assert_eq!(
            finish(start.next),
            FinalHeaders {
                set_cookie: None,
                vary_cookie: true,
                cache_control: None,
            },
            "the app's own caching stands when no cookie is written"
        );
        assert!(
            host.counted.borrow().is_empty(),
            "no write, nothing counted"
        );
    }

    #[test]
    fn every_control_header_spelling_is_removed_and_bad_ones_write_nothing() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[
                ("X-Session-Set", "{broken"),
                ("x_session_user", "mallory"),
                ("x-session-other", "1"),
                ("content-type", "text/html"),
            ]),
        );
        assert_eq!(
            start.remove,
            ["X-Session-Set", "x_session_user", "x-session-other"]
        );
        assert!(matches!(start.next, ResponseNext::Finish(_)));
        assert_eq!(host.counted(Counter::BadControl), 1);
        assert!(start.write.pending_op().is_none());
    }

    #[test]
    fn a_login_without_a_session_creates_one_and_sets_its_cookie() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut start = core.start_response(
            &host,
            &RequestOutcome::default(),
            &headers(&[("x-session-user", "alice"), ("cache-control", "public")]),
        );
        let ResponseNext::Store(StoreOp::Create(CreateSession { user, .. })) = &start.next else {
            panic!("{:?}", start.next)
        };
        assert_eq!(user.as_deref(), Some("alice"));
        let next = core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(2, false)),
        );
        let done = finish(next);
        let expected = format!(
            "sid={}; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax",
            core.config.keys.sign(&id(2))
        );
        assert_eq!(done.set_cookie.as_deref(), Some(expected.as_str()));
        assert!(done.vary_cookie);
        assert_eq!(
            done.cache_control.as_deref(),
            Some("private"),
            "never public"
        );
        assert_eq!(host.counted(Counter::Writes), 1);
    }

    #[test]
    fn a_cycle_announces_the_old_id_then_patches_the_new_one() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[("x-session-cycle", "1"), ("x-session-user", "bob")]),
        );
        assert_eq!(start.next, ResponseNext::Store(StoreOp::Cycle(id(1))));
        let next = core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(2, false)),
        );
        let ResponseNext::Store(StoreOp::Patch(new, patch)) = next else {
            panic!("{next:?}")
        };
        assert_eq!((new, patch.user.as_deref()), (id(2), Some("bob")));
        let old = RevocationTag::of(&id(1));
        assert!(
            !old.trusts(host.get(&old.key).map(|v| v.0).as_deref(), 0),
            "the old id is announced before the cookie moves"
        );
        let done = finish(core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(2, true)),
        ));
        let cookie = done.set_cookie.unwrap();
        assert!(
            !cookie.contains("Max-Age"),
            "a browser session's cookie: {cookie}"
        );
        assert_eq!(host.counted(Counter::Writes), 1, "one write, counted once");
    }

    #[test]
    fn a_logout_deletes_and_clears_and_without_a_session_just_clears() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[("x-session-flush", "1")]),
        );
        assert_eq!(start.next, ResponseNext::Store(StoreOp::Delete(id(1))));
        let done = finish(core.continue_response(&host, &mut start.write, WriteOutcome::Deleted));
        assert_eq!(
            done.set_cookie.as_deref(),
            Some(core.config.cookie.clear_header())
        );
        let start = core.start_response(
            &host,
            &RequestOutcome::default(),
            &headers(&[("x-session-flush", "1")]),
        );
        let done = finish(start.next);
        assert_eq!(
            done.set_cookie.as_deref(),
            Some(core.config.cookie.clear_header())
        );
        assert!(done.vary_cookie && done.cache_control.is_some());
    }

    #[test]
    fn a_failed_write_never_sets_a_cookie_and_follows_the_policy() {
        for (policy, pass) in [("pass", true), ("fail", false)] {
            let (host, core) = (FakeHost::default(), core(json!({"on_write_error": policy})));
            // The request's bad cookie is still cleared; the new session's cookie is not set.
            let outcome = RequestOutcome {
                clear_cookie: true,
                session_dependent: true,
                ..RequestOutcome::default()
            };
            let mut start =
                core.start_response(&host, &outcome, &headers(&[("x-session-cycle", "1")]));
            let next = core.continue_response(
                &host,
                &mut start.write,
                WriteOutcome::Failed(Failure::Status(503)),
            );
            match pass {
                true => assert_eq!(
                    finish(next).set_cookie.as_deref(),
                    Some(core.config.cookie.clear_header())
                ),
                false => assert_eq!(next, ResponseNext::Unavailable),
            }
            assert_eq!(host.counted(Counter::WriteError), 1, "{policy}");
            assert_eq!(host.counted(Counter::Writes), 0, "{policy}");
        }
    }

    #[test]
    fn a_cycle_whose_patch_fails_sets_no_cookie_and_an_answer_that_fits_no_write_fails() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[("x-session-cycle", "1"), ("x-session-set", r#"{"a":1}"#)]),
        );
        core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(2, false)),
        );
        let done = finish(core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Failed(Failure::CallFailed),
        ));
        assert_eq!(done.set_cookie, None, "the patch failed: no cookie at all");

        let mut start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[("x-session-flush", "1")]),
        );
        let next = core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(3, false)),
        );
        assert_eq!(
            finish(next).set_cookie,
            None,
            "a delete answered with a session"
        );
        assert_eq!(host.counted(Counter::WriteError), 2);
    }
}
