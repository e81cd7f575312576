//! The signed session assertion (docs/architecture.md, "Injected headers"): present for a
//! valid session, verifiable with its key by the filter's own rules and by the Python
//! verifier, rotated by `kid`, absent when not configured, and never the client's own.

use crate::support::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use harness::DEFAULT_START_NANOS;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testkit::keys::{ASSERTION as ASSERTION_NEW, ASSERTION_OLD};

fn with_assertion(keys: &[(&str, &str)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, secret)| json!({"id": id, "secret": secret}))
        .collect();
    config(json!({"assertion": {"keys": keys}}))
}

/// Checks an assertion as any JWT library does: HS256 over `header.payload` with the key its
/// `kid` names. Returns the header and the claims; panics when it does not verify.
fn verify(token: &str, keys: &[(&str, &str)]) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "HS256");
    let (_, secret) = keys
        .iter()
        .find(|(id, _)| header["kid"] == *id)
        .unwrap_or_else(|| panic!("unknown kid in {header}"));
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("the assertion verifies with its key");
    (header, decode(parts[1]))
}

/// Every value of the assertion header upstream, in any spelling.
fn assertions(up: &harness::HeaderMap) -> Vec<(String, String)> {
    up.to_strings()
        .into_iter()
        .filter(|(k, _)| {
            k.to_ascii_lowercase()
                .replace('_', "-")
                .contains("assertion")
        })
        .collect()
}

fn only_assertion(up: &harness::HeaderMap) -> String {
    let found = assertions(up);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "x-session-assertion");
    found[0].1.clone()
}

#[test]
fn a_valid_session_carries_an_assertion_that_verifies_with_every_claim() {
    let keys = [("a2", ASSERTION_NEW)];
    let (_host, mut vm) = start(with_assertion(&keys));
    let sid = id(3);
    let data = json!({"cart": [1, 2], "name": "Zoë"});
    let s = resolved_request(
        &mut vm,
        &sid,
        session_body(&sid, data.clone(), Some("u-42")),
    );
    let (header, claims) = verify(&only_assertion(&upstream(&vm, s)), &keys);
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "a2"}));
    let iat = (DEFAULT_START_NANOS / 1_000_000_000) as i64;
    assert_eq!(
        claims,
        json!({"iss": "edge-session", "state": "valid", "sid": sid.as_str(), "user": "u-42",
            "data": data, "expires": "2026-01-15T00:00:00Z", "browser": false,
            "ttl_seconds": 1209600, "updated_at": "2026-01-01T00:00:00Z",
            "iat": iat, "exp": iat + 30, "aud": "app.example"})
    );

    // A cache hit signs anew: this request's time and authority.
    vm.advance(Duration::from_secs(1)).unwrap();
    let cookie = format!("sid={}", valid_token(&sid));
    let hit = vm.create_stream().unwrap();
    vm.request_headers(
        hit,
        &[
            (":method", "GET"),
            (":path", "/"),
            (":authority", "other.example:8443"),
            ("cookie", &cookie),
        ],
        true,
    )
    .unwrap();
    assert!(vm.pending_callouts().is_empty(), "served from the cache");
    let (_, claims) = verify(&only_assertion(&upstream(&vm, hit)), &keys);
    assert_eq!(claims["iat"], iat + 1);
    assert_eq!(claims["exp"], iat + 31);
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(
        claims["aud"], "other.example:8443",
        "this request's authority"
    );
}

#[test]
fn no_assertion_without_configuration_or_without_a_valid_session() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(4);
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    assert_eq!(
        assertions(&upstream(&vm, s)),
        Vec::<(String, String)>::new()
    );

    let (_host, mut vm) = start(with_assertion(&[("a", ASSERTION_NEW)]));
    let none = get(&mut vm, &[]);
    let bad = get_with_cookie(&mut vm, "sid=k1.garbage.token");
    for s in [none, bad] {
        let up = upstream(&vm, s);
        assert!(assertions(&up).is_empty(), "{:?}", up.to_strings());
        assert!(up.contains("x-session-state"));
    }
    let gone = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
    vm.answer_callout(only_callout(&vm).token, harness::CalloutReply::new(404))
        .unwrap();
    assert!(assertions(&upstream(&vm, gone)).is_empty(), "expired");
}

