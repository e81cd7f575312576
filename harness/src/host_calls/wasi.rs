//! The few WASI functions Envoy implements for proxy-wasm modules, so that `wasm32-wasip1`
//! builds load too: stdout/stderr to the log, clocks from the host clock, empty arguments and
//! environment. Registered under both `wasi_snapshot_preview1` and `wasi_unstable`.

use crate::abi::LogLevel;
use crate::memory::{read, write_u32, write_u64};
use crate::state::HostState;
use wasmtime::{Caller, Linker};

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOTSUP: i32 = 58;
const REALTIME: i32 = 0;
const MONOTONIC: i32 = 1;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, HostState>;
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        linker.func_wrap(
            module,
            "fd_write",
            |mut c: C<'_>, fd: i32, iovs: i32, count: i32, ret: i32| {
                fd_write(&mut c, fd, iovs, count, ret)
            },
        )?;
        linker.func_wrap(
            module,
            "clock_time_get",
            |mut c: C<'_>, id: i32, _precision: i64, ret: i32| {
                let clock = c.data().host.clock();
                let now = match id {
                    REALTIME => clock.wall_nanos(),
                    MONOTONIC => clock.now_nanos(),
                    _ => return NOTSUP,
                };
                errno(write_u64(&mut c, ret, now))
            },
        )?;
        linker.func_wrap(module, "random_get", |mut c: C<'_>, ptr: i32, len: i32| {
            random_get(&mut c, ptr, len)
        })?;
        for (sizes, values) in [
            ("environ_sizes_get", "environ_get"),
            ("args_sizes_get", "args_get"),
        ] {
            linker.func_wrap(module, sizes, |mut c: C<'_>, count: i32, size: i32| {
                errno(write_u32(&mut c, count, 0).and_then(|()| write_u32(&mut c, size, 0)))
            })?;
            linker.func_wrap(module, values, |_: C<'_>, _: i32, _: i32| SUCCESS)?;
        }
        linker.func_wrap(module, "fd_close", |_: C<'_>, _: i32| BADF)?;
        linker.func_wrap(
            module,
            "fd_seek",
            |_: C<'_>, _: i32, _: i64, _: i32, _: i32| BADF,
        )?;
        linker.func_wrap(module, "fd_fdstat_get", |_: C<'_>, _: i32, _: i32| BADF)?;
        linker.func_wrap(module, "sched_yield", |_: C<'_>| SUCCESS)?;
        linker.func_wrap(
            module,
            "proc_exit",
            |_: C<'_>, code: i32| -> wasmtime::Result<()> {
                Err(wasmtime::Error::msg(format!(
                    "module called proc_exit({code})"
                )))
            },
        )?;
    }
    Ok(())
}

fn errno(result: Result<(), crate::abi::Status>) -> i32 {
    if result.is_ok() { SUCCESS } else { FAULT }
}

fn fd_write(c: &mut Caller<'_, HostState>, fd: i32, iovs: i32, count: i32, ret: i32) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return BADF,
    };
    let mut text = Vec::new();
    for i in 0..count {
        let Ok(iov) = read(c, iovs.wrapping_add(i.wrapping_mul(8)), 8) else {
            return FAULT;
        };
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Ok(bytes) = read(c, ptr, len) else {
            return FAULT;
        };
        text.extend_from_slice(&bytes);
    }
    let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let message = String::from_utf8_lossy(&text).trim_end().to_string();
    c.data().log(level, message);
    errno(write_u32(c, ret, written))
}

/// Envoy caps one call at 64 KiB. The bytes come from a simple generator: a test host needs
/// no cryptographic randomness, and a fixed sequence keeps runs repeatable.
fn random_get(c: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> i32 {
    if len as u32 > 64 * 1024 {
        return INVAL;
    }
    let mut seed = c.data().host.clock().now_nanos() | 1;
    let bytes: Vec<u8> = (0..len as u32)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let Some(memory) = c.data().memory else {
        return FAULT;
    };
    match memory.write(&mut *c, ptr as u32 as usize, &bytes) {
        Ok(()) => SUCCESS,
        Err(_) => FAULT,
    }
}
