//! The companion as the session store: each store operation as one HTTP call on the companion
//! cluster (the `/v1` API), and each reply as what it means. Pure: the shell makes the calls.

use super::{Failure, Resolution, StoreOp, WriteOutcome};
use crate::control::Revoke;
use proto::{CycleSession, Session, SessionId};

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

/// The client as the filter saw it, kept with a session when it is created or cycled (a
/// login, usually), for the user's list of sessions (docs/architecture.md, "Session listing").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub user_agent: Option<String>,
    pub address: Option<String>,
}

impl Client {
    /// `User-Agent` as text (invalid UTF-8 replaced), cut at a character boundary within
    /// what the companion keeps: the companion would cut it too, this keeps the call small.
    pub fn user_agent(raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw);
        proto::truncate_at_char_boundary(text.trim(), proto::MAX_USER_AGENT_BYTES).to_string()
    }

    /// Envoy's `source.address` (`ip:port`, `[ip6]:port`, or a pipe's path) without the
    /// port, which names a connection, not a client.
    pub fn address(raw: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(raw).ok()?.trim();
        let host = match text.rsplit_once(':') {
            Some((host, port))
                if !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && (host.contains('.') || host.starts_with('[')) =>
            {
                host.trim_start_matches('[').trim_end_matches(']')
            }
            _ => text,
        };
        (!host.is_empty())
            .then(|| proto::truncate_at_char_boundary(host, proto::MAX_CLIENT_ADDRESS_BYTES))
            .map(str::to_string)
    }
}

/// The call that performs a write; a create and a cycle carry the client.
pub fn write_call(op: &StoreOp, client: &Client) -> HttpCall {
    match op {
        StoreOp::Create(create) => {
            let mut create = create.clone();
            create.user_agent = client.user_agent.clone();
            create.client_address = client.address.clone();
            HttpCall {
                method: "POST",
                path: "/v1/sessions".to_string(),
                body: Some(json(&create)),
            }
        }
        StoreOp::Cycle(id) => HttpCall {
            method: "POST",
            path: format!("/v1/sessions/{}/cycle", id.as_str()),
            body: (client.user_agent.is_some() || client.address.is_some()).then(|| {
                json(&CycleSession {
                    user_agent: client.user_agent.clone(),
                    client_address: client.address.clone(),
                })
            }),
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
        StoreOp::Revoke {
            user,
            revoke,
            current,
        } => {
            let sessions = format!("/v1/users/{}/sessions", path_segment(user));
            HttpCall {
                method: "DELETE",
                path: match revoke {
                    Revoke::All => sessions,
                    Revoke::Others => format!("{sessions}?except={}", current.as_str()),
                    Revoke::Session(handle) => format!("{sessions}/{}", handle.as_str()),
                },
                body: None,
            }
        }
    }
}

/// A user id as one path segment: every byte but RFC 3986's unreserved characters
/// percent-encoded, so a `/`, `?`, `%` or space in a user id cannot change the path.
pub(crate) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
        // 404: the named session is gone already (or was never this user's): nothing to end.
        (StoreOp::Revoke { .. }, 200 | 204 | 404) => WriteOutcome::Deleted,
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
    fn a_create_and_a_cycle_carry_the_client() {
        let id = SessionId::parse(ID).unwrap();
        let client = Client {
            user_agent: Some(Client::user_agent(b"  Mozilla/5.0 \xff ")),
            address: Client::address(b"192.0.2.7:51234"),
        };
        let create = write_call(&StoreOp::Create(Default::default()), &client);
        let body: serde_json::Value = serde_json::from_slice(&create.body.unwrap()).unwrap();
        assert_eq!(body["user_agent"], "Mozilla/5.0 \u{fffd}");
        assert_eq!(body["client_address"], "192.0.2.7");
        let cycle = write_call(&StoreOp::Cycle(id.clone()), &client);
        let body: serde_json::Value = serde_json::from_slice(&cycle.body.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"user_agent": "Mozilla/5.0 \u{fffd}", "client_address": "192.0.2.7"})
        );
        let bare = write_call(&StoreOp::Cycle(id), &Client::default());
        assert_eq!(
            bare.body, None,
            "an empty cycle body is the companion's {{}}"
        );
    }

    #[test]
    fn client_addresses_lose_their_port_and_long_agents_are_cut() {
        assert_eq!(
            Client::address(b"[2001:db8::1]:443").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            Client::address(b"2001:db8::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            Client::address(b"/run/envoy.sock").as_deref(),
            Some("/run/envoy.sock")
        );
        assert_eq!(Client::address(b"10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(Client::address(b""), None);
        assert_eq!(Client::address(b"\xff"), None);
        let exact = "a".repeat(proto::MAX_USER_AGENT_BYTES);
        assert_eq!(Client::user_agent(exact.as_bytes()), exact);
        let over = format!("{exact}é");
        assert_eq!(
            Client::user_agent(over.as_bytes()),
            exact,
            "cut at a boundary"
        );
    }

    #[test]
    fn revocations_name_the_user_as_one_path_segment() {
        let id = SessionId::parse(ID).unwrap();
        let call = |user: &str, revoke| {
            let op = StoreOp::Revoke {
                user: user.to_string(),
                revoke,
                current: id.handle(),
            };
            (write_call(&op, &Client::default()), op)
        };
        let (all, op) = call("alice", Revoke::All);
        assert_eq!(
            (all.method, all.path.as_str()),
            ("DELETE", "/v1/users/alice/sessions")
        );
        for status in [b"200".as_slice(), b"204", b"404"] {
            assert_eq!(write_outcome(&op, Some(status), b""), WriteOutcome::Deleted);
        }
        assert_eq!(
            write_outcome(&op, Some(b"503"), b""),
            WriteOutcome::Failed(Failure::Status(503))
        );
        let (others, _) = call("a/b?c=%d é", Revoke::Others);
        assert_eq!(
            others.path,
            format!(
                "/v1/users/a%2Fb%3Fc%3D%25d%20%C3%A9/sessions?except={}",
                id.handle().as_str()
            )
        );
        let (one, _) = call("bob", Revoke::Session(id.handle()));
        assert_eq!(
            one.path,
            format!("/v1/users/bob/sessions/{}", id.handle().as_str())
        );
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
        let call = write_call(&StoreOp::Delete(id.clone()), &Client::default());
        assert_eq!(
            (call.method, call.path.as_str(), call.body),
            ("DELETE", path.as_str(), None)
        );
        let call = write_call(&StoreOp::Cycle(id.clone()), &Client::default());
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
