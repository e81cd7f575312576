//! `edge-dev`: a development proxy that runs the filter's `.wasm` through the harness for
//! every request, as Envoy would, configured from the project's `envoy.yaml` (HTTP/1.1, and
//! HTTP/2 with prior knowledge from clients). Several worker threads accept connections, each
//! running the request through the filter on its own VM, in the thread that serves the
//! connection (the VMs share one shared-data store); it makes the filter's callouts as real
//! HTTP requests to the named clusters, forwards to the routed cluster, and runs the response
//! through the filter. Bodies stream through the filter chunk by chunk in both directions, a
//! few chunks in flight at most, and trailers follow them.
//!
//! Before any filter, as Envoy's codec does, the connection manager's
//! `headers_with_underscores_action` applies to the request's headers (and trailers); then
//! the `header_mutation` filters placed before the Wasm filter remove their headers. A
//! worker whose plugin does not start runs without the Wasm filter, as an Envoy worker does,
//! and says so in the log; a plugin that does not start at all stops `edge-dev` from starting.

mod body;
pub mod connection_options;
pub mod envoy_config;
pub mod header_mutation;
pub mod logging;
mod proxy;
mod server;
mod wire;
mod worker;

pub use server::{DevError, serve, serve_on};
