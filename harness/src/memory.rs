//! Guest memory, bounds-checked: every pointer and length from the module is checked here and
//! a bad one becomes `InvalidMemoryAccess`, never a host panic.

use crate::abi::Status;
use crate::state::HostState;
use wasmtime::{Caller, Memory, TypedFunc};

/// Host-call failure: either an ABI status for the guest, or a trap that ends the VM call.
pub(crate) enum CallError {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

impl From<wasmtime::Error> for CallError {
    fn from(err: wasmtime::Error) -> Self {
        Self::Trap(err)
    }
}

pub(crate) type CallResult<T = ()> = Result<T, CallError>;

/// Turns a host call's result into what the guest sees: a status code, or a trap.
pub(crate) fn finish(result: CallResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok.code()),
        Err(CallError::Status(status)) => Ok(status.code()),
        Err(CallError::Trap(err)) => Err(err),
    }
}

fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, Status> {
    caller.data().memory.ok_or(Status::InvalidMemoryAccess)
}

fn range(ptr: i32, len: i32, size: usize) -> Result<std::ops::Range<usize>, Status> {
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    if end > size {
        return Err(Status::InvalidMemoryAccess);
    }
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let mem = memory(caller)?;
    let data = mem.data(caller);
    let r = range(ptr, len, data.len())?;
    Ok(data[r].to_vec())
}

/// Reads guest bytes as UTF-8 text (names of clusters, metrics, keys).
pub(crate) fn read_str(
    caller: &Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<String, Status> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| Status::BadArgument)
}

fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let mem = memory(caller)?;
    let data = mem.data_mut(caller);
    let r = range(ptr, bytes.len() as i32, data.len())?;
    data[r].copy_from_slice(bytes);
    Ok(())
}

/// Checks that `len` bytes at `ptr` could be written, without writing.
fn check_writable(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<(), Status> {
    let mem = memory(caller)?;
    range(ptr, len, mem.data_size(caller)).map(|_| ())
}

pub(crate) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u32,
) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u64,
) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest as Envoy does: memory from the module's own allocator, filled,
/// and its address and length written to `ret_ptr` and `ret_len`. Empty data is returned as a
/// null pointer with length 0, which the SDKs read as "empty".
pub(crate) fn give(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> CallResult {
    check_writable(caller, ret_ptr, 4)?;
    check_writable(caller, ret_len, 4)?;
    let len = u32::try_from(bytes.len()).map_err(|_| Status::InternalFailure)?;
    let addr = if bytes.is_empty() {
        0
    } else {
        let alloc: TypedFunc<i32, i32> = caller
            .data()
            .allocator
            .clone()
            .ok_or(Status::InternalFailure)?;
        let addr = alloc.call(&mut *caller, len as i32)?;
        if addr == 0 {
            return Err(Status::InternalFailure.into());
        }
        write(caller, addr, bytes)?;
        addr as u32
    };
    write_u32(caller, ret_ptr, addr)?;
    write_u32(caller, ret_len, len)?;
    Ok(())
}
