//! The cookie store (docs/architecture.md, "Stores", "Cookie store"): the second
//! implementation of the store the paths talk to. A session is read from the request's cookie
//! instead of fetched, and each write is answered at once, with no callout: a create or a
//! cycle derives a new id, a patch changes the session the request carried, a delete or a
//! cycle records the old id as revoked (`cookie_revocations`). The response path seals the
//! result into the cookie it sets. Pure: the shell supplies the host.

use super::companion::HttpCall;
use super::cookie::{
    CookieKeyring, CookiePayload, Freshness, OpenError, PayloadRef, SealError, ended,
};
use super::cookie_revocations::{self, CookieTag, Verdict};
use super::{Failure, StoreOp, WriteOutcome};
use crate::config::Config;
use crate::control::WritePlan;
use crate::core::Host;
use crate::metrics::Counter;
use proto::{
    AnnounceRevocation, CreateSessionRequest, PatchSession, Session, SessionHandle, SessionId,
    Timestamp,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// 9999-12-31T23:59:59Z: the last second a timestamp can show.
const MAX_SECONDS: i64 = 253_402_300_799;
const NANOS: i128 = 1_000_000_000;

/// The per-VM counter of fresh values: never repeats within a VM (a module instance).
static FRESH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unix seconds of a time in nanoseconds, rounded down.
pub fn seconds(nanos: i128) -> i64 {
    i64::try_from(nanos.div_euclid(NANOS)).unwrap_or(if nanos < 0 { 0 } else { MAX_SECONDS })
}

fn at(seconds: i64) -> Option<Timestamp> {
    Timestamp::from_unix_seconds(seconds.clamp(0, MAX_SECONDS))
}

fn after(now: i64, seconds: u64) -> i64 {
    now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
        .min(MAX_SECONDS)
}

fn within(expires_at: i64, absolute_end: Option<i64>) -> i64 {
    absolute_end.map_or(expires_at, |end| expires_at.min(end))
}

/// The session a payload describes; `None` for a time no timestamp can show.
fn session_of(payload: CookiePayload) -> Option<Session> {
    let absolute_expires_at = match payload.absolute_expires_at {
        Some(end) => Some(Timestamp::from_unix_seconds(end)?),
        None => None,
    };
    Some(Session {
        id: payload.id,
        data: payload.data,
        user: payload.user,
        ttl_seconds: payload.ttl_seconds,
        browser_session: payload.browser_session,
        created_at: Timestamp::from_unix_seconds(payload.created_at)?,
        // What the app and the assertion see as the last write: when this value was sealed.
        updated_at: Timestamp::from_unix_seconds(payload.issued_at)?,
        expires_at: Timestamp::from_unix_seconds(payload.expires_at)?,
        last_seen_at: None,
        absolute_ttl_seconds: None,
        absolute_expires_at,
        user_agent: None,
        client_address: None,
    })
}

fn payload_of(session: &Session, issued_at: i64) -> PayloadRef<'_> {
    PayloadRef {
        id: &session.id,
        data: &session.data,
        user: session.user.as_deref(),
        created_at: session.created_at.unix_seconds(),
        issued_at,
        expires_at: session.expires_at.unix_seconds(),
        ttl_seconds: session.ttl_seconds,
        browser_session: session.browser_session,
        absolute_expires_at: session.absolute_expires_at.map(|t| t.unix_seconds()),
    }
}

/// Why a request's cookie carries no usable session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a cookie of this store: forged, altered, of a removed key, malformed. `invalid`.
    Invalid(OpenError),
    /// Past its expiry (whatever `Max-Age` the client kept), or revoked. `expired`.
    Gone(&'static str),
}

/// A cookie value opened and checked, with what is derived from it computed once: the
/// handle (hashed for the app's header and for both revocation tables) and the tag of its
/// revocation entry.
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    /// When the value was sealed: a revocation table's floor is compared with it.
    pub issued_at: i64,
    pub handle: SessionHandle,
    pub tag: CookieTag,
    /// The payload's own expiry and absolute expiry, checked again on every later use.
    expires_at: i64,
    absolute_expires_at: Option<i64>,
}

