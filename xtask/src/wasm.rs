//! Builds the proxy-wasm modules for `wasm32-unknown-unknown`.
//!
//! The rustup toolchain here has no wasm32 standard library and cannot download one, so the
//! build uses Debian's `rustc-web` compiler with its library source (`-Zbuild-std`) and the
//! `rust-lld` shipped with rustup as the linker. A separate target directory keeps the two
//! compilers from rebuilding each other's work.

use crate::{exec, root};

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates built to wasm: the filter, and the probe that tests the harness.
pub const MODULES: &[&str] = &["filter", "probe"];
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_STD_SOURCE: &str = "/usr/lib/rustlib/src/rust/library";

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
pub fn cargo_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The wasm build's own target directory: `wasm/` inside cargo's target directory.
fn target_dir() -> PathBuf {
    cargo_target_dir().join("wasm")
}

/// Where the built modules land.
pub fn out_dir() -> PathBuf {
    target_dir().join("wasm32-unknown-unknown/release")
}

pub fn build_all() -> Result<PathBuf> {
    ensure_toolchain()?;
    let lld = rust_lld()?;
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        "wasm32-unknown-unknown",
        "-Zbuild-std=std,panic_abort",
    ])
    .env("RUSTC", DEBIAN_RUSTC)
    .env("RUSTC_BOOTSTRAP", "1")
    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", &lld)
    .env("CARGO_TARGET_DIR", target_dir())
    .env_remove("RUSTFLAGS");
    for module in MODULES {
        cmd.args(["--package", module]);
    }
    exec(&mut cmd)?;
    for module in MODULES {
        let path = out_dir().join(format!("{module}.wasm"));
        if !path.is_file() {
            bail!("the build succeeded but {} is missing", path.display());
        }
        eprintln!("xtask: built {}", path.display());
    }
    Ok(out_dir())
}

/// Installs Debian's wasm-capable compiler when it is missing (needs root, as on CI).
fn ensure_toolchain() -> Result<()> {
    if Path::new(DEBIAN_RUSTC).is_file()
        && Path::new(DEBIAN_CARGO).is_file()
        && Path::new(DEBIAN_STD_SOURCE).is_dir()
    {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} (Debian's compiler with the std source for wasm)",
        DEBIAN_PACKAGES.join(" ")
    );
    let sudo = !is_root();
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    exec(&mut apt(&["update"]))?;
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(DEBIAN_PACKAGES);
    exec(&mut install).context(
        "installing the Debian wasm toolchain failed; run the apt-get command above as root",
    )?;
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// The `rust-lld` of the rustup toolchain that runs this task.
fn rust_lld() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let sysroot = String::from_utf8(out.stdout).context("rustc printed a non-UTF-8 sysroot")?;
    let lld = Path::new(sysroot.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld");
    if !lld.is_file() {
        bail!(
            "rust-lld not found at {}; the rustup toolchain ships it",
            lld.display()
        );
    }
    Ok(lld)
}
