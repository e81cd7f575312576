//! The filter's request path, per request, in the harness (wasmtime running the release
//! `filter.wasm` with the Envoy-like host) beside the same core code called natively: both run
//! `filter::core::Core`'s request path on the same headers, the same configuration and the same
//! cached session. Prints a Markdown table; asserts nothing.
//!
//! The wasm side is what Envoy does per request: stream create, request headers (every header
//! read, edit and counter a host call), stream end. The native side builds the same header map
//! from the same pairs and implements the host operations directly on it.
//!
//! Rounds alternate native and wasm so load from other processes hits both alike; the table
//! shows the median of the rounds and the median of the per-round ratios.
//!
//! Run: `cargo xtask wasm && cargo run --profile service -p filter --example hot_path
//! [-- ROUNDS REQUESTS_PER_ROUND]`. For instruction counts, `-- --only SCENARIO SIDE N` runs
//! each chosen loop once (`measured_loop`) for `valgrind --tool=callgrind --toggle-collect=*measured_loop*`.
//! With `HOT_PATH_CODE_MAP=FILE`, it writes where each of the module's functions was compiled
//! to (`start length name`, hexadecimal), so the profile's bare addresses can be named.

use filter::config::Config;
use filter::config::StoreMode;
use filter::core::{Core, Host as CoreHost};
use filter::metrics::Counter;
use filter::request::{Header, RequestHost, RequestNext};
use filter::response::ResponseNext;
use filter::revocation::{SetError, SharedStore};
use filter::store::{companion, cookie_session};
use harness::{CalloutReply, DEFAULT_START_NANOS, HeaderMap, Host, Plugin, PluginConfig, Vm};
use proto::SessionId;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;
use testkit::keys::{
    ASSERTION as ASSERTION_SECRET, ASSERTION_OLD as COOKIE_SECRET, COMPANION_TOKEN,
    SIGNING as SECRET,
};

type Error = Box<dyn std::error::Error>;

/// The host operations, natively, on the same header map the harness keeps.
struct NativeHost {
    headers: RefCell<HeaderMap>,
    counters: Cell<[u64; Counter::ALL.len()]>,
}

impl NativeHost {
    fn new(headers: &[(&str, &str)]) -> Self {
        Self {
            headers: RefCell::new(HeaderMap::from_pairs(headers)),
            counters: Cell::new([0; Counter::ALL.len()]),
        }
    }
}

impl RequestHost for NativeHost {
    fn read_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.headers
            .borrow()
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
            .collect()
    }

    fn replace_headers(&self, headers: &[Header<'_>]) {
        let mut map = self.headers.borrow_mut();
        map.clear();
        for (name, value) in headers {
            map.add(name.as_bytes(), value);
        }
    }

    fn add_header(&self, name: &str, value: &[u8]) {
        self.headers.borrow_mut().add(name.as_bytes(), value);
    }

    fn remove_header(&self, name: &str) {
        self.headers.borrow_mut().remove(name.as_bytes());
    }
}

impl CoreHost for NativeHost {
    fn now_nanos(&self) -> i128 {
        i128::from(DEFAULT_START_NANOS)
    }

    fn count(&self, counter: Counter) {
        let mut counters = self.counters.get();
        counters[counter.index()] += 1;
        self.counters.set(counters);
    }
}

/// No other worker announces anything in the benchmark: the table is empty, as in the
/// harness run it is compared with.
impl SharedStore for NativeHost {
    fn get(&self, _key: &str) -> Option<(Vec<u8>, u32)> {
        None
    }

    fn set(&self, _key: &str, _value: &[u8], _cas: u32) -> Result<(), SetError> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    CacheHit,
    CacheHitAssertion,
    CacheMiss,
    BadCookie,
    NoCookie,
    CookieRead,
    CookieRead2k,
    CookieReadCached,
    CookieWrite,
}

