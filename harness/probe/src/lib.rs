//! A proxy-wasm module, built with the Rust SDK, that exercises each host call and reports what
//! it saw as `probe: <what> <value>` log lines, so the harness's conformance tests can check
//! the host against Envoy's behaviour.
//!
//! The plugin configuration is a list of `key=value` words: `refuse` makes `on_configure`
//! return false, `tick=<ms>` starts the timer. Each request names its scenario in the
//! `x-probe` header; the names are constants in `probe-scenarios`, which the tests share. Raw ABI calls are declared here too, where a test needs the exact status
//! the host returned (the SDK panics on statuses it does not expect).
#![allow(unsafe_code)]

use probe_scenarios as scenario;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(ProbeRoot::default()));
}}

mod raw {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_log(level: u32, ptr: *const u8, len: usize) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_len: usize,
            ret: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, ret: *mut *mut u8, ret_len: *mut usize) -> u32;
        pub fn proxy_get_buffer_bytes(
            kind: u32,
            start: usize,
            max: usize,
            ret: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_len: usize,
            ret: *mut *mut u8,
            ret_len: *mut usize,
            cas: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(id: u32, delta: i64) -> u32;
        pub fn proxy_get_metric(id: u32, ret: *mut u64) -> u32;
        pub fn proxy_http_call(
            up: *const u8,
            up_len: usize,
            hdr: *const u8,
            hdr_len: usize,
            body: *const u8,
            body_len: usize,
            trl: *const u8,
            trl_len: usize,
            timeout: u32,
            token: *mut u32,
        ) -> u32;
        pub fn proxy_set_effective_context(id: u32) -> u32;
        pub fn proxy_continue_stream(kind: u32) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            len: usize,
            ret: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_register_shared_queue(name: *const u8, len: usize, ret: *mut u32) -> u32;
        pub fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
        pub fn proxy_set_buffer_bytes(
            kind: u32,
            start: usize,
            size: usize,
            value: *const u8,
            len: usize,
        ) -> u32;
        pub fn proxy_get_buffer_status(kind: u32, size: *mut usize, flags: *mut u32) -> u32;
        pub fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
        pub fn proxy_done() -> u32;
        pub fn proxy_get_log_level(level: *mut u32) -> u32;
        pub fn proxy_set_header_map_pairs(map: u32, ptr: *const u8, len: usize) -> u32;
    }
}

/// Far beyond any guest memory a test module grows to.
const WILD: usize = 0xFFFF_FF00;
const REQUEST_HEADERS: u32 = 0;
const REQUEST_TRAILERS: u32 = 1;
const RESPONSE_HEADERS: u32 = 2;
const RESPONSE_TRAILERS: u32 = 3;
const CALL_RESPONSE_HEADERS: u32 = 6;
const CALL_RESPONSE_BODY: u32 = 4;

fn report(what: &str, value: impl std::fmt::Display) {
    proxy_wasm::hostcalls::log(LogLevel::Info, &format!("probe: {what} {value}")).ok();
}

fn status_name(code: u32) -> String {
    match code {
        0 => "Ok".into(),
        1 => "NotFound".into(),
        2 => "BadArgument".into(),
        6 => "InvalidMemoryAccess".into(),
        7 => "Empty".into(),
        8 => "CasMismatch".into(),
        10 => "InternalFailure".into(),
        12 => "Unimplemented".into(),
        other => format!("Status({other})"),
    }
}

/// A raw header read: the status, and the value when Ok.
fn raw_header(map: u32, key: &str) -> (String, Option<String>) {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let status = unsafe {
        raw::proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut ptr, &mut len)
    };
    let value = if status == 0 && !ptr.is_null() {
        let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else if status == 0 {
        Some(String::new())
    } else {
        None
    };
    (status_name(status), value)
}

