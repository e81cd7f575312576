//! Shared data: one key-value store per `vm_id`, visible to every worker VM of the host, with
//! compare-and-swap. Shared queues are not supported.

use super::enter;
use crate::abi::Status;
use crate::memory::{CallResult, finish, give, read, write_u32};
use crate::state::HostState;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32,
         ret_cas: i32| { finish(get(&mut c, key_ptr, key_len, ret_ptr, ret_len, ret_cas)) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32,
         cas: i32| { finish(set(&mut c, key_ptr, key_len, val_ptr, val_len, cas)) },
    )?;
    Ok(())
}

fn get(
    c: &mut Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> CallResult {
    enter(c, "proxy_get_shared_data")?;
    let key = read(c, key_ptr, key_len)?;
    let state = c.data();
    let (value, cas) = state
        .host
        .with_shared_data(|store| store.get(&state.vm_id, &key))
        .ok_or(Status::NotFound)?;
    write_u32(c, ret_cas, cas)?;
    give(c, &value, ret_ptr, ret_len)
}

fn set(
    c: &mut Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
    cas: i32,
) -> CallResult {
    enter(c, "proxy_set_shared_data")?;
    let key = read(c, key_ptr, key_len)?;
    let value = read(c, val_ptr, val_len)?;
    let state = c.data();
    let stored = state
        .host
        .with_shared_data(|store| store.set(&state.vm_id, &key, &value, cas as u32));
    if stored {
        Ok(())
    } else {
        Err(Status::CasMismatch.into())
    }
}
