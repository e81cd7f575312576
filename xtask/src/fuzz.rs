//! Fuzzing with cargo-fuzz (libFuzzer) of every parser the network reaches: the cookie
//! parser, the token verifier, the cookie store's payload decoder, the control-header parser
//! and the companion-reply parser (targets in `fuzz/`). `cargo xtask test` runs each for a few seconds; `cargo xtask fuzz`
//! runs longer and keeps the grown corpus in cargo's target directory between runs.
//!
//! cargo-fuzz needs nightly compiler flags (`-Zsanitizer=address`); the stable toolchain here
//! accepts them with `RUSTC_BOOTSTRAP=1`, and its sanitizer runtimes ship for
//! x86_64-unknown-linux-gnu.

use crate::{exec, root, wasm};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The cargo-fuzz release this task installs (`cargo install --locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// Per target: name, and the longest input worth trying.
const TARGETS: &[(&str, usize)] = &[
    ("cookie", 4096),
    ("token", 512),
    ("cookie_payload", 4200),
    ("control", 12_000),
    ("resolve", 12_000),
];
/// Seconds per target in `cargo xtask test`.
pub const CI_SECONDS: u64 = 20;
/// Seconds per target in `cargo xtask fuzz` unless `--seconds` says otherwise.
pub const DEFAULT_SECONDS: u64 = 300;

/// `cargo xtask fuzz [--seconds N] [TARGET...]`.
pub fn command(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value:?} is not a number"))?;
            }
            name if TARGETS.iter().any(|(t, _)| *t == name) => only.push(name.to_string()),
            other => bail!(
                "unknown fuzz argument {other:?}; targets: {}",
                names().join(", ")
            ),
        }
    }
    run(seconds, &only)
}

/// Builds every target once, then fuzzes each (or those in `only`) for `seconds`. Fails on
/// the first finding, naming the input libFuzzer saved.
pub fn run(seconds: u64, only: &[String]) -> Result<()> {
    ensure_cargo_fuzz()?;
    let started = Instant::now();
    exec(
        fuzz_command()
            .args(["build", "-O", "-a"])
            .args(target_dir_args()),
    )?;
    eprintln!("xtask: fuzz targets built in {:.0?}", started.elapsed());
    for (target, max_len) in TARGETS {
        if !only.is_empty() && !only.iter().any(|o| o == target) {
            continue;
        }
        fuzz_one(target, *max_len, seconds)?;
    }
    eprintln!(
        "xtask: fuzzing done in {:.0?}, no findings",
        started.elapsed()
    );
    Ok(())
}

fn fuzz_one(target: &str, max_len: usize, seconds: u64) -> Result<()> {
    let corpus = wasm::cargo_target_dir().join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let seeds = root().join("fuzz/seeds").join(target);
    let mut cmd = fuzz_command();
    cmd.args(["run", "-O", "-a"])
        .args(target_dir_args())
        .arg(target)
        // New inputs go to the first directory; the committed seeds stay as they are.
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg(format!("-dict={}", root().join("fuzz/json.dict").display()))
        .arg("-timeout=10")
        .arg("-print_final_stats=1");
    cmd.current_dir(root());
    eprintln!("xtask: fuzzing {target} for {seconds} s: {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        bail!(
            "fuzz target {target} found a failing input (saved under fuzz/artifacts/{target}/); \
             reproduce with `cargo fuzz run -O {target} <file>`, fix it, and add a regression test"
        );
    }
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .map_or("?", str::trim)
            .to_string()
    };
    eprintln!(
        "xtask: fuzz {target}: {} runs, {} per second, no findings",
        stat("number_of_executed_units"),
        stat("average_exec_per_sec")
    );
    Ok(())
}

/// `cargo fuzz` from the `fuzz/` crate, with the flags the stable compiler needs.
fn fuzz_command() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTFLAGS");
    cmd
}

/// The fuzz build's own directory inside cargo's, so its sanitizer flags never invalidate
/// the workspace build.
fn target_dir_args() -> [String; 2] {
    let dir: PathBuf = wasm::cargo_target_dir().join("fuzz");
    ["--target-dir".to_string(), dir.display().to_string()]
}

fn names() -> Vec<&'static str> {
    TARGETS.iter().map(|(t, _)| *t).collect()
}

/// Installs the pinned cargo-fuzz when `cargo fuzz` is missing or another version.
fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    exec(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}
