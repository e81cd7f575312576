//! The response path (docs/architecture.md, "Response path"): the app writes its session with
//! control headers; they are removed before the client, turned into store writes applied in
//! order while the response waits, and the response gets the cookie the writes call for, with
//! `Vary` and `Cache-Control`. Pure: [`Core::start_response`] and [`Core::continue_response`]
//! say what to do next, and the shell does it (the companion store makes each write one
//! callout; any store fits, since the outcome of each write is all this path reads).

use crate::caching;
use crate::config::{RefreshCookie, ServerErrorControls, StoreMode, WriteErrorPolicy};
use crate::control::{self, Controls, Revoke, WritePlan};
use crate::core::{Core, Host};
use crate::metrics::Counter;
use crate::request::{Lifetime, RequestOutcome};
use crate::revocation::{self, RevocationTag};
use crate::store::cookie::MAX_COOKIE_PAIR_BYTES;
use crate::store::cookie_session;
use crate::store::{Failure, Resolution, StoreOp, WriteOutcome};
use proto::{PatchSession, Session, SessionHandle, SessionId};

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
    /// The request's valid session and its expiry as last known: what a cookie renewal
    /// (`refresh_cookie`) needs when nothing else sets the cookie.
    renewal: Option<(SessionId, Lifetime)>,
    /// `x-session-revoke`, waiting for the session's own write.
    revoke: Option<Revoke>,
    /// The session the user is left with, as last known, while a revocation waits.
    owner: Option<Owner>,
    /// The cookie store: the session the request's cookie carried, re-sealed on renewal.
    cookie_session: Option<Box<Session>>,
}

/// A session as a revocation needs it: who it belongs to and how it is named.
#[derive(Debug)]
struct Owner {
    id: SessionId,
    user: Option<String>,
    handle: SessionHandle,
}

