//! The local demo: the MongoDB wire-protocol test server (unless `MONGODB_URI` is set), the
//! companion on 127.0.0.1:8081, the legacy app on 127.0.0.1:9000 and `edge-dev` with the filter
//! on 127.0.0.1:8080, in the foreground until Ctrl-C or SIGTERM, which stop everything it started.

use crate::{exec, mongo, root, wasm};
use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The development token `envoy.yaml` gives the filter; the companion must expect the same.
pub(crate) const DEV_TOKEN: &str = "dev-token-change-me-0123456789";

pub(crate) struct Started(pub(crate) Vec<(&'static str, Child)>);

impl Drop for Started {
    fn drop(&mut self) {
        for (name, child) in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("xtask: stopped {name}");
        }
    }
}

pub(crate) fn wait_for_port(port: u16, what: &str, started: &mut Started) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        for (name, child) in &mut started.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}) before {what} was up");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not open port {port} within 30 s")
}

/// `cargo build` arguments for the binaries of the stack: the companion and edge-dev.
pub(crate) const STACK_BINARIES: [&str; 8] = [
    "--package",
    "companion",
    "--bin",
    "edge-session-companion",
    "--package",
    "edge-dev",
    "--bin",
    "edge-dev",
];

pub fn run() -> Result<()> {
    let wasm_dir = wasm::build_all()?;
    exec(
        Command::new("cargo")
            .args(["build", "--locked"])
            .args(STACK_BINARIES),
    )?;
    let bin = wasm::cargo_target_dir().join("debug");
    let (uri, _database) = mongo::uri_or_start()?;
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    let mut started = Started(Vec::new());
    let companion = Command::new(bin.join("edge-session-companion"))
        .env("MONGODB_URI", &uri)
        .env("COMPANION_TOKEN", DEV_TOKEN)
        // envoy.yaml's development token is weak on purpose; the companion says so at start.
        .env("COMPANION_ALLOW_DEVELOPMENT_SECRETS", "true")
        .env("COMPANION_LISTEN", "127.0.0.1:8081")
        .env("COMPANION_DATABASE", "edge_session_demo")
        .spawn()
        .context("cannot start the companion")?;
    started.0.push(("the companion", companion));
    let app = Command::new("python3")
        .arg(root().join("examples/legacy-app/app.py"))
        .args(["--host", "127.0.0.1", "--port", "9000"])
        .spawn()
        .context("cannot start the legacy app")?;
    started.0.push(("the legacy app", app));
    let proxy = Command::new(bin.join("edge-dev"))
        .arg("--config")
        .arg(root().join("envoy.yaml"))
        .arg("--wasm")
        .arg(wasm_dir.join("filter.wasm"))
        .spawn()
        .context("cannot start edge-dev")?;
    started.0.push(("edge-dev", proxy));
    wait_for_port(8081, "the companion", &mut started)?;
    wait_for_port(9000, "the legacy app", &mut started)?;
    wait_for_port(8080, "edge-dev", &mut started)?;

    println!(
        "
edge-session demo is up (database {uri})
  open   http://127.0.0.1:8080/shop            log in, fill a cart, log out
  try    curl -i -c jar -b jar 'http://127.0.0.1:8080/login?user=alice'
         curl -s -c jar -b jar 'http://127.0.0.1:8080/set?key=color&value=blue'
         curl -s -b jar http://127.0.0.1:8080/   (the headers the app received)
         curl -i -c jar -b jar http://127.0.0.1:8080/logout
  Ctrl-C stops everything.
"
    );
    // Ctrl-C/SIGTERM, or any process ending by itself, ends the demo.
    loop {
        if stop_rx.recv_timeout(Duration::from_millis(300)).is_ok() {
            break;
        }
        for (name, child) in &mut started.0 {
            if let Some(status) = child.try_wait()? {
                eprintln!("xtask: {name} exited ({status}); stopping the demo");
                return Ok(());
            }
        }
    }
    Ok(())
}
