//! Control headers (docs/architecture.md, "Control headers"): how a legacy app writes its
//! session through response headers, parsed into what to do, and the companion calls that do it.

use crate::config::{Config, HeaderNames};
use proto::{CreateSessionRequest, PatchSession, SessionHandle, SessionId, Timestamp};
use serde_json::{Map, Value};
use std::fmt;

/// A session's expiry as the app asks for it with `x-session-expiry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Seconds of lifetime; the cookie gets `Max-Age`.
    Seconds(u64),
    /// Cookie without `Max-Age` (gone when the browser closes); the server-side TTL stays.
    Browser,
    /// Back to the configured lifetime.
    Default,
}

/// Which of the user's sessions the app ends with `x-session-revoke` (docs/architecture.md,
/// "Control headers"): applied after the session's own write, for the user the session is
/// bound to once that write is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoke {
    /// Every session of the user, this one too.
    All,
    /// Every session of the user but this one.
    Others,
    /// The session with this handle (another device's, usually).
    Session(SessionHandle),
}

/// Everything the app asked for in one response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Controls {
    pub flush: bool,
    pub cycle: bool,
    /// Keys to set; a `null` value removes the key (JSON merge patch, one level).
    pub set: Option<Map<String, Value>>,
    pub user: Option<String>,
    pub expiry: Option<Expiry>,
    pub revoke: Option<Revoke>,
}

/// A control header that cannot be applied. The whole write is then skipped: the session is
/// not changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlError {
    pub header: String,
    pub reason: &'static str,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.header, self.reason)
    }
}

fn bad(header: &str, reason: &'static str) -> ControlError {
    ControlError {
        header: header.to_string(),
        reason,
    }
}

/// Reads the control headers among a response's headers. `Ok(None)`: the app wrote nothing.
/// A repeated control header is refused, as its meaning would be ambiguous.
/// `now_nanos` turns an absolute expiry into seconds of lifetime, with the proxy's clock.
pub fn parse(
    names: &HeaderNames,
    headers: &[(String, Vec<u8>)],
    max_bytes: usize,
    now_nanos: i128,
) -> Result<Option<Controls>, ControlError> {
    let mut controls = Controls::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut any = false;
    for (name, value) in headers {
        let Some(kind) = control_kind(names, name)? else {
            continue;
        };
        if seen.contains(&kind) {
            return Err(bad(name, "repeated"));
        }
        seen.push(kind);
        any = true;
        if value.len() > max_bytes {
            return Err(bad(name, "too large"));
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| bad(name, "not UTF-8"))?
            .trim();
        match kind {
            "set" => {
                let parsed: Value =
                    serde_json::from_str(text).map_err(|_| bad(name, "not JSON"))?;
                let Value::Object(map) = parsed else {
                    return Err(bad(name, "not a JSON object"));
                };
                if !map.keys().all(|key| proto::valid_data_key(key)) {
                    return Err(bad(name, "empty key"));
                }
                // The companion would refuse it; refused here, it is a bad control header
                // (counted, logged by name) rather than a failed write.
                if !proto::data_within_depth(&map) {
                    return Err(bad(name, "nested too deep"));
                }
                controls.set = Some(map);
            }
            "user" => {
                if !proto::valid_user(text) {
                    return Err(bad(name, "not a user id"));
                }
                controls.user = Some(text.to_string());
            }
            "expiry" => controls.expiry = Some(expiry(name, text, now_nanos)?),
            "cycle" => controls.cycle = flag(name, text)?,
            "revoke" => controls.revoke = Some(revoke(name, text)?),
            _ => controls.flush = flag(name, text)?,
        }
    }
    Ok(any.then_some(controls))
}

/// `x-session-expiry`: seconds of lifetime, an RFC 3339 time (as Django's
/// `set_expiry(datetime)`), `browser` or `default`. A time is turned into the seconds left
/// until it, rounded up, so the session never ends before the time the app named.
fn expiry(name: &str, text: &str, now_nanos: i128) -> Result<Expiry, ControlError> {
    match text {
        "browser" => return Ok(Expiry::Browser),
        "default" => return Ok(Expiry::Default),
        _ => {}
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return match seconds {
            0 => Err(bad(name, "0 seconds: use x-session-flush to end a session")),
            n => Ok(Expiry::Seconds(n)),
        };
    }
    let Some(at) = Timestamp::parse(text) else {
        return Err(bad(
            name,
            "not seconds, an RFC 3339 time, browser or default",
        ));
    };
    let left = at.unix_nanos() - now_nanos;
    if left <= 0 {
        return Err(bad(name, "a time in the past"));
    }
    let seconds = (left + 999_999_999) / 1_000_000_000;
    u64::try_from(seconds)
        .map(Expiry::Seconds)
        .map_err(|_| bad(name, "a time too far ahead"))
}

