//! The edge-session proxy-wasm HTTP filter (docs/architecture.md). Everything outside `shell`
//! is plain Rust with no host calls, unit-tested natively: the configuration, cookies and
//! tokens, what to inject, the cache, the revocation table, the request and response paths
//! (`request`, `response`, as methods of `core::Core`) and the store they write through
//! (`store`). `shell` is the proxy-wasm side: it moves data between Envoy and that core.

pub mod assertion;
pub mod cache;
pub mod caching;
pub mod config;
pub mod control;
pub mod cookie;
pub mod core;
pub mod feed;
pub mod inject;
pub mod json_ascii;
pub mod listing;
pub mod metrics;
pub mod request;
pub mod response;
pub mod revocation;
pub mod seen;
pub mod store;
pub mod token;

mod shell;

proxy_wasm::main! {{
    // Installs the SDK's logger and panic hook; `on_configure` lowers the level to Envoy's.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(shell::root::Root::default()));
}}
