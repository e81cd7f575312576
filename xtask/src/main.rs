//! The project's task runner, the one front door for people and CI: `cargo xtask <task>`.
//!
//! Tasks: `demo` runs the local stack; `wasm` builds the proxy-wasm modules; `test` builds them,
//! then runs every test and lint; `lint` runs rustfmt and clippy and checks the cited doc
//! sections; `deploy` checks the deploy artifacts (`compose-envoy` writes docker-compose.yml's
//! Envoy configuration from envoy.yaml) and `python` runs the Python clients' tests (both also
//! part of `test`); `fuzz` fuzzes the parsers longer than `test` does; `bench` runs the
//! benchmarks and writes `BENCHMARKS.md` (`bench scale` only the scale one).

mod bench;
mod bench_scale;
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
use std::sync::OnceLock;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo    [--store companion|cookie]  run the local stack: database, companion, legacy app,
          edge-dev with the filter (--store cookie: sessions in the cookie, no database
          and no companion)
  wasm    build the proxy-wasm modules (installs the Debian toolchain packages if missing)
  test    build the modules, then run all tests, rustfmt and clippy
  lint    rustfmt --check, clippy -D warnings, and every cited docs/*.md section exists
  deploy  check envoy.yaml, docker-compose.yml and deploy/ against Envoy's, Compose's,
          Kubernetes' and Istio's schemas, and their plugin configs with the filter's parser
  compose-envoy  write docker-compose.yml's Envoy configuration from envoy.yaml
  python  the Python clients' tests (Django's own session tests, Flask, sharing with the filter)
  fuzz    [--seconds N] [TARGET...]  fuzz the parsers for N s each (default 300)
  bench   [scale]  run the benchmarks and write BENCHMARKS.md (numbers only, never fails
          on them); `scale` runs only the proxies-and-sessions one (about two minutes)";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let Some(workspace) = workspace_root(&here) else {
        bail!(
            "no Cargo.toml with a [workspace] table in {} or above it: run cargo xtask inside \
             the checkout to work on",
            here.display()
        );
    };
    // Set once, before any task reads it.
    let _ = ROOT.set(workspace);
    match task.as_str() {
        "wasm" => wasm::build_all().map(|_| ()),
        "demo" => demo::run(&std::env::args().skip(2).collect::<Vec<_>>()),
        "test" => test::run(),
        "lint" => lint::run(),
        "deploy" => deploy::run(),
        "compose-envoy" => deploy::generate_compose_envoy(),
        "python" => python_clients::task(),
        "fuzz" => fuzz::command(&std::env::args().skip(2).collect::<Vec<_>>()),
        "bench" => bench::command(&std::env::args().skip(2).collect::<Vec<_>>()),
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
}

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The root of the workspace the command runs in, found at run time: the xtask binary may
/// have been built in another checkout that shares the target directory (`.ci/run`), so the
/// manifest directory it was compiled in names the wrong one.
pub fn root() -> PathBuf {
    ROOT.get_or_init(|| {
        std::env::current_dir()
            .ok()
            .and_then(|here| workspace_root(&here))
            .unwrap_or_else(|| PathBuf::from("."))
    })
    .clone()
}

/// The nearest directory from `start` upwards whose `Cargo.toml` has a `[workspace]` table,
/// as cargo finds the workspace of a command.
fn workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree under the system's temporary directory, removed when dropped.
    pub(crate) struct Scratch(pub PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(crate) fn file(&self, path: &str, text: &str) -> PathBuf {
            let path = self.0.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_workspace_is_the_nearest_manifest_with_a_workspace_table() {
        let tree = Scratch::new("root");
        tree.file("Cargo.toml", "[workspace]\nmembers = [\"a\"]\n");
        tree.file("a/Cargo.toml", "[package]\nname = \"a\"\n");
        tree.file("a/src/lib.rs", "");
        let root = tree.0.as_path();
        assert_eq!(workspace_root(root).as_deref(), Some(root));
        assert_eq!(workspace_root(&root.join("a/src")).as_deref(), Some(root));
        // A member's manifest names the workspace only in a key, not as a table.
        tree.file(
            "a/Cargo.toml",
            "[package]\nname = \"a\"\nedition.workspace = true\n",
        );
        assert_eq!(workspace_root(&root.join("a")).as_deref(), Some(root));
        // A nested workspace (like fuzz/) is its own.
        tree.file(
            "fuzz/Cargo.toml",
            "[package]\nname = \"f\"\n\n[workspace]\n",
        );
        assert_eq!(
            workspace_root(&root.join("fuzz")).as_deref(),
            Some(root.join("fuzz").as_path())
        );
    }

    #[test]
    fn this_checkout_is_found_from_inside_it() {
        // At run time: a build reused from another checkout keeps the compile-time value.
        let xtask = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        );
        let xtask = xtask.as_path();
        assert_eq!(workspace_root(xtask).as_deref(), xtask.parent());
    }
}
