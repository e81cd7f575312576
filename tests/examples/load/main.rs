//! Load benchmarks over real sockets, with `wrk` as the load generator in a second process:
//! the companion beside the MongoDB driver (`companion`), and the whole path through
//! `edge-dev` with and without the filter (`proxy`). `scale` (not part of `all`) runs several
//! proxies in front of one companion with many sessions (`scale.rs`). Prints Markdown tables;
//! asserts nothing.
//!
//! Needs `MONGODB_URI`, `wrk`, and the `edge-session-companion` and `edge-dev` binaries built
//! in the same profile (found beside this example, or in `EDGE_SESSION_BIN_DIR`).
//! `cargo xtask bench` provides all of them. By hand:
//! `cargo build --profile service -p companion -p edge-dev --bins && MONGODB_URI=...
//! cargo run --profile service -p e2e --example load -- [companion|proxy|all|scale]`.
//! `BENCH_ROUNDS` (3) and `BENCH_SECONDS` (4) set how long each measure runs; `scale.rs` names
//! its own settings.

mod companion;
mod proxy;
mod scale;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

pub struct Settings {
    rounds: usize,
    duration: Duration,
    /// Concurrent connections for the companion and the driver.
    concurrency: Vec<usize>,
    /// Concurrent connections through edge-dev.
    proxy_connections: usize,
}

/// A child process, stopped when dropped.
pub struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary built beside this example (`target/<profile>/`).
fn binary(name: &str) -> Result<PathBuf, Error> {
    let dir = match std::env::var_os("EDGE_SESSION_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .ok_or("cannot find the target directory")?
            .to_path_buf(),
    };
    let path = dir.join(name);
    if !path.is_file() {
        return Err(format!(
            "{} is missing: build it in this profile first",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn free_addr() -> Result<SocketAddr, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn wait_for(addr: SocketAddr) -> Result<(), Error> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("nothing listens on {addr} after 15 s").into())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".to_string());
    let uri = std::env::var("MONGODB_URI").map_err(|_| "set MONGODB_URI")?;
    let settings = Settings {
        rounds: env_number("BENCH_ROUNDS", 3).max(1) as usize,
        duration: Duration::from_secs(env_number("BENCH_SECONDS", 4).max(1)),
        concurrency: vec![1, 8],
        proxy_connections: 8,
    };
    let root = manifest_dir().join("..");
    let wasm = std::env::var_os("EDGE_SESSION_WASM_DIR")
        .map_or_else(
            || root.join("target/wasm/wasm32-unknown-unknown/release"),
            PathBuf::from,
        )
        .join("filter.wasm");
    if which == "scale" {
        return scale::run(&uri, &root, &wasm).await;
    }
    if matches!(which.as_str(), "companion" | "all") {
        companion::run(&settings, &uri).await?;
    }
    if matches!(which.as_str(), "proxy" | "all") {
        if which == "all" {
            println!();
        }
        proxy::run(&settings, &uri, &root, &wasm).await?;
    }
    Ok(())
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
