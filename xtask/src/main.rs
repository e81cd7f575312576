//! The project's task runner, the one front door for people and CI: `cargo xtask <task>`.
//!
//! Tasks: `demo` runs the local stack; `wasm` builds the proxy-wasm modules; `test` builds them,
//! then runs every test and lint; `lint` runs rustfmt and clippy only; `bench` runs the
//! benchmarks and writes `BENCHMARKS.md`.

mod bench;
mod demo;
mod lint;
mod mongo;
mod test;
mod wasm;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo    run the local stack: database, companion, legacy app, edge-dev with the filter
  wasm    build the proxy-wasm modules (installs the Debian toolchain packages if missing)
  test    build the modules, then run all tests, rustfmt and clippy
  lint    rustfmt --check and clippy -D warnings
  bench   run the benchmarks and write BENCHMARKS.md (numbers only, never fails on them)";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "wasm" => wasm::build_all().map(|_| ()),
        "demo" => demo::run(),
        "test" => test::run(),
        "lint" => lint::run(),
        "bench" => bench::run(),
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
}

/// The workspace root (the directory above `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command from the workspace root, echoing it; a failure names the command.
pub fn exec(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("command failed ({status}): {cmd:?}");
    }
    Ok(())
}
