//! rustfmt and clippy over the whole workspace, warnings as errors.

use crate::exec;
use anyhow::Result;
use std::process::Command;

pub fn run() -> Result<()> {
    exec(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    exec(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}
