//! What the filter injects upstream for a resolved session (docs/architecture.md, "Injected
//! headers"): state, id, user, data as ASCII-only JSON, expiry, whether it is a browser
//! session, and the mapped headers. Values
//! over the size limit are left out and reported, so the caller can count and log the omission.
//!
//! Every value is encoded one-to-one, so two different sessions can never look the same to the
//! app: mapped headers are always JSON (a string too, quotes and all); the user is sent as it
//! is only when it is header-safe and does not start with `"`, and otherwise as an ASCII-only
//! JSON string. An app decodes with one rule: a value starting with `"` is a JSON string,
//! anything else is the value itself.

use crate::config::HeaderNames;
use crate::json_ascii;
use proto::{Session, SessionHandle};

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

/// A string as it is when that cannot be mistaken for anything else (header-safe, not starting
/// with the quote that marks a JSON string), otherwise as an ASCII-only JSON string.
pub fn text_value(text: &str) -> String {
    if header_safe(text) && !text.starts_with('"') {
        text.to_string()
    } else {
        json_ascii::to_string(text)
    }
}

pub fn for_session(names: &HeaderNames, session: &Session, max_bytes: usize) -> Injection {
    for_session_with(names, session, &session.id.handle(), max_bytes)
}

/// [`for_session`] with the session's handle already computed (it costs a SHA-256).
pub fn for_session_with(
    names: &HeaderNames,
    session: &Session,
    handle: &SessionHandle,
    max_bytes: usize,
) -> Injection {
    let mut injection = Injection {
        headers: Vec::with_capacity(7 + names.map.len()),
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
    push(&names.handle, handle.as_str().to_string());
    if let Some(user) = &session.user {
        push(&names.user, text_value(user));
    }
    push(&names.data, json_ascii::to_string(&session.data));
    push(&names.expires, session.expires_at.to_rfc3339());
    let browser = if session.browser_session { "1" } else { "0" };
    push(&names.browser, browser.to_string());
    for (key, header) in &names.map {
        if let Some(value) = session.data.get(key) {
            push(header, json_ascii::to_string(value));
        }
    }
    injection
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::{Value, json};
    use testkit::keys::{COMPANION_TOKEN, UNIT_SIGNING};

    fn names() -> HeaderNames {
        let config = json!({
            "keys": [{"id": "k", "secret": UNIT_SIGNING}],
            "companion": {"cluster": "c", "token": COMPANION_TOKEN},
            "headers": {"map": {"roles": "x-user-roles", "name": "x-user-name", "missing": "x-missing", "n": "x-n"}}
        });
        Config::parse(config.to_string().as_bytes())
            .unwrap()
            .headers
    }

    fn session(data: Value, user: Option<&str>) -> Session {
        let id = proto::SessionId::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        testkit::session(&id)
            .data(data)
            .user(user)
            .ttl_seconds(60)
            .build()
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
        assert_eq!(get(&injection, "x-session-browser"), Some("0"));
        assert_eq!(
            get(&injection, "x-session-handle"),
            Some(s.id.handle().as_str()),
            "the handle, never enough to use the session"
        );
        assert_eq!(
            get(&injection, "x-user-roles"),
            Some(r#"["admin","ops"]"#),
            "non-strings as JSON"
        );
        assert_eq!(
            get(&injection, "x-user-name"),
            Some(r#""Zo\u00eb""#),
            "mapped strings as JSON strings"
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

    /// The collisions an attacker used: each pair once gave the same header.
    #[test]
    fn look_alike_values_stay_apart() {
        let user = |u: &str| {
            let injection = for_session(&names(), &session(json!({}), Some(u)), 8192);
            get(&injection, "x-session-user").map(str::to_string)
        };
        assert_eq!(user("é").as_deref(), Some(r#""\u00e9""#));
        assert_eq!(user(r#""\u00e9""#).as_deref(), Some(r#""\"\\u00e9\"""#));
        assert_eq!(user(" admin").as_deref(), Some(r#"" admin""#));
        assert_eq!(user(r#"" admin""#).as_deref(), Some(r#""\" admin\"""#));
        assert_eq!(
            user("admin").as_deref(),
            Some("admin"),
            "plain users stay plain"
        );
        let mapped = |roles: Value| {
            let injection = for_session(&names(), &session(json!({"roles": roles}), None), 8192);
            get(&injection, "x-user-roles").map(str::to_string)
        };
        assert_eq!(mapped(json!("admin")).as_deref(), Some(r#""admin""#));
        assert_eq!(mapped(json!(["admin"])).as_deref(), Some(r#"["admin"]"#));
        assert_eq!(
            mapped(json!(r#"["admin"]"#)).as_deref(),
            Some(r#""[\"admin\"]""#)
        );
        assert_eq!(mapped(json!(1)).as_deref(), Some("1"));
        assert_eq!(mapped(json!("1")).as_deref(), Some(r#""1""#));
    }

    /// The one decoding rule an app follows for the user (README, "Injected headers").
    fn decode_text(header: &str) -> String {
        if header.starts_with('"') {
            serde_json::from_str(header).unwrap()
        } else {
            header.to_string()
        }
    }

    proptest::proptest! {
        #[test]
        fn user_encoding_is_one_to_one_and_decodes_back(a in ".{0,12}", b in ".{0,12}") {
            let (ea, eb) = (text_value(&a), text_value(&b));
            proptest::prop_assert_eq!(decode_text(&ea), a.clone());
            proptest::prop_assert!(header_safe(&ea) && ea.is_ascii());
            proptest::prop_assert_eq!(a == b, ea == eb);
        }

        #[test]
        fn quote_and_space_edged_users_never_collide(core in "[ -~é]{0,6}") {
            let forms = [
                core.clone(),
                format!("\"{core}\""),
                format!(" {core}"),
                format!("{core} "),
                json_ascii::to_string(&core),
            ];
            for (i, x) in forms.iter().enumerate() {
                for y in &forms[i + 1..] {
                    if x != y {
                        proptest::prop_assert_ne!(text_value(x), text_value(y));
                    }
                }
            }
        }

        #[test]
        fn mapped_values_are_one_to_one(a in json_value(), b in json_value()) {
            let encode = |v: &Value| {
                let injection = for_session(&names(), &session(json!({"roles": v}), None), 1 << 20);
                get(&injection, "x-user-roles").map(str::to_string)
            };
            let (ea, eb) = (encode(&a), encode(&b));
            proptest::prop_assert_eq!(a == b, ea == eb);
            let decoded: Value = serde_json::from_str(ea.as_deref().unwrap()).unwrap();
            proptest::prop_assert_eq!(decoded, a);
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ -~é]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
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
