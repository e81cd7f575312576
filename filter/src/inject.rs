//! What the filter injects upstream for a resolved session (DESIGN.md section 2.1): state, id,
//! user, data as ASCII-only JSON, expiry, and the mapped headers. Values over the size limit
//! are left out and reported, so the caller can count and log the omission.

use crate::config::HeaderNames;
use crate::json_ascii;
use proto::Session;
use serde_json::Value;

/// The headers for one session, rendered once and reused from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    pub headers: Vec<(String, String)>,
    /// Names of headers left out because their value was over `max_header_bytes`.
    pub omitted: Vec<String>,
}

/// Whether a string can go into a header as it is: visible ASCII, inner spaces and tabs, no
/// leading or trailing whitespace (which proxies trim).
fn header_safe(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
        && !bytes.first().is_some_and(|b| b.is_ascii_whitespace())
        && !bytes.last().is_some_and(|b| b.is_ascii_whitespace())
}

/// A string as is when header-safe, otherwise as an ASCII-only JSON string.
fn text_value(text: &str) -> String {
    if header_safe(text) {
        text.to_string()
    } else {
        json_ascii::to_string(text)
    }
}

/// A data value for a mapped header: strings as is (when safe), anything else compact JSON.
fn mapped_value(value: &Value) -> String {
    match value {
        Value::String(text) => text_value(text),
        other => json_ascii::to_string(other),
    }
}

pub fn for_session(names: &HeaderNames, session: &Session, max_bytes: usize) -> Injection {
    let mut injection = Injection {
        headers: Vec::with_capacity(5 + names.map.len()),
        omitted: Vec::new(),
    };
    let mut push = |name: &str, value: String| {
        if value.len() > max_bytes {
            injection.omitted.push(name.to_string());
        } else {
            injection.headers.push((name.to_string(), value));
        }
    };
    push(&names.state, "valid".to_string());
    push(&names.id, session.id.as_str().to_string());
    if let Some(user) = &session.user {
        push(&names.user, text_value(user));
    }
    push(&names.data, json_ascii::to_string(&session.data));
    push(&names.expires, session.expires_at.to_rfc3339());
    for (key, header) in &names.map {
        if let Some(value) = session.data.get(key) {
            push(header, mapped_value(value));
        }
    }
    injection
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn names() -> HeaderNames {
        let config = json!({
            "keys": [{"id": "k", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}],
            "companion": {"cluster": "c", "token": "companion-test-token-0123456789abcdef"},
            "headers": {"map": {"roles": "x-user-roles", "name": "x-user-name", "missing": "x-missing", "n": "x-n"}}
        });
        Config::parse(config.to_string().as_bytes())
            .unwrap()
            .headers
    }

    fn session(data: Value, user: Option<&str>) -> Session {
        serde_json::from_value(json!({
            "id": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "data": data, "user": user, "ttl_seconds": 60, "browser_session": false,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-01T00:01:00+00:00"
        }))
        .unwrap()
    }

    fn get<'a>(injection: &'a Injection, name: &str) -> Option<&'a str> {
        injection
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn injects_every_header_of_a_session() {
        let s = session(
            json!({"roles": ["admin", "ops"], "name": "Zoë", "n": 3, "cart": {"x": 1}}),
            Some("u-42"),
        );
        let injection = for_session(&names(), &s, 8192);
        assert_eq!(get(&injection, "x-session-state"), Some("valid"));
        assert_eq!(
            get(&injection, "x-session-id"),
            Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
        );
        assert_eq!(get(&injection, "x-session-user"), Some("u-42"));
        let data = get(&injection, "x-session-data").unwrap();
        assert!(
            data.is_ascii() && data.contains(r#""name":"Zo\u00eb""#),
            "{data}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(data).unwrap(),
            json!({"cart": {"x": 1}, "n": 3, "name": "Zoë", "roles": ["admin", "ops"]})
        );
        assert_eq!(
            get(&injection, "x-session-expires"),
            Some("2026-01-01T00:01:00Z")
        );
        assert_eq!(
            get(&injection, "x-user-roles"),
            Some(r#"["admin","ops"]"#),
            "non-strings as JSON"
        );
        assert_eq!(
            get(&injection, "x-user-name"),
            Some(r#""Zo\u00eb""#),
            "unsafe strings as JSON strings"
        );
        assert_eq!(get(&injection, "x-n"), Some("3"));
        assert_eq!(get(&injection, "x-missing"), None);
        assert!(injection.omitted.is_empty());
        assert!(
            injection
                .headers
                .iter()
                .all(|(_, v)| v.is_ascii() && !v.contains(['\r', '\n', '\0']))
        );
    }

    #[test]
    fn no_user_no_user_header_and_unsafe_users_are_quoted() {
        let none = for_session(&names(), &session(json!({}), None), 8192);
        assert_eq!(get(&none, "x-session-user"), None);
        let crlf = for_session(&names(), &session(json!({}), Some("a\r\nx-evil: 1")), 8192);
        assert_eq!(get(&crlf, "x-session-user"), Some(r#""a\r\nx-evil: 1""#));
    }

    #[test]
    fn values_over_the_limit_are_omitted_and_reported() {
        let big = "x".repeat(200);
        let injection = for_session(&names(), &session(json!({"name": big}), Some("u")), 100);
        assert_eq!(
            injection.omitted,
            vec!["x-session-data".to_string(), "x-user-name".to_string()]
        );
        assert_eq!(
            get(&injection, "x-session-state"),
            Some("valid"),
            "the state still says valid"
        );
        assert_eq!(get(&injection, "x-session-user"), Some("u"));
    }
}
