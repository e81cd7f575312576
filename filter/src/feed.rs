//! Following the companion's revocation feed (docs/architecture.md, "Revocation feed"), so a
//! logout through another proxy (or the API) is honoured here within about one poll interval,
//! whatever the cache TTL.
//!
//! One worker of the proxy polls: it holds a lease in shared data, taken and renewed with
//! compare-and-swap and expiring after `lease_ms`, so a worker that stops polling is replaced.
//! The poller keeps the feed's state in the same shared-data value: the cursor, the entry
//! numbers it applied above the cursor (the feed may answer them again), the time of its last
//! successful poll, a resync generation and the latest user-wide entries. What it reads, it
//! applies: a session's entry goes into the revocation table every worker checks on a cache hit
//! (`revocation`, keyed by the session's handle), so it takes effect at once on every worker.
//!
//! Every worker, the poller included, follows the state on its own tick: a new resync
//! generation clears its cache; a user-wide entry drops that user's cached sessions (but the
//! one it spares); user entries it missed (pushed out of the bounded list) clear its cache; and
//! while the feed has not been read for longer than the cache TTL, the worker caches nothing
//! (every request asks the companion) until a poll succeeds again.

use crate::revocation::{self, RevocationTag, SetError, SharedStore};
use crate::store::cookie_revocations::{self, CookieTag};
use proto::{Revocation, RevocationCursor, RevocationPage, Revoked, SessionHandle};
use serde::{Deserialize, Serialize};

/// The shared-data key of the feed's state.
pub const FEED_KEY: &str = "edge-session/feed";
/// User-wide entries the state keeps for workers to apply; a worker that falls further behind
/// clears its cache.
pub const MAX_USER_ENTRIES: usize = 64;
/// The shared-data key workers draw their lease names from.
pub const WORKERS_KEY: &str = "edge-session/feed/workers";
/// Entries asked for per poll: the most the companion gives in one page.
pub const PAGE_LIMIT: usize = proto::MAX_REVOCATION_PAGE;
/// Writes tried before a state update gives up until the next tick.
const MAX_ATTEMPTS: usize = 16;

/// The feed's state, as the poller writes it and every worker reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedState {
    /// The worker holding the lease, and until when (Unix milliseconds).
    pub owner: u64,
    pub lease_until_ms: i64,
    /// Where the next poll continues; `None` before the first poll (it asks for the head).
    pub cursor: Option<RevocationCursor>,
    /// Entry numbers above the cursor already applied.
    pub applied: Vec<u64>,
    /// The last successful poll (Unix milliseconds); 0 before any.
    pub ok_ms: i64,
    /// Raised on every resync: workers clear their caches.
    pub generation: u64,
    /// The latest user-wide entries, oldest first.
    pub users: Vec<UserEntry>,
    /// The number of the newest user entry pushed out of `users`.
    pub users_floor: u64,
}

/// "Every session of `user` but `except`", entry `seq` of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub seq: u64,
    pub user: String,
    pub except: Option<SessionHandle>,
}

/// Why the state was not read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedError {
    /// The host refused a write, or other writers won every attempt.
    Shared,
    /// The companion's answer is not a page of the feed.
    Unparsable,
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shared => "the feed's shared state could not be written",
            Self::Unparsable => "the companion's answer is not a page of the revocation feed",
        })
    }
}

/// The state and its CAS stamp; a value this version cannot read counts as no state (the next
/// poll starts from the head and raises the generation, so every cache is cleared).
pub fn read(store: &impl SharedStore) -> (Option<FeedState>, u32) {
    match store.get(FEED_KEY) {
        None => (None, 0),
        Some((value, cas)) => (serde_json::from_slice(&value).ok(), cas),
    }
}

