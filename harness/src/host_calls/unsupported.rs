//! ABI calls the harness does not support: gRPC and shared queues. They resolve so that any
//! SDK module instantiates, and answer `Unimplemented` with a log line when called.

use super::unimplemented;
use crate::memory::finish;
use crate::state::HostState;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, HostState>;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |c: C<'_>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32| { finish(unimplemented(&c, "proxy_grpc_call")) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |c: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            finish(unimplemented(&c, "proxy_grpc_stream"))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |c: C<'_>, _: i32, _: i32, _: i32, _: i32| finish(unimplemented(&c, "proxy_grpc_send")),
    )?;
    linker.func_wrap("env", "proxy_grpc_cancel", |c: C<'_>, _: i32| {
        finish(unimplemented(&c, "proxy_grpc_cancel"))
    })?;
    linker.func_wrap("env", "proxy_grpc_close", |c: C<'_>, _: i32| {
        finish(unimplemented(&c, "proxy_grpc_close"))
    })?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |c: C<'_>, _: i32, _: i32, _: i32| finish(unimplemented(&c, "proxy_register_shared_queue")),
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |c: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| {
            finish(unimplemented(&c, "proxy_resolve_shared_queue"))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |c: C<'_>, _: i32, _: i32, _: i32| finish(unimplemented(&c, "proxy_enqueue_shared_queue")),
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |c: C<'_>, _: i32, _: i32, _: i32| finish(unimplemented(&c, "proxy_dequeue_shared_queue")),
    )?;
    Ok(())
}
