//! The cookie store mode (docs/architecture.md, "Cookie store"): the whole session in a sealed
//! cookie, read and written with no callout; the same injected headers and control headers as
//! the companion store; the size limit; revocation across workers and through the feed.

use crate::support::*;
use filter::store::cookie::{CookieKey, CookieKeyring, CookiePayload};
use filter::store::cookie_revocations::CookieTag;
use filter::token::KeyId;
use harness::{CalloutReply, Vm};
use proptest::prelude::*;
use proto::SessionId;
use serde_json::{Value, json};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);
/// 32 bytes 0x81..0xa0, base64: the cookie store's key `c1`.
const COOKIE_SECRET: &str = "gYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6A=";
/// 32 bytes 0xa1..0xc0, base64: the cookie store's key `c2`.
const COOKIE_SECRET_2: &str = "oaKjpKWmp6ipqqusra6vsLGys7S1tre4ubq7vL2+v8A=";

fn c1() -> Value {
    json!({"id": "c1", "secret": COOKIE_SECRET})
}

fn c2() -> Value {
    json!({"id": "c2", "secret": COOKIE_SECRET_2})
}

/// Cookie mode with no companion, `overrides` merged in at the top level.
fn cookie_config(overrides: Value) -> Value {
    let mut config = json!({
        "keys": [{"id": "k1", "secret": SECRET_A}],
        "store": "cookie",
        "cookie_store": {"keys": [c1()]},
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    config
}

/// Cookie mode with the companion configured (revocations go to its feed too).
fn with_companion(overrides: Value) -> Value {
    let mut config = cookie_config(json!({
        "companion": {"cluster": "companion", "token": COMPANION_TOKEN},
        "revocation_feed": {"interval_ms": 0},
    }));
    if let (Some(base), Some(extra)) = (config.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    config
}

/// The test keys, natively, to read what the filter sealed.
fn ring() -> CookieKeyring {
    use base64::Engine;
    let key = |id: &str, secret: &str| {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap();
        CookieKey::new(KeyId::parse(id).unwrap(), &secret)
    };
    CookieKeyring::new(vec![key("c1", COOKIE_SECRET), key("c2", COOKIE_SECRET_2)]).unwrap()
}

/// `name=value` of a `Set-Cookie` value.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

fn value_of(set_cookie: &str) -> &str {
    pair(set_cookie).split_once('=').unwrap().1
}

/// What the filter sealed into a `Set-Cookie` value.
fn payload(set_cookie: &str) -> CookiePayload {
    ring()
        .open_any_time(value_of(set_cookie).as_bytes())
        .unwrap()
}

fn max_age(set_cookie: &str) -> Option<u64> {
    set_cookie
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .map(|n| n.parse().unwrap())
}

fn clear() -> Option<&'static str> {
    Some("sid=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// A request without a cookie whose response carries `controls`; returns the `Set-Cookie`.
fn login(vm: &mut Vm, controls: &[(&str, &str)]) -> String {
    let s = get(vm, &[]);
    assert_eq!(upstream(vm, s).get("x-session-state"), Some("none"));
    let out = respond(vm, s, controls);
    assert!(
        vm.pending_callouts().is_empty(),
        "no callout in cookie mode"
    );
    out.headers
        .get("set-cookie")
        .unwrap_or_else(|| panic!("no cookie set: {out:#?}"))
        .to_string()
}

/// A request carrying `set_cookie`'s pair, answered with `controls`: the upstream headers and
/// what reached the client.
fn visit(
    vm: &mut Vm,
    set_cookie: &str,
    controls: &[(&str, &str)],
) -> (harness::HeaderMap, harness::Message) {
    let s = get_with_cookie(vm, pair(set_cookie));
    let up = upstream(vm, s);
    let out = respond(vm, s, controls);
    (up, out)
}

fn state(up: &harness::HeaderMap) -> Option<&str> {
    up.get("x-session-state")
}

#[test]
fn a_login_seals_the_session_into_the_cookie_and_the_next_request_gets_it_injected() {
    let (host, mut vm) = start(cookie_config(json!({})));
    let cookie = login(
        &mut vm,
        &[
            ("x-session-user", "alice"),
            ("x-session-set", r#"{"cart": [1], "gone": null}"#),
            ("cache-control", "public, max-age=60"),
        ],
    );
    assert!(value_of(&cookie).starts_with("v1.c1."), "{cookie}");
    assert!(
        cookie.ends_with("; Max-Age=1209600; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    let sealed = payload(&cookie);
    assert_eq!(sealed.user.as_deref(), Some("alice"));
    assert_eq!(
        sealed.data,
        json!({"cart": [1]}).as_object().cloned().unwrap()
    );
    assert_eq!(sealed.expires_at - sealed.created_at, 1_209_600);

    let (up, out) = visit(&mut vm, &cookie, &[]);
    assert_eq!(
        session_headers(&up),
        vec![
            ("x-session-state".to_string(), "valid".to_string()),
            ("x-session-id".into(), sealed.id.as_str().into()),
            (
                "x-session-handle".into(),
                sealed.id.handle().as_str().into()
            ),
            ("x-session-user".into(), "alice".into()),
            ("x-session-data".into(), r#"{"cart":[1]}"#.into()),
            ("x-session-expires".into(), "2026-01-15T00:00:00Z".into()),
            ("x-session-browser".into(), "0".into()),
        ],
        "the same headers, in the same order, as the companion store injects"
    );
    assert_eq!(up.get("cookie"), None, "the cookie does not go upstream");
    assert_eq!(out.headers.get("set-cookie"), None, "nothing changed");
    assert_eq!(out.headers.get("vary"), Some("Cookie"));
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(host.counter("edge_session_valid"), 1);
    assert_eq!(host.counter("edge_session_writes"), 1);
}

#[test]
fn set_and_expiry_rewrite_the_cookie_and_keep_the_id() {
    let (_host, mut vm) = start(cookie_config(json!({})));
    let first = login(&mut vm, &[("x-session-set", r#"{"a": 1, "b": 2}"#)]);
    let (_, out) = visit(
        &mut vm,
        &first,
        &[
            ("x-session-set", r#"{"a": null, "c": "Zoë"}"#),
            ("x-session-expiry", "600"),
        ],
    );
    let second = out.headers.get("set-cookie").unwrap().to_string();
    assert_eq!(max_age(&second), Some(600));
    let (before, after) = (payload(&first), payload(&second));
    assert_eq!(after.id, before.id, "a change keeps the id");
    assert_eq!(
        after.data,
        json!({"b": 2, "c": "Zoë"}).as_object().cloned().unwrap()
    );
    assert_eq!(after.ttl_seconds, 600);
    let (up, _) = visit(&mut vm, &second, &[]);
    assert_eq!(up.get("x-session-data"), Some(r#"{"b":2,"c":"Zo\u00eb"}"#));

    // A browser session: no Max-Age, the expiry still in the cookie.
    let (_, out) = visit(&mut vm, &second, &[("x-session-expiry", "browser")]);
    let browser = out.headers.get("set-cookie").unwrap().to_string();
    assert_eq!(max_age(&browser), None, "{browser}");
    assert!(payload(&browser).browser_session);
    let (up, _) = visit(&mut vm, &browser, &[]);
    assert_eq!(up.get("x-session-browser"), Some("1"));
}

#[test]
fn tampered_cookies_and_a_removed_keys_cookies_are_invalid_and_cleared() {
    let (host, mut vm) = start(cookie_config(json!({})));
    let cookie = login(&mut vm, &[("x-session-user", "alice")]);
    let value = value_of(&cookie);
    let mut changed = value.as_bytes().to_vec();
    let at = changed.len() - 5;
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let forged = format!("sid={}", String::from_utf8(changed).unwrap());
    for bad in [
        forged.as_str(),
        "sid=v1.c1.AAAA",
        "sid=v2.c1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sid=k1.not.atoken",
    ] {
        let s = get_with_cookie(&mut vm, bad);
        let up = upstream(&vm, s);
        assert_eq!(state(&up), Some("invalid"), "{bad}");
        assert_eq!(up.get("x-session-user"), None);
        assert_eq!(
            respond(&mut vm, s, &[]).headers.get("set-cookie"),
            clear(),
            "{bad}"
        );
    }
    assert_eq!(host.counter("edge_session_invalid"), 4);

    // Rotation: a ring with a new first key opens the old cookie and seals with the new key.
    let (_, mut rotated) = start(cookie_config(
        json!({"cookie_store": {"keys": [c2(), c1()]}}),
    ));
    let (up, out) = visit(&mut rotated, &cookie, &[("x-session-set", r#"{"k": 1}"#)]);
    assert_eq!(state(&up), Some("valid"));
    let resealed = out.headers.get("set-cookie").unwrap();
    assert!(value_of(resealed).starts_with("v1.c2."), "{resealed}");
    // The old key removed: its cookies are invalid; the new key's are not.
    let (_, mut removed) = start(cookie_config(json!({"cookie_store": {"keys": [c2()]}})));
    let (up, out) = visit(&mut removed, &cookie, &[]);
    assert_eq!(state(&up), Some("invalid"));
    assert_eq!(out.headers.get("set-cookie"), clear());
    let (up, _) = visit(&mut removed, resealed, &[]);
    assert_eq!(state(&up), Some("valid"));
}

/// Two different session cookies: no session, and nothing cleared (the tossed one would take
/// over), exactly as with the companion store.
#[test]
fn several_different_session_cookies_are_invalid_and_not_cleared() {
    let (_host, mut vm) = start(cookie_config(json!({})));
    let a = login(&mut vm, &[("x-session-user", "a")]);
    let b = login(&mut vm, &[("x-session-user", "b")]);
    let s = get(
        &mut vm,
        &[
            ("cookie", pair(&a)),
            ("cookie", &format!("theme=1; {}", pair(&b))),
        ],
    );
    let up = upstream(&vm, s);
    assert_eq!(state(&up), Some("invalid"));
    assert_eq!(up.get("x-session-user"), None);
    assert_eq!(respond(&mut vm, s, &[]).headers.get("set-cookie"), None);
}

/// The expiry inside the payload is the filter's: a client that kept the cookie past its
/// `Max-Age` gets `expired`, and the cookie is cleared.
#[test]
fn an_expired_payload_is_expired_and_cleared_whatever_max_age_the_client_kept() {
    let (host, mut vm) = start(cookie_config(json!({})));
    let cookie = login(
        &mut vm,
        &[("x-session-user", "alice"), ("x-session-expiry", "60")],
    );
    assert_eq!(max_age(&cookie), Some(60));
    vm.advance(Duration::from_secs(59)).unwrap();
    let (up, _) = visit(&mut vm, &cookie, &[]);
    assert_eq!(state(&up), Some("valid"));
    vm.advance(SECOND).unwrap();
    let (up, out) = visit(&mut vm, &cookie, &[("x-session-set", r#"{"a": 1}"#)]);
    assert_eq!(state(&up), Some("expired"));
    assert_eq!(up.get("x-session-user"), None);
    assert_eq!(
        out.headers
            .get("set-cookie")
            .map(|c| payload(c).id != payload(&cookie).id),
        Some(true),
        "a write after expiry starts a new session, never the old id"
    );
    let (up, out) = visit(&mut vm, &cookie, &[]);
    assert_eq!(state(&up), Some("expired"));
    assert_eq!(out.headers.get("set-cookie"), clear());
    assert_eq!(host.counter("edge_session_expired"), 2);
}

/// Sliding expiry with no store: past half its lifetime the cookie is re-sealed with the new
/// expiry (`refresh_cookie: on_touch`), browser sessions included; with `never` it is not,
/// and the session ends at its first expiry.
#[test]
fn sliding_expiry_reseals_the_cookie_past_half_its_lifetime() {
    let (_host, mut vm) = start(cookie_config(json!({"ttl_seconds": 100})));
    let first = login(&mut vm, &[("x-session-user", "alice")]);
    assert_eq!(max_age(&first), Some(100));
    vm.advance(Duration::from_secs(49)).unwrap();
    let (_, out) = visit(&mut vm, &first, &[]);
    assert_eq!(
        out.headers.get("set-cookie"),
        None,
        "before half its lifetime"
    );
    vm.advance(Duration::from_secs(1)).unwrap();
    let (up, out) = visit(&mut vm, &first, &[]);
    assert_eq!(state(&up), Some("valid"));
    let renewed = out.headers.get("set-cookie").unwrap().to_string();
    assert_eq!(max_age(&renewed), Some(100));
    assert_eq!(
        payload(&renewed).expires_at,
        payload(&first).expires_at + 50
    );
    assert_eq!(payload(&renewed).id, payload(&first).id);
    vm.advance(Duration::from_secs(51)).unwrap();
    assert_eq!(state(&visit(&mut vm, &first, &[]).0), Some("expired"));
    assert_eq!(state(&visit(&mut vm, &renewed, &[]).0), Some("valid"));

    let browser = login(&mut vm, &[("x-session-expiry", "browser")]);
    vm.advance(Duration::from_secs(60)).unwrap();
    let (_, out) = visit(&mut vm, &browser, &[]);
    let resealed = out.headers.get("set-cookie").unwrap();
    assert_eq!(
        max_age(resealed),
        None,
        "a browser session's cookie stays one"
    );
    assert!(payload(resealed).expires_at > payload(&browser).expires_at);

    let (_, mut never) = start(cookie_config(
        json!({"ttl_seconds": 100, "refresh_cookie": "never"}),
    ));
    let cookie = login(&mut never, &[("x-session-user", "bob")]);
    never.advance(Duration::from_secs(60)).unwrap();
    assert_eq!(
        visit(&mut never, &cookie, &[]).1.headers.get("set-cookie"),
        None
    );
    never.advance(Duration::from_secs(40)).unwrap();
    assert_eq!(state(&visit(&mut never, &cookie, &[]).0), Some("expired"));
}

#[test]
fn the_absolute_limit_holds_through_sliding_and_cycles() {
    let (_host, mut vm) = start(cookie_config(
        json!({"ttl_seconds": 100, "absolute_ttl_seconds": 150}),
    ));
    let mut cookie = login(&mut vm, &[("x-session-user", "alice")]);
    let end = payload(&cookie).created_at + 150;
    assert_eq!(payload(&cookie).absolute_expires_at, Some(end));
    for _ in 0..2 {
        vm.advance(Duration::from_secs(60)).unwrap();
        let (up, out) = visit(&mut vm, &cookie, &[("x-session-cycle", "1")]);
        assert_eq!(state(&up), Some("valid"));
        cookie = out.headers.get("set-cookie").unwrap().to_string();
        assert!(payload(&cookie).expires_at <= end);
    }
    vm.advance(Duration::from_secs(30)).unwrap();
    assert_eq!(state(&visit(&mut vm, &cookie, &[]).0), Some("expired"));
}

/// A cycle gives a new id (a login stops fixation), and the old cookie is refused on every
/// worker of the proxy; a logout clears the cookie and its replay is refused everywhere.
#[test]
fn cycle_and_flush_revoke_the_old_cookie_on_every_worker() {
    let host = host();
    let cfg = cookie_config(json!({}));
    let mut a = try_start(&host, &cfg).unwrap();
    let mut b = try_start(&host, &cfg).unwrap();
    let anonymous = login(&mut a, &[("x-session-set", r#"{"cart": [1]}"#)]);
    let (_, out) = visit(
        &mut a,
        &anonymous,
        &[("x-session-cycle", "1"), ("x-session-user", "alice")],
    );
    let logged_in = out.headers.get("set-cookie").unwrap().to_string();
    let (old, new) = (payload(&anonymous), payload(&logged_in));
    assert_ne!(new.id, old.id, "a cycle gives a new id");
    assert_eq!(new.data, old.data, "and keeps the data");
    assert_eq!(new.created_at, old.created_at);
    assert_eq!(new.user.as_deref(), Some("alice"));

    let (up, out) = visit(&mut b, &anonymous, &[]);
    assert_eq!(state(&up), Some("expired"), "the old id, replayed on b");
    assert_eq!(out.headers.get("set-cookie"), clear());
    let (up, _) = visit(&mut b, &logged_in, &[]);
    assert_eq!(state(&up), Some("valid"));
    assert_eq!(up.get("x-session-user"), Some("alice"));

    let (_, out) = visit(&mut b, &logged_in, &[("x-session-flush", "1")]);
    assert_eq!(out.headers.get("set-cookie"), clear());
    for vm in [&mut a, &mut b] {
        let (up, out) = visit(vm, &logged_in, &[]);
        assert_eq!(state(&up), Some("expired"), "a logout that means it");
        assert_eq!(out.headers.get("set-cookie"), clear());
    }
    assert!(a.pending_callouts().is_empty() && b.pending_callouts().is_empty());
    // Another proxy (its own shared data) learns nothing without a companion: the replay
    // window stated in docs/architecture.md, "Cookie store revocation".
    let (_, mut other) = start(cfg);
    assert_eq!(state(&visit(&mut other, &logged_in, &[]).0), Some("valid"));
}

/// A flush on one worker while another worker's request for the same session is in flight:
/// that request's response cannot re-issue the revoked id's cookie.
#[test]
fn a_response_racing_a_logout_does_not_reissue_the_revoked_cookie() {
    let host = host();
    let cfg = cookie_config(json!({"refresh_cookie": "every_request"}));
    let mut a = try_start(&host, &cfg).unwrap();
    let mut b = try_start(&host, &cfg).unwrap();
    let cookie = login(&mut a, &[("x-session-user", "alice")]);
    let slow = get_with_cookie(&mut b, pair(&cookie));
    assert_eq!(state(&upstream(&b, slow)), Some("valid"));
    let (_, out) = visit(&mut a, &cookie, &[("x-session-flush", "1")]);
    assert_eq!(out.headers.get("set-cookie"), clear());
    let out = respond(&mut b, slow, &[]);
    assert_eq!(
        out.headers.get("set-cookie"),
        None,
        "not renewed after the logout"
    );
    let (_, out) = visit(&mut b, &cookie, &[]);
    assert_eq!(out.headers.get("set-cookie"), clear());

    // Nor does a racing write: a cycle would carry the session on under a new id, and a
    // longer expiry would outlive the revocation.
    for controls in [
        &[("x-session-cycle", "1")][..],
        &[
            ("x-session-set", r#"{"k": 1}"#),
            ("x-session-expiry", "99999999"),
        ][..],
    ] {
        let cookie = login(&mut a, &[("x-session-user", "bob")]);
        let slow = get_with_cookie(&mut b, pair(&cookie));
        assert_eq!(state(&upstream(&b, slow)), Some("valid"));
        visit(&mut a, &cookie, &[("x-session-flush", "1")]);
        let out = respond(&mut b, slow, controls);
        assert_eq!(out.headers.get("set-cookie"), None, "{controls:?}");
    }
    assert_eq!(host.counter("edge_session_write_error"), 2);
}

/// The name=value pair is at most 4096 bytes: a write whose cookie would take exactly 4096 is
/// sealed, one byte more is refused by name (counted, logged without session data) and the
/// response goes out as with a bad control header.
#[test]
fn a_cookie_of_exactly_4096_bytes_is_written_and_4097_is_refused() {
    let blob = |n: usize| json!({"b": "x".repeat(n)}).to_string();
    // The plaintext size of a known blob, read back natively.
    let (_, mut probe) = start(cookie_config(json!({})));
    let sample = login(&mut probe, &[("x-session-set", &blob(100))]);
    let base = serde_json::to_vec(&payload(&sample)).unwrap().len() - 100;
    let pair_bytes = |name: usize, n: usize| name + 1 + 6 + (4 * (12 + base + n + 16)).div_ceil(3);
    let (name, n) = (3..12)
        .flat_map(|name| (2800..3100).map(move |n| (name, n)))
        .find(|&(name, n)| pair_bytes(name, n) == 4096 && pair_bytes(name, n + 1) == 4097)
        .unwrap();
    let cookie_name = "s".repeat(name);

    let (host, mut vm) = start(cookie_config(json!({"cookie": {"name": cookie_name}})));
    let at_limit = login(&mut vm, &[("x-session-set", &blob(n))]);
    assert_eq!(pair(&at_limit).len(), 4096, "{name} {n}");
    assert_eq!(host.counter("edge_session_cookie_too_large"), 0);

    host.clear_logs();
    let s = get(&mut vm, &[]);
    let out = respond(
        &mut vm,
        s,
        &[
            ("x-session-set", &blob(n + 1)),
            ("cache-control", "max-age=5"),
        ],
    );
    assert_eq!(out.status(), Some(200));
    assert_eq!(out.headers.get("set-cookie"), None);
    assert_eq!(
        out.headers.get("x-session-set"),
        None,
        "the control header is removed"
    );
    assert_eq!(out.headers.get("cache-control"), Some("max-age=5"));
    assert_eq!(host.counter("edge_session_cookie_too_large"), 1);
    assert_eq!(
        host.counter("edge_session_writes"),
        1,
        "only the first write"
    );
    assert_eq!(host.counter("edge_session_write_error"), 0);
    assert!(
        host.logged("would take 4097 bytes, over 4096"),
        "{:#?}",
        host.logs()
    );
    assert!(
        !host.logs().iter().any(|l| l.message.contains("xxxx")),
        "no session data logged"
    );

    // An existing session: the write is refused whole (cycle included), the cookie stays.
    let (_, out) = visit(
        &mut vm,
        &at_limit,
        &[
            ("x-session-cycle", "1"),
            ("x-session-set", r#"{"more": 1}"#),
        ],
    );
    assert_eq!(out.headers.get("set-cookie"), None);
    assert_eq!(host.counter("edge_session_cookie_too_large"), 2);
    let (up, _) = visit(&mut vm, &at_limit, &[]);
    assert_eq!(state(&up), Some("valid"), "the old id was not revoked");
}

/// With the companion configured, a logout and a cycle also go to its feed
/// (`POST /v1/revocations` with the handle and the cookie's expiry); the response waits for
/// the answer, and a failure is counted but the logout still clears the cookie.
#[test]
fn with_the_companion_revocations_are_posted_to_its_feed() {
    let (host, mut vm) = start(with_companion(json!({})));
    let cookie = login(&mut vm, &[("x-session-user", "alice")]);
    let sealed = payload(&cookie);
    let s = get_with_cookie(&mut vm, pair(&cookie));
    assert!(vm.pending_callouts().is_empty(), "a read makes no callout");
    app_responds(&mut vm, s, &[("x-session-flush", "1")]);
    let call = only_callout(&vm);
    assert_eq!(
        (call.method(), call.path(), call.cluster.as_str()),
        (Some("POST"), Some("/v1/revocations"), "companion")
    );
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        json!({"handle": sealed.id.handle().as_str(), "until": "2026-01-15T00:00:00Z"})
    );
    assert!(vm.stream(s).unwrap().client.is_none(), "the response waits");
    vm.answer_callout(call.token, CalloutReply::new(201).body("{}"))
        .unwrap();
    let out = vm.stream(s).unwrap().client.clone().unwrap();
    assert_eq!(out.headers.get("set-cookie"), clear());
    assert_eq!(host.counter("edge_session_revocation_post_failed"), 0);

    // A cycle posts the old id; a failed post is counted, and the write still completes.
    let cookie = login(&mut vm, &[("x-session-user", "bob")]);
    let s = get_with_cookie(&mut vm, pair(&cookie));
    app_responds(&mut vm, s, &[("x-session-cycle", "1")]);
    let call = only_callout(&vm);
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["handle"], payload(&cookie).id.handle().as_str());
    vm.answer_callout(call.token, CalloutReply::new(503))
        .unwrap();
    let out = vm.stream(s).unwrap().client.clone().unwrap();
    let cycled = out.headers.get("set-cookie").unwrap();
    assert_ne!(payload(cycled).id, payload(&cookie).id);
    assert_eq!(host.counter("edge_session_revocation_post_failed"), 1);
    assert_eq!(state(&visit(&mut vm, &cookie, &[]).0), Some("expired"));
}

fn feed_config() -> Value {
    with_companion(json!({"revocation_feed": {"interval_ms": 1000}}))
}

/// The feed polls in flight on `vm`.
fn polls(vm: &Vm) -> Vec<harness::Callout> {
    vm.pending_callouts()
        .into_iter()
        .filter(|c| c.path().is_some_and(|p| p.starts_with("/v1/revocations")))
        .collect()
}

fn announced(seq: u64, handle: &str, until: &str) -> Value {
    json!({"seq": seq, "at": "2026-01-01T00:00:00Z", "kind": "session", "handle": handle,
        "reason": "announced", "until": until})
}

/// Ticks `vm` and answers its one poll with `entries`; returns the poll's path.
fn poll_once(vm: &mut Vm, entries: Value, cursor: &str) -> String {
    vm.advance(SECOND).unwrap();
    let sent = polls(vm);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let path = sent[0].path().unwrap_or_default().to_string();
    let reply = json!({"entries": entries, "cursor": cursor, "more": false});
    vm.answer_callout(
        sent[0].token,
        CalloutReply::new(200).body(reply.to_string()),
    )
    .unwrap();
    path
}

/// A logout through another proxy reaches this one through the feed: announced entries (ids
/// the companion never stored) go into the cookie table, and the first poll starts from the
/// oldest entry kept, not the head. Entries of the companion's own sessions are not cookies.
#[test]
fn announced_entries_of_the_feed_revoke_cookies_on_this_proxy() {
    let (_, mut elsewhere) = start(cookie_config(json!({})));
    let cookie = login(&mut elsewhere, &[("x-session-user", "alice")]);
    let kept = login(&mut elsewhere, &[("x-session-user", "bob")]);
    let handle = payload(&cookie).id.handle();

    let host = host();
    let mut a = try_start(&host, &feed_config()).unwrap();
    let mut b = try_start(&host, &feed_config()).unwrap();
    assert_eq!(state(&visit(&mut b, &cookie, &[]).0), Some("valid"));
    let first = poll_once(
        &mut a,
        json!([
            announced(1, handle.as_str(), "2026-01-15T00:00:00Z"),
            {"seq": 2, "at": "2026-01-01T00:00:00Z", "kind": "session",
             "handle": payload(&kept).id.handle().as_str(), "reason": "deleted"},
        ]),
        "2-1",
    );
    assert_eq!(first, "/v1/revocations?after=start&limit=1000");
    for vm in [&mut a, &mut b] {
        let (up, out) = visit(vm, &cookie, &[]);
        assert_eq!(state(&up), Some("expired"));
        assert_eq!(out.headers.get("set-cookie"), clear());
        assert_eq!(state(&visit(vm, &kept, &[]).0), Some("valid"));
    }
    let next = poll_once(&mut a, json!([]), "2-1");
    assert_eq!(next, "/v1/revocations?after=2-1&limit=1000");
    // An entry whose `until` has passed keeps nothing: the cookie has expired by then.
    assert_eq!(host.counter("edge_session_feed_failed"), 0);
}

/// A bucket of the cookie table holds 16 live entries. The 17th pushes out the one expiring
/// first and refuses every cookie of that bucket issued until then (users are logged out;
/// a revoked cookie is never accepted); cookies issued after, and other buckets, are not
/// touched.
#[test]
fn an_overflowing_bucket_fails_safe() {
    let host = host();
    let mut a = try_start(&host, &feed_config()).unwrap();
    let mut b = try_start(&host, &feed_config()).unwrap();
    let victim = login(&mut a, &[("x-session-user", "alice")]);
    let other = login(&mut a, &[("x-session-user", "bob")]);
    let key = CookieTag::of_handle(&payload(&victim).id.handle()).key;
    assert_ne!(CookieTag::of_handle(&payload(&other).id.handle()).key, key);
    let handles: Vec<String> = (0u32..)
        .map(|i| {
            let mut bytes = [7u8; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            SessionId::from_bytes(&bytes).handle()
        })
        .filter(|h| CookieTag::of_handle(h).key == key)
        .take(17)
        .map(|h| h.as_str().to_string())
        .collect();
    let entries = |range: std::ops::Range<usize>| -> Value {
        range
            .map(|i| announced(i as u64 + 1, &handles[i], "2026-01-01T00:01:00Z"))
            .collect()
    };
    // Exactly at capacity: every other cookie of the bucket is still served.
    poll_once(&mut a, entries(0..16), "16-1");
    assert_eq!(state(&visit(&mut b, &victim, &[]).0), Some("valid"));
    // One past: the bucket's older cookies are refused, on every worker.
    poll_once(&mut a, entries(16..17), "17-1");
    for vm in [&mut a, &mut b] {
        assert_eq!(state(&visit(vm, &victim, &[]).0), Some("expired"));
        assert_eq!(state(&visit(vm, &other, &[]).0), Some("valid"));
    }
    // The floor ends when the pushed-out entry's cookie has expired.
    a.advance(Duration::from_secs(58)).unwrap();
    assert_eq!(state(&visit(&mut b, &victim, &[]).0), Some("valid"));
}

/// Without a companion there is no feed: time passing makes no callout.
#[test]
fn without_a_companion_nothing_is_ever_called() {
    let (host, mut vm) = start(cookie_config(
        json!({"revocation_feed": {"interval_ms": 1000}}),
    ));
    let cookie = login(&mut vm, &[("x-session-user", "alice")]);
    vm.advance(Duration::from_secs(5)).unwrap();
    visit(&mut vm, &cookie, &[("x-session-cycle", "1")]);
    visit(&mut vm, &cookie, &[("x-session-flush", "1")]);
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(host.counter("edge_session_feed_failed"), 0);
    assert_eq!(host.counter("edge_session_callout_error"), 0);
}

/// New ids differ even for one request id at one instant (the per-VM counter), and the
/// request id is one of their inputs.
#[test]
fn new_ids_differ_for_the_same_request_id_and_time() {
    let (_host, mut vm) = start(cookie_config(json!({})));
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let s = get(&mut vm, &[("x-request-id", "same")]);
        let out = respond(&mut vm, s, &[("x-session-user", "u")]);
        ids.insert(payload(out.headers.get("set-cookie").unwrap()).id);
    }
    assert_eq!(ids.len(), 20);
}

/// The request was answered exactly once and the module is healthy (as in `properties`).
fn answered_once(vm: &Vm, stream: u32) -> Result<(), TestCaseError> {
    prop_assert!(vm.failure().is_none(), "trapped: {:?}", vm.failure());
    let s = vm.stream(stream).unwrap();
    prop_assert!(s.upstream.is_some() != s.local_response.is_some(), "{s:#?}");
    prop_assert!(s.request.resumes <= 1);
    prop_assert!(s.violations.is_empty(), "{:?}", s.violations);
    if let Some(up) = &s.upstream {
        prop_assert_eq!(up.headers.get_all("x-session-state").len(), 1);
    }
    Ok(())
}

/// A cookie value as a client may send it: any bytes, something shaped like a sealed value,
/// or the valid cookie changed at one byte, cut, or extended.
#[derive(Clone, Debug)]
enum Presented {
    Bytes(Vec<u8>),
    Shaped(String),
    Changed(usize, u8),
    Cut(usize),
    Extended(Vec<u8>),
    Valid,
}

fn presented() -> impl Strategy<Value = Presented> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400).prop_map(Presented::Bytes),
        "v[0-9]\\.[a-z0-9]{0,17}\\.[A-Za-z0-9_=-]{0,600}".prop_map(Presented::Shaped),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Presented::Changed(at, b)),
        any::<usize>().prop_map(Presented::Cut),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(Presented::Extended),
        Just(Presented::Valid),
    ]
}

fn control() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let name = prop::sample::select(vec![
        "x-session-set",
        "x-session-user",
        "x-session-expiry",
        "x-session-cycle",
        "x-session-flush",
        "X-Session-Set",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "1",
            "0",
            "true",
            "browser",
            "default",
            "3600",
            "alice",
            "",
            r#"{"k": "v"}"#,
            r#"{"k": null}"#,
            "2999-01-01T00:00:00Z",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::btree_map("[a-z]{1,6}", ".{0,1200}", 0..4)
            .prop_map(|m| { serde_json::to_vec(&m).unwrap() }),
        prop::collection::vec(any::<u8>(), 0..80),
    ];
    (name, value)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever a client sends as the session cookie, and whatever the app writes back, the
    /// module never traps, answers once, makes no callout, serves a session only for the
    /// exact value it sealed, and never sets a cookie pair over 4096 bytes.
    #[test]
    fn arbitrary_cookies_and_writes_in_cookie_mode_never_trap(
        presented in presented(),
        controls in prop::collection::vec(control(), 0..4),
    ) {
        let (_host, mut vm) = start(cookie_config(json!({})));
        let valid = login(&mut vm, &[("x-session-set", r#"{"k": [1, "two"]}"#)]);
        let valid = value_of(&valid).as_bytes().to_vec();
        let value = match &presented {
            Presented::Bytes(bytes) => bytes.clone(),
            Presented::Shaped(text) => text.clone().into_bytes(),
            Presented::Changed(at, byte) => {
                let mut changed = valid.clone();
                let at = at % changed.len();
                changed[at] = *byte;
                changed
            }
            Presented::Cut(at) => valid[..at % valid.len()].to_vec(),
            Presented::Extended(tail) => [valid.as_slice(), tail].concat(),
            Presented::Valid => valid.clone(),
        };
        let mut cookie = b"sid=".to_vec();
        cookie.extend_from_slice(&value);
        // What the filter reads as the session cookie (a `;` ends the pair, spaces are
        // trimmed): only the sealed value itself may open.
        let read = match filter::cookie::find([cookie.as_slice()], "sid") {
            filter::cookie::Found::One(read) => read.to_vec(),
            _ => Vec::new(),
        };
        let stream = vm.create_stream().unwrap();
        let headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), b"/".to_vec()),
            (b"cookie".to_vec(), cookie),
        ];
        prop_assert!(vm.request_headers(stream, &headers, true).is_ok());
        answered_once(&vm, stream)?;
        prop_assert!(vm.pending_callouts().is_empty());
        let up = upstream(&vm, stream);
        if up.get("x-session-state") == Some("valid") {
            prop_assert!(read == valid, "a changed cookie was served");
        }
        if matches!(presented, Presented::Valid) {
            prop_assert_eq!(up.get("x-session-state"), Some("valid"));
        }
        let mut response: Vec<(Vec<u8>, Vec<u8>)> =
            vec![(b":status".to_vec(), b"200".to_vec())];
        for (name, value) in controls {
            response.push((name.as_bytes().to_vec(), value));
        }
        prop_assert!(vm.response_headers(stream, &response, true).is_ok());
        prop_assert!(vm.failure().is_none(), "trapped: {:?}", vm.failure());
        prop_assert!(vm.pending_callouts().is_empty());
        let client = vm.stream(stream).unwrap().client.clone();
        prop_assert!(client.is_some(), "the response went out");
        let client = client.unwrap();
        prop_assert!(session_headers(&client.headers).is_empty());
        for set_cookie in client.headers.get_all("set-cookie") {
            prop_assert!(pair(set_cookie).len() <= 4096);
        }
    }
}

#[test]
fn revoke_is_refused_in_cookie_mode_and_the_session_stays() {
    let (host, mut vm) = start(with_companion(json!({})));
    let cookie = login(&mut vm, &[("x-session-user", "alice")]);
    let (up, out) = visit(&mut vm, &cookie, &[("x-session-revoke", "others")]);
    assert_eq!(state(&up), Some("valid"));
    assert!(
        vm.pending_callouts().is_empty(),
        "no list of a user's cookie sessions to end"
    );
    assert_eq!(out.headers.get("set-cookie"), None, "the session stays");
    assert!(session_headers(&out.headers).is_empty());
    assert_eq!(host.counter("edge_session_bad_control"), 1);
}
