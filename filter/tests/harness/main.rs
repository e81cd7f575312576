//! The real `filter.wasm` in the harness, driven through whole request cycles as Envoy would.
//! Build the module first with `cargo xtask wasm` (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

mod support;

mod assertion;
mod boundaries;
mod cache_memory;
mod cookie_store;
mod envoy_limits;
mod feed;
mod lifetime;
mod properties;
mod request;
mod response;
mod sessions;
