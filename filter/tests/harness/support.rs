//! Starting the filter in the harness with a configuration, making tokens and sessions, and
//! sending requests.

use filter::token::{KeyId, Keyring, SigningKey};
use harness::{CalloutReply, Host, LogLevel, Plugin, PluginConfig, Vm};
use proto::SessionId;
use serde_json::{Value, json};
use std::path::PathBuf;
use testkit::session;

pub use testkit::keys::{COMPANION_TOKEN, SIGNING as SECRET_A, SIGNING_OLD as SECRET_B};

pub fn wasm_path() -> PathBuf {
    let dir = match std::env::var_os("EDGE_SESSION_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("../target/wasm/wasm32-unknown-unknown/release"),
    };
    dir.join("filter.wasm")
}

/// The smallest valid configuration, with `overrides` merged in at the top level. The
/// revocation feed and "seen" reports are off (their own tests turn them on), so the clock
/// moving makes no callouts.
pub fn config(overrides: Value) -> Value {
    let mut config = json!({
        "keys": [{"id": "k1", "secret": SECRET_A}],
        "companion": {"cluster": "companion", "token": COMPANION_TOKEN},
        "revocation_feed": {"interval_ms": 0},
        "seen_reports": {"interval_ms": 0},
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    config
}

pub fn host() -> Host {
    let host = Host::new();
    host.add_cluster("companion");
    host.set_log_level(LogLevel::Trace);
    host
}

pub fn plugin(host: &Host) -> Plugin {
    let path = wasm_path();
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask wasm`",
        path.display()
    );
    Plugin::load(host, &path).unwrap_or_else(|e| panic!("filter.wasm does not load: {e}"))
}

pub fn try_start(host: &Host, config: &Value) -> Result<Vm, harness::HarnessError> {
    let mut plugin_config = PluginConfig::new(config.to_string());
    plugin_config.name = "edge-session".into();
    plugin_config.vm_id = "edge-session".into();
    Vm::start(&plugin(host), plugin_config)
}

/// A host and a started filter VM.
pub fn start(config: Value) -> (Host, Vm) {
    let host = host();
    let vm = try_start(&host, &config)
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}\n{:#?}", host.logs()));
    (host, vm)
}

pub fn id(n: u8) -> SessionId {
    SessionId::from_bytes(&[n; 32])
}

/// A cookie value signed with `secret` under `kid`, made by the same token code natively.
pub fn token(kid: &str, secret: &str, id: &SessionId) -> String {
    use base64::Engine;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();
    Keyring::new(vec![SigningKey::new(KeyId::parse(kid).unwrap(), &secret)]).sign(id)
}

pub fn valid_token(id: &SessionId) -> String {
    token("k1", SECRET_A, id)
}

/// A session body as the companion answers it, expiring 2026-01-15 (the harness clock starts
/// on 2026-01-01).
pub fn session_body(id: &SessionId, data: Value, user: Option<&str>) -> String {
    session(id).data(data).user(user).body()
}

pub fn ok_reply(id: &SessionId, data: Value, user: Option<&str>) -> CalloutReply {
    CalloutReply::new(200)
        .header("content-type", "application/json")
        .body(session_body(id, data, user))
}

/// Sends a GET with the given extra headers; returns the stream id.
pub fn get(vm: &mut Vm, extra: &[(&str, &str)]) -> u32 {
    let id = vm.create_stream().unwrap();
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/page"),
        (":authority", "app.example"),
        ("user-agent", "test"),
    ];
    headers.extend_from_slice(extra);
    vm.request_headers(id, &headers, true)
        .unwrap_or_else(|e| panic!("request headers: {e}"));
    id
}

pub fn get_with_cookie(vm: &mut Vm, cookie: &str) -> u32 {
    get(vm, &[("cookie", cookie)])
}

/// The upstream request headers; panics if nothing went upstream, or if the filter did
/// anything Envoy does not allow on the way (resuming twice, say).
pub fn upstream(vm: &Vm, stream: u32) -> harness::HeaderMap {
    let s = vm.stream(stream).unwrap();
    assert!(
        s.violations.is_empty(),
        "the filter misbehaved: {:?}",
        s.violations
    );
    assert!(
        s.request.resumes <= 1,
        "resumed {} times",
        s.request.resumes
    );
    match &s.upstream {
        Some(message) => message.headers.clone(),
        None => panic!("nothing went upstream: {s:#?}"),
    }
}

/// Sends a 200 response and returns what the client receives.
pub fn respond(vm: &mut Vm, stream: u32, headers: &[(&str, &str)]) -> harness::Message {
    let mut all = vec![(":status", "200"), ("content-type", "text/html")];
    all.extend_from_slice(headers);
    vm.response_headers(stream, &all, true).unwrap();
    vm.stream(stream).unwrap().client.clone().unwrap()
}

/// Every header whose name starts with `x-session-`, as `(name, value)`.
pub fn session_headers(headers: &harness::HeaderMap) -> Vec<(String, String)> {
    headers
        .to_strings()
        .into_iter()
        .filter(|(k, _)| k.starts_with("x-session-"))
        .collect()
}

/// A session body with every field chosen.
pub fn session_with(
    id: &SessionId,
    data: Value,
    user: Option<&str>,
    ttl: u64,
    expires_at: &str,
    browser: bool,
) -> String {
    session(id)
        .data(data)
        .user(user)
        .ttl_seconds(ttl)
        .expires_at(expires_at)
        .browser_session(browser)
        .body()
}

/// Sends the app's response headers; returns what the stream did (the filter may pause it).
pub fn app_responds(vm: &mut Vm, stream: u32, headers: &[(&str, &str)]) -> harness::Action {
    let mut all = vec![(":status", "200"), ("content-type", "text/html")];
    all.extend_from_slice(headers);
    vm.response_headers(stream, &all, true).unwrap()
}

/// The single pending callout; panics when there is not exactly one.
pub fn only_callout(vm: &Vm) -> harness::Callout {
    let calls = vm.pending_callouts();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    calls.into_iter().next().unwrap()
}

/// A request with a valid cookie whose session the companion resolves at once.
pub fn resolved_request(vm: &mut Vm, sid: &SessionId, body: String) -> u32 {
    let s = get_with_cookie(vm, &format!("sid={}", valid_token(sid)));
    let call = only_callout(vm);
    vm.answer_callout(call.token, CalloutReply::new(200).body(body))
        .unwrap();
    s
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
