use crate::support::*;
use harness::Action;

#[test]
fn bad_pointers_and_lengths_answer_invalid_memory_access() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, scenario::MEMORY, &[]);
    assert_eq!(report(&host, "memory.bad_key"), "InvalidMemoryAccess");
    assert_eq!(
        report(&host, "memory.bad_return_pointer"),
        "InvalidMemoryAccess"
    );
    assert_eq!(
        report(&host, "memory.length_overflow"),
        "InvalidMemoryAccess"
    );
    assert_eq!(report(&host, "memory.bad_log"), "InvalidMemoryAccess");
    assert_eq!(
        action,
        Ok(Action::Continue),
        "a refused call does not fail the stream"
    );
    assert!(vm.stream(id).unwrap().upstream.is_some());
    assert!(vm.failure().is_none());
}

#[test]
fn returned_data_lives_in_memory_from_malloc_before_proxy_on_memory_allocate() {
    // Both allocators exported: Envoy uses `malloc`. The module continues only if the value
    // of `:path` came back at the address its `malloc` hands out.
    let module = r#"(module
      (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) ":path")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) i32.const 2048)
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 36)))
        (i32.ne (i32.load (i32.const 32)) (i32.const 2048))))"#;
    let host = host();
    let plugin = harness::Plugin::from_bytes(&host, module.as_bytes()).unwrap();
    let mut vm = harness::Vm::start(&plugin, harness::PluginConfig::new("")).unwrap();
    let (id, action) = request(&mut vm, "x", &[]);
    assert_eq!(action, Ok(Action::Continue));
    assert!(vm.stream(id).unwrap().upstream.is_some());
}

#[test]
fn a_buffer_ending_exactly_at_the_end_of_memory_is_valid() {
    // The key `:path` is the last five bytes of the one-page memory; one byte further is not.
    let module = r#"(module
      (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 65531) ":path")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) i32.const 2048)
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        ;; Continue (0) only if the in-bounds read succeeds and the read one byte past fails with 6.
        (i32.or
          (call $get (i32.const 0) (i32.const 65531) (i32.const 5) (i32.const 32) (i32.const 36))
          (i32.ne (call $get (i32.const 0) (i32.const 65532) (i32.const 5) (i32.const 32) (i32.const 36)) (i32.const 6)))))"#;
    let host = host();
    let plugin = harness::Plugin::from_bytes(&host, module.as_bytes()).unwrap();
    let mut vm = harness::Vm::start(&plugin, harness::PluginConfig::new("")).unwrap();
    let (_id, action) = request(&mut vm, "x", &[]);
    assert_eq!(action, Ok(Action::Continue));
}

/// cpp-host caps every VM's memory at `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`, 1 GiB
/// (`limits.h`), passed to V8 as `--wasm_max_mem_pages` (`src/v8/v8.cc`): growing to exactly
/// 1 GiB works, one page more answers -1. The module continues only if both hold.
#[test]
fn memory_grows_to_exactly_one_gib_and_no_further() {
    assert_eq!(harness::MAX_WASM_MEMORY_BYTES, 1 << 30);
    let module = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) i32.const 2048)
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (i32.or
          (i32.eq (memory.grow (i32.const 16383)) (i32.const -1))
          (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))))"#;
    let host = host();
    let plugin = harness::Plugin::from_bytes(&host, module.as_bytes()).unwrap();
    let mut vm = harness::Vm::start(&plugin, harness::PluginConfig::new("")).unwrap();
    let (_id, action) = request(&mut vm, "x", &[]);
    assert_eq!(action, Ok(Action::Continue));
}

/// Past the cap the module's allocator gets no memory and Rust aborts: a trap, which fails
/// the stream as any trap does. The cap is lowered here so the test stays small.
#[test]
fn an_allocation_past_the_memory_cap_traps_and_fails_the_stream() {
    let host = host();
    host.set_max_memory_bytes(32 << 20);
    let plugin = probe_plugin(&host);
    let mut vm = harness::Vm::start(&plugin, config("")).unwrap();
    let (_, action) = request(
        &mut vm,
        scenario::ALLOC,
        &[("x-bytes", &(8 << 20).to_string())],
    );
    assert_eq!(action, Ok(Action::Continue));
    assert_eq!(report(&host, "alloc.capacity"), (8 << 20).to_string());
    let (id, result) = request(
        &mut vm,
        scenario::ALLOC,
        &[("x-bytes", &(64 << 20).to_string())],
    );
    assert!(
        matches!(result, Err(harness::HarnessError::Trap { .. })),
        "{result:?}"
    );
    assert_eq!(vm.stream(id).unwrap().client_status(), Some(503));
}
