//! What the companion's answer to `GET /v1/sessions/{id}` means (DESIGN.md section 2 step 6).

use proto::{Session, SessionId};
use std::fmt;

#[derive(Debug, PartialEq)]
pub enum Resolution {
    Found(Box<Session>),
    /// 404, or a session whose expiry has passed: the cookie is cleared.
    Expired,
    /// The store could not answer; the failure policy decides.
    Unavailable(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Reset or no reply: Envoy delivers the callout with no headers.
    CallFailed,
    /// Any status other than 200 and 404 (Envoy's timeout is a 504).
    Status(u16),
    /// No parsable `:status`.
    NoStatus,
    /// A 200 whose body is not a session.
    Unparsable,
    /// A 200 with another session's id: never inject it.
    WrongSession,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CallFailed => f.write_str("callout failed (reset or no reply)"),
            Self::Status(code) => write!(f, "companion answered {code}"),
            Self::NoStatus => f.write_str("companion reply has no valid :status"),
            Self::Unparsable => f.write_str("companion reply body is not a session"),
            Self::WrongSession => f.write_str("companion answered with another session"),
        }
    }
}

/// Classifies a reply. `status` is `None` for a failed call (no headers).
pub fn classify(
    status: Option<&[u8]>,
    body: &[u8],
    expected: &SessionId,
    now_nanos: i128,
) -> Resolution {
    let Some(status) = status else {
        return Resolution::Unavailable(Failure::CallFailed);
    };
    let code = std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.parse::<u16>().ok());
    match code {
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
    use serde_json::json;

    const ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const NOW: i128 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    fn body(id: &str, expires_at: &str) -> Vec<u8> {
        json!({"id": id, "data": {}, "user": null, "ttl_seconds": 60, "browser_session": false,
               "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "expires_at": expires_at})
        .to_string()
        .into_bytes()
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
            let got = classify(status, &reply, &expected, NOW);
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