/// `x-session-revoke`: `all`, `others`, or a session's handle.
fn revoke(name: &str, text: &str) -> Result<Revoke, ControlError> {
    match text {
        "all" => Ok(Revoke::All),
        "others" => Ok(Revoke::Others),
        handle => SessionHandle::parse(handle)
            .map(Revoke::Session)
            .map_err(|_| bad(name, "not all, others or a session handle")),
    }
}

fn flag(name: &str, text: &str) -> Result<bool, ControlError> {
    match text {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(bad(name, "not 1 or 0")),
    }
}

/// Which control header `name` is, if any. A control header's name is the prefix and the
/// kind, in any case, spelled with `-` only: `x_session_set` is removed from the response like
/// every spelling of the prefix, but applying it would let a header the app never meant as
/// ours (or one a framework renamed) change the session, so it is refused by name instead.
fn control_kind(names: &HeaderNames, name: &str) -> Result<Option<&'static str>, ControlError> {
    let Some(suffix) = name
        .get(names.prefix.len()..)
        .filter(|_| names.has_prefix(name))
    else {
        return Ok(None);
    };
    let kind = ["set", "user", "expiry", "cycle", "flush", "revoke"]
        .into_iter()
        .find(|k| suffix.replace('_', "-").eq_ignore_ascii_case(k));
    if kind.is_some() && name.contains('_') {
        return Err(bad(
            name,
            "spelled with '_': control headers are written with '-'",
        ));
    }
    Ok(kind)
}

/// The companion calls a write takes, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum WritePlan {
    /// Delete the session (if any) and clear the cookie.
    Flush(Option<SessionId>),
    /// A new session.
    Create(CreateSessionRequest),
    /// A new id for the session, then the changes (if any) on the new id.
    Cycle(SessionId, Option<PatchSession>),
    Patch(SessionId, PatchSession),
}

/// What to do for `controls`, given the session the request carried (if it was valid).
/// `flush` wins over everything; `cycle` comes first so a login moves pre-login data to the
/// new id; `set`, `user` and `expiry` then apply to the resulting session. The configured
/// lifetime (`ttl_seconds`, `expire_at_browser_close`, `absolute_ttl_seconds`) applies to a
/// new session and to `x-session-expiry: default`.
pub fn plan(controls: Controls, current: Option<&SessionId>, config: &Config) -> Option<WritePlan> {
    if controls.flush {
        return Some(WritePlan::Flush(current.cloned()));
    }
    let default_ttl_seconds = config.ttl_seconds;
    let default_browser = config.expire_at_browser_close;
    let (ttl_seconds, browser_session) = match controls.expiry {
        None => (None, None),
        Some(Expiry::Seconds(n)) => (Some(n), Some(false)),
        Some(Expiry::Browser) => (None, Some(true)),
        Some(Expiry::Default) => (Some(default_ttl_seconds), Some(default_browser)),
    };
    let has_changes =
        controls.set.is_some() || controls.user.is_some() || controls.expiry.is_some();
    match current {
        None if controls.cycle || has_changes => {
            let data = controls
                .set
                .map(|set| set.into_iter().filter(|(_, v)| !v.is_null()).collect());
            Some(WritePlan::Create(CreateSessionRequest {
                data,
                user: controls.user,
                ttl_seconds: Some(ttl_seconds.unwrap_or(default_ttl_seconds)),
                browser_session: browser_session.or(default_browser.then_some(true)),
                absolute_ttl_seconds: config.absolute_ttl_seconds,
                ..CreateSessionRequest::default()
            }))
        }
        None => None,
        Some(id) => {
            let patch = has_changes.then(|| {
                let (set, unset) = split_merge_patch(controls.set);
                PatchSession {
                    set,
                    unset,
                    user: controls.user,
                    ttl_seconds,
                    browser_session,
                    touch: false,
                }
            });
            match (controls.cycle, patch) {
                (true, patch) => Some(WritePlan::Cycle(id.clone(), patch)),
                (false, Some(patch)) => Some(WritePlan::Patch(id.clone(), patch)),
                (false, None) => None,
            }
        }
    }
}

