//! Test support, one module per kind of fixture, so that no test crate pulls in more than it
//! uses: [`keys`] (the test keys and token, from testdata/test_keys.json), [`session`] (a
//! session as the companion answers it) and, with the `link` feature, [`FaultyLink`] (a TCP
//! link a test can cut or slow down). Only tests, examples, the fuzz targets and xtask depend on
//! it, never a product crate, so the wasm filter and the companion build without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod keys;
#[cfg(feature = "link")]
mod link;
pub mod session;

pub use session::{SessionBuilder, session};

#[cfg(feature = "link")]
pub use link::{FaultyLink, single_host, through};