impl Owner {
    fn of(session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            user: session.user.clone(),
            handle: session.id.handle(),
        }
    }
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
            renewal: outcome.session.clone().zip(outcome.lifetime),
            cookie_session: outcome.cookie_session.clone(),
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
            revoke: None,
            owner: None,
        };
        let remove = headers
            .iter()
            .filter(|(name, _)| config.headers.has_prefix(name))
            .map(|(name, _)| name.clone())
            .collect();
        let parsed = control::parse(
            &config.headers,
            headers,
            config.max_header_bytes,
            host.now_nanos(),
        );
        let plan = match parsed {
            Ok(Some(controls)) => {
                let mut controls = self.on_status(host, controls, &values(":status"));
                if let Some(revoke) = controls.revoke.take() {
                    if config.store.is_cookie() {
                        // Cookie sessions are kept nowhere: there is no user's list to end.
                        host.count(Counter::BadControl);
                        log::warn!(
                            "edge-session: x-session-revoke refused: it needs the companion \
                             store (cookie sessions have no list of a user's sessions)"
                        );
                    } else {
                        want_revoke(&mut write, revoke, controls.flush, outcome);
                    }
                }
                control::plan(controls, outcome.session.as_ref(), config)
                    .filter(|plan| self.cookie_fits(host, outcome, plan))
            }
            Ok(None) => None,
            Err(err) => {
                host.count(Counter::BadControl);
                log::warn!("edge-session: control header refused, session left as it was: {err}");
                None
            }
        };
        let next = match plan {
            None => match self.revoke_next(host, &mut write) {
                Some(next) => next,
                None => ResponseNext::Finish(self.final_headers(host, &mut write)),
            },
            Some(plan) => self.begin(host, &mut write, plan),
        };
        ResponseStart {
            remove,
            write,
            next,
        }
    }

    /// The cookie store: whether the cookie `plan` leads to fits in a cookie
    /// (docs/architecture.md, "Cookie store"). One that would not is refused before any write,
    /// as a bad control header is: the session stays as it was.
    fn cookie_fits(&self, host: &impl Host, outcome: &RequestOutcome, plan: &WritePlan) -> bool {
        let StoreMode::Cookie(ring) = &self.config.store else {
            return true;
        };
        let current = outcome.cookie_session.as_deref();
        let now = host.now_nanos();
        match cookie_session::planned_pair_bytes(&self.config, ring, current, plan, now) {
            Some(bytes) if bytes > MAX_COOKIE_PAIR_BYTES => {
                host.count(Counter::CookieTooLarge);
                log::warn!(
                    "edge-session: session write refused, session left as it was: the session \
                     cookie would take {bytes} bytes, over {MAX_COOKIE_PAIR_BYTES}"
                );
                false
            }
            _ => true,
        }
    }

    /// Whether a response waits for the answer to its request's sliding-expiry touch before
    /// it starts: only when the cookie follows the expiry. The answer usually arrives while
    /// the app works, so the wait is rare; it is bounded by the companion's timeout.
    pub fn response_waits_for_touch(&self) -> bool {
        self.config.refresh_cookie != RefreshCookie::Never
    }

    /// The store answered the sliding-expiry touch of the request's session: the cookie the
    /// response renews follows the expiry the store now holds, never a guess. A failed touch
    /// renews nothing (the expiry may not have moved); a session gone meanwhile renews nothing
    /// either (the next request clears its cookie).
    pub fn touch_answered(
        &self,
        host: &impl Host,
        outcome: &mut RequestOutcome,
        answer: Resolution,
    ) {
        match answer {
            Resolution::Found(session) => {
                outcome.lifetime = Some(Lifetime {
                    expires_at_nanos: session.expires_at.unix_nanos(),
                    browser_session: session.browser_session,
                    renewed: true,
                });
            }
            Resolution::Expired => outcome.lifetime = None,
            Resolution::Unavailable(failure) => {
                host.count(Counter::TouchFailed);
                log::warn!("edge-session: sliding-expiry touch failed ({failure})");
            }
        }
    }

    /// On a 5xx response only `flush` and `revoke` apply (`controls_on_server_error`): an app that failed
    /// may have written half a session, and a logout whose page fails must still log out.
    fn on_status(&self, host: &impl Host, controls: Controls, status: &[&[u8]]) -> Controls {
        let server_error = status
            .first()
            .is_some_and(|s| s.len() == 3 && s[0] == b'5' && s.iter().all(u8::is_ascii_digit));
        if !server_error || self.config.controls_on_server_error == ServerErrorControls::All {
            return controls;
        }
        let skipped = controls.cycle
            || controls.set.is_some()
            || controls.user.is_some()
            || controls.expiry.is_some();
        if skipped {
            host.count(Counter::ControlSkipped);
            log::info!(
                "edge-session: session changes of a 5xx response not applied \
                 (controls_on_server_error: flush_only)"
            );
        }
        // Ending sessions grants nothing: a revocation applies like a logout.
        Controls {
            flush: controls.flush,
            revoke: controls.revoke,
            ..Controls::default()
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
        if let (Some(_), WriteOutcome::Stored(session)) = (&write.revoke, &outcome) {
            write.owner = Some(Owner::of(session));
        }
        match (op, outcome) {
            (StoreOp::Revoke { user, revoke, .. }, WriteOutcome::Deleted) => {
                self.revoked(host, write, &user, &revoke);
                host.count(Counter::Writes);
                ResponseNext::Finish(self.final_headers(host, write))
            }
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
                // A cookie-store session is its cookie: every change is a new one.
                if reissue || self.cookie_store().is_some() {
                    self.issue_cookie(host, write, &patched);
                } else if let Some((_, lifetime)) = write.renewal.as_mut() {
                    lifetime.expires_at_nanos = patched.expires_at.unix_nanos();
                    lifetime.browser_session = patched.browser_session;
                }
                self.complete(host, write)
            }
            (_, WriteOutcome::Failed(failure)) => self.write_failed(host, write, failure),
            (op, outcome) => {
                // The operation's name only: its body holds the session's data and user.
                log::warn!(
                    "edge-session: store answered {} to a {}",
                    outcome.kind(),
                    op.kind()
                );
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

    /// Every write of the session is done: a revocation follows, or the response goes on.
    fn complete(&self, host: &impl Host, write: &mut ResponseWrite) -> ResponseNext {
        if let Some(next) = self.revoke_next(host, write) {
            return next;
        }
        host.count(Counter::Writes);
        ResponseNext::Finish(self.final_headers(host, write))
    }

    /// The revocation the app asked for, once the session's own write is done: for the user
    /// the session is bound to by then. `None`: none asked, or refused (no user to revoke for).
    fn revoke_next(&self, host: &impl Host, write: &mut ResponseWrite) -> Option<ResponseNext> {
        let revoke = write.revoke.take()?;
        let Some((user, current)) = write
            .owner
            .as_ref()
            .and_then(|owner| Some((owner.user.clone()?, owner.handle.clone())))
        else {
            host.count(Counter::BadControl);
            log::warn!(
                "edge-session: x-session-revoke refused: the response's session is not bound \
                 to a user"
            );
            return None;
        };
        let op = StoreOp::Revoke {
            user,
            revoke,
            current,
        };
        Some(self.store(
            write,
            Step {
                op,
                then: None,
                reissue: false,
            },
        ))
    }

    /// The store ended the sessions: this worker's copies go at once, and the response's
    /// own session, when it was among them, loses its cookie. Other workers and proxies learn
    /// of the others through the revocation feed (docs/architecture.md, "Revocation feed").
    fn revoked(&self, host: &impl Host, write: &mut ResponseWrite, user: &str, revoke: &Revoke) {
        let Some(owner) = write.owner.take() else {
            return;
        };
        let own_ended = match revoke {
            Revoke::All => true,
            Revoke::Others => false,
            Revoke::Session(handle) => *handle == owner.handle,
        };
        match revoke {
            Revoke::Session(handle) if !own_ended => {
                self.announce(host, &RevocationTag::of_handle(handle), "a revoked session");
            }
            _ => {
                let except = (!own_ended).then_some(&owner.handle);
                if let Some(cache) = self.cache.borrow_mut().as_mut() {
                    cache.remove_user(user, except);
                }
            }
        }
        if own_ended {
            self.announce_change(host, &owner.id);
            write.cookie = CookieChange::Clear;
            write.renewal = None;
            write.session_dependent = true;
        }
    }

    /// The store failed a write: never a cookie for a session that was not stored. `pass`
    /// lets the app's response out with the cookie of what was stored (if anything); `fail`
    /// answers 503.
    fn write_failed(
        &self,
        host: &impl Host,
        write: &mut ResponseWrite,
        failure: Failure,
    ) -> ResponseNext {
        host.count(Counter::WriteError);
        let policy = self.config.on_write_error;
        log::warn!("edge-session: session write failed ({failure}; {policy:?})");
        // A cookie already set names a session a write stored (a cycle's new id, whose
        // follow-up patch failed): the old id is gone, so dropping it would log the user out.
        write.renewal = None;
        match policy {
            WriteErrorPolicy::Pass => ResponseNext::Finish(self.final_headers(host, write)),
            WriteErrorPolicy::Fail => ResponseNext::Unavailable,
        }
    }

    /// Drops the local copy and tells the other workers (docs/architecture.md, "Revocation").
    /// The cookie store caches nothing and records its own revocations.
    fn announce_change(&self, host: &impl Host, id: &SessionId) {
        if self.cookie_store().is_some() {
            return;
        }
        if let Some(cache) = self.cache.borrow_mut().as_mut() {
            cache.remove(id);
        }
        let what = format!("session #{}", id.short_hash());
        self.announce(host, &RevocationTag::of(id), &what);
    }

    fn announce(&self, host: &impl Host, tag: &RevocationTag, what: &str) {
        if let Err(err) = revocation::announce(host, tag) {
            host.count(Counter::RevocationFailed);
            log::error!(
                "edge-session: {what}: change not announced to other workers ({err}); \
                 their cached copies live up to cache.ttl_ms"
            );
        }
    }

    /// The cookie for a stored session: its token, and `Max-Age` up to its expiry unless it
    /// is a browser session.
    fn issue_cookie(&self, host: &impl Host, write: &mut ResponseWrite, session: &Session) {
        let max_age =
            (!session.browser_session).then(|| self.max_age(host, session.expires_at.unix_nanos()));
        let value = match self.cookie_store() {
            None => Some(self.config.keys.sign(&session.id)),
            Some(ring) => self.seal(host, ring, session),
        };
        if let Some(value) = value {
            write.cookie = CookieChange::Set(self.config.cookie.set_header(&value, max_age));
            write.session_dependent = true;
        }
    }

    fn cookie_for(&self, id: &SessionId, max_age: Option<u64>) -> String {
        let config = &self.config;
        config.cookie.set_header(&config.keys.sign(id), max_age)
    }

    fn cookie_store(&self) -> Option<&crate::store::cookie::CookieKeyring> {
        match &self.config.store {
            StoreMode::Cookie(ring) => Some(ring),
            StoreMode::Companion => None,
        }
    }

    /// The cookie store's value for `session`. The size was checked before the writes, so a
    /// refusal here (a time that moved a digit, say) leaves the cookie as it was.
    fn seal(
        &self,
        host: &impl Host,
        ring: &crate::store::cookie::CookieKeyring,
        session: &Session,
    ) -> Option<String> {
        match cookie_session::seal(host, ring, self.config.cookie.name(), session) {
            Ok(value) => Some(value),
            Err(err) => {
                host.count(Counter::CookieTooLarge);
                log::warn!("edge-session: session cookie not written: {err}");
                None
            }
        }
    }

    /// The cookie store: the request's session re-sealed with the expiry last known, unless
    /// its id was revoked meanwhile (a logout on another worker while this request ran).
    fn resealed(
        &self,
        host: &impl Host,
        write: &ResponseWrite,
        lifetime: &Lifetime,
    ) -> Option<String> {
        let ring = self.cookie_store()?;
        let mut session = write.cookie_session.as_deref()?.clone();
        session.expires_at = proto::Timestamp::from_unix_nanos(lifetime.expires_at_nanos)?;
        session.browser_session = lifetime.browser_session;
        if !cookie_session::may_reissue(host, &session) {
            return None;
        }
        let max_age =
            (!session.browser_session).then(|| self.max_age(host, lifetime.expires_at_nanos));
        let value = self.seal(host, ring, &session)?;
        Some(self.config.cookie.set_header(&value, max_age))
    }

    /// Seconds until `expires_at_nanos`, at least 1, at most `cookie.max_age_seconds`.
    fn max_age(&self, host: &impl Host, expires_at_nanos: i128) -> u64 {
        let left = (expires_at_nanos - host.now_nanos()) / 1_000_000_000;
        u64::try_from(left)
            .unwrap_or(0)
            .clamp(1, self.config.cookie.max_age_seconds())
    }

    /// The cookie again, with `Max-Age` up to the expiry last known, when nothing else sets
    /// or clears it and `refresh_cookie` asks for it (docs/architecture.md, "Lifetime").
    fn renewed_cookie(&self, host: &impl Host, write: &ResponseWrite) -> Option<String> {
        let (id, lifetime) = write.renewal.as_ref()?;
        let renew = match self.config.refresh_cookie {
            RefreshCookie::Never => false,
            RefreshCookie::OnTouch => lifetime.renewed,
            RefreshCookie::EveryRequest => true,
        };
        if !renew || lifetime.expires_at_nanos <= host.now_nanos() {
            return None;
        }
        // A cookie-store browser session is re-sealed too: its expiry is in the cookie.
        if self.cookie_store().is_some() {
            return self.resealed(host, write, lifetime);
        }
        (!lifetime.browser_session)
            .then(|| self.cookie_for(id, Some(self.max_age(host, lifetime.expires_at_nanos))))
    }

    /// The cookie, `Vary` and `Cache-Control` the response leaves with.
    fn final_headers(&self, host: &impl Host, write: &mut ResponseWrite) -> FinalHeaders {
        let set_cookie = match std::mem::take(&mut write.cookie) {
            CookieChange::Keep => self.renewed_cookie(host, write),
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

/// Keeps `x-session-revoke` for after the session's own write. `flush` wins over everything:
/// a logout ends this session, and the revocation is not applied.
fn want_revoke(write: &mut ResponseWrite, revoke: Revoke, flush: bool, outcome: &RequestOutcome) {
    if flush {
        log::info!("edge-session: x-session-revoke not applied: x-session-flush wins");
        return;
    }
    write.revoke = Some(revoke);
    write.owner = outcome.resolved.as_ref().map(|resolved| Owner {
        id: resolved.id.clone(),
        user: resolved.user.clone(),
        handle: resolved.handle.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::revocation::{SetError, SharedStore};
    use proto::CreateSessionRequest;
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::HashMap;

    use testkit::keys::{COMPANION_TOKEN, UNIT_SIGNING as SECRET};
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
            "companion": {"cluster": "c", "token": COMPANION_TOKEN}});
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
            testkit::session(&id(n))
                .ttl_seconds(60)
                .browser_session(browser)
                .build(),
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
            lifetime: Some(Lifetime {
                expires_at_nanos: NOW + 600 * 1_000_000_000,
                browser_session: false,
                renewed: false,
            }),
            resolved: None,
            cookie_session: None,
        }
    }

    /// A valid session `n` bound to `user`, as the request path leaves it.
    fn of_user(core: &Core, n: u8, user: &str) -> RequestOutcome {
        let mut stored = session(n, false);
        stored.user = Some(user.to_string());
        RequestOutcome {
            resolved: Some(std::rc::Rc::new(core.resolved(&stored))),
            ..with_session(n)
        }
    }

    fn revoke_of(next: &ResponseNext) -> (&str, &Revoke, &SessionHandle) {
        match next {
            ResponseNext::Store(StoreOp::Revoke {
                user,
                revoke,
                current,
            }) => (user, revoke, current),
            other => panic!("expected a revocation: {other:?}"),
        }
    }

    #[test]
    fn revoke_others_keeps_this_session_and_its_cookie() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut start = core.start_response(
            &host,
            &of_user(&core, 1, "alice"),
            &headers(&[("x-session-revoke", "others")]),
        );
        assert_eq!(start.remove, ["x-session-revoke"]);
        assert_eq!(
            revoke_of(&start.next),
            ("alice", &Revoke::Others, &id(1).handle())
        );
        let done = finish(core.continue_response(&host, &mut start.write, WriteOutcome::Deleted));
        assert_eq!(done.set_cookie, None, "this device stays logged in");
        assert_eq!(host.counted(Counter::Writes), 1);
    }

    #[test]
    fn revoke_all_ends_this_session_too_and_clears_its_cookie() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut start = core.start_response(
            &host,
            &of_user(&core, 1, "alice"),
            &headers(&[("x-session-revoke", "all")]),
        );
        assert_eq!(revoke_of(&start.next).1, &Revoke::All);
        let done = finish(core.continue_response(&host, &mut start.write, WriteOutcome::Deleted));
        assert_eq!(
            done.set_cookie.as_deref(),
            Some(core.config.cookie.clear_header())
        );
        assert!(
            !host.shared.borrow().is_empty(),
            "this session's end is announced to the other workers"
        );
    }

    #[test]
    fn revoking_another_devices_handle_announces_it_and_keeps_this_cookie() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let other = id(9).handle();
        let mut start = core.start_response(
            &host,
            &of_user(&core, 1, "alice"),
            &headers(&[("x-session-revoke", other.as_str())]),
        );
        assert_eq!(revoke_of(&start.next).1, &Revoke::Session(other.clone()));
        let done = finish(core.continue_response(&host, &mut start.write, WriteOutcome::Deleted));
        assert_eq!(done.set_cookie, None);
        let tag = RevocationTag::of_handle(&other);
        assert!(
            !tag.trusts(host.get(&tag.key).as_ref().map(|(v, _)| v.as_slice()), 0),
            "every worker distrusts its cached copy of the ended session"
        );
    }

    #[test]
    fn revoke_follows_the_sessions_own_write_for_the_user_it_binds() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        // A login (cycle, then bind the user) that also ends the user's other sessions.
        let mut start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[
                ("x-session-cycle", "1"),
                ("x-session-user", "bob"),
                ("x-session-revoke", "others"),
            ]),
        );
        assert_eq!(start.next, ResponseNext::Store(StoreOp::Cycle(id(1))));
        let next = core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(2, false)),
        );
        assert!(matches!(next, ResponseNext::Store(StoreOp::Patch(..))));
        let mut bound = session(2, false);
        bound.user = Some("bob".to_string());
        let next = core.continue_response(&host, &mut start.write, WriteOutcome::Stored(bound));
        assert_eq!(
            revoke_of(&next),
            ("bob", &Revoke::Others, &id(2).handle()),
            "the new id is the one kept"
        );
        let done = finish(core.continue_response(&host, &mut start.write, WriteOutcome::Deleted));
        assert!(
            done.set_cookie
                .is_some_and(|c| c.contains(&core.config.keys.sign(&id(2))))
        );
        assert_eq!(host.counted(Counter::Writes), 1);
    }

    #[test]
    fn flush_wins_over_revoke_and_a_session_without_user_refuses_it() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let start = core.start_response(
            &host,
            &of_user(&core, 1, "alice"),
            &headers(&[("x-session-flush", "1"), ("x-session-revoke", "all")]),
        );
        assert_eq!(start.next, ResponseNext::Store(StoreOp::Delete(id(1))));
        let anonymous = with_session(1);
        let start = core.start_response(
            &host,
            &anonymous,
            &headers(&[("x-session-revoke", "others")]),
        );
        assert_eq!(finish(start.next).set_cookie, None);
        assert_eq!(host.counted(Counter::BadControl), 1);
        for bad in ["some", "", "ALL", "others,all", "AAAA"] {
            let start = core.start_response(
                &host,
                &of_user(&core, 1, "alice"),
                &headers(&[("x-session-revoke", bad)]),
            );
            assert!(matches!(start.next, ResponseNext::Finish(_)), "{bad:?}");
        }
        assert_eq!(host.counted(Counter::BadControl), 6);
    }

    #[test]
    fn a_failed_revoke_follows_the_write_error_policy() {
        let (host, core) = (FakeHost::default(), core(json!({"on_write_error": "fail"})));
        let mut start = core.start_response(
            &host,
            &of_user(&core, 1, "alice"),
            &headers(&[("x-session-revoke", "others")]),
        );
        let next = core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Failed(Failure::Status(503)),
        );
        assert_eq!(next, ResponseNext::Unavailable);
        assert_eq!(host.counted(Counter::WriteError), 1);
    }

    #[test]
    fn a_server_error_still_applies_revoke() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let start = core.start_response(
            &host,
            &of_user(&core, 1, "alice"),
            &headers(&[(":status", "500"), ("x-session-revoke", "all")]),
        );
        assert_eq!(revoke_of(&start.next).1, &Revoke::All);
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
        let ResponseNext::Store(StoreOp::Create(CreateSessionRequest { user, .. })) = &start.next
        else {
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
    fn a_cycle_whose_patch_fails_keeps_the_new_id_and_an_answer_that_fits_no_write_fails() {
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
        let new_id = format!(
            "sid={}; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax",
            core.config.keys.sign(&id(2))
        );
        assert_eq!(
            done.set_cookie,
            Some(new_id),
            "the cycle stored the new id and deleted the old: the browser must get it"
        );

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

    /// The cookie `core` renews for session `n` with `max_age` seconds.
    fn renewed(core: &Core, n: u8, max_age: u64) -> String {
        format!(
            "sid={}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Lax",
            core.config.keys.sign(&id(n))
        )
    }

    /// Session 1 as the store answers a touch: it now expires at `NOW + 60 s`.
    fn touched(core: &Core, host: &FakeHost, browser: bool) -> RequestOutcome {
        let mut outcome = with_session(1);
        core.touch_answered(host, &mut outcome, Resolution::Found(session(1, browser)));
        outcome
    }

    #[test]
    fn a_touched_session_gets_its_cookie_again_up_to_the_new_expiry() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        assert!(core.response_waits_for_touch());
        let start = core.start_response(&host, &touched(&core, &host, false), &headers(&[]));
        let done = finish(start.next);
        assert_eq!(done.set_cookie, Some(renewed(&core, 1, 60)));
        assert_eq!(done.cache_control.as_deref(), Some("private"));
        let start = core.start_response(&host, &with_session(1), &headers(&[]));
        assert_eq!(finish(start.next).set_cookie, None, "untouched: no renewal");
        let start = core.start_response(&host, &touched(&core, &host, true), &headers(&[]));
        assert_eq!(
            finish(start.next).set_cookie,
            None,
            "a browser session's cookie has no Max-Age to renew"
        );
    }

    #[test]
    fn a_touch_that_failed_or_found_nothing_renews_nothing() {
        let (host, core) = (FakeHost::default(), core(json!({})));
        let mut outcome = with_session(1);
        let failed = Resolution::Unavailable(Failure::Status(503));
        core.touch_answered(&host, &mut outcome, failed);
        let start = core.start_response(&host, &outcome, &headers(&[]));
        assert_eq!(finish(start.next).set_cookie, None);
        assert_eq!(host.counted(Counter::TouchFailed), 1);
        let mut outcome = with_session(1);
        core.touch_answered(&host, &mut outcome, Resolution::Expired);
        let start = core.start_response(&host, &outcome, &headers(&[]));
        assert_eq!(finish(start.next).set_cookie, None);
    }

    #[test]
    fn refresh_cookie_every_request_and_never() {
        let host = FakeHost::default();
        let every = core(json!({"refresh_cookie": "every_request"}));
        let start = every.start_response(&host, &with_session(1), &headers(&[]));
        assert_eq!(
            finish(start.next).set_cookie,
            Some(renewed(&every, 1, 600)),
            "from the expiry last read, without a touch"
        );
        let never = core(json!({"refresh_cookie": "never"}));
        assert!(!never.response_waits_for_touch());
        let start = never.start_response(&host, &touched(&never, &host, false), &headers(&[]));
        assert_eq!(finish(start.next).set_cookie, None);
    }

    #[test]
    fn max_age_seconds_caps_every_cookie() {
        let host = FakeHost::default();
        let core =
            core(json!({"cookie": {"max_age_seconds": 30}, "refresh_cookie": "every_request"}));
        let start = core.start_response(&host, &with_session(1), &headers(&[]));
        assert_eq!(finish(start.next).set_cookie, Some(renewed(&core, 1, 30)));
        let mut start = core.start_response(
            &host,
            &RequestOutcome::default(),
            &headers(&[("x-session-user", "alice")]),
        );
        let next = core.continue_response(
            &host,
            &mut start.write,
            WriteOutcome::Stored(session(2, false)),
        );
        assert_eq!(finish(next).set_cookie, Some(renewed(&core, 2, 30)));
    }

    #[test]
    fn a_server_error_applies_only_a_logout() {
        let host = FakeHost::default();
        let core = core(json!({}));
        for status in ["500", "503", "599"] {
            let start = core.start_response(
                &host,
                &with_session(1),
                &headers(&[
                    (":status", status),
                    ("x-session-set", r#"{"a":1}"#),
                    ("x-session-cycle", "1"),
                ]),
            );
            assert_eq!(
                start.remove,
                ["x-session-set", "x-session-cycle"],
                "still removed"
            );
            assert!(
                matches!(start.next, ResponseNext::Finish(_)),
                "{status}: nothing written"
            );
        }
        assert_eq!(host.counted(Counter::ControlSkipped), 3);
        let start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[
                (":status", "500"),
                ("x-session-set", r#"{"a":1}"#),
                ("x-session-flush", "1"),
            ]),
        );
        assert_eq!(
            start.next,
            ResponseNext::Store(StoreOp::Delete(id(1))),
            "a logout still logs out"
        );
        assert_eq!(host.counted(Counter::ControlSkipped), 4);
        for status in ["200", "404", "499", "50", "5000"] {
            let start = core.start_response(
                &host,
                &with_session(1),
                &headers(&[(":status", status), ("x-session-set", r#"{"a":1}"#)]),
            );
            assert!(
                matches!(start.next, ResponseNext::Store(StoreOp::Patch(..))),
                "{status}"
            );
        }
        let all = core_with_all();
        let start = all.start_response(
            &host,
            &with_session(1),
            &headers(&[(":status", "500"), ("x-session-set", r#"{"a":1}"#)]),
        );
        assert!(matches!(
            start.next,
            ResponseNext::Store(StoreOp::Patch(..))
        ));
        assert_eq!(host.counted(Counter::ControlSkipped), 4);
    }

    fn core_with_all() -> Core {
        core(json!({"controls_on_server_error": "all"}))
    }

    #[test]
    fn a_failed_write_renews_no_cookie() {
        let host = FakeHost::default();
        let core = core(json!({"refresh_cookie": "every_request"}));
        let mut start = core.start_response(
            &host,
            &with_session(1),
            &headers(&[("x-session-set", r#"{"a":1}"#)]),
        );
        let failed = WriteOutcome::Failed(Failure::Status(500));
        let next = core.continue_response(&host, &mut start.write, failed);
        assert_eq!(finish(next).set_cookie, None);
    }
}
