//! Everything CI checks: build the modules, start the test database, run the tests, lint.

use crate::{exec, lint, mongo, wasm};
use anyhow::Result;
use std::process::Command;

pub fn run() -> Result<()> {
    let wasm_dir = wasm::build_all()?;
    // A real server given in MONGODB_URI wins; otherwise start the test server for this run.
    let (uri, server) = match std::env::var("MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => (uri, None),
        _ => {
            let server = mongo::start()?;
            (server.uri.clone(), Some(server))
        }
    };
    exec(
        Command::new("cargo")
            .args(["test", "--workspace", "--locked"])
            .env("EDGE_SESSION_WASM_DIR", &wasm_dir)
            .env("MONGODB_URI", &uri),
    )?;
    drop(server);
    // The sample legacy app's own tests (Python standard library only).
    exec(Command::new("python3").args([
        "-m",
        "unittest",
        "discover",
        "-s",
        "examples/legacy-app",
    ]))?;
    crate::fuzz::run(crate::fuzz::CI_SECONDS, &[])?;
    lint::run()
}
