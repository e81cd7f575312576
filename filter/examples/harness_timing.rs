//! Times the filter's request path in the harness: wasmtime running the release `filter.wasm`
//! with the Envoy-like host, per request (stream create, request headers, finish). Prints
//! numbers; asserts nothing. Run: `cargo xtask wasm && cargo run -p filter --example harness_timing`.

use harness::{CalloutReply, Host, Plugin, PluginConfig, Vm};
use proto::SessionId;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

const SECRET: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const REQUESTS: u32 = 20_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("EDGE_SESSION_WASM_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm/wasm32-unknown-unknown/release")
        },
        PathBuf::from,
    );
    let wasm = dir.join("filter.wasm");
    let host = Host::new();
    host.add_cluster("companion");
    let plugin = Plugin::load(&host, &wasm)?;
    let config = json!({"keys": [{"id": "k1", "secret": SECRET}], "companion": {"cluster": "companion", "token": "t"}});
    let mut vm = Vm::start(&plugin, PluginConfig::new(config.to_string()))?;

    let sid = SessionId::from_bytes(&[7; 32]);
    let parsed = filter::config::Config::parse(config.to_string().as_bytes())?;
    let cookie = format!("theme=dark; sid={}", parsed.keys.sign(&sid));
    let base = [
        (":method", "GET"),
        (":path", "/account"),
        (":authority", "app"),
        ("user-agent", "bench"),
        ("accept", "text/html"),
    ];

    // Fill the cache with one resolved session (four headers injected on each hit).
    let first = vm.create_stream()?;
    vm.request_headers(first, &with_cookie(&base, &cookie), true)?;
    let token = vm
        .pending_callouts()
        .first()
        .map(|c| c.token)
        .ok_or("no callout")?;
    let body = json!({"id": sid.as_str(), "data": {"cart": [1, 2]}, "user": "u-42", "ttl_seconds": 1209600,
        "browser_session": false, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-15T00:00:00Z"});
    vm.answer_callout(token, CalloutReply::new(200).body(body.to_string()))?;
    vm.finish_stream(first)?;

    println!(
        "filter.wasm: {} bytes ({})",
        std::fs::metadata(&wasm)?.len(),
        wasm.display()
    );
    for (name, headers) in [
        (
            "cache hit (valid cookie, 4 headers injected)",
            with_cookie(&base, &cookie),
        ),
        (
            "bad cookie (refused, no callout)",
            with_cookie(&base, "theme=dark; sid=k1.garbage.token"),
        ),
        ("no cookie", base.to_vec()),
    ] {
        let started = Instant::now();
        for _ in 0..REQUESTS {
            let id = vm.create_stream()?;
            vm.request_headers(id, &headers, true)?;
            vm.finish_stream(id)?;
        }
        let per_request = started.elapsed().as_nanos() / u128::from(REQUESTS);
        println!("{name}: {per_request} ns per request over {REQUESTS} requests");
    }
    if !vm.pending_callouts().is_empty() {
        return Err("a timed request made a callout".into());
    }
    Ok(())
}

fn with_cookie<'a>(base: &[(&'a str, &'a str)], cookie: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers = base.to_vec();
    headers.push(("cookie", cookie));
    headers
}