impl Opened {
    /// Whether this cookie may still be used at `now` (Unix seconds): not past its expiry,
    /// not revoked. The same checks as when it was opened, with nothing decrypted again, for
    /// a value served from the cache of opened cookies (`store::cookie_cache`).
    pub fn recheck(&self, host: &impl Host, now: i64) -> Result<(), Refused> {
        if ended(self.expires_at, self.absolute_expires_at, now) {
            return Err(Refused::Gone("expired"));
        }
        match cookie_revocations::check(host, &self.tag, self.issued_at, now) {
            Verdict::Trusted => Ok(()),
            Verdict::Revoked => Err(Refused::Gone("revoked")),
            Verdict::BelowFloor => Err(Refused::Gone("issued before an overflowing revocation")),
        }
    }
}

/// Opens the request's cookie value at `now_nanos` and checks the revocation table.
pub fn open(
    host: &impl Host,
    ring: &CookieKeyring,
    value: &[u8],
    now_nanos: i128,
) -> Result<Session, Refused> {
    open_checked(host, ring, value, now_nanos).map(|opened| opened.session)
}

/// [`open`], keeping what was derived on the way.
pub fn open_checked(
    host: &impl Host,
    ring: &CookieKeyring,
    value: &[u8],
    now_nanos: i128,
) -> Result<Opened, Refused> {
    let now = seconds(now_nanos);
    let payload = ring.open(value, now).map_err(|err| match err {
        OpenError::Expired => Refused::Gone("expired"),
        other => Refused::Invalid(other),
    })?;
    let (issued_at, expires_at, absolute_expires_at) = (
        payload.issued_at,
        payload.expires_at,
        payload.absolute_expires_at,
    );
    let session = session_of(payload).ok_or(Refused::Invalid(OpenError::BadPayload))?;
    let handle = session.id.handle();
    let opened = Opened {
        tag: CookieTag::of_handle(&handle),
        handle,
        session,
        issued_at,
        expires_at,
        absolute_expires_at,
    };
    opened.recheck(host, now)?;
    Ok(opened)
}

fn verdict(host: &impl Host, id: &SessionId, issued_at: i64, now: i64) -> Verdict {
    cookie_revocations::check(host, &CookieTag::of_handle(&id.handle()), issued_at, now)
}

/// Whether a cookie may still be issued for `session` (opened from this request's cookie):
/// not when its id was revoked meanwhile, by a request on any worker.
pub fn may_reissue(host: &impl Host, session: &Session) -> bool {
    let now = seconds(host.now_nanos());
    verdict(host, &session.id, now, now) != Verdict::Revoked
}

/// Sliding expiry for a cookie session: past half its lifetime, its expiry moves to `now +
/// ttl` (never past its absolute end). Returns whether it moved; the response re-seals the
/// cookie if `refresh_cookie` asks for it.
pub fn slide(session: &mut Session, now_nanos: i128) -> bool {
    let half_life = i128::from(session.ttl_seconds) * (NANOS / 2);
    if now_nanos < session.expires_at.unix_nanos() - half_life {
        return false;
    }
    let end = session.absolute_expires_at.map(|t| t.unix_seconds());
    let moved = within(after(seconds(now_nanos), session.ttl_seconds), end);
    match at(moved) {
        Some(new) if new > session.expires_at => {
            session.expires_at = new;
            true
        }
        _ => false,
    }
}

