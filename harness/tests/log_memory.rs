//! The host's log is a ring of `LOG_RING_LINES` lines, so a long-running `edge-dev` (or a long
//! test) holds a bounded log however many requests pass. Alone in its own test binary so that
//! the process's resident memory is this test's.
#![allow(clippy::unwrap_used)]

use harness::{Host, LOG_RING_LINES, LogLevel, Plugin, PluginConfig, Vm};
use probe_scenarios as scenario;
use std::path::PathBuf;

fn probe_path() -> PathBuf {
    let dir = std::env::var_os("EDGE_SESSION_WASM_DIR").map_or_else(
        || manifest_dir().join("../target/wasm/wasm32-unknown-unknown/release"),
        PathBuf::from,
    );
    dir.join("probe.wasm")
}

/// Resident memory of this process, in bytes (Linux `/proc/self/status`).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

const LINES_PER_REQUEST: usize = 50;

fn requests(vm: &mut Vm, count: usize) -> u32 {
    let mut last = 0;
    for _ in 0..count {
        let id = vm.create_stream().unwrap();
        let headers = [
            (":method", "GET"),
            (":path", "/"),
            (scenario::NAME_HEADER, scenario::LOG_MANY),
            ("x-n", "50"),
        ];
        vm.request_headers(id, &headers, true).unwrap();
        vm.response_headers(id, &[(":status", "200")], true)
            .unwrap();
        vm.finish_stream(id).unwrap();
        last = id;
    }
    last
}

#[test]
fn the_log_stays_at_its_bound_and_memory_stays_flat_over_many_requests() {
    let host = Host::new();
    host.set_log_level(LogLevel::Info);
    let plugin = Plugin::load(&host, probe_path()).unwrap();
    let mut vm = Vm::start(&plugin, PluginConfig::new("")).unwrap();
    // Fill the ring twice over, so every allocation it needs has been made.
    requests(&mut vm, 2 * LOG_RING_LINES / LINES_PER_REQUEST);
    assert_eq!(host.logs().len(), LOG_RING_LINES);
    let before = resident_bytes();

    // About 200,000 lines of some 300 bytes: 60 MB and more if the log kept them all.
    let last = requests(&mut vm, 20 * LOG_RING_LINES / LINES_PER_REQUEST);
    let after = resident_bytes();
    assert_eq!(host.logs().len(), LOG_RING_LINES);
    let newest = host.newest_logs(1);
    assert_eq!(newest[0].message, format!("probe: deleted {last}"));
    assert!(
        after.saturating_sub(before) < 8 << 20,
        "resident memory grew from {before} to {after} bytes"
    );
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
