//! "Seen" reports (docs/architecture.md, "Seen reports"): the companion keeps each session's
//! `last_seen_at` for the user's list and for the per-user cap, which ends the least recently
//! seen sessions first. A companion call per request would cost what the cache saves, so each
//! worker notes the sessions it served and its root context reports them in batches.
//!
//! Each session is noted once per report: a cached session carries the number of the report
//! it was last noted for, so a cache hit costs one comparison.

use crate::cache::Resolved;
use crate::store::companion::HttpCall;
use proto::{MAX_SEEN_IDS, SeenSessions, SessionId};

/// The most sessions a worker notes between reports; more are dropped (and counted) until a
/// report makes room. Ten reports' worth: a report goes out early when one is full.
pub const MAX_PENDING: usize = 10 * MAX_SEEN_IDS;

/// What a [`Resolved`] carries before it is first noted.
pub const NEVER: u32 = u32::MAX;

/// The sessions served since the last report.
#[derive(Debug, Default)]
pub struct SeenLog {
    /// The number of the report being gathered; never [`NEVER`].
    report: u32,
    pending: Vec<SessionId>,
    /// When the last report went out, ms since the epoch.
    last_report_ms: i64,
}

impl SeenLog {
    /// Notes that `resolved` was served. `false`: the log is full and it was dropped.
    pub fn note(&mut self, resolved: &Resolved) -> bool {
        if resolved.seen.get() == self.report {
            return true;
        }
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        resolved.seen.set(self.report);
        self.pending.push(resolved.id.clone());
        true
    }

    /// Whether a report is due: something to report, and the interval has passed or a
    /// report's worth is waiting.
    pub fn due(&self, now_ms: i64, interval_ms: i64) -> bool {
        !self.pending.is_empty()
            && (now_ms.saturating_sub(self.last_report_ms) >= interval_ms
                || self.pending.len() >= MAX_SEEN_IDS)
    }

    /// The next report: at most [`MAX_SEEN_IDS`] distinct sessions, the rest kept for the
    /// next one. Every session is noted again from here on.
    pub fn take(&mut self, now_ms: i64) -> Vec<SessionId> {
        self.pending
            .sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        self.pending.dedup();
        let rest = self.pending.split_off(self.pending.len().min(MAX_SEEN_IDS));
        let report = std::mem::replace(&mut self.pending, rest);
        self.report = match self.report.wrapping_add(1) {
            NEVER => 0,
            next => next,
        };
        self.last_report_ms = now_ms;
        report
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// `POST /v1/sessions/seen`.
pub fn report_call(ids: &[SessionId]) -> HttpCall {
    let body = SeenSessions {
        ids: ids.iter().map(|id| id.as_str().to_string()).collect(),
    };
    HttpCall {
        method: "POST",
        path: "/v1/sessions/seen".to_string(),
        // A list of strings serializes without fail.
        body: Some(serde_json::to_vec(&body).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::Injection;
    use crate::revocation::RevocationTag;
    use std::cell::Cell;

    fn resolved(n: u32) -> Resolved {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        let id = SessionId::from_bytes(&bytes);
        Resolved {
            injection: Injection {
                headers: vec![],
                omitted: vec![],
            },
            expires_at_nanos: 0,
            ttl_seconds: 60,
            browser_session: false,
            revocation: RevocationTag::of(&id),
            user: None,
            handle: id.handle(),
            assertion: None,
            seen: Cell::new(NEVER),
            id,
        }
    }

    #[test]
    fn a_session_is_noted_once_per_report() {
        let mut log = SeenLog::default();
        let (a, b) = (resolved(1), resolved(2));
        for _ in 0..3 {
            assert!(log.note(&a));
        }
        assert!(log.note(&b));
        assert_eq!(log.len(), 2);
        assert!(
            !log.due(59_999, 60_000),
            "not yet, and not a report's worth"
        );
        assert!(log.due(60_000, 60_000));
        let report = log.take(60_000);
        assert_eq!(report.len(), 2);
        assert!(log.is_empty());
        assert!(!log.due(200_000, 60_000), "nothing to report");
        assert!(log.note(&a), "noted again for the next report");
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn a_full_report_goes_out_early_and_the_log_is_bounded() {
        let mut log = SeenLog::default();
        let many: Vec<Resolved> = (0..MAX_PENDING as u32 + 1).map(resolved).collect();
        for r in &many[..MAX_SEEN_IDS - 1] {
            log.note(r);
        }
        assert!(!log.due(1, 60_000));
        log.note(&many[MAX_SEEN_IDS - 1]);
        assert!(log.due(1, 60_000), "a report's worth is waiting");
        for r in &many[MAX_SEEN_IDS..MAX_PENDING] {
            assert!(log.note(r));
        }
        assert!(!log.note(&many[MAX_PENDING]), "full: dropped");
        assert_eq!(log.len(), MAX_PENDING);
        assert_eq!(
            log.take(1).len(),
            MAX_SEEN_IDS,
            "one call holds at most this many"
        );
        assert_eq!(log.len(), MAX_PENDING - MAX_SEEN_IDS);
    }

    #[test]
    fn uncached_copies_of_one_session_are_reported_once() {
        let mut log = SeenLog::default();
        for _ in 0..5 {
            log.note(&resolved(7));
        }
        assert_eq!(log.len(), 5);
        assert_eq!(log.take(0).len(), 1);
    }

    #[test]
    fn the_report_is_the_companions_body() {
        let call = report_call(&[resolved(1).id]);
        assert_eq!(
            (call.method, call.path.as_str()),
            ("POST", "/v1/sessions/seen")
        );
        let body: SeenSessions = serde_json::from_slice(&call.body.unwrap()).unwrap();
        assert_eq!(body.ids, [resolved(1).id.as_str()]);
    }
}