#[test]
fn a_client_sent_assertion_in_any_spelling_never_reaches_the_app() {
    let forged = "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0.";
    let spellings: &[(&str, &str)] = &[
        ("x-session-assertion", forged),
        ("X-Session-Assertion", forged),
        ("x_session_assertion", forged),
        ("X_SESSION-ASSERTION", forged),
        ("x-session_assertion", forged),
        ("x-session-signed", forged),
    ];
    // Off: none reaches the app.
    let (_host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, spellings);
    assert!(assertions(&upstream(&vm, s)).is_empty());
    assert!(!upstream(&vm, s).contains("x-session-signed"));

    // On, default and custom names, with and without a session: only the filter's own.
    for header in [None, Some("x-session-signed")] {
        let mut value = with_assertion(&[("a", ASSERTION_NEW)]);
        if let Some(header) = header {
            value["assertion"]["header"] = json!(header);
        }
        let (_host, mut vm) = start(value);
        let s = get(&mut vm, spellings);
        let up = upstream(&vm, s);
        assert!(assertions(&up).is_empty(), "{:?}", up.to_strings());
        assert!(!up.contains("x-session-signed"));

        let sid = id(5);
        let cookie = format!("sid={}", valid_token(&sid));
        let mut headers = spellings.to_vec();
        headers.push(("cookie", &cookie));
        let s = get(&mut vm, &headers);
        vm.answer_callout(only_callout(&vm).token, ok_reply(&sid, json!({}), None))
            .unwrap();
        let up = upstream(&vm, s);
        let name = header.unwrap_or("x-session-assertion");
        let found: Vec<(String, String)> = up
            .to_strings()
            .into_iter()
            .filter(|(k, _)| {
                k.to_ascii_lowercase().replace('_', "-") == "x-session-assertion"
                    || k.to_ascii_lowercase().replace('_', "-") == "x-session-signed"
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, name);
        assert_ne!(found[0].1, forged);
        verify(&found[0].1, &[("a", ASSERTION_NEW)]);
    }
}

/// The Python package's verifier, run on assertions from the real module.
fn python_verifies(tokens: &[&str], keys: &[(&str, &str)], audience: &str) -> Vec<bool> {
    let src = manifest_dir().join("../clients/python/src");
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, secret)| json!({"id": id, "secret": secret}))
        .collect();
    let now = DEFAULT_START_NANOS / 1_000_000_000;
    let script = format!(
        "import json, sys\n\
         from edge_session.assertion import AssertionVerifier\n\
         v = AssertionVerifier.from_config(json.loads(sys.argv[1]))\n\
         for t in sys.argv[2:]:\n    print(v.verify(t, audience={audience:?}, now={now}) is not None)\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(Value::from(keys).to_string())
        .args(tokens)
        .env("PYTHONPATH", src)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line == "True")
        .collect()
}

#[test]
fn rotated_assertion_keys_still_verify_by_kid_in_python() {
    let sid = id(6);
    let before = [("old", ASSERTION_OLD)];
    let (_host, mut vm) = start(with_assertion(&before));
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    let old = only_assertion(&upstream(&vm, s));

    // Rotation: the new key first (it signs), the old one kept for apps that verify.
    let after = [("new", ASSERTION_NEW), ("old", ASSERTION_OLD)];
    let (_host, mut vm) = start(with_assertion(&after));
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    let new = only_assertion(&upstream(&vm, s));
    assert_eq!(verify(&new, &after).0["kid"], "new");
    assert_eq!(verify(&old, &after).0["kid"], "old");

    assert_eq!(
        python_verifies(&[&old, &new], &after, "app.example"),
        [true, true],
        "an app listing both keys takes both"
    );
    assert_eq!(
        python_verifies(&[&old, &new], &[("new", ASSERTION_NEW)], "app.example"),
        [false, true],
        "the old kid, once dropped, verifies no more"
    );
    assert_eq!(
        python_verifies(&[&new], &after, "evil.example"),
        [false],
        "replayed to another authority"
    );
    let mut tampered = new.clone().into_bytes();
    let at = new.find('.').unwrap() + 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        python_verifies(&[&tampered], &after, "app.example"),
        [false]
    );
}

/// The Node.js example in docs/operations.md ("Verifying the session assertion"), run as
/// written on an assertion from the real module, when `EDGE_SESSION_JOSE_DIR` names a
/// directory with `node_modules/jose` (`npm install jose` there).
#[test]
fn the_documented_node_example_verifies_a_real_assertion() {
    let Some(dir) = std::env::var_os("EDGE_SESSION_JOSE_DIR").map(PathBuf::from) else {
        eprintln!("skipped: EDGE_SESSION_JOSE_DIR is not set");
        return;
    };
    let docs = std::fs::read_to_string(manifest_dir().join("../docs/operations.md")).unwrap();
    let section = &docs[docs.find("## Verifying the session assertion").unwrap()..];
    let from = section.find("```js\n").unwrap() + 6;
    let example = &section[from..from + section[from..].find("```").unwrap()];
    let script = dir.join("edge-session-assertion-example.mjs");
    std::fs::write(
        &script,
        format!(
            "{example}\nconst [token, host] = process.argv.slice(2);\n\
             console.log(JSON.stringify(await verifyAssertion(token, host)));\n"
        ),
    )
    .unwrap();

    let keys = [("new", ASSERTION_NEW), ("old", ASSERTION_OLD)];
    let (host, mut vm) = start(with_assertion(&keys));
    // jose checks `exp` against the machine's clock: the filter signs at that time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    host.clock()
        .advance_to(u64::try_from(now.as_nanos()).unwrap());
    let sid = id(7);
    let body = session_with(
        &sid,
        json!({"n": 1}),
        Some("u"),
        60,
        "2099-01-01T00:00:00Z",
        false,
    );
    let s = resolved_request(&mut vm, &sid, body);
    let token = only_assertion(&upstream(&vm, s));
    let key_list: Vec<Value> = keys
        .iter()
        .map(|(id, secret)| json!({"id": id, "secret": secret}))
        .collect();
    let node = |token: &str, host: &str, keys: &[Value]| -> Value {
        let out = Command::new("node")
            .arg(&script)
            .arg(token)
            .arg(host)
            .env("ASSERTION_KEYS", Value::from(keys.to_vec()).to_string())
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let verified = node(&token, "app.example", &key_list);
    assert_eq!(verified["sid"], sid.as_str(), "{verified}");
    assert_eq!(verified["user"], "u");
    assert_eq!(verified["data"], json!({"n": 1}));
    assert_eq!(node(&token, "evil.example", &key_list), Value::Null);
    assert_eq!(
        node(&token, "app.example", &key_list[1..]),
        Value::Null,
        "kid dropped"
    );
    let mut tampered = token.clone().into_bytes();
    let at = token.find('.').unwrap() + 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(node(&tampered, "app.example", &key_list), Value::Null);
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
