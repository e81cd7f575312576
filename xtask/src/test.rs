//! Everything CI checks: build the modules, start the test database, run the tests, lint.

use crate::{exec, lint, mongo, wasm};
use anyhow::Result;
use std::process::Command;

pub fn run() -> Result<()> {
    let wasm_dir = wasm::build_all()?;
    let (uri, server) = mongo::uri_or_start()?;
    exec(
        Command::new("cargo")
            .args(["test", "--workspace", "--locked"])
            .env("EDGE_SESSION_WASM_DIR", &wasm_dir)
            .env("MONGODB_URI", &uri),
    )?;
    crate::python_clients::run(&wasm_dir, &uri)?;
    drop(server);
    // The sample legacy app's own tests (Python standard library only).
    exec(Command::new("python3").args([
        "-m",
        "unittest",
        "discover",
        "-s",
        "examples/legacy-app",
    ]))?;
    crate::deploy::run()?;
    crate::fuzz::run(crate::fuzz::CI_SECONDS, &[])?;
    lint::run()
}
