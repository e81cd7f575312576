//! Conformance tests for the harness: the probe module (built with the proxy-wasm Rust SDK)
//! exercises each host call and reports what it saw; each test asserts Envoy's behaviour.
//! Build the probe first with `cargo xtask wasm` (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

mod support;

mod callouts;
mod failures;
mod headers;
mod imports;
mod lifecycle;
mod memory;
mod metrics;
mod properties;
mod shared_data;
mod streams;
mod time;
mod trailers;
mod wasi;
