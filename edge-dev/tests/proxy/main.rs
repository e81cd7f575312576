//! `edge-dev` over real sockets with the probe module (built with the proxy-wasm Rust SDK, see
//! `harness/probe`): bodies and trailers through the filter, and what `envoy.yaml` sets beyond
//! routes and the plugin. Build the probe first with `cargo xtask wasm` (`cargo xtask test`
//! does).
#![allow(clippy::unwrap_used)]

mod support;

mod envoy_settings;
mod streaming;
