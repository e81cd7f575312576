//! The companion as the session store: each store operation as one HTTP call on the companion
//! cluster (the `/v1` API), and each reply as what it means. Pure: the shell makes the calls.

use super::{Failure, Resolution, StoreOp, WriteOutcome};
use proto::{Session, SessionId};

/// One HTTP call to the companion: method, path and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

/// The read of a session: `GET /v1/sessions/{id}`.
pub fn read_call(id: &SessionId) -> HttpCall {
    HttpCall {
        method: "GET",
        path: format!("/v1/sessions/{}", id.as_str()),
        body: None,
    }
}

/// A sliding-expiry touch: `PATCH /v1/sessions/{id}` with `{"touch": true}`.
pub fn touch_call(id: &SessionId) -> HttpCall {
    HttpCall {
        method: "PATCH",
        path: format!("/v1/sessions/{}", id.as_str()),
        body: Some(br#"{"touch":true}"#.to_vec()),
    }
}

/// The call that performs a write.
pub fn write_call(op: &StoreOp) -> HttpCall {
    match op {
        StoreOp::Create(create) => HttpCall {
            method: "POST",
            path: "/v1/sessions".to_string(),
            body: Some(json(create)),
        },
        StoreOp::Cycle(id) => HttpCall {
            method: "POST",
            path: format!("/v1/sessions/{}/cycle", id.as_str()),
            body: None,
        },
        StoreOp::Patch(id, patch) => HttpCall {
            method: "PATCH",
            path: format!("/v1/sessions/{}", id.as_str()),
            body: Some(json(patch)),
        },
        StoreOp::Delete(id) => HttpCall {
            method: "DELETE",
            path: format!("/v1/sessions/{}", id.as_str()),
            body: None,
        },
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // The wire types serialize to JSON without fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// What the companion's reply to a write means. `status` is `None` for a failed call.
pub fn write_outcome(op: &StoreOp, status: Option<&[u8]>, body: &[u8]) -> WriteOutcome {
    let Some(status) = status else {
        return WriteOutcome::Failed(Failure::CallFailed);
    };
    let Some(code) = parse_status(status) else {
        return WriteOutcome::Failed(Failure::NoStatus);
    };
    let session = || match serde_json::from_slice::<Session>(body) {
        Ok(session) => WriteOutcome::Stored(Box::new(session)),
        Err(_) => WriteOutcome::Failed(Failure::Unparsable),
    };
    match (op, code) {
        (StoreOp::Delete(_), 204 | 404) => WriteOutcome::Deleted,
        (StoreOp::Create(_) | StoreOp::Cycle(_), 201) | (StoreOp::Patch(..), 200) => session(),
        (_, other) => WriteOutcome::Failed(Failure::Status(other)),
    }
}

/// A reply's `:status` as a number; `None` for anything but decimal digits in UTF-8.
pub fn parse_status(status: &[u8]) -> Option<u16> {
    std::str::from_utf8(status).ok()?.parse().ok()
}

/// What the companion's reply to a read means. `status` is `None` for a failed call (Envoy
/// delivers it with no headers).
pub fn resolution(
    status: Option<&[u8]>,
    body: &[u8],
    expected: &SessionId,
    now_nanos: i128,
) -> Resolution {
    let Some(status) = status else {
        return Resolution::Unavailable(Failure::CallFailed);
    };
    match parse_status(status) {
        Some(200) => match serde_json::from_slice::<Session>(body) {
            Err(_) => Resolution::Unavailable(Failure::Unparsable),
            Ok(session) if session.id != *expected => {
                Resolution::Unavailable(Failure::WrongSession)
            }
            Ok(session) if session.expires_at.unix_nanos() <= now_nanos => Resolution::Expired,
            Ok(session) => Resolution::Found(Box::new(session)),
        },
        Some(404) => Resolution::Expired,
        Some(other) => Resolution::Unavailable(Failure::Status(other)),
        None => Resolution::Unavailable(Failure::NoStatus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const NOW: i128 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    fn body(id: &str, expires_at: &str) -> Vec<u8> {
        testkit::session(&SessionId::parse(id).unwrap())
            .ttl_seconds(60)
            .expires_at(expires_at)
            .body()
            .into_bytes()
    }

    #[test]
    fn maps_every_kind_of_write_reply() {
        let id = SessionId::parse(ID).unwrap();
        let stored = body(ID, "2026-01-01T00:10:00Z");
        let create = StoreOp::Create(Default::default());
        let cycle = StoreOp::Cycle(id.clone());
        let patch = StoreOp::Patch(id.clone(), Default::default());
        let delete = StoreOp::Delete(id.clone());
        let is_stored = |o: &WriteOutcome| matches!(o, WriteOutcome::Stored(s) if s.id == id);
        assert!(is_stored(&write_outcome(&create, Some(b"201"), &stored)));
        assert!(is_stored(&write_outcome(&cycle, Some(b"201"), &stored)));
        assert!(is_stored(&write_outcome(&patch, Some(b"200"), &stored)));
        assert_eq!(
            write_outcome(&delete, Some(b"204"), b""),
            WriteOutcome::Deleted
        );
        assert_eq!(
            write_outcome(&delete, Some(b"404"), b""),
            WriteOutcome::Deleted,
            "deleting a gone session is done"
        );
        let failures: Vec<(&StoreOp, Option<&[u8]>, &[u8], Failure)> = vec![
            (&create, None, b"", Failure::CallFailed),
            (&create, Some(b"200"), &stored, Failure::Status(200)),
            (&patch, Some(b"201"), &stored, Failure::Status(201)),
            (&patch, Some(b"404"), b"", Failure::Status(404)),
            (&cycle, Some(b"404"), b"", Failure::Status(404)),
            (&delete, Some(b"503"), b"", Failure::Status(503)),
            (&create, Some(b"201"), b"<html>", Failure::Unparsable),
            (&patch, Some(b"2oo"), &stored, Failure::NoStatus),
        ];
        for (op, status, reply, failure) in failures {
            assert_eq!(
                write_outcome(op, status, reply),
                WriteOutcome::Failed(failure),
                "{op:?} {status:?}"
            );
        }
    }

    #[test]
    fn every_write_is_one_call_on_the_v1_api() {
        let id = SessionId::parse(ID).unwrap();
        let path = format!("/v1/sessions/{ID}");
        let call = write_call(&StoreOp::Delete(id.clone()));
        assert_eq!(
            (call.method, call.path.as_str(), call.body),
            ("DELETE", path.as_str(), None)
        );
        let call = write_call(&StoreOp::Cycle(id.clone()));
        assert_eq!(call.path, format!("{path}/cycle"));
        let call = touch_call(&id);
        assert_eq!(
            (call.method, call.body.as_deref()),
            ("PATCH", Some(&br#"{"touch":true}"#[..]))
        );
        assert_eq!(read_call(&id).method, "GET");
    }

    #[test]
    fn maps_every_kind_of_reply() {
        let expected = SessionId::parse(ID).unwrap();
        let other = SessionId::from_bytes(&[9; 32]);
        let live = body(ID, "2026-01-01T00:10:00Z");
        let cases: Vec<(&str, Option<&[u8]>, Vec<u8>, Option<Resolution>)> = vec![
            (
                "failed call",
                None,
                vec![],
                Some(Resolution::Unavailable(Failure::CallFailed)),
            ),
            ("200", Some(b"200"), live.clone(), None),
            (
                "404",
                Some(b"404"),
                b"{\"error\":\"not_found\"}".to_vec(),
                Some(Resolution::Expired),
            ),
            (
                "500",
                Some(b"500"),
                vec![],
                Some(Resolution::Unavailable(Failure::Status(500))),
            ),
            (
                "envoy timeout",
                Some(b"504"),
                b"upstream request timeout".to_vec(),
                Some(Resolution::Unavailable(Failure::Status(504))),
            ),
            (
                "401 misconfigured token",
                Some(b"401"),
                vec![],
                Some(Resolution::Unavailable(Failure::Status(401))),
            ),
            (
                "garbage body",
                Some(b"200"),
                b"<html>".to_vec(),
                Some(Resolution::Unavailable(Failure::Unparsable)),
            ),
            (
                "empty body",
                Some(b"200"),
                vec![],
                Some(Resolution::Unavailable(Failure::Unparsable)),
            ),
            (
                "wrong id",
                Some(b"200"),
                body(other.as_str(), "2026-01-01T00:10:00Z"),
                Some(Resolution::Unavailable(Failure::WrongSession)),
            ),
            (
                "expired by now",
                Some(b"200"),
                body(ID, "2026-01-01T00:00:00Z"),
                Some(Resolution::Expired),
            ),
            (
                "bad status",
                Some(b"2x0"),
                live.clone(),
                Some(Resolution::Unavailable(Failure::NoStatus)),
            ),
            (
                "non-utf8 status",
                Some(b"\xff"),
                live.clone(),
                Some(Resolution::Unavailable(Failure::NoStatus)),
            ),
            (
                "deep json",
                Some(b"200"),
                "[".repeat(10_000).into_bytes(),
                Some(Resolution::Unavailable(Failure::Unparsable)),
            ),
        ];
        for (name, status, reply, expected_resolution) in cases {
            let got = resolution(status, &reply, &expected, NOW);
            match expected_resolution {
                Some(resolution) => assert_eq!(got, resolution, "{name}"),
                None => assert!(
                    matches!(got, Resolution::Found(ref s) if s.id == expected),
                    "{name}: {got:?}"
                ),
            }
        }
    }
}
