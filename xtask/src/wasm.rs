//! Builds the proxy-wasm modules for `wasm32-unknown-unknown`.
//!
//! With rustup's `wasm32-unknown-unknown` standard library installed (`rustup target add
//! wasm32-unknown-unknown`), the rustup toolchain builds them as it builds everything else.
//! Without it (as on machines where rustup cannot download targets), the build falls back to
//! Debian's `rustc-web` compiler with its library source (`-Zbuild-std`) and the `rust-lld`
//! shipped with rustup as the linker. Either way the build has its own target directory, so
//! switching compilers never rebuilds the host build's work.

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
    let sysroot = rustc_sysroot()?;
    let mut cmd = if has_wasm_std(&sysroot) {
        eprintln!("xtask: building the modules with the rustup toolchain");
        let mut cmd = Command::new("cargo");
        cmd.args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
        ]);
        cmd
    } else {
        eprintln!(
            "xtask: the rustup toolchain has no wasm32-unknown-unknown standard library \
             ({} is missing): building with Debian's compiler and -Zbuild-std",
            wasm_std_dir(&sysroot).display()
        );
        debian_build(&sysroot)?
    };
    cmd.env("CARGO_TARGET_DIR", target_dir())
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

/// Where a toolchain keeps its prebuilt standard library for wasm32-unknown-unknown.
fn wasm_std_dir(sysroot: &Path) -> PathBuf {
    sysroot.join("lib/rustlib/wasm32-unknown-unknown/lib")
}

/// Whether the toolchain at `sysroot` has the wasm32-unknown-unknown standard library: its
/// `libstd-*.rlib`, not only the directory (an interrupted install leaves that behind).
fn has_wasm_std(sysroot: &Path) -> bool {
    std::fs::read_dir(wasm_std_dir(sysroot)).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

/// The build with Debian's compiler, which builds `std` for wasm from its source, linked by
/// the rustup toolchain's `rust-lld`; installs the Debian packages first when missing.
fn debian_build(sysroot: &Path) -> Result<Command> {
    ensure_toolchain()?;
    let lld = rust_lld(sysroot)?;
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
    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", &lld);
    Ok(cmd)
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

/// The sysroot of the rustup toolchain that runs this task.
fn rustc_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let sysroot = String::from_utf8(out.stdout).context("rustc printed a non-UTF-8 sysroot")?;
    Ok(PathBuf::from(sysroot.trim()))
}

/// The `rust-lld` of the rustup toolchain at `sysroot`.
fn rust_lld(sysroot: &Path) -> Result<PathBuf> {
    let lld = sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld");
    if !lld.is_file() {
        bail!(
            "rust-lld not found at {}; the rustup toolchain ships it",
            lld.display()
        );
    }
    Ok(lld)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Scratch;

    #[test]
    fn the_wasm_standard_library_is_found_only_where_it_is_installed() {
        let sysroot = Scratch::new("sysroot");
        let root = sysroot.0.as_path();
        assert!(!has_wasm_std(root), "no rustlib at all");
        sysroot.file(
            "lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-1a2b.rlib",
            "",
        );
        assert!(!has_wasm_std(root), "only the host's standard library");
        sysroot.file(
            "lib/rustlib/wasm32-unknown-unknown/lib/libcore-3c4d.rlib",
            "",
        );
        assert!(!has_wasm_std(root), "an install that stopped before std");
        sysroot.file(
            "lib/rustlib/wasm32-unknown-unknown/lib/libstd-5e6f.rlib",
            "",
        );
        assert!(has_wasm_std(root));
    }
}
