//! rustfmt and clippy over the whole workspace, warnings as errors, and the sections the code
//! and docs cite (`doc_sections`).

use crate::{doc_sections, exec, root};
use anyhow::Result;
use std::process::Command;

pub fn run() -> Result<()> {
    doc_sections::check(&root())?;
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
