//! A proxy-wasm ABI v0.2.1 host on wasmtime that behaves like Envoy, for tests, benchmarks and
//! the dev proxy (the `edge-dev` crate). See `Host` (the process: clock, shared data, stats, log, clusters), `Plugin`
//! (a compiled module) and `Vm` (a worker running it, with streams and callouts).

pub mod abi;
mod callout;
mod error;
mod header_map;
mod host;
mod host_calls;
mod memory;
pub mod pairs;
mod plugin;
mod state;
mod stream;
mod vm;

pub use abi::{Action, LogLevel, MetricType, Status};
pub use callout::CalloutReply;
pub use error::HarnessError;
pub use header_map::HeaderMap;
pub use host::{
    Clock, ClusterHealth, DEFAULT_START_NANOS, Host, LOG_RING_BYTES, LOG_RING_LINES, LogLine,
    MAX_WASM_MEMORY_BYTES, Metric,
};
pub use plugin::{FailurePolicy, Plugin, PluginConfig};
pub use state::{Callout, LocalResponse};
pub use stream::{Direction, Flow, Message, Side, Stream};
pub use vm::Vm;
