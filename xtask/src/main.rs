//! The project's task runner, the one front door for people and CI: `cargo xtask <task>`.
//!
//! Tasks: `demo` runs the local stack; `wasm` builds the proxy-wasm modules; `test` builds them,
//! then runs every test and lint; `lint` runs rustfmt and clippy and checks the cited doc
//! sections; `deploy` checks the deploy artifacts and `python` runs the Python clients' tests
//! (both also part of `test`); `fuzz` fuzzes the parsers longer than `test` does; `bench` runs
//! the benchmarks and writes `BENCHMARKS.md`.

mod bench;
mod demo;
mod deploy;
mod doc_sections;
mod fuzz;
mod lint;
mod mongo;
mod python_clients;
mod test;
mod venv;
mod wasm;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo    run the local stack: database, companion, legacy app, edge-dev with the filter
  wasm    build the proxy-wasm modules (installs the Debian toolchain packages if missing)
  test    build the modules, then run all tests, rustfmt and clippy
  lint    rustfmt --check, clippy -D warnings, and every cited docs/*.md section exists
  deploy  check envoy.yaml, docker-compose.yml and deploy/ against Envoy's, Compose's,
          Kubernetes' and Istio's schemas, and their plugin configs with the filter's parser
  python  the Python clients' tests (Django's own session tests, Flask, sharing with the filter)
  fuzz    [--seconds N] [TARGET...]  fuzz the parsers for N s each (default 300)
  bench   run the benchmarks and write BENCHMARKS.md (numbers only, never fails on them)";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "wasm" => wasm::build_all().map(|_| ()),
        "demo" => demo::run(),
        "test" => test::run(),
        "lint" => lint::run(),
        "deploy" => deploy::run(),
        "python" => python_clients::task(),
        "fuzz" => fuzz::command(&std::env::args().skip(2).collect::<Vec<_>>()),
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
