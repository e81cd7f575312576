//! The edge-session proxy-wasm HTTP filter. A pure core (configuration, cookies, tokens, what
//! to inject, the cache, what a companion reply means) that is plain Rust and unit-tested
//! natively, and a thin proxy-wasm shell (`root`, `stream`) that moves data between Envoy and
//! that core.

pub mod cache;
pub mod caching;
pub mod config;
pub mod control;
pub mod cookie;
pub mod host_log_level;
pub mod inject;
pub mod json_ascii;
pub mod metrics;
pub mod request_path;
pub mod resolve;
pub mod revocation;
pub mod token;

mod root;
mod stream;

proxy_wasm::main! {{
    // Installs the SDK's logger and panic hook; `on_configure` lowers the level to Envoy's.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}
