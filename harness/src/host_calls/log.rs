//! Logging, time, the tick timer, context switching and `proxy_done`.

use super::enter;
use crate::abi::{LogLevel, Status};
use crate::memory::{CallResult, finish, read, write_u32, write_u64};
use crate::state::HostState;
use std::time::Duration;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            finish(log(&mut c, level, ptr, len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Caller<'_, HostState>, ret: i32| finish(get_log_level(&mut c, ret)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, HostState>, ret: i32| finish(current_time(&mut c, ret)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, HostState>, period: i32| finish(set_tick_period(&mut c, period)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Caller<'_, HostState>, context: i32| finish(set_effective_context(&mut c, context)),
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: Caller<'_, HostState>| {
        finish(done(&mut c))
    })?;
    Ok(())
}

fn log(c: &mut Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> CallResult {
    enter(c, "proxy_log")?;
    let level = LogLevel::from_raw(level).ok_or(Status::BadArgument)?;
    let message = read(c, ptr, len)?;
    c.data()
        .log(level, String::from_utf8_lossy(&message).into_owned());
    Ok(())
}

fn get_log_level(c: &mut Caller<'_, HostState>, ret: i32) -> CallResult {
    enter(c, "proxy_get_log_level")?;
    let level = c.data().host.log_level() as u32;
    write_u32(c, ret, level)?;
    Ok(())
}

fn current_time(c: &mut Caller<'_, HostState>, ret: i32) -> CallResult {
    enter(c, "proxy_get_current_time_nanoseconds")?;
    let now = c.data().host.clock().wall_nanos();
    write_u64(c, ret, now)?;
    Ok(())
}

/// The timer belongs to the root context; 0 disables it. The first tick comes one period
/// after the call, as Envoy arms its timer.
fn set_tick_period(c: &mut Caller<'_, HostState>, period: i32) -> CallResult {
    enter(c, "proxy_set_tick_period_milliseconds")?;
    let state = c.data_mut();
    let period = period as u32;
    if period == 0 {
        state.tick_period = None;
        state.next_tick_at = None;
    } else {
        let period = Duration::from_millis(u64::from(period));
        state.tick_period = Some(period);
        let period_nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        state.next_tick_at = Some(state.host.clock().now_nanos().saturating_add(period_nanos));
    }
    Ok(())
}

fn set_effective_context(c: &mut Caller<'_, HostState>, context: i32) -> CallResult {
    enter(c, "proxy_set_effective_context")?;
    let state = c.data_mut();
    let context = context as u32;
    let known =
        context == state.root_context || state.streams.get(&context).is_some_and(|s| !s.done);
    if !known {
        return Err(Status::BadArgument.into());
    }
    state.effective_context = context;
    Ok(())
}

/// Only meaningful after `proxy_on_done` returned false; the harness finishes streams at once,
/// so nothing is ever waiting for it.
fn done(c: &mut Caller<'_, HostState>) -> CallResult {
    enter(c, "proxy_done")?;
    Err(Status::NotFound.into())
}
