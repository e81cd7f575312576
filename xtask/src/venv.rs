//! Python tools the tasks need, installed from PyPI at pinned versions into virtualenvs under
//! cargo's target directory, once: a marker file records what was installed.

use crate::exec;
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// The virtualenv `<target>/<name>` holding exactly `packages` (pinned `name==version`), with
/// `check` (a path inside it, e.g. `bin/tool`) present. Installs only when something changed.
pub fn ensure(name: &str, packages: &[&str], check: &str) -> Result<PathBuf> {
    let venv = crate::wasm::cargo_target_dir().join(name);
    let marker = venv.join(".edge-session-installed");
    let wanted = packages.join(" ");
    let tool = venv.join(check);
    if tool.is_file() && std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(venv);
    }
    eprintln!("xtask: installing {wanted} into {}", venv.display());
    exec(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages),
    )?;
    if !tool.is_file() {
        bail!("{wanted} installed but {} is missing", tool.display());
    }
    std::fs::write(&marker, wanted)?;
    Ok(venv)
}