fn raw_add(map: u32, key: &str, value: &str) -> String {
    status_name(unsafe {
        raw::proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

fn raw_pairs_status(map: u32) -> String {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let status = unsafe { raw::proxy_get_header_map_pairs(map, &mut ptr, &mut len) };
    if status == 0 && !ptr.is_null() {
        drop(unsafe { Vec::from_raw_parts(ptr, len, len) });
    }
    status_name(status)
}

fn raw_shared_set(key: &str, value: &str, cas: u32) -> String {
    status_name(unsafe {
        raw::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

fn raw_shared_get(key: &str) -> (String, String, u32) {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let mut cas: u32 = 0;
    let status = unsafe {
        raw::proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas)
    };
    let value = if status == 0 && !ptr.is_null() {
        String::from_utf8_lossy(&unsafe { Vec::from_raw_parts(ptr, len, len) }).into_owned()
    } else {
        String::new()
    };
    (status_name(status), value, cas)
}

fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn raw_http_call(cluster: &str, headers: &[(&str, &str)], timeout_ms: u32) -> (String, u32) {
    let hdr = serialize(headers);
    let mut token = 0u32;
    let status = unsafe {
        raw::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            hdr.as_ptr(),
            hdr.len(),
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            timeout_ms,
            &mut token,
        )
    };
    (status_name(status), token)
}

#[derive(Default)]
struct ProbeRoot {
    ticks: u64,
    tick_counter: Option<u32>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, size: usize) -> bool {
        let config = self.get_vm_configuration().unwrap_or_default();
        report("vm_start.size", size);
        report("vm_start.config", String::from_utf8_lossy(&config));
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let config = String::from_utf8(self.get_plugin_configuration().unwrap_or_default())
            .unwrap_or_default();
        report("configure.size", size);
        report("configure.config", &config);
        for word in config.split_whitespace() {
            if word == "refuse" {
                report("configure.refused", true);
                return false;
            }
            if word == "start-once" {
                // Only the first VM of a host starts (edge-dev's base VM): every later one,
                // a worker's, refuses.
                if raw_shared_get("probe-started").0 == "Ok" {
                    report("configure.refused", "start-once");
                    return false;
                }
                raw_shared_set("probe-started", "1", 0);
            }
            if word == "trap-on-configure" {
                panic!("probe asked to trap in on_configure");
            }
            if let Some(ms) = word
                .strip_prefix("tick=")
                .and_then(|v| v.parse::<u64>().ok())
            {
                self.set_tick_period(Duration::from_millis(ms));
                self.tick_counter =
                    proxy_wasm::hostcalls::define_metric(MetricType::Counter, "probe_ticks").ok();
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        report("tick", format!("{} at {now}", self.ticks));
        if let Some(id) = self.tick_counter {
            proxy_wasm::hostcalls::increment_metric(id, 1).ok();
        }
        if self.ticks == 3 {
            // Stop after three ticks: period 0 disables the timer.
            unsafe { raw::proxy_set_tick_period_milliseconds(0) };
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id: context_id,
            scenario: String::new(),
            token: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    scenario: String,
    token: Option<u32>,
}

impl Context for Probe {
    fn on_done(&mut self) -> bool {
        report("on_done", self.id);
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        report("callout.token_matches", self.token == Some(token));
        report(
            "callout.counts",
            format!("{num_headers} {body_size} {num_trailers}"),
        );
        let (code, message) = self.get_grpc_status();
        report(
            "callout.get_status",
            format!("{code} {}", message.unwrap_or_default()),
        );
        if num_headers == 0 {
            // A failed call has no header map: Envoy answers BadArgument, which the SDK's
            // header getters turn into a panic, so read it raw.
            report(
                "callout.failed_header_read",
                raw_header(CALL_RESPONSE_HEADERS, ":status").0,
            );
            self.resume_http_request();
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        report("callout.status", &status);
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        report("callout.body", String::from_utf8_lossy(&body));
        let names: Vec<String> = self
            .get_http_call_response_headers()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        report("callout.header_names", names.join(","));
        match self.scenario.as_str() {
            scenario::CALLOUT_LOCAL => {
                self.send_http_response(403, vec![("x-denied", "yes")], Some(b"no entry"))
            }
            scenario::RESUME_TWICE => {
                self.resume_http_request();
                self.resume_http_request();
            }
            scenario::PAUSE_RESPONSE => self.resume_http_response(),
            scenario::PAUSE_RESPONSE_WRITE => {
                self.resume_http_response();
                report(
                    "late_response_write",
                    raw_add(RESPONSE_HEADERS, "x-after-resume", "1"),
                );
            }
            scenario::RESUME_THEN_WRITE => {
                self.resume_http_request();
                report(
                    "late_request_write",
                    raw_add(REQUEST_HEADERS, "x-late", "1"),
                );
                report(
                    "late_request_read",
                    raw_header(REQUEST_HEADERS, scenario::NAME_HEADER).0,
                );
            }
            scenario::BODY_CALLOUT => self.resume_http_request(),
            scenario::TRAILERS_PAUSE => {
                // Held trailers stay editable until they go on.
                self.add_http_request_trailer("x-from-callout", "1");
                self.resume_http_request();
            }
            scenario::CALLOUT_TRAP => panic!("probe asked to trap in on_http_call_response"),
            scenario::RESUME_THEN_SDK_WRITE => {
                // The SDK panics on the BadArgument a late request-header write gets.
                self.resume_http_request();
                self.set_http_request_header("x-late", Some("1"));
            }
            _ => {
                self.add_http_request_header("x-callout-status", &status);
                self.resume_http_request();
            }
        }
    }
}

impl Probe {
    fn request_scenario(&mut self) -> Action {
        match self.scenario.as_str() {
            scenario::HEADERS => {
                let all = self.get_http_request_headers();
                report("headers.count", all.len());
                report(
                    "headers.first_dup",
                    self.get_http_request_header("x-dup").unwrap_or_default(),
                );
                report(
                    "headers.mixed_case_lookup",
                    self.get_http_request_header("X-Dup").unwrap_or_default(),
                );
                report("headers.missing", raw_header(REQUEST_HEADERS, "x-nope").0);
                self.add_http_request_header("x-dup", "c");
                self.add_http_request_header("X-Added", "1");
                self.set_http_request_header("x-replaced", Some("new"));
                self.set_http_request_header("x-fresh", Some("made"));
                self.set_http_request_header("x-removed", None);
                self.remove_http_request_header("x-absent");
                report(
                    "headers.empty_value",
                    format!("{:?}", self.get_http_request_header("x-empty")),
                );
                Action::Continue
            }
            scenario::SET_PAIRS => {
                self.set_http_request_headers(vec![
                    (":method", "GET"),
                    (":path", "/rewritten"),
                    ("X-Only", "this"),
                ]);
                Action::Continue
            }
            scenario::CALLOUT
            | scenario::CALLOUT_LOCAL
            | scenario::RESUME_TWICE
            | scenario::CALLOUT_TRAP
            | scenario::RESUME_THEN_WRITE
            | scenario::RESUME_THEN_SDK_WRITE => {
                let cluster = self
                    .get_http_request_header("x-cluster")
                    .unwrap_or_else(|| "companion".into());
                let timeout = self
                    .get_http_request_header("x-timeout-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(500);
                match self.dispatch_http_call(
                    &cluster,
                    vec![
                        (":method", "GET"),
                        (":path", "/v1/x"),
                        (":authority", "companion"),
                        ("X-Token", "t"),
                    ],
                    None,
                    vec![],
                    Duration::from_millis(timeout),
                ) {
                    Ok(token) => {
                        self.token = Some(token);
                        report("dispatch", format!("Ok {token}"));
                        Action::Pause
                    }
                    Err(status) => {
                        report("dispatch", format!("{status:?}"));
                        Action::Continue
                    }
                }
            }
            scenario::CALLOUT_WITH_BODY => {
                let result = self.dispatch_http_call(
                    "companion",
                    vec![
                        (":method", "POST"),
                        (":path", "/v1/sessions"),
                        (":authority", "companion"),
                    ],
                    Some(b"{\"a\":1}"),
                    vec![],
                    Duration::from_millis(0),
                );
                report("dispatch", format!("{result:?}"));
                Action::Continue
            }
            scenario::CALLOUT_MISSING => {
                let full = [
                    (":method", "GET"),
                    (":path", "/"),
                    (":authority", "companion"),
                ];
                for skip in 0..3 {
                    let headers: Vec<(&str, &str)> = full
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .map(|(_, h)| *h)
                        .collect();
                    report(
                        &format!("dispatch_without{}", full[skip].0),
                        raw_http_call("companion", &headers, 100).0,
                    );
                }
                report(
                    "dispatch_unknown_cluster",
                    raw_http_call("nowhere", &full, 100).0,
                );
                report(
                    "dispatch_negative_timeout",
                    raw_http_call("companion", &full, u32::MAX).0,
                );
                Action::Continue
            }
            scenario::LOCAL | scenario::LOCAL_TWICE => {
                self.send_http_response(401, vec![("x-local", "1")], Some(b"denied"));
                Action::Pause
            }
            scenario::LOCAL_CONTINUE => {
                // Envoy stops the stream after a local response whatever the callback returns.
                self.send_http_response(418, vec![], None);
                Action::Continue
            }
            scenario::SHARED => {
                report("shared.get_missing", raw_shared_get("probe-k").0);
                report(
                    "shared.set_unconditional",
                    raw_shared_set("probe-k", "v1", 0),
                );
                let (status, value, cas) = raw_shared_get("probe-k");
                report(
                    "shared.get",
                    format!("{status} {value} cas_nonzero={}", cas != 0),
                );
                report("shared.set_with_cas", raw_shared_set("probe-k", "v2", cas));
                report(
                    "shared.set_with_stale_cas",
                    raw_shared_set("probe-k", "v3", cas),
                );
                report("shared.value_after", raw_shared_get("probe-k").1);
                report(
                    "shared.fresh_key_any_cas",
                    raw_shared_set("probe-fresh", "x", 12345),
                );
                Action::Continue
            }
            scenario::SHARED_WRITE => {
                let value = self.get_http_request_header("x-value").unwrap_or_default();
                report("shared.write", raw_shared_set("cross-worker", &value, 0));
                Action::Continue
            }
            scenario::SHARED_READ => {
                let (status, value, _) = raw_shared_get("cross-worker");
                report("shared.read", format!("{status} {value}"));
                Action::Continue
            }
            scenario::METRICS => {
                let counter =
                    proxy_wasm::hostcalls::define_metric(MetricType::Counter, "probe_counter")
                        .unwrap_or(0);
                let gauge = proxy_wasm::hostcalls::define_metric(MetricType::Gauge, "probe_gauge")
                    .unwrap_or(0);
                let hist =
                    proxy_wasm::hostcalls::define_metric(MetricType::Histogram, "probe_hist")
                        .unwrap_or(0);
                report(
                    "metrics.counter_inc",
                    status_name(unsafe { raw::proxy_increment_metric(counter, 2) }),
                );
                report(
                    "metrics.counter_negative",
                    status_name(unsafe { raw::proxy_increment_metric(counter, -1) }),
                );
                report(
                    "metrics.counter_zero",
                    status_name(unsafe { raw::proxy_increment_metric(counter, 0) }),
                );
                report(
                    "metrics.gauge_up",
                    status_name(unsafe { raw::proxy_increment_metric(gauge, 5) }),
                );
                report(
                    "metrics.gauge_down",
                    status_name(unsafe { raw::proxy_increment_metric(gauge, -2) }),
                );
                proxy_wasm::hostcalls::record_metric(hist, 7).ok();
                proxy_wasm::hostcalls::record_metric(hist, 9).ok();
                report(
                    "metrics.counter_value",
                    proxy_wasm::hostcalls::get_metric(counter).unwrap_or(0),
                );
                report(
                    "metrics.gauge_value",
                    proxy_wasm::hostcalls::get_metric(gauge).unwrap_or(0),
                );
                let mut v = 0u64;
                report(
                    "metrics.hist_get",
                    status_name(unsafe { raw::proxy_get_metric(hist, &mut v) }),
                );
                report(
                    "metrics.unknown_id",
                    status_name(unsafe { raw::proxy_get_metric(9999, &mut v) }),
                );
                Action::Continue
            }
            scenario::TIME => {
                let now = self
                    .get_current_time()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                report("time.now", now);
                Action::Continue
            }
            scenario::SET_PAIRS_COUNT
            | scenario::SET_PAIRS_BYTES
            | scenario::LOCAL_MANY_HEADERS => {
                // Maps at and past cpp-host's limits (`limits.h`): a count of pairs, or one
                // pair `a` whose value makes the serialized map exactly `x-size` bytes.
                let n: usize = self
                    .get_http_request_header("x-n")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let owned: Vec<(String, String)> = if self.scenario == scenario::SET_PAIRS_BYTES {
                    vec![("a".to_string(), "v".repeat(n.saturating_sub(15)))]
                } else {
                    (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect()
                };
                let pairs: Vec<(&str, &str)> = owned
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                if self.scenario == scenario::LOCAL_MANY_HEADERS {
                    self.send_http_response(200, pairs, Some(b"local"));
                    return Action::Pause;
                }
                let bytes = serialize(&pairs);
                report("set_pairs.bytes", bytes.len());
                let status = unsafe {
                    raw::proxy_set_header_map_pairs(REQUEST_HEADERS, bytes.as_ptr(), bytes.len())
                };
                report("set_pairs.status", status_name(status));
                Action::Continue
            }
            scenario::ALLOC => {
                // Grows the module's memory by asking for this many bytes; past the host's
                // cap the allocation fails and Rust aborts (a trap), as under Envoy's V8.
                let n: usize = self
                    .get_http_request_header("x-bytes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let held: Vec<u8> = Vec::with_capacity(n);
                report("alloc.capacity", held.capacity());
                Action::Continue
            }
            scenario::LOG_MANY => {
                // Lines the size of a filter's longest (about 300 bytes), x-n of them.
                let n: usize = self
                    .get_http_request_header("x-n")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let filler = "x".repeat(280);
                for i in 0..n {
                    report("line", format!("{} {i} {filler}", self.id));
                }
                Action::Continue
            }
            scenario::LOG_LEVEL_RAW => {
                // The SDK transmutes the host's level into its 0..=5 enum; read it raw, and
                // answer through a header, since at "off" no log line is kept.
                let mut level = u32::MAX;
                let status = unsafe { raw::proxy_get_log_level(&mut level) };
                self.set_http_request_header(
                    "x-log-level",
                    Some(&format!("{} {level}", status_name(status))),
                );
                Action::Continue
            }
            scenario::LOG_LEVEL => {
                report(
                    "log_level",
                    format!("{:?}", proxy_wasm::hostcalls::get_log_level()),
                );
                proxy_wasm::hostcalls::log(LogLevel::Debug, "probe: debug line").ok();
                proxy_wasm::hostcalls::log(LogLevel::Warn, "probe: warn line").ok();
                Action::Continue
            }
            scenario::PROPERTIES => {
                for path in [
                    vec!["plugin_name"],
                    vec!["plugin_root_id"],
                    vec!["plugin_vm_id"],
                    vec!["request", "path"],
                    vec!["request", "method"],
                    vec!["source", "address"],
                ] {
                    let value = self
                        .get_property(path.clone())
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                    report(
                        &format!("property.{}", path.join(".")),
                        format!("{value:?}"),
                    );
                }
                let dotted = "request.path";
                let mut ptr: *mut u8 = std::ptr::null_mut();
                let mut len = 0usize;
                let status = unsafe {
                    raw::proxy_get_property(dotted.as_ptr(), dotted.len(), &mut ptr, &mut len)
                };
                report("property.single_segment_dotted", status_name(status));
                report(
                    "property.missing",
                    format!("{:?}", self.get_property(vec!["no", "such"])),
                );
                Action::Continue
            }
            scenario::MEMORY => {
                let key = scenario::NAME_HEADER;
                let mut ptr: *mut u8 = std::ptr::null_mut();
                let mut len = 0usize;
                let bad_key = unsafe {
                    raw::proxy_get_header_map_value(
                        REQUEST_HEADERS,
                        WILD as *const u8,
                        16,
                        &mut ptr,
                        &mut len,
                    )
                };
                report("memory.bad_key", status_name(bad_key));
                let bad_ret = unsafe {
                    raw::proxy_get_header_map_value(
                        REQUEST_HEADERS,
                        key.as_ptr(),
                        key.len(),
                        WILD as *mut *mut u8,
                        &mut len,
                    )
                };
                report("memory.bad_return_pointer", status_name(bad_ret));
                let overflow = unsafe {
                    raw::proxy_add_header_map_value(
                        REQUEST_HEADERS,
                        key.as_ptr(),
                        usize::MAX,
                        key.as_ptr(),
                        1,
                    )
                };
                report("memory.length_overflow", status_name(overflow));
                let bad_log = unsafe { raw::proxy_log(2, WILD as *const u8, 64) };
                report("memory.bad_log", status_name(bad_log));
                Action::Continue
            }
            scenario::MAPS_OUT_OF_PHASE => {
                report(
                    "maps.response_in_request",
                    raw_pairs_status(RESPONSE_HEADERS),
                );
                report(
                    "maps.call_response_in_request",
                    raw_pairs_status(CALL_RESPONSE_HEADERS),
                );
                report("maps.unknown_type", raw_pairs_status(42));
                report(
                    "maps.request_trailers_in_headers",
                    raw_header(REQUEST_TRAILERS, "x-t").0,
                );
                report(
                    "maps.add_request_trailer_in_headers",
                    raw_add(REQUEST_TRAILERS, "x-t", "1"),
                );
                let mut ptr: *mut u8 = std::ptr::null_mut();
                let mut len = 0usize;
                let s = unsafe {
                    raw::proxy_get_buffer_bytes(CALL_RESPONSE_BODY, 0, 10, &mut ptr, &mut len)
                };
                report("buffers.call_body_in_request", status_name(s));
                Action::Continue
            }
            scenario::EFFECTIVE_CONTEXT => {
                report(
                    "effective.unknown",
                    status_name(unsafe { raw::proxy_set_effective_context(9999) }),
                );
                report(
                    "effective.self",
                    status_name(unsafe { raw::proxy_set_effective_context(self.id) }),
                );
                Action::Continue
            }
            scenario::UNIMPLEMENTED => {
                let name = "q";
                let mut id = 0u32;
                report(
                    "unimplemented.queue",
                    status_name(unsafe {
                        raw::proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id)
                    }),
                );
                report(
                    "unimplemented.continue_upstream",
                    status_name(unsafe { raw::proxy_continue_stream(3) }),
                );
                report(
                    "unimplemented.continue_bad_type",
                    status_name(unsafe { raw::proxy_continue_stream(9) }),
                );
                Action::Continue
            }
            scenario::CLOSE => {
                self.reset_http_request();
                Action::Continue
            }
            scenario::DONE => {
                report("done.status", status_name(unsafe { raw::proxy_done() }));
                Action::Continue
            }
            scenario::MAP_SIZE => {
                let mut size = 0usize;
                let status = unsafe { raw::proxy_get_header_map_size(REQUEST_HEADERS, &mut size) };
                report("map_size", format!("{} {size}", status_name(status)));
                Action::Continue
            }
            scenario::CONTINUE_UNPAUSED => {
                self.resume_http_request();
                Action::Continue
            }
            scenario::TRAP => panic!("probe asked to trap"),
            scenario::BODY | scenario::BODY_STREAM => Action::Continue,
            scenario::PAUSE => Action::Pause,
            _ => Action::Continue,
        }
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.scenario = self
            .get_http_request_header(scenario::NAME_HEADER)
            .unwrap_or_default();
        report(
            "request_headers",
            format!("{} n={num_headers} eos={end_of_stream}", self.scenario),
        );
        self.request_scenario()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        report(
            "request_body",
            format!("size={body_size} eos={end_of_stream}"),
        );
        if self.scenario == scenario::TRAILERS_HOLD_BODY {
            return Action::Pause;
        }
        if self.scenario == scenario::ADD_TRAILERS {
            // Envoy lets the last body callback add trailers when there are none.
            report(
                "add_trailer",
                format!(
                    "eos={end_of_stream} {}",
                    raw_add(REQUEST_TRAILERS, "x-made", "1")
                ),
            );
        }
        if self.scenario == scenario::BODY {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = self.get_http_request_body(0, body_size).unwrap_or_default();
            let upper = String::from_utf8_lossy(&body).to_uppercase();
            self.set_http_request_body(0, body_size, upper.as_bytes());
            let edge = self.get_http_request_body(0, 1).unwrap_or_default();
            report("request_body.first_byte", String::from_utf8_lossy(&edge));
        }
        if self.scenario == scenario::BODY_CALLOUT && end_of_stream {
            let token = self
                .dispatch_http_call(
                    "companion",
                    vec![
                        (":method", "GET"),
                        (":path", "/b"),
                        (":authority", "companion"),
                    ],
                    None,
                    vec![],
                    Duration::from_millis(100),
                )
                .ok();
            self.token = token;
            return Action::Pause;
        }
        if self.scenario == scenario::BUFFER_EDITS && end_of_stream {
            const REQUEST_BODY: u32 = 0;
            let mut size = 0usize;
            let mut flags = 0u32;
            let status =
                unsafe { raw::proxy_get_buffer_status(REQUEST_BODY, &mut size, &mut flags) };
            report("buffer.status", format!("{} {size}", status_name(status)));
            let edit = |start: usize, len: usize, value: &str| {
                status_name(unsafe {
                    raw::proxy_set_buffer_bytes(
                        REQUEST_BODY,
                        start,
                        len,
                        value.as_ptr(),
                        value.len(),
                    )
                })
            };
            report("buffer.prepend", edit(0, 0, "<"));
            report("buffer.append", edit(body_size + 1, 0, ">"));
            report("buffer.middle", edit(2, 1, "!"));
            let whole = self
                .get_http_request_body(0, usize::MAX / 2)
                .unwrap_or_default();
            report("buffer.after", String::from_utf8_lossy(&whole));
            let at_end = self.get_http_request_body(5, 10);
            report("buffer.read_at_end", format!("{at_end:?}"));
            let mut ptr: *mut u8 = std::ptr::null_mut();
            let mut len = 0usize;
            let past_end =
                unsafe { raw::proxy_get_buffer_bytes(REQUEST_BODY, 100, 5, &mut ptr, &mut len) };
            report("buffer.read_past_end", status_name(past_end));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        report(
            "response_headers",
            format!("n={num_headers} eos={end_of_stream}"),
        );
        report(
            "response.request_header_after_forward",
            raw_header(REQUEST_HEADERS, scenario::NAME_HEADER).0,
        );
        report(
            "response.status",
            self.get_http_response_header(":status").unwrap_or_default(),
        );
        if self.get_http_response_header("x-local").is_some()
            || self.get_http_response_header("x-denied").is_some()
        {
            report("response.saw_local_reply", true);
        }
        self.add_http_response_header(scenario::SEEN_HEADER, "1");
        if self.scenario == scenario::PAUSE_RESPONSE
            || self.scenario == scenario::PAUSE_RESPONSE_WRITE
        {
            let token = self
                .dispatch_http_call(
                    "companion",
                    vec![
                        (":method", "GET"),
                        (":path", "/r"),
                        (":authority", "companion"),
                    ],
                    None,
                    vec![],
                    Duration::from_millis(100),
                )
                .ok();
            self.token = token;
            return Action::Pause;
        }
        if self.scenario == scenario::LOCAL_TWICE {
            self.send_http_response(502, vec![], None);
            return Action::Pause;
        }
        if self.scenario == scenario::LOCAL_IN_RESPONSE {
            self.send_http_response(502, vec![], Some(b"replaced"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        report(
            "response_body",
            format!("size={body_size} eos={end_of_stream}"),
        );
        if self.scenario == scenario::ADD_TRAILERS {
            report(
                "add_response_trailer",
                format!(
                    "eos={end_of_stream} {}",
                    raw_add(RESPONSE_TRAILERS, "x-made", "1")
                ),
            );
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        report("request_trailers", format!("n={num_trailers}"));
        report(
            "request_trailers.x_t",
            self.get_http_request_trailer("x-t").unwrap_or_default(),
        );
        report(
            "request_trailers.headers_reachable",
            raw_header(REQUEST_HEADERS, scenario::NAME_HEADER).0,
        );
        if self.scenario == scenario::TRAILERS_HOLD_BODY {
            let body = self.get_http_request_body(0, 100).unwrap_or_default();
            report("request_trailers.held_body", String::from_utf8_lossy(&body));
        }
        self.set_http_request_trailer("x-session-user", None);
        self.add_http_request_trailer("x-added", "1");
        if self.scenario == scenario::TRAILERS_PAUSE {
            self.token = self
                .dispatch_http_call(
                    "companion",
                    vec![
                        (":method", "GET"),
                        (":path", "/t"),
                        (":authority", "companion"),
                    ],
                    None,
                    vec![],
                    Duration::from_millis(100),
                )
                .ok();
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        report("response_trailers", format!("n={num_trailers}"));
        self.set_http_response_trailer("x-session-user", None);
        self.add_http_response_trailer("x-added", "1");
        Action::Continue
    }

    fn on_log(&mut self) {
        report(
            "on_log.request_trailer",
            raw_header(REQUEST_TRAILERS, "x-t").0,
        );
        report(
            "on_log.response_trailer",
            raw_header(RESPONSE_TRAILERS, "x-rt").1.unwrap_or_default(),
        );
        report(
            "on_log.request_header",
            raw_header(REQUEST_HEADERS, scenario::NAME_HEADER).0,
        );
        let key = "x-late";
        let write = unsafe {
            raw::proxy_add_header_map_value(
                RESPONSE_HEADERS,
                key.as_ptr(),
                key.len(),
                key.as_ptr(),
                key.len(),
            )
        };
        report("on_log.write", status_name(write));
        report(
            "on_log.response_status",
            raw_header(RESPONSE_HEADERS, ":status")
                .1
                .unwrap_or_default(),
        );
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        report("deleted", self.id);
    }
}
