//! The HTTP handlers, one file per resource.

pub mod health;
pub mod revocations;
pub mod sessions;
pub mod users;