fn fresh<R>(host: &impl Host, derive: impl FnOnce(&Freshness<'_>) -> R) -> R {
    let request_id = host.request_id();
    derive(&Freshness {
        request_id: &request_id,
        now_nanos: host.now_nanos(),
        counter: FRESH_COUNTER.fetch_add(1, Ordering::Relaxed),
    })
}

/// The cookie value for `session`, sealed now under the first key, or why not.
pub fn seal(
    host: &impl Host,
    ring: &CookieKeyring,
    cookie_name: &str,
    session: &Session,
) -> Result<String, SealError> {
    let payload = payload_of(session, seconds(host.now_nanos()));
    let nonce = fresh(host, |input| ring.nonce(input));
    ring.seal_ref(cookie_name, payload, &nonce)
}

fn created(
    create: &CreateSessionRequest,
    id: SessionId,
    config: &Config,
    now: i64,
) -> Option<Session> {
    let ttl = create.ttl_seconds.unwrap_or(config.ttl_seconds);
    let absolute_end = create.absolute_ttl_seconds.map(|a| after(now, a));
    let absolute_expires_at = match absolute_end {
        Some(end) => Some(at(end)?),
        None => None,
    };
    Some(Session {
        id,
        data: create.data.clone().unwrap_or_default(),
        user: create.user.clone(),
        ttl_seconds: ttl,
        browser_session: create.browser_session.unwrap_or(false),
        created_at: at(now)?,
        updated_at: at(now)?,
        expires_at: at(within(after(now, ttl), absolute_end))?,
        last_seen_at: None,
        absolute_ttl_seconds: create.absolute_ttl_seconds,
        absolute_expires_at,
        user_agent: None,
        client_address: None,
    })
}

/// A patch as the companion applies it: keys set and unset, the user, the kind; a new
/// lifetime renews the expiry from now (never past the absolute end), anything else keeps it.
fn patched(session: &Session, patch: &PatchSession, now: i64) -> Option<Session> {
    let mut next = session.clone();
    for key in patch.unset.iter().flatten() {
        next.data.remove(key);
    }
    for (key, value) in patch.set.iter().flatten() {
        next.data.insert(key.clone(), value.clone());
    }
    if let Some(user) = &patch.user {
        next.user = Some(user.clone());
    }
    if let Some(browser) = patch.browser_session {
        next.browser_session = browser;
    }
    if let Some(ttl) = patch.ttl_seconds {
        next.ttl_seconds = ttl;
        let end = session.absolute_expires_at.map(|t| t.unix_seconds());
        next.expires_at = at(within(after(now, ttl), end))?;
    }
    next.updated_at = at(now)?;
    Some(next)
}

/// The bytes the cookie pair would take once `plan` is applied to `current`, or `None` when
/// the plan sets no cookie (a logout) or cannot apply. Computed before any write, so a plan
/// whose cookie would not fit is refused whole.
pub fn planned_pair_bytes(
    config: &Config,
    ring: &CookieKeyring,
    current: Option<&Session>,
    plan: &WritePlan,
    now_nanos: i128,
) -> Option<usize> {
    let now = seconds(now_nanos);
    let session = match plan {
        WritePlan::Flush(_) => return None,
        // Every id has the same length, so any stands in for the one still to be derived.
        WritePlan::Create(create) => created(create, SessionId::from_bytes(&[0; 32]), config, now)?,
        WritePlan::Cycle(_, None) => current?.clone(),
        WritePlan::Cycle(_, Some(patch)) | WritePlan::Patch(_, patch) => {
            patched(current?, patch, now)?
        }
    };
    Some(ring.pair_bytes_for_ref(config.cookie.name(), payload_of(&session, now)))
}

/// Applies one write to `current` (the session as the request carried it, then as each
/// write of the response left it) and answers at once. A delete or a cycle records the old
/// id as revoked in this proxy's table, and returns the revocation for the companion's feed.
pub fn write(
    host: &impl Host,
    config: &Config,
    current: &mut Option<Box<Session>>,
    op: &StoreOp,
) -> (WriteOutcome, Option<AnnounceRevocation>) {
    let now = seconds(host.now_nanos());
    let ring = match &config.store {
        crate::config::StoreMode::Cookie(ring) => ring,
        crate::config::StoreMode::Companion => {
            return (WriteOutcome::Failed(Failure::CallFailed), None);
        }
    };
    let stored = |session: Option<Session>| match session {
        Some(session) => WriteOutcome::Stored(Box::new(session)),
        None => WriteOutcome::Failed(Failure::Unparsable),
    };
    // Writes to an id other than the request's session's are never applied, nor writes to
    // an id revoked since the request read it (a logout on another worker): a cycle would
    // carry the logged-out session on under a new id. The companion would answer 404.
    let mine = |id: &SessionId| {
        current
            .as_deref()
            .filter(|s| s.id == *id && verdict(host, id, now, now) != Verdict::Revoked)
            .cloned()
    };
    let (outcome, revoked) = match op {
        StoreOp::Create(create) => {
            let id = fresh(host, |input| ring.new_id(input));
            (stored(created(create, id, config, now)), None)
        }
        StoreOp::Patch(id, patch) => match mine(id) {
            Some(session) => (stored(patched(&session, patch, now)), None),
            None => (WriteOutcome::Failed(Failure::WrongSession), None),
        },
        StoreOp::Cycle(old) => match mine(old) {
            Some(mut session) => {
                session.id = fresh(host, |input| ring.new_id(input));
                session.updated_at = at(now).unwrap_or(session.updated_at);
                let revoked = revoke(host, config, old, current.as_deref(), now);
                (WriteOutcome::Stored(Box::new(session)), revoked)
            }
            None => (WriteOutcome::Failed(Failure::WrongSession), None),
        },
        StoreOp::Delete(id) => match mine(id) {
            Some(_) => {
                let revoked = revoke(host, config, id, current.as_deref(), now);
                (WriteOutcome::Deleted, revoked)
            }
            None => (WriteOutcome::Failed(Failure::WrongSession), None),
        },
        // The response path refuses x-session-revoke in this mode before any write; a cookie
        // session is kept nowhere, so there is no user's list to end.
        StoreOp::Revoke { .. } => (WriteOutcome::Failed(Failure::CallFailed), None),
    };
    match &outcome {
        WriteOutcome::Stored(session) => *current = Some(session.clone()),
        WriteOutcome::Deleted => *current = None,
        WriteOutcome::Failed(_) => {}
    }
    (outcome, revoked)
}

/// Records `id` as revoked until the last moment a cookie of it can be valid: its cookie's
/// expiry, or `now + ttl` for a value a request racing this one may still re-seal (never
/// past the absolute end). Returns the revocation for the companion.
fn revoke(
    host: &impl Host,
    config: &Config,
    id: &SessionId,
    session: Option<&Session>,
    now: i64,
) -> Option<AnnounceRevocation> {
    let session = session?;
    let end = session.absolute_expires_at.map(|t| t.unix_seconds());
    let until = within(
        session
            .expires_at
            .unix_seconds()
            .max(after(now, session.ttl_seconds)),
        end,
    );
    let handle = id.handle();
    if let Err(err) = cookie_revocations::record(host, &CookieTag::of_handle(&handle), until, now) {
        host.count(Counter::RevocationFailed);
        log::error!(
            "edge-session: session #{}: revocation not recorded ({err}); its cookie stays \
             valid on this proxy until it expires",
            id.short_hash()
        );
    }
    let announce = config.companion.is_some() && until > now;
    announce
        .then(|| at(until))
        .flatten()
        .map(|until| AnnounceRevocation { handle, until })
}

/// `POST /v1/revocations`: tells the companion's feed, so other proxies refuse it too.
pub fn revoke_call(revocation: &AnnounceRevocation) -> HttpCall {
    HttpCall {
        method: "POST",
        path: "/v1/revocations".to_string(),
        // The wire types serialise without fail.
        body: Some(serde_json::to_vec(revocation).unwrap_or_default()),
    }
}

/// Whether the companion recorded a revocation: 201 and nothing else.
pub fn revocation_recorded(status: Option<&[u8]>) -> bool {
    status.and_then(super::companion::parse_status) == Some(201)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{SetError, SharedStore};
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const NOW: i128 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    const T: i64 = 1_767_225_600;

    #[derive(Default)]
    struct FakeHost {
        shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        counted: RefCell<Vec<Counter>>,
    }

    impl Host for FakeHost {
        fn now_nanos(&self) -> i128 {
            NOW
        }
        fn count(&self, counter: Counter) {
            self.counted.borrow_mut().push(counter);
        }
        fn request_id(&self) -> Vec<u8> {
            b"req".to_vec()
        }
    }

    impl SharedStore for FakeHost {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.shared.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], _: u32) -> Result<(), SetError> {
            let mut shared = self.shared.borrow_mut();
            let stamp = shared.len() as u32 + 1;
            shared.insert(key.to_string(), (value.to_vec(), stamp));
            Ok(())
        }
    }

    fn config() -> Config {
        let config = json!({
            "keys": [{"id": "k1", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}],
            "store": "cookie",
            "cookie_store": {"keys": [{"id": "c1",
                "secret": "gYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6A="}]},
            "ttl_seconds": 100, "absolute_ttl_seconds": 150,
        });
        Config::parse(config.to_string().as_bytes()).unwrap()
    }

    fn ring(config: &Config) -> &CookieKeyring {
        match &config.store {
            crate::config::StoreMode::Cookie(ring) => ring,
            crate::config::StoreMode::Companion => unreachable!(),
        }
    }

    fn create(data: serde_json::Value) -> StoreOp {
        StoreOp::Create(CreateSessionRequest {
            data: data.as_object().cloned(),
            user: Some("alice".into()),
            ttl_seconds: Some(100),
            absolute_ttl_seconds: Some(150),
            ..CreateSessionRequest::default()
        })
    }

    #[test]
    fn writes_follow_the_companion_and_a_delete_revokes_the_id() {
        let (host, config) = (FakeHost::default(), config());
        let mut current = None;
        let WriteOutcome::Stored(created) =
            write(&host, &config, &mut current, &create(json!({"a": 1}))).0
        else {
            panic!("create")
        };
        assert_eq!(created.expires_at.unix_seconds(), T + 100);
        assert_eq!(
            created.absolute_expires_at.map(|t| t.unix_seconds()),
            Some(T + 150)
        );
        let id = created.id.clone();
        let patch = PatchSession {
            set: json!({"b": 2}).as_object().cloned(),
            unset: Some(vec!["a".into()]),
            ttl_seconds: Some(1000),
            ..PatchSession::default()
        };
        let WriteOutcome::Stored(patched) = write(
            &host,
            &config,
            &mut current,
            &StoreOp::Patch(id.clone(), patch),
        )
        .0
        else {
            panic!("patch")
        };
        assert_eq!(patched.data, *json!({"b": 2}).as_object().unwrap());
        assert_eq!(
            patched.expires_at.unix_seconds(),
            T + 150,
            "a new lifetime renews, never past the absolute end"
        );
        let other = SessionId::from_bytes(&[1; 32]);
        assert_eq!(
            write(&host, &config, &mut current, &StoreOp::Delete(other)).0,
            WriteOutcome::Failed(Failure::WrongSession),
            "never another session's id"
        );
        let sealed = seal(&host, ring(&config), "sid", &patched).unwrap();
        assert!(open(&host, ring(&config), sealed.as_bytes(), NOW).is_ok());
        assert_eq!(
            write(&host, &config, &mut current, &StoreOp::Delete(id)),
            (WriteOutcome::Deleted, None),
            "without a companion nothing is posted"
        );
        assert!(current.is_none());
        assert_eq!(
            open(&host, ring(&config), sealed.as_bytes(), NOW),
            Err(Refused::Gone("revoked"))
        );
        assert!(!may_reissue(&host, &patched));
    }

    #[test]
    fn the_planned_size_is_the_sealed_size() {
        let (host, config) = (FakeHost::default(), config());
        let data = json!({"cart": ["x", 1, null], "name": "Zoë"});
        let WriteOutcome::Stored(session) =
            write(&host, &config, &mut None, &create(data.clone())).0
        else {
            panic!("create")
        };
        let StoreOp::Create(request) = create(data) else {
            unreachable!()
        };
        let planned = planned_pair_bytes(
            &config,
            ring(&config),
            None,
            &WritePlan::Create(request),
            NOW,
        );
        let sealed = seal(&host, ring(&config), config.cookie.name(), &session).unwrap();
        assert_eq!(planned, Some(config.cookie.name().len() + 1 + sealed.len()));
        let flush = WritePlan::Flush(Some(session.id.clone()));
        assert_eq!(
            planned_pair_bytes(&config, ring(&config), Some(&session), &flush, NOW),
            None
        );
    }

    #[test]
    fn sliding_moves_the_expiry_past_half_its_lifetime_up_to_the_absolute_end() {
        let (host, config) = (FakeHost::default(), config());
        let WriteOutcome::Stored(mut session) =
            write(&host, &config, &mut None, &create(json!({}))).0
        else {
            panic!("create")
        };
        assert!(!slide(&mut session, NOW + 49 * NANOS));
        assert!(slide(&mut session, NOW + 50 * NANOS));
        assert_eq!(session.expires_at.unix_seconds(), T + 150);
        assert!(
            !slide(&mut session, NOW + 140 * NANOS),
            "at the absolute end nothing moves"
        );
    }
}