/// A one-level JSON merge patch as the companion's `set` and `unset`.
fn split_merge_patch(
    set: Option<Map<String, Value>>,
) -> (Option<Map<String, Value>>, Option<Vec<String>>) {
    let Some(map) = set else { return (None, None) };
    let mut keep = Map::new();
    let mut remove = Vec::new();
    for (key, value) in map {
        if value.is_null() {
            remove.push(key);
        } else {
            keep.insert(key, value);
        }
    }
    (
        (!keep.is_empty()).then_some(keep),
        (!remove.is_empty()).then_some(remove),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;
    use testkit::keys::{COMPANION_TOKEN, UNIT_SIGNING};

    const NOW: i128 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    /// The smallest configuration, with `extra` merged in and a lifetime of 60 seconds.
    fn config_with(extra: serde_json::Value) -> Config {
        let mut config = json!({
            "keys": [{"id": "k", "secret": UNIT_SIGNING}],
            "companion": {"cluster": "c", "token": COMPANION_TOKEN},
            "ttl_seconds": 60,
        });
        if let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        Config::parse(config.to_string().as_bytes()).unwrap()
    }

    fn config() -> Config {
        config_with(json!({}))
    }

    fn names() -> HeaderNames {
        config().headers
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn parse_list(list: &[(&str, &str)]) -> Result<Option<Controls>, ControlError> {
        parse(&names(), &headers(list), 100, NOW)
    }

    #[test]
    fn reads_every_control_header() {
        let controls = parse_list(&[
            ("content-type", "text/html"),
            ("x-session-set", r#"{"cart": [1], "old": null}"#),
            ("X-Session-User", " alice "),
            ("x-session-expiry", "3600"),
            ("x-session-cycle", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            controls.set,
            json!({"cart": [1], "old": null}).as_object().cloned()
        );
        assert_eq!(controls.user.as_deref(), Some("alice"));
        assert_eq!(controls.expiry, Some(Expiry::Seconds(3600)));
        assert!(controls.cycle && !controls.flush);
        assert_eq!(
            parse_list(&[("x-session-expiry", "browser")])
                .unwrap()
                .unwrap()
                .expiry,
            Some(Expiry::Browser)
        );
        assert_eq!(
            parse_list(&[("x-session-expiry", "default")])
                .unwrap()
                .unwrap()
                .expiry,
            Some(Expiry::Default)
        );
        assert!(
            parse_list(&[("x-session-flush", "1")])
                .unwrap()
                .unwrap()
                .flush
        );
        assert_eq!(
            parse_list(&[("content-type", "text/html"), ("x-session-other", "1")]),
            Ok(None)
        );
    }

    /// The user-id limit is the companion's (`proto::MAX_USER_BYTES`, in bytes of UTF-8): at
    /// it the user is taken, one byte past it is refused by name instead of failing as a write.
    #[test]
    fn a_user_id_at_the_shared_limit_is_taken_and_one_byte_past_refused() {
        let at = format!("{}uu", "é".repeat(127));
        let past = format!("{at}u");
        assert_eq!(at.len(), proto::MAX_USER_BYTES);
        let user = |value: &str| {
            parse(&names(), &headers(&[("x-session-user", value)]), 1024, NOW)
                .map(|c| c.and_then(|c| c.user))
        };
        assert_eq!(user(&at), Ok(Some(at.clone())));
        assert_eq!(user(&past), Err(bad("x-session-user", "not a user id")));
    }

    #[test]
    fn refuses_bad_control_headers_naming_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("x-session-set", "{not json", "not JSON"),
            ("x-session-set", "[1, 2]", "not a JSON object"),
            ("x-session-set", r#"{"": 1}"#, "empty key"),
            ("x-session-set", &"x".repeat(101), "too large"),
            ("x-session-user", "", "not a user id"),
            ("x-session-user", "a\u{7}b", "not a user id"),
            (
                "x-session-expiry",
                "0",
                "0 seconds: use x-session-flush to end a session",
            ),
            (
                "x-session-expiry",
                "soon",
                "not seconds, an RFC 3339 time, browser or default",
            ),
            ("x-session-cycle", "yes", "not 1 or 0"),
            ("x-session-flush", "2", "not 1 or 0"),
        ];
        for (name, value, reason) in cases {
            assert_eq!(
                parse_list(&[(name, value)]),
                Err(bad(name, reason)),
                "{name}: {value}"
            );
        }
        for name in [
            "x_session_set",
            "X_Session_User",
            "x-session_expiry",
            "x_session-cycle",
        ] {
            assert_eq!(
                parse_list(&[(name, "1"), ("x-session-user", "alice")]),
                Err(bad(
                    name,
                    "spelled with '_': control headers are written with '-'"
                )),
                "{name}"
            );
        }
        assert_eq!(
            parse_list(&[("x_session_other", "1")]),
            Ok(None),
            "not a control header, whatever its spelling"
        );
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(
            parse(
                &names(),
                &headers(&[("x-session-set", &format!("{{\"a\":{deep}}}"))]),
                10_000,
                NOW
            )
            .is_err()
        );
        let nested = |depth: usize| {
            format!(
                "{{\"a\":{}1{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        let at_limit = nested(proto::MAX_DATA_DEPTH);
        assert!(matches!(
            parse(
                &names(),
                &headers(&[("x-session-set", &at_limit)]),
                10_000,
                NOW
            ),
            Ok(Some(_))
        ));
        let over = nested(proto::MAX_DATA_DEPTH + 1);
        assert_eq!(
            parse(&names(), &headers(&[("x-session-set", &over)]), 10_000, NOW),
            Err(bad("x-session-set", "nested too deep"))
        );
        let twice = parse_list(&[("x-session-user", "a"), ("x-session-user", "b")]);
        assert_eq!(twice, Err(bad("x-session-user", "repeated")));
        let binary = parse(&names(), &[("x-session-user".into(), vec![0xff])], 100, NOW);
        assert_eq!(binary, Err(bad("x-session-user", "not UTF-8")));
    }

    /// Found by the `control` fuzz target: with serde_json's default float parser, a number
    /// too large for an integer read back one unit in the last place off after the filter
    /// wrote it into the companion's body, so the stored value was not the app's.
    #[test]
    fn numbers_reach_the_companion_as_the_app_wrote_them() {
        let big = format!("1{}", "3".repeat(34));
        for number in [
            big.as_str(),
            "1.333333333333333e34",
            "0.1",
            "-2.5e-300",
            "1e308",
        ] {
            let header = format!("{{\"n\": {number}}}");
            let controls = parse_list(&[("x-session-set", &header)]).unwrap().unwrap();
            let Some(WritePlan::Patch(_, patch)) = plan(controls, Some(&id(1)), &config()) else {
                panic!("{number}")
            };
            let body = serde_json::to_vec(&patch).unwrap();
            let read: PatchSession = serde_json::from_slice(&body).unwrap();
            assert_eq!(read, patch, "{number}");
            let exact: f64 = number.parse().unwrap();
            assert_eq!(read.set.unwrap()["n"].as_f64(), Some(exact), "{number}");
        }
    }

    fn id(n: u8) -> SessionId {
        SessionId::from_bytes(&[n; 32])
    }

    fn controls(
        set: Option<Value>,
        user: Option<&str>,
        expiry: Option<Expiry>,
        cycle: bool,
        flush: bool,
    ) -> Controls {
        Controls {
            flush,
            cycle,
            set: set.and_then(|v| v.as_object().cloned()),
            user: user.map(str::to_string),
            expiry,
            revoke: None,
        }
    }

    #[test]
    fn plans_follow_the_design_order() {
        let current = id(1);
        // flush wins over everything
        assert_eq!(
            plan(
                controls(Some(json!({"a": 1})), Some("u"), None, true, true),
                Some(&current),
                &config()
            ),
            Some(WritePlan::Flush(Some(current.clone())))
        );
        assert_eq!(
            plan(controls(None, None, None, false, true), None, &config()),
            Some(WritePlan::Flush(None))
        );
        // login: cycle first, then the changes on the new id
        let login = plan(
            controls(
                Some(json!({"user": "alice"})),
                Some("alice"),
                None,
                true,
                false,
            ),
            Some(&current),
            &config(),
        );
        let Some(WritePlan::Cycle(old, Some(patch))) = login else {
            panic!("{login:?}")
        };
        assert_eq!(old, current);
        assert_eq!(patch.user.as_deref(), Some("alice"));
        assert_eq!(patch.set, json!({"user": "alice"}).as_object().cloned());
        // cycle with nothing else
        assert_eq!(
            plan(
                controls(None, None, None, true, false),
                Some(&current),
                &config()
            ),
            Some(WritePlan::Cycle(current.clone(), None))
        );
        // set with nulls: merge patch into set and unset
        let Some(WritePlan::Patch(_, patch)) = plan(
            controls(Some(json!({"a": 1, "b": null})), None, None, false, false),
            Some(&current),
            &config(),
        ) else {
            panic!()
        };
        assert_eq!(
            (patch.set, patch.unset),
            (
                json!({"a": 1}).as_object().cloned(),
                Some(vec!["b".to_string()])
            )
        );
        // expiry
        let Some(WritePlan::Patch(_, browser)) = plan(
            controls(None, None, Some(Expiry::Browser), false, false),
            Some(&current),
            &config(),
        ) else {
            panic!()
        };
        assert_eq!(
            (browser.ttl_seconds, browser.browser_session),
            (None, Some(true))
        );
        let Some(WritePlan::Patch(_, default)) = plan(
            controls(None, None, Some(Expiry::Default), false, false),
            Some(&current),
            &config(),
        ) else {
            panic!()
        };
        assert_eq!(
            (default.ttl_seconds, default.browser_session),
            (Some(60), Some(false))
        );
    }

    #[test]
    fn without_a_session_writes_create_one() {
        let Some(WritePlan::Create(create)) = plan(
            controls(
                Some(json!({"a": 1, "gone": null})),
                Some("u"),
                Some(Expiry::Seconds(30)),
                false,
                false,
            ),
            None,
            &config(),
        ) else {
            panic!()
        };
        assert_eq!(
            create.data,
            json!({"a": 1}).as_object().cloned(),
            "nulls mean nothing in a new session"
        );
        assert_eq!(
            (
                create.user.as_deref(),
                create.ttl_seconds,
                create.browser_session
            ),
            (Some("u"), Some(30), Some(false))
        );
        let Some(WritePlan::Create(login)) =
            plan(controls(None, None, None, true, false), None, &config())
        else {
            panic!()
        };
        assert_eq!(login.ttl_seconds, Some(60));
        assert_eq!(
            plan(Controls::default(), None, &config()),
            None,
            "nothing asked, nothing done"
        );
    }

    #[test]
    fn an_expiry_may_be_a_time_turned_into_seconds_with_the_proxys_clock() {
        let expiry = |text: &str| {
            parse_list(&[("x-session-expiry", text)]).map(|c| c.and_then(|c| c.expiry))
        };
        // 2026-01-01T00:00:00Z is NOW.
        assert_eq!(
            expiry("2026-01-01T01:00:00Z"),
            Ok(Some(Expiry::Seconds(3600)))
        );
        assert_eq!(
            expiry("2026-01-01T02:00:00+01:00"),
            Ok(Some(Expiry::Seconds(3600))),
            "any offset"
        );
        assert_eq!(
            expiry("2026-01-01T00:00:00.2Z"),
            Ok(Some(Expiry::Seconds(1))),
            "rounded up, never 0"
        );
        assert_eq!(
            expiry("2026-01-01T00:00:00Z"),
            Err(bad("x-session-expiry", "a time in the past"))
        );
        assert_eq!(
            expiry("2025-12-31T23:59:59Z"),
            Err(bad("x-session-expiry", "a time in the past"))
        );
        assert_eq!(
            expiry("1970-01-01T00:00:00Z"),
            Err(bad("x-session-expiry", "a time in the past"))
        );
        for text in [
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "tomorrow",
            "-5",
            "1.5",
            "",
        ] {
            assert_eq!(
                expiry(text),
                Err(bad(
                    "x-session-expiry",
                    "not seconds, an RFC 3339 time, browser or default"
                )),
                "{text:?}"
            );
        }
        assert_eq!(
            expiry("0"),
            Err(bad(
                "x-session-expiry",
                "0 seconds: use x-session-flush to end a session"
            ))
        );
    }

    #[test]
    fn new_sessions_follow_the_configured_lifetime() {
        let login = controls(None, Some("u"), None, true, false);
        let browser =
            config_with(json!({"expire_at_browser_close": true, "absolute_ttl_seconds": 3600}));
        let Some(WritePlan::Create(create)) = plan(login.clone(), None, &browser) else {
            panic!()
        };
        assert_eq!(
            (
                create.ttl_seconds,
                create.browser_session,
                create.absolute_ttl_seconds
            ),
            (Some(60), Some(true), Some(3600)),
            "a browser session by default, with the absolute limit"
        );
        let Some(WritePlan::Create(create)) = plan(login, None, &config()) else {
            panic!()
        };
        assert_eq!(
            (create.browser_session, create.absolute_ttl_seconds),
            (None, None)
        );
        let lasting = controls(None, None, Some(Expiry::Seconds(30)), false, false);
        let Some(WritePlan::Create(create)) = plan(lasting, None, &browser) else {
            panic!()
        };
        assert_eq!(create.browser_session, Some(false), "the app's expiry wins");
        let reset = controls(None, None, Some(Expiry::Default), false, false);
        let Some(WritePlan::Patch(_, patch)) = plan(reset, Some(&id(1)), &browser) else {
            panic!()
        };
        assert_eq!(
            (patch.ttl_seconds, patch.browser_session),
            (Some(60), Some(true)),
            "default is the configured lifetime, browser-ness included"
        );
    }
}