impl Scenario {
    const ALL: [Scenario; 9] = [
        Self::CacheHit,
        Self::CacheHitAssertion,
        Self::CacheMiss,
        Self::BadCookie,
        Self::NoCookie,
        Self::CookieRead,
        Self::CookieRead2k,
        Self::CookieReadCached,
        Self::CookieWrite,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::CacheHit => "cache-hit",
            Self::CacheHitAssertion => "cache-hit-assertion",
            Self::CacheMiss => "cache-miss",
            Self::BadCookie => "bad-cookie",
            Self::NoCookie => "no-cookie",
            Self::CookieRead => "cookie-read",
            Self::CookieRead2k => "cookie-read-2k",
            Self::CookieReadCached => "cookie-read-cached",
            Self::CookieWrite => "cookie-write",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::CacheHit => "valid cookie, cache hit, 5 headers injected",
            Self::CacheHitAssertion => "the same with the signed assertion on (6 headers)",
            Self::CacheMiss => "valid cookie, cache off, callout answered in-process",
            Self::BadCookie => "bad cookie, refused without a callout",
            Self::NoCookie => "no cookie",
            Self::CookieRead => "cookie store, cache off: 1 KB of data opened and injected",
            Self::CookieRead2k => "cookie store, cache off: the same with 2 KB",
            Self::CookieReadCached => "cookie store: the 1 KB cookie again, from the cache",
            Self::CookieWrite => "cookie store: 1 KB read, one key set, re-sealed",
        }
    }
}

/// Everything one scenario needs, for both sides.
struct Bench {
    vm: Vm,
    core: Core,
    headers: Vec<(&'static str, &'static str)>,
    /// The app's response headers, for a scenario that writes the session.
    response: Option<Vec<(&'static str, &'static str)>>,
}

struct Fixture {
    /// The session's id, and the companion's reply body for it.
    id: SessionId,
    body: String,
    hit: Bench,
    signed: Bench,
    miss: Bench,
    bad: Bench,
    none: Bench,
    cookie_read: Bench,
    cookie_read_2k: Bench,
    cookie_read_cached: Bench,
    cookie_write: Bench,
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn request(cookie: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/account"),
        (":authority", "app"),
        (":scheme", "http"),
        ("user-agent", "bench"),
        ("accept", "text/html"),
    ];
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie));
    }
    headers
}