/// Read-modify-write of the state under CAS. `change` returns false to leave it as it is.
fn update(
    store: &impl SharedStore,
    mut change: impl FnMut(&mut FeedState) -> bool,
) -> Result<Option<FeedState>, FeedError> {
    for _ in 0..MAX_ATTEMPTS {
        let (state, cas) = read(store);
        let unreadable = state.is_none() && cas != 0;
        let mut state = state.unwrap_or_default();
        if unreadable {
            state.generation = state.generation.wrapping_add(1);
        }
        if !change(&mut state) {
            return Ok(None);
        }
        let value = serde_json::to_vec(&state).map_err(|_| FeedError::Shared)?;
        match store.set(FEED_KEY, &value, cas) {
            Ok(()) => return Ok(Some(state)),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Refused) => return Err(FeedError::Shared),
        }
    }
    Err(FeedError::Shared)
}

/// A number no other worker of this proxy holds, drawn by CAS; `None` when shared data
/// refuses.
pub fn worker_number(store: &impl SharedStore) -> Option<u64> {
    for _ in 0..MAX_ATTEMPTS {
        let (last, cas) = match store.get(WORKERS_KEY) {
            Some((value, cas)) => (
                <[u8; 8]>::try_from(value.as_slice()).map_or(0, u64::from_le_bytes),
                cas,
            ),
            None => (0, 0),
        };
        let next = last.wrapping_add(1).max(1);
        match store.set(WORKERS_KEY, &next.to_le_bytes(), cas) {
            // A key created here may race another creator: read it back.
            Ok(()) if cas == 0 => {
                if store
                    .get(WORKERS_KEY)
                    .is_some_and(|(v, _)| v == next.to_le_bytes())
                {
                    return Some(next);
                }
            }
            Ok(()) => return Some(next),
            Err(SetError::CasMismatch) => {}
            Err(SetError::Refused) => return None,
        }
    }
    None
}

/// Takes or renews the lease for `owner` when it is free, expired or already its own. `true`:
/// this worker polls.
pub fn take_lease(
    store: &impl SharedStore,
    owner: u64,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, FeedError> {
    let taken = update(store, |state| {
        let free = state.owner == owner || state.lease_until_ms <= now_ms;
        if free {
            state.owner = owner;
            state.lease_until_ms = now_ms.saturating_add(lease_ms);
        }
        free
    })?;
    Ok(taken.is_some())
}

/// What the feed's session entries revoke on this proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The companion store: cached copies, through the revocation table (`revocation`).
    CachedSessions,
    /// The cookie store: cookies, through its own table (`store::cookie_revocations`), for
    /// the entries proxies announced (they carry the cookie's expiry).
    Cookies,
}

/// The path of the next poll: the head before the first, then from the cursor.
pub fn poll_path(state: Option<&FeedState>) -> String {
    poll_path_for(state, Target::CachedSessions)
}

/// The path of the next poll for `target`. The cookie store starts from the oldest entry
/// kept rather than the head: a cookie revoked before this proxy started is still a cookie
/// a client can replay here.
pub fn poll_path_for(state: Option<&FeedState>, target: Target) -> String {
    match (state.and_then(|s| s.cursor), target) {
        (None, Target::CachedSessions) => "/v1/revocations".to_string(),
        (None, Target::Cookies) => format!("/v1/revocations?after=start&limit={PAGE_LIMIT}"),
        (Some(cursor), _) => format!("/v1/revocations?after={cursor}&limit={PAGE_LIMIT}"),
    }
}

/// What a poll's answer came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// Applied; `more`: ask again at once.
    Page { applied: usize, more: bool },
    /// The cursor could not be continued: every worker clears its cache.
    Resync,
}

/// Applies one answer of the feed: a page (200) or a resync (410). Sessions' entries go into
/// the revocation table before the cursor moves past them, so a failure in between costs a
/// second application, never a lost entry.
pub fn apply(
    store: &impl SharedStore,
    status: u16,
    body: &[u8],
    now_ms: i64,
) -> Result<Polled, FeedError> {
    apply_to(store, status, body, now_ms, Target::CachedSessions)
}

