//! The cache's byte bound holds real memory: filled far past `cache.max_bytes` with the
//! largest sessions it keeps, the module stays under the VM's memory cap and never traps (a
//! trap in a callout's callback would hang every waiting stream of the worker).

use crate::support::*;
use harness::CalloutReply;
use serde_json::{Map, Value, json};

/// Mapped data keys: each session's value under each is injected, and so cached.
const MAPPED: usize = 16;

fn fill_config(max_bytes: usize, max_session_bytes: usize) -> Value {
    let map: Map<String, Value> = (0..MAPPED)
        .map(|i| (format!("k{i}"), json!(format!("x-k{i}"))))
        .collect();
    config(json!({
        "max_header_bytes": 65536,
        "headers": {"map": map},
        "cache": {"ttl_ms": 600_000, "max_entries": 1_000_000,
                  "max_bytes": max_bytes, "max_session_bytes": max_session_bytes},
    }))
}

/// Serves `count` distinct sessions, each with `MAPPED` mapped strings of `value_bytes`, so
/// each cached entry holds about `MAPPED * value_bytes` of injected headers. Stops at the
/// first trap and returns it.
fn fill(vm: &mut harness::Vm, count: u32, value_bytes: usize) -> Result<(), String> {
    for n in 0..count {
        let mut raw = [0u8; 32];
        raw[..4].copy_from_slice(&n.to_le_bytes());
        let sid = proto::SessionId::from_bytes(&raw);
        let data: Map<String, Value> = (0..MAPPED)
            .map(|i| (format!("k{i}"), json!("v".repeat(value_bytes))))
            .collect();
        let s = get_with_cookie(vm, &format!("sid={}", valid_token(&sid)));
        let Some(call) = vm.pending_callouts().into_iter().next() else {
            return Err(format!("request {n}: no lookup ({:?})", vm.failure()));
        };
        let body = session_body(&sid, Value::Object(data), Some("u"));
        if let Err(err) = vm.answer_callout(call.token, CalloutReply::new(200).body(body)) {
            return Err(format!("request {n}: {err}"));
        }
        if let Some(failure) = vm.failure() {
            return Err(format!("request {n}: {failure}"));
        }
        respond(vm, s, &[]);
        vm.finish_stream(s).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The proof at a small scale, with a control: a cache bounded at 8 MiB, filled with four
/// times that, fits a VM capped at 12 MiB (the module and one request in flight take about
/// 2.5 MiB besides: the fill broke a 10 MiB cap when measured); the same fill with the default
/// bound (64 MiB) does not, so the cap is tight enough to catch a count that undercounts.
#[test]
fn the_byte_bound_holds_real_memory_under_a_tight_cap() {
    let bounded = host();
    bounded.set_max_memory_bytes(12 << 20);
    let mut vm = try_start(&bounded, &fill_config(8 << 20, 1 << 20)).unwrap();
    fill(&mut vm, 32 * 4, 16 << 10).unwrap();
    assert!(vm.failure().is_none());

    let unbounded = host();
    unbounded.set_max_memory_bytes(12 << 20);
    let mut vm = try_start(&unbounded, &fill_config(64 << 20, 1 << 20)).unwrap();
    let outcome = fill(&mut vm, 32 * 4, 16 << 10);
    assert!(
        outcome.is_err(),
        "without a bound that fits, the same fill must break the cap"
    );
}

/// At full scale: the largest cache the configuration allows (512 MiB) with sessions of about
/// 1 MiB each (the largest a 2 MiB `max_session_bytes` keeps), filled to 1.4 times its bound,
/// inside Envoy's 1 GiB: no trap.
#[test]
fn the_largest_cache_filled_past_its_bound_never_traps_under_one_gib() {
    let (host, mut vm) = start(fill_config(512 << 20, 2 << 20));
    assert_eq!(host.max_memory_bytes(), harness::MAX_WASM_MEMORY_BYTES);
    fill(&mut vm, 720, 64_000).unwrap();
    assert!(vm.failure().is_none());
}
