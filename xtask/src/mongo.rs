//! A MongoDB wire-protocol server for the tests. No MongoDB server package is reachable here,
//! so the tests run against SecantusDB (from PyPI; MongoDB's protocol over WiredTiger),
//! installed into a virtualenv under the target directory and started on a free port with
//! in-memory storage. Setting `MONGODB_URI` uses that server (a real `mongod`) instead.

use crate::exec;
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

fn venv_dir() -> PathBuf {
    crate::wasm::cargo_target_dir().join("venv")
}

/// Installs the pinned SecantusDB into the virtualenv if it is not there yet.
fn ensure_installed() -> Result<PathBuf> {
    let venv = venv_dir();
    let marker = venv.join(".edge-session-installed");
    let server = venv.join("bin/secantusd-py");
    if server.is_file() && std::fs::read_to_string(&marker).is_ok_and(|m| m == SECANTUS) {
        return Ok(venv);
    }
    eprintln!("xtask: installing {SECANTUS} into {}", venv.display());
    exec(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    exec(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SECANTUS,
    ]))?;
    if !server.is_file() {
        bail!("{SECANTUS} installed but {} is missing", server.display());
    }
    std::fs::write(&marker, SECANTUS)?;
    Ok(venv)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a fresh in-memory server and waits until it answers `ping`.
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