/// [`apply`], with the session entries going to `target`'s table.
pub fn apply_to(
    store: &impl SharedStore,
    status: u16,
    body: &[u8],
    now_ms: i64,
    target: Target,
) -> Result<Polled, FeedError> {
    if status == 410 {
        let resync: proto::Resync =
            serde_json::from_slice(body).map_err(|_| FeedError::Unparsable)?;
        update(store, |state| {
            state.generation = state.generation.wrapping_add(1);
            // A cache can be cleared; a revoked cookie cannot be taken back, so the cookie
            // store reads every announcement still kept again rather than jump to the head.
            state.cursor = match target {
                Target::CachedSessions => Some(resync.cursor),
                Target::Cookies => None,
            };
            state.applied.clear();
            state.users_floor = state.users.last().map_or(state.users_floor, |u| u.seq);
            state.users.clear();
            state.ok_ms = now_ms;
            true
        })?;
        return Ok(Polled::Resync);
    }
    if status != 200 {
        return Err(FeedError::Unparsable);
    }
    let page: RevocationPage = serde_json::from_slice(body).map_err(|_| FeedError::Unparsable)?;
    let (state, _) = read(store);
    let state = state.unwrap_or_default();
    let fresh: Vec<&Revocation> = page
        .entries
        .iter()
        .filter(|entry| is_new(&state, entry.seq))
        .collect();
    for entry in &fresh {
        let Revoked::Session { handle } = &entry.revoked else {
            continue;
        };
        match (target, entry.until) {
            (Target::CachedSessions, _) => {
                revocation::announce(store, &RevocationTag::of_handle(handle))
                    .map(|_| ())
                    .map_err(|_| FeedError::Shared)?;
            }
            (Target::Cookies, Some(until)) => cookie_revocations::record(
                store,
                &CookieTag::of_handle(handle),
                until.unix_seconds(),
                now_ms.div_euclid(1000),
            )
            .map_err(|_| FeedError::Shared)?,
            // A session the companion held: never a cookie of this store.
            (Target::Cookies, None) => {}
        }
    }
    let applied = fresh.len();
    update(store, |state| {
        for entry in &fresh {
            if !is_new(state, entry.seq) {
                continue;
            }
            state.applied.push(entry.seq);
            if let Revoked::User { user, except } = &entry.revoked {
                state.users.push(UserEntry {
                    seq: entry.seq,
                    user: user.clone(),
                    except: except.clone(),
                });
            }
        }
        state.users.sort_by_key(|u| u.seq);
        while state.users.len() > MAX_USER_ENTRIES {
            let gone = state.users.remove(0);
            state.users_floor = state.users_floor.max(gone.seq);
        }
        let below = cursor_seq(Some(page.cursor));
        state.cursor = Some(page.cursor);
        state.applied.retain(|seq| *seq > below);
        state.applied.sort_unstable();
        state.applied.dedup();
        state.ok_ms = now_ms;
        true
    })?;
    Ok(Polled::Page {
        applied,
        more: page.more,
    })
}

fn cursor_seq(cursor: Option<RevocationCursor>) -> u64 {
    match cursor {
        Some(RevocationCursor::At { seq, .. }) => seq,
        _ => 0,
    }
}

fn is_new(state: &FeedState, seq: u64) -> bool {
    seq > cursor_seq(state.cursor) && !state.applied.contains(&seq)
}

/// What one worker has applied of the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Follower {
    pub generation: u64,
    pub user_seq: u64,
}

/// What a worker does with its cache after reading the state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Follow {
    /// Drop every cached session.
    pub clear: bool,
    /// Drop these users' cached sessions, each but the one whose handle is given.
    pub users: Vec<(String, Option<SessionHandle>)>,
    /// The feed is stale: cache nothing until it is fresh again.
    pub suspend: bool,
}

