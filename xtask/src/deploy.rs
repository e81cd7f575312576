//! Checks the deploy artifacts (envoy.yaml, docker-compose.yml, deploy/) against the schemas
//! of what loads them, with maintained tools from PyPI pinned below, and the plugin
//! configurations in them with the filter's own parser. No Envoy, Docker or Kubernetes runs
//! here; what these checks cannot see is listed in docs/operations.md ("What is validated").

use crate::{exec, root};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The tools, pinned. xds-protos is Envoy's v3 API compiled for Python protobuf;
/// check-jsonschema ships the Compose specification's schema; kubernetes-validate ships the
/// Kubernetes API schemas; cloudcoil-models-istio holds models generated from Istio's CRDs
/// (its newest release that installs on Python 3.11).
const TOOLS: &[&str] = &[
    "xds-protos==1.85.0",
    "protobuf==7.36.2",
    "PyYAML==6.0.3",
    "check-jsonschema==0.39.0",
    "kubernetes-validate==1.37.0",
    "cloudcoil.models.istio==1.24.2.1",
    "pydantic==2.14.3",
];

/// The oldest and newest Kubernetes versions the manifests are checked against.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

pub fn run() -> Result<()> {
    let started = Instant::now();
    let venv = crate::venv::ensure("venv-deploy", TOOLS, "bin/kubernetes-validate")?;
    let root = root();
    // The check's own tests first: each rule must catch a broken copy of a shipped file.
    exec(
        Command::new(venv.join("bin/python"))
            .args(["-m", "unittest", "discover", "--quiet"])
            .args(["-s", "xtask/deploy-check", "-p", "deploy_check_test.py"])
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )?;
    let out = crate::wasm::cargo_target_dir().join("deploy-check");
    if out.is_dir() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    // The filter's own configuration parser, natively; the check feeds it every plugin
    // configuration it finds, templates with test secrets and with their placeholders.
    // Built with the whole workspace's features, as `cargo test --workspace` builds it, so the
    // filter's dev-dependencies (wasmtime) are not rebuilt with other features for it.
    exec(Command::new("cargo").args([
        "build",
        "--workspace",
        "--locked",
        "--example",
        "check_plugin_config",
    ]))?;
    let checker = crate::wasm::cargo_target_dir().join("debug/examples/check_plugin_config");
    // Envoy configs against Envoy's API, Istio resources against Istio's, the facts the
    // filter and companion rely on, and the plugin configurations through the parser.
    exec(
        Command::new(venv.join("bin/python"))
            .arg(root.join("xtask/deploy-check/deploy_check.py"))
            .arg(&root)
            .arg(&out)
            .arg(&checker),
    )?;
    exec(Command::new(venv.join("bin/check-jsonschema")).args([
        "--builtin-schema",
        "vendor.compose-spec",
        "docker-compose.yml",
    ]))?;
    let manifests = files_with_extension(&root.join("deploy/kubernetes"), "yaml")?;
    for version in KUBERNETES_VERSIONS {
        exec(
            Command::new(venv.join("bin/kubernetes-validate"))
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .args(&manifests),
        )?;
    }
    eprintln!(
        "xtask: deploy artifacts checked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes docker-compose.yml's Envoy configuration from envoy.yaml (compose_envoy.py holds
/// compose's differences); `run` fails while the file differs from what this writes.
pub fn generate_compose_envoy() -> Result<()> {
    let venv = crate::venv::ensure("venv-deploy", TOOLS, "bin/kubernetes-validate")?;
    exec(
        Command::new(venv.join("bin/python"))
            .arg(root().join("xtask/deploy-check/compose_envoy.py"))
            .arg(root())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )
}

/// The files in `dir` with this extension, sorted.
fn files_with_extension(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no .{extension} files in {}", dir.display());
    }
    Ok(files)
}
