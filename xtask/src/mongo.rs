//! A MongoDB wire-protocol server for the tests. No MongoDB server package is reachable here,
//! so the tests run against SecantusDB (from PyPI; MongoDB's protocol over WiredTiger),
//! installed into a virtualenv under the target directory and started on a free port with
//! in-memory storage. Setting `MONGODB_URI` uses that server (a real `mongod`) instead.

use anyhow::{Context, Result, bail};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECANTUS: &str = "SecantusDB==0.7.0b3";

/// A running test server, stopped when dropped.
pub struct TestServer {
    child: Child,
    pub uri: String,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the pinned SecantusDB into its virtualenv if it is not there yet.
fn ensure_installed() -> Result<PathBuf> {
    crate::venv::ensure("venv", &[SECANTUS], "bin/secantusd-py")
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a fresh in-memory server and waits until it answers `ping`.
/// The database for a task: the real server named by `MONGODB_URI` if set, else a test server
/// started now (stopped when the returned guard drops).
pub fn uri_or_start() -> Result<(String, Option<TestServer>)> {
    match std::env::var("MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => Ok((uri, None)),
        _ => {
            let server = start()?;
            Ok((server.uri.clone(), Some(server)))
        }
    }
}

pub fn start() -> Result<TestServer> {
    let venv = ensure_installed()?;
    let port = free_port()?;
    let log = crate::wasm::cargo_target_dir().join("secantusd.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(venv.join("bin/secantusd-py"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage-path",
            ":memory:",
            "--standalone",
        ])
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file))
        .spawn()
        .context("cannot start secantusd-py")?;
    let server = TestServer {
        child,
        uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
    };
    wait_for_ping(&venv, &server.uri, port, &log)?;
    eprintln!("xtask: test database at {}", server.uri);
    Ok(server)
}

fn wait_for_ping(venv: &Path, uri: &str, port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let ping = Command::new(venv.join("bin/python"))
                .args(["-c", "import sys, pymongo; pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000).admin.command('ping')", uri])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if ping.success() {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    bail!("the test database did not answer ping within 60 s; its log:\n{tail}")
}
