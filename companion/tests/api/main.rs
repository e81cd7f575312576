//! The companion's whole API through real HTTP on a port-0 server, against a real MongoDB
//! wire-protocol server (`MONGODB_URI`; `cargo xtask test` starts one). Each test has its own
//! database.
#![allow(clippy::unwrap_used)]

mod helpers;

mod auth;
mod concurrency;
mod cycle_failures;
mod expiry;
mod healthcheck;
mod hostile_input;
mod indexes;
mod lifetimes;
mod listing;
mod outage;
mod revocations;
mod seen;
mod session_limit;
mod sessions;
mod startup;
mod users;
