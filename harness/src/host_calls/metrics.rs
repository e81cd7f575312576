//! Metrics: counters, gauges and histograms, defined per VM and kept by name in the host's
//! stats, so every worker adds to the same counter as in Envoy.

use super::enter;
use crate::abi::{MetricType, Status};
use crate::host::Metric;
use crate::memory::{CallResult, finish, read_str, write_u32, write_u64};
use crate::state::{HostState, MetricHandle};
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller<'_, HostState>, kind: i32, name_ptr: i32, name_len: i32, ret_id: i32| {
            finish(define(&mut c, kind, name_ptr, name_len, ret_id))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Caller<'_, HostState>, id: i32, delta: i64| finish(increment(&mut c, id, delta)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Caller<'_, HostState>, id: i32, value: i64| {
            finish(record(&mut c, id, value as u64))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Caller<'_, HostState>, id: i32, ret: i32| finish(get(&mut c, id, ret)),
    )?;
    Ok(())
}

fn define(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> CallResult {
    enter(c, "proxy_define_metric")?;
    let kind = MetricType::from_raw(kind).ok_or(Status::BadArgument)?;
    let name = read_str(c, name_ptr, name_len)?;
    let id = c.data().next_metric_id;
    write_u32(c, ret_id, id)?;
    let state = c.data_mut();
    state.next_metric_id += 1;
    state.host.with_stats(|stats| {
        stats.entry(name.clone()).or_insert(Metric {
            kind,
            value: 0,
            samples: Vec::new(),
        });
    });
    state.metrics.insert(id, MetricHandle { name, kind });
    Ok(())
}

fn handle(state: &HostState, id: i32) -> Result<&MetricHandle, Status> {
    state.metrics.get(&(id as u32)).ok_or(Status::NotFound)
}

/// Counters only go up (a delta of 0 or less is `BadArgument`, as in Envoy); gauges move
/// either way; histograms take no increments.
fn increment(c: &mut Caller<'_, HostState>, id: i32, delta: i64) -> CallResult {
    enter(c, "proxy_increment_metric")?;
    let state = c.data();
    let metric = handle(state, id)?;
    let ok = state.host.with_stats(|stats| {
        let Some(entry) = stats.get_mut(&metric.name) else {
            return false;
        };
        match metric.kind {
            MetricType::Counter if delta > 0 => {
                entry.value = entry.value.saturating_add(delta as u64)
            }
            MetricType::Gauge => entry.value = entry.value.saturating_add_signed(delta),
            _ => return false,
        }
        true
    });
    if ok {
        Ok(())
    } else {
        Err(Status::BadArgument.into())
    }
}

/// Recording adds to a counter, sets a gauge and records a histogram sample (Envoy).
fn record(c: &mut Caller<'_, HostState>, id: i32, value: u64) -> CallResult {
    enter(c, "proxy_record_metric")?;
    let metric = handle(c.data(), id)?;
    c.data().host.with_stats(|stats| {
        if let Some(entry) = stats.get_mut(&metric.name) {
            match metric.kind {
                MetricType::Counter => entry.value = entry.value.saturating_add(value),
                MetricType::Gauge => entry.value = value,
                MetricType::Histogram => {
                    entry.value = value;
                    entry.samples.push(value);
                }
            }
        }
    });
    Ok(())
}

/// Histograms cannot be read back (`BadArgument`), as in Envoy.
fn get(c: &mut Caller<'_, HostState>, id: i32, ret: i32) -> CallResult {
    enter(c, "proxy_get_metric")?;
    let metric = handle(c.data(), id)?;
    if metric.kind == MetricType::Histogram {
        return Err(Status::BadArgument.into());
    }
    let value = c.data().host.metric(&metric.name).map_or(0, |m| m.value);
    write_u64(c, ret, value)?;
    Ok(())
}
