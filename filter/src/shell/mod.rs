//! The proxy-wasm shell: the root context (`root`), one stream (`stream`) and Envoy's log
//! level (`log_level`). Only these call the host.

mod log_level;
pub mod root;
mod stream;
