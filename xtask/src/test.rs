//! Everything CI checks: build the modules, run the tests against them, then lint.

use crate::{exec, lint, wasm};
use anyhow::Result;
use std::process::Command;

pub fn run() -> Result<()> {
    let wasm_dir = wasm::build_all()?;
    exec(
        Command::new("cargo")
            .args(["test", "--workspace", "--locked"])
            .env("EDGE_SESSION_WASM_DIR", &wasm_dir),
    )?;
    lint::run()
}
