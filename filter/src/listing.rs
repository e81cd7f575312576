//! The user's list of sessions for the app (docs/architecture.md, "Session listing"): on the
//! configured route, a request whose session is bound to a user gets the companion's list of
//! that user's sessions in one injected header, so a legacy app can render an "active
//! sessions" page without the companion's token. Pure: the shell makes the call.

use crate::json_ascii;
use crate::store::Failure;
use crate::store::companion::{self, HttpCall};
use proto::{SessionHandle, SessionSummary};
use serde::Serialize;

/// `GET /v1/users/{user}/sessions`.
pub fn call(user: &str) -> HttpCall {
    HttpCall {
        method: "GET",
        path: format!("/v1/users/{}/sessions", companion::path_segment(user)),
        body: None,
    }
}

/// Whether a request's `:path` is the listing route: the same path, whatever the query.
pub fn on_route(route: &str, path: &[u8]) -> bool {
    let end = path
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(path.len());
    &path[..end] == route.as_bytes()
}

#[derive(Serialize)]
struct Entry<'a> {
    handle: &'a SessionHandle,
    current: bool,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    browser_session: bool,
    user_agent: &'a Option<String>,
    client_address: &'a Option<String>,
}

/// The header's value when the companion could not be asked or answered otherwise.
pub const UNAVAILABLE: &str = r#"{"error":"unavailable"}"#;

/// The injected header's value from the companion's answer: `{"sessions": [...],
/// "truncated": bool}`, ASCII-only JSON, at most `max_bytes`. Sessions come most recently seen
/// first, as the companion lists them; those that do not fit are left out and `truncated` is
/// true. `current` marks the request's own session.
pub fn header_value(
    status: Option<&[u8]>,
    body: &[u8],
    current: &SessionHandle,
    max_bytes: usize,
) -> Result<String, Failure> {
    let status = status.ok_or(Failure::CallFailed)?;
    match companion::parse_status(status) {
        Some(200) => {}
        Some(other) => return Err(Failure::Status(other)),
        None => return Err(Failure::NoStatus),
    }
    let sessions: Vec<SessionSummary> =
        serde_json::from_slice(body).map_err(|_| Failure::Unparsable)?;
    const OPEN: &str = r#"{"sessions":["#;
    const CLOSE: &str = r#"],"truncated":false}"#;
    let mut out = String::from(OPEN);
    let mut truncated = false;
    for session in &sessions {
        let entry = json_ascii::to_string(&Entry {
            handle: &session.handle,
            current: session.handle == *current,
            created_at: session.created_at.to_rfc3339(),
            last_seen_at: session.last_seen_at.to_rfc3339(),
            expires_at: session.expires_at.to_rfc3339(),
            browser_session: session.browser_session,
            user_agent: &session.user_agent,
            client_address: &session.client_address,
        });
        let comma = usize::from(out.len() > OPEN.len());
        // `truncated` is written as `true`: one byte shorter than `false`.
        if out.len() + comma + entry.len() + CLOSE.len() > max_bytes {
            truncated = true;
            break;
        }
        if comma == 1 {
            out.push(',');
        }
        out.push_str(&entry);
    }
    out.push_str(match truncated {
        true => r#"],"truncated":true}"#,
        false => CLOSE,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::SessionId;
    use serde_json::{Value, json};

    fn handle(n: u8) -> SessionHandle {
        SessionId::from_bytes(&[n; 32]).handle()
    }

    fn listing(n: usize) -> Vec<u8> {
        let entries: Vec<Value> = (0..n)
            .map(|i| {
                json!({"handle": handle(i as u8).as_str(), "created_at": "2026-01-01T00:00:00Z",
                    "last_seen_at": "2026-01-01T00:05:00Z", "expires_at": "2026-01-15T00:00:00Z",
                    "browser_session": false, "user_agent": "Zoë's phone", "client_address": null})
            })
            .collect();
        serde_json::to_vec(&entries).unwrap()
    }

    #[test]
    fn marks_the_current_session_in_ascii_json() {
        let value = header_value(Some(b"200"), &listing(2), &handle(1), 16384).unwrap();
        assert!(value.is_ascii());
        let parsed: Value = serde_json::from_str(&value).unwrap();
        assert_eq!(parsed["truncated"], false);
        assert_eq!(parsed["sessions"][0]["current"], false);
        assert_eq!(parsed["sessions"][1]["current"], true);
        assert_eq!(parsed["sessions"][1]["user_agent"], "Zoë's phone");
        assert_eq!(
            parsed["sessions"][1]["last_seen_at"],
            "2026-01-01T00:05:00Z"
        );
        assert!(parsed["sessions"][0].get("id").is_none());
    }

    #[test]
    fn leaves_out_what_does_not_fit_and_says_so() {
        let full = header_value(Some(b"200"), &listing(3), &handle(0), 1 << 20).unwrap();
        let exact = header_value(Some(b"200"), &listing(3), &handle(0), full.len()).unwrap();
        assert_eq!(exact, full, "exactly at the limit everything fits");
        let cut = header_value(Some(b"200"), &listing(3), &handle(0), full.len() - 1).unwrap();
        let parsed: Value = serde_json::from_str(&cut).unwrap();
        assert_eq!(parsed["truncated"], true);
        assert_eq!(parsed["sessions"].as_array().unwrap().len(), 2);
        assert!(cut.len() < full.len());
        let none = header_value(Some(b"200"), &listing(3), &handle(0), 40).unwrap();
        assert_eq!(none, r#"{"sessions":[],"truncated":true}"#);
    }

    #[test]
    fn anything_but_a_listing_is_a_failure() {
        let current = handle(0);
        assert_eq!(
            header_value(None, b"", &current, 100),
            Err(Failure::CallFailed)
        );
        assert_eq!(
            header_value(Some(b"503"), b"", &current, 100),
            Err(Failure::Status(503))
        );
        assert_eq!(
            header_value(Some(b"x"), b"", &current, 100),
            Err(Failure::NoStatus)
        );
        for body in [&b"{}"[..], b"[{\"handle\":\"short\"}]", b"<html>"] {
            assert_eq!(
                header_value(Some(b"200"), body, &current, 100),
                Err(Failure::Unparsable)
            );
        }
    }

    #[test]
    fn the_route_is_the_path_whatever_the_query() {
        assert!(on_route("/sessions", b"/sessions"));
        assert!(on_route("/sessions", b"/sessions?page=2"));
        assert!(!on_route("/sessions", b"/sessions/"));
        assert!(!on_route("/sessions", b"/Sessions"));
        assert!(!on_route("/sessions", b"/sessionsx"));
    }

    #[test]
    fn the_user_is_one_path_segment() {
        assert_eq!(call("a/b").path, "/v1/users/a%2Fb/sessions");
    }
}