fn fixture(plugin: &Plugin) -> Result<Fixture, Error> {
    // The revocation feed is off: it runs on the root context's ticks, not on the request
    // path, and with it on nothing is cached until its first poll, which a benchmark never
    // makes.
    let config = |ttl_ms: u64| {
        json!({"keys": [{"id": "k1", "secret": SECRET}],
               "companion": {"cluster": "companion", "token": COMPANION_TOKEN},
               "cache": {"ttl_ms": ttl_ms}, "revocation_feed": {"interval_ms": 0}})
        .to_string()
    };
    let cached = config(2000);
    let uncached = config(0);
    let mut signed = serde_json::from_str::<serde_json::Value>(&cached)?;
    signed["assertion"] = json!({"keys": [{"id": "a1", "secret": ASSERTION_SECRET}]});
    let signed = signed.to_string();
    let id = SessionId::from_bytes(&[7; 32]);
    let core = |text: &str| Config::parse(text.as_bytes()).map(Core::new);
    let token = core(&cached)?.config.keys.sign(&id);
    let good = request(Some(leak(format!("theme=dark; sid={token}"))));
    let bad = request(Some("theme=dark; sid=k1.garbage.token"));
    let body = testkit::session(&id)
        .data(json!({"cart": [1, 2]}))
        .user(Some("u-42"))
        .body();
    let bench = |text: &str, headers: Vec<_>| -> Result<Bench, Error> {
        Ok(Bench {
            vm: Vm::start(plugin, PluginConfig::new(text.to_string()))?,
            core: core(text)?,
            headers,
            response: None,
        })
    };
    // Cookie mode with the default cache of opened cookies, and with it off: every request
    // decrypts, parses and renders (what a value's first request on a worker costs).
    let cookie_mode = json!({"keys": [{"id": "k1", "secret": SECRET}], "store": "cookie",
        "cookie_store": {"keys": [{"id": "c1", "secret": COOKIE_SECRET}]}});
    let mut cookie_cold = cookie_mode.clone();
    cookie_cold["cache"] = json!({"ttl_ms": 0});
    let (cookie_mode, cookie_cold) = (cookie_mode.to_string(), cookie_cold.to_string());
    let sealed = |data_bytes: usize| -> Result<Vec<(&'static str, &'static str)>, Error> {
        let core = core(&cookie_mode)?;
        let StoreMode::Cookie(ring) = &core.config.store else {
            return Err("not the cookie store".into());
        };
        // `{"d":"xx…"}`: `data_bytes` of JSON.
        let session =
            serde_json::from_value(json!({"id": SessionId::from_bytes(&[8; 32]).as_str(),
            "data": {"d": "x".repeat(data_bytes - 8)}, "user": "u-42", "ttl_seconds": 1209600,
            "browser_session": false, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-15T00:00:00Z"}))?;
        let value = cookie_session::seal(&NativeHost::new(&[]), ring, "sid", &session)
            .map_err(|err| err.to_string())?;
        Ok(request(Some(leak(format!("theme=dark; sid={value}")))))
    };
    let mut cookie_write = bench(&cookie_mode, sealed(1024)?)?;
    cookie_write.response = Some(vec![
        (":status", "200"),
        ("content-type", "text/html"),
        ("x-session-set", r#"{"k":"v"}"#),
    ]);
    let mut fixture = Fixture {
        hit: bench(&cached, good.clone())?,
        signed: bench(&signed, good.clone())?,
        miss: bench(&uncached, good)?,
        bad: bench(&cached, bad)?,
        none: bench(&cached, request(None))?,
        cookie_read: bench(&cookie_cold, sealed(1024)?)?,
        cookie_read_2k: bench(&cookie_cold, sealed(2048)?)?,
        cookie_read_cached: bench(&cookie_mode, sealed(1024)?)?,
        cookie_write,
        id,
        body,
    };
    // Fill both caches of the hit scenario with the session.
    let (id, body) = (fixture.id.clone(), fixture.body.clone());
    wasm_request(&mut fixture.hit, &body)?;
    native_request(&fixture.hit, &id, &body);
    wasm_request(&mut fixture.signed, &body)?;
    native_request(&fixture.signed, &id, &body);
    Ok(fixture)
}

impl Fixture {
    fn bench(&mut self, scenario: Scenario) -> (&mut Bench, &SessionId, &str) {
        let bench = match scenario {
            Scenario::CacheHit => &mut self.hit,
            Scenario::CacheHitAssertion => &mut self.signed,
            Scenario::CacheMiss => &mut self.miss,
            Scenario::BadCookie => &mut self.bad,
            Scenario::NoCookie => &mut self.none,
            Scenario::CookieRead => &mut self.cookie_read,
            Scenario::CookieRead2k => &mut self.cookie_read_2k,
            Scenario::CookieReadCached => &mut self.cookie_read_cached,
            Scenario::CookieWrite => &mut self.cookie_write,
        };
        (bench, &self.id, &self.body)
    }
}

/// One request through the harness: what Envoy does per request.
fn wasm_request(bench: &mut Bench, body: &str) -> Result<(), Error> {
    let vm = &mut bench.vm;
    let id = vm.create_stream()?;
    vm.request_headers(id, &bench.headers, true)?;
    if let Some(call) = vm.pending_callouts().first() {
        vm.answer_callout(call.token, CalloutReply::new(200).body(body))?;
    }
    if let Some(response) = &bench.response {
        vm.response_headers(id, response, true)?;
    }
    let stream = vm.finish_stream(id)?;
    if stream.upstream.is_none() {
        return Err("the request did not go upstream".into());
    }
    let cookie_set = stream
        .client
        .as_ref()
        .is_some_and(|c| c.headers.get("set-cookie").is_some());
    if bench.response.is_some() && !cookie_set {
        return Err("the write set no cookie".into());
    }
    black_box(stream);
    Ok(())
}

/// The same request, natively, through the same core code.
fn native_request(bench: &Bench, id: &SessionId, body: &str) {
    let host = NativeHost::new(&bench.headers);
    match bench.core.handle_request(&host) {
        RequestNext::Lookup(id, sequence) => {
            let answer =
                companion::resolution(Some(b"200"), body.as_bytes(), &id, host.now_nanos());
            let next = bench.core.handle_lookup(&host, &id, sequence, answer);
            black_box(matches!(next, RequestNext::Continue { .. }));
        }
        RequestNext::Continue { outcome, .. } | RequestNext::List { outcome, .. } => {
            if let Some(response) = &bench.response {
                native_response(bench, &host, &outcome, response);
            }
        }
        RequestNext::Unavailable => {}
    }
    black_box(id);
    black_box(host.headers.into_inner());
}

/// The response path natively, as the shell drives it with the cookie store: each write
/// answered at once, then the final headers.
fn native_response(
    bench: &Bench,
    host: &NativeHost,
    outcome: &filter::request::RequestOutcome,
    response: &[(&str, &str)],
) {
    let headers: Vec<(String, Vec<u8>)> = response
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let core = &bench.core;
    let mut start = core.start_response(host, outcome, &headers);
    let mut current = outcome.cookie_session.clone();
    let mut next = start.next;
    while let ResponseNext::Store(op) = next {
        let (written, _) = cookie_session::write(host, &core.config, &mut current, &op);
        next = core.continue_response(host, &mut start.write, written);
    }
    black_box(next);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Native,
    Wasm,
}

fn run_requests(
    fixture: &mut Fixture,
    scenario: Scenario,
    side: Side,
    n: u32,
) -> Result<(), Error> {
    let (bench, id, body) = fixture.bench(scenario);
    for _ in 0..n {
        match side {
            Side::Native => native_request(bench, id, body),
            Side::Wasm => wasm_request(bench, body)?,
        }
    }
    Ok(())
}

/// The loop callgrind's `--toggle-collect` picks out; never inlined so it keeps its name.
#[inline(never)]
fn measured_loop(
    fixture: &mut Fixture,
    scenario: Scenario,
    side: Side,
    n: u32,
) -> Result<(), Error> {
    run_requests(fixture, scenario, side, n)
}

/// `--only SCENARIO|all native|wasm|all N`: runs each chosen loop once, natives first, after
/// a warm-up that is not collected, and prints one line per loop in the order it ran them.
fn only(fixture: &mut Fixture, args: &[String]) -> Result<(), Error> {
    let usage = "--only SCENARIO|all native|wasm|all N";
    let scenarios: Vec<Scenario> = match args.first().map(String::as_str) {
        Some("all") => Scenario::ALL.to_vec(),
        Some(name) => vec![
            Scenario::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or(usage)?,
        ],
        None => return Err(usage.into()),
    };
    let sides: Vec<Side> = match args.get(1).map(String::as_str) {
        Some("all") => vec![Side::Native, Side::Wasm],
        Some("native") => vec![Side::Native],
        Some("wasm") => vec![Side::Wasm],
        _ => return Err(usage.into()),
    };
    let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    for &scenario in &scenarios {
        for &side in &sides {
            run_requests(fixture, scenario, side, 100)?;
            measured_loop(fixture, scenario, side, n)?;
            let side = if side == Side::Native {
                "native"
            } else {
                "wasm"
            };
            println!("{} {side} {n}", scenario.name());
        }
    }
    Ok(())
}

fn ns_per_request(
    fixture: &mut Fixture,
    scenario: Scenario,
    side: Side,
    n: u32,
) -> Result<f64, Error> {
    let started = Instant::now();
    measured_loop(fixture, scenario, side, n)?;
    Ok(started.elapsed().as_nanos() as f64 / f64::from(n))
}

/// The cookie store's codec alone, natively: open and seal of payloads with 1 and 2 KB of
/// data, and the cost per KB between them (the harness has no way to time the module's
/// functions; the wasm cost per KB is the cookie-read-2k row less the cookie-read row).
fn aead_per_kb(core: &Core, n: u32) -> Result<(), Error> {
    let StoreMode::Cookie(ring) = &core.config.store else {
        return Err("not the cookie store".into());
    };
    let payload = |kb: usize| -> Result<filter::store::cookie::CookiePayload, Error> {
        Ok(serde_json::from_value(
            json!({"id": SessionId::from_bytes(&[8; 32]).as_str(),
            "data": {"d": "x".repeat(kb * 1024 - 8)}, "user": "u-42", "created_at": 0,
            "issued_at": 0, "expires_at": 4_000_000_000i64, "ttl_seconds": 60,
            "browser_session": false, "absolute_expires_at": null}),
        )?)
    };
    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..n {
            f();
        }
        started.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let mut rows = Vec::new();
    for kb in [1, 2] {
        let p = payload(kb)?;
        let sealed = ring.seal("sid", &p, &[3; 12]).map_err(|e| e.to_string())?;
        let open = time(&|| {
            black_box(ring.open_any_time(black_box(sealed.as_bytes())).is_ok());
        });
        let seal = time(&|| {
            black_box(ring.seal("sid", black_box(&p), &[3; 12]).is_ok());
        });
        rows.push((open, seal));
    }
    let [(open1, seal1), (open2, seal2)] = rows[..] else {
        return Err("two sizes".into());
    };
    println!(
        "\nCookie store codec natively (AES-256-GCM-SIV and the payload's JSON, {n} runs): \
         open {open1:.0} ns at 1 KB, {open2:.0} ns at 2 KB ({:.0} ns per KB); \
         seal {seal1:.0} ns at 1 KB, {seal2:.0} ns at 2 KB ({:.0} ns per KB).",
        open2 - open1,
        seal2 - seal1
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::env::var_os("EDGE_SESSION_WASM_DIR").map_or_else(
        || manifest_dir().join("../target/wasm/wasm32-unknown-unknown/release"),
        PathBuf::from,
    );
    let wasm = dir.join("filter.wasm");
    let host = Host::new();
    host.add_cluster("companion");
    let plugin = Plugin::load(&host, &wasm)?;
    if let Some(path) = std::env::var_os("HOT_PATH_CODE_MAP") {
        // For naming the module's functions in a callgrind profile, which sees only addresses.
        let lines: Vec<String> = plugin
            .code_map()
            .into_iter()
            .map(|(start, len, name)| format!("{start:x} {len:x} {name}"))
            .collect();
        std::fs::write(path, lines.join("\n"))?;
    }
    let mut fixture = fixture(&plugin)?;

    if args.first().map(String::as_str) == Some("--only") {
        return only(&mut fixture, &args[1..]);
    }
    let rounds: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(9);
    let per_round: u32 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(5_000);

    // Warm both sides (caches, allocator, branch predictors) before any timing.
    for scenario in Scenario::ALL {
        ns_per_request(&mut fixture, scenario, Side::Wasm, per_round / 5 + 1)?;
        ns_per_request(&mut fixture, scenario, Side::Native, per_round / 5 + 1)?;
    }
    println!("| request path | native ns | wasm ns (harness) | wasm/native |");
    println!("| --- | ---: | ---: | ---: |");
    for scenario in Scenario::ALL {
        let (mut native, mut wasm, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which side goes first, so a slow patch of the machine is shared.
            let order = if round % 2 == 0 {
                [Side::Native, Side::Wasm]
            } else {
                [Side::Wasm, Side::Native]
            };
            let mut pair = [0.0; 2];
            for side in order {
                let ns = ns_per_request(&mut fixture, scenario, side, per_round)?;
                pair[(side == Side::Wasm) as usize] = ns;
            }
            native.push(pair[0]);
            wasm.push(pair[1]);
            ratios.push(pair[1] / pair[0]);
        }
        let (native, wasm, ratio) = (median(native), median(wasm), median(ratios));
        // The targets are in instructions (BENCHMARKS.md, "Targets"): the clock on a shared
        // machine moves by a third between runs.
        println!(
            "| {} ({}) | {native:.0} | {wasm:.0} | {ratio:.2} |",
            scenario.name(),
            scenario.describe()
        );
    }
    println!(
        "\n{rounds} rounds of {per_round} requests per side and scenario, interleaved; medians. \
         filter.wasm: {} bytes.",
        std::fs::metadata(&wasm)?.len()
    );
    aead_per_kb(&fixture.cookie_read.core, per_round)?;
    let (bench, _, _) = fixture.bench(Scenario::CacheHit);
    if !bench.vm.pending_callouts().is_empty() {
        return Err("a cache-hit request made a callout".into());
    }
    Ok(())
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
