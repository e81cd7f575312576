use crate::support::*;
use harness::{Action, DEFAULT_START_NANOS, LogLevel, Plugin, PluginConfig, Vm};

/// WASI as Envoy provides it, for `wasm32-wasip1` modules: stdout and stderr go to the log,
/// clocks read the host clock, arguments and environment are empty.
#[test]
fn wasi_stdout_clock_and_environment_follow_envoy() {
    let module = format!(
        r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "to stdout\n")
      (data (i32.const 120) "to stderr")
      ;; iovecs: (ptr, len) pairs
      (data (i32.const 200) "\64\00\00\00\0a\00\00\00")
      (data (i32.const 208) "\78\00\00\00\09\00\00\00")
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) i32.const 2048)
      (func (export "_initialize")
        (drop (call $write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 300)))
        (drop (call $write (i32.const 2) (i32.const 208) (i32.const 1) (i32.const 300))))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $clock (i32.const 0) (i64.const 0) (i32.const 400)))
        (drop (call $env (i32.const 408) (i32.const 412)))
        ;; Continue only if the clock is the host's and the environment is empty.
        (i32.or
          (i64.ne (i64.load (i32.const 400)) (i64.const {DEFAULT_START_NANOS}))
          (i32.or (i32.load (i32.const 408)) (i32.load (i32.const 412))))))"#
    );
    let host = host();
    let plugin = Plugin::from_bytes(&host, module.as_bytes()).unwrap();
    let mut vm = Vm::start(&plugin, PluginConfig::new("")).unwrap();
    let logs = host.logs();
    let out = logs.iter().find(|l| l.message == "to stdout").unwrap();
    assert_eq!(out.level, LogLevel::Info);
    let err = logs.iter().find(|l| l.message == "to stderr").unwrap();
    assert_eq!(err.level, LogLevel::Error);
    let (_id, action) = request(&mut vm, "x", &[]);
    assert_eq!(action, Ok(Action::Continue));
}