impl Follower {
    /// Reads the state as of `now_ms`; `stale_after_ms` is the cache TTL. A feed never read
    /// counts as stale.
    pub fn follow(
        &mut self,
        state: Option<&FeedState>,
        now_ms: i64,
        stale_after_ms: i64,
    ) -> Follow {
        // Nothing is cached before the feed's head is read: a session revoked before then
        // would never be seen in the feed by this proxy.
        let mut follow = Follow {
            suspend: true,
            ..Follow::default()
        };
        let Some(state) = state.filter(|s| s.ok_ms > 0) else {
            return follow;
        };
        follow.suspend = now_ms.saturating_sub(state.ok_ms) > stale_after_ms;
        if state.generation != self.generation {
            self.generation = state.generation;
            follow.clear = true;
        }
        if state.users_floor > self.user_seq {
            follow.clear = true;
        }
        for entry in state.users.iter().filter(|u| u.seq > self.user_seq) {
            follow
                .users
                .push((entry.user.clone(), entry.except.clone()));
        }
        self.user_seq = state
            .users
            .last()
            .map_or(state.users_floor, |u| u.seq)
            .max(state.users_floor)
            .max(self.user_seq);
        follow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::fakes::Store;
    use proto::SessionId;
    use serde_json::json;

    fn handle(n: u8) -> SessionHandle {
        SessionId::from_bytes(&[n; 32]).handle()
    }

    fn page(entries: serde_json::Value, cursor: &str, more: bool) -> Vec<u8> {
        json!({"entries": entries, "cursor": cursor, "more": more})
            .to_string()
            .into_bytes()
    }

    fn session_entry(seq: u64, n: u8) -> serde_json::Value {
        json!({"seq": seq, "at": "2026-01-01T00:00:00Z", "kind": "session",
               "handle": handle(n).as_str(), "reason": "deleted"})
    }

    #[test]
    fn one_worker_holds_the_lease_until_it_expires() {
        let store = Store::default();
        assert_eq!(take_lease(&store, 1, 1_000, 3_000), Ok(true));
        assert_eq!(take_lease(&store, 2, 2_000, 3_000), Ok(false), "held by 1");
        assert_eq!(take_lease(&store, 1, 3_000, 3_000), Ok(true), "renewed");
        assert_eq!(take_lease(&store, 2, 5_999, 3_000), Ok(false));
        assert_eq!(
            take_lease(&store, 2, 6_000, 3_000),
            Ok(true),
            "expired: taken"
        );
        assert_eq!(take_lease(&store, 1, 6_001, 3_000), Ok(false));
    }

    #[test]
    fn a_page_revokes_its_sessions_once_and_moves_the_cursor() {
        let store = Store::default();
        assert_eq!(poll_path(None), "/v1/revocations");
        let head = page(json!([]), "4-100", false);
        assert_eq!(
            apply(&store, 200, &head, 10),
            Ok(Polled::Page {
                applied: 0,
                more: false
            })
        );
        let (state, _) = read(&store);
        assert_eq!(
            poll_path(state.as_ref()),
            "/v1/revocations?after=4-100&limit=1000"
        );
        let tag = RevocationTag::of_handle(&handle(1));
        let before = revocation::current(&store);
        assert!(tag.trusts(store.get(&tag.key).map(|v| v.0).as_deref(), before));
        // Entry 6 is answered again in the next page (the overlap): applied once.
        let first = page(
            json!([session_entry(5, 1), session_entry(6, 2)]),
            "5-100",
            true,
        );
        assert_eq!(
            apply(&store, 200, &first, 20),
            Ok(Polled::Page {
                applied: 2,
                more: true
            })
        );
        assert!(!tag.trusts(store.get(&tag.key).map(|v| v.0).as_deref(), before));
        let sequence = revocation::current(&store);
        let again = page(
            json!([session_entry(6, 2), session_entry(7, 3)]),
            "7-100",
            false,
        );
        assert_eq!(
            apply(&store, 200, &again, 30),
            Ok(Polled::Page {
                applied: 1,
                more: false
            })
        );
        assert_eq!(
            revocation::current(&store),
            sequence + 1,
            "only entry 7 announced"
        );
        let (state, _) = read(&store);
        let state = state.unwrap();
        assert_eq!((state.applied.clone(), state.ok_ms), (vec![], 30));
    }

    #[test]
    fn user_entries_reach_every_worker_and_a_resync_clears_every_cache() {
        let store = Store::default();
        let mut worker = Follower::default();
        let entries = json!([{"seq": 2, "at": "2026-01-01T00:00:00Z", "kind": "user",
            "user": "alice", "except": handle(1).as_str(), "reason": "deleted"}]);
        apply(&store, 200, &page(entries, "2-1", false), 1_000).unwrap();
        let (state, _) = read(&store);
        let follow = worker.follow(state.as_ref(), 1_500, 2_000);
        assert_eq!(follow.users, [("alice".to_string(), Some(handle(1)))]);
        assert!(!follow.clear && !follow.suspend);
        let follow = worker.follow(state.as_ref(), 1_600, 2_000);
        assert!(follow.users.is_empty(), "applied once");

        let resync = json!({"error": "resync", "message": "too old", "cursor": "9-5"});
        let answer = apply(&store, 410, resync.to_string().as_bytes(), 2_000);
        assert_eq!(answer, Ok(Polled::Resync));
        let (state, _) = read(&store);
        assert!(worker.follow(state.as_ref(), 2_100, 2_000).clear);
        assert!(!worker.follow(state.as_ref(), 2_200, 2_000).clear);
        assert!(worker.follow(state.as_ref(), 4_001, 2_000).suspend, "stale");
    }

    /// The cookie store starts from the oldest entry kept, puts announced entries in the
    /// cookie table, and after a resync reads them all again rather than jump to the head.
    #[test]
    fn the_cookie_store_reads_announcements_from_the_start_and_again_after_a_resync() {
        let store = Store::default();
        assert_eq!(
            poll_path_for(None, Target::Cookies),
            "/v1/revocations?after=start&limit=1000"
        );
        let entries = json!([{"seq": 3, "at": "2026-01-01T00:00:00Z", "kind": "session",
            "handle": handle(1).as_str(), "reason": "announced", "until": "2026-01-02T00:00:00Z"}]);
        let now_ms = 1_767_225_600_000;
        apply_to(
            &store,
            200,
            &page(entries, "3-1", false),
            now_ms,
            Target::Cookies,
        )
        .unwrap();
        let tag = CookieTag::of_handle(&handle(1));
        let now = now_ms / 1000;
        assert_eq!(
            cookie_revocations::check(&store, &tag, now, now),
            cookie_revocations::Verdict::Revoked
        );
        let (state, _) = read(&store);
        assert_eq!(
            poll_path_for(state.as_ref(), Target::Cookies),
            "/v1/revocations?after=3-1&limit=1000"
        );
        let resync = json!({"error": "resync", "message": "too old", "cursor": "9-5"});
        let body = resync.to_string();
        let answer = apply_to(&store, 410, body.as_bytes(), now_ms, Target::Cookies);
        assert_eq!(answer, Ok(Polled::Resync));
        let (state, _) = read(&store);
        assert_eq!(
            poll_path_for(state.as_ref(), Target::Cookies),
            "/v1/revocations?after=start&limit=1000"
        );
    }

    #[test]
    fn a_worker_that_missed_user_entries_clears_its_cache() {
        let store = Store::default();
        let mut late = Follower::default();
        let entries: Vec<_> = (1..=(MAX_USER_ENTRIES as u64 + 5))
            .map(|seq| {
                json!({"seq": seq, "at": "2026-01-01T00:00:00Z", "kind": "user",
                              "user": format!("u{seq}"), "reason": "deleted"})
            })
            .collect();
        let last = format!("{}-1", MAX_USER_ENTRIES + 5);
        apply(&store, 200, &page(json!(entries), &last, false), 1).unwrap();
        let (state, _) = read(&store);
        assert_eq!(state.as_ref().unwrap().users.len(), MAX_USER_ENTRIES);
        assert!(late.follow(state.as_ref(), 2, 2_000).clear);
    }

    #[test]
    fn bad_answers_change_nothing() {
        let store = Store::default();
        for (status, body) in [(200, &b"{"[..]), (200, b"[]"), (500, b"{}"), (410, b"{}")] {
            assert_eq!(apply(&store, status, body, 1), Err(FeedError::Unparsable));
        }
        assert_eq!(read(&store), (None, 0));
        // A state this version cannot read: the next write raises the generation.
        store.set(FEED_KEY, b"garbage", 0).unwrap();
        apply(&store, 200, &page(json!([]), "1-1", false), 5).unwrap();
        assert_eq!(read(&store).0.unwrap().generation, 1);
    }
}
