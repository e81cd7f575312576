//! The local demo: the MongoDB wire-protocol test server (unless `MONGODB_URI` is set), the
//! companion on 127.0.0.1:8081, the legacy app on 127.0.0.1:9000 and `edge-dev` with the filter
//! on 127.0.0.1:8080, in the foreground until Ctrl-C or SIGTERM, which stop everything it started.
//!
//! `--store cookie` runs the filter in cookie store mode instead: no database and no
//! companion, and envoy.yaml unchanged (edge-dev merges [`COOKIE_STORE_OVERRIDE`] over its
//! plugin configuration).

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

/// Where the demo keeps its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Companion,
    Cookie,
}

/// What `--store cookie` merges over envoy.yaml's plugin configuration: the cookie store, its
/// own development key (the first seals; `allow_development_secrets` from envoy.yaml lets
/// this weak one start, loudly), no companion, and so no listing route (it needs one).
const COOKIE_STORE_OVERRIDE: &str = r#"{"store": "cookie", "cookie_store": {"keys": [{"id": "devc1", "secret": "ZGV2LW9ubHktY29va2llLXN0b3JlLWtleS1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24h"}]}, "companion": null, "session_list": null}"#;

fn parse_args(args: &[String]) -> Result<Store> {
    match args {
        [] => Ok(Store::Companion),
        [flag, store] if flag == "--store" => match store.as_str() {
            "companion" => Ok(Store::Companion),
            "cookie" => Ok(Store::Cookie),
            other => bail!("--store takes companion or cookie, not {other:?}"),
        },
        _ => bail!("usage: cargo xtask demo [--store companion|cookie]"),
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let store = parse_args(args)?;
    let wasm_dir = wasm::build_all()?;
    exec(
        Command::new("cargo")
            .args(["build", "--locked"])
            .args(STACK_BINARIES),
    )?;
    let bin = wasm::cargo_target_dir().join("debug");
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    // Kept until the demo ends (declared first, so dropped after everything started):
    // dropping it stops the test database.
    let mut _database = None;
    let mut started = Started(Vec::new());
    let stored_in = match store {
        Store::Companion => {
            let (uri, database) = mongo::uri_or_start()?;
            _database = database;
            let companion = Command::new(bin.join("edge-session-companion"))
                .env("MONGODB_URI", &uri)
                .env("COMPANION_TOKEN", DEV_TOKEN)
                // envoy.yaml's development token is weak on purpose; the companion says so
                // at start.
                .env("COMPANION_ALLOW_DEVELOPMENT_SECRETS", "true")
                .env("COMPANION_LISTEN", "127.0.0.1:8081")
                .env("COMPANION_DATABASE", "edge_session_demo")
                .spawn()
                .context("cannot start the companion")?;
            started.0.push(("the companion", companion));
            format!("sessions in the companion, database {uri}")
        }
        Store::Cookie => "sessions in the cookie (store: cookie), no companion".to_string(),
    };
    let app = Command::new("python3")
        .arg(root().join("examples/legacy-app/app.py"))
        .args(["--host", "127.0.0.1", "--port", "9000"])
        .spawn()
        .context("cannot start the legacy app")?;
    started.0.push(("the legacy app", app));
    let mut proxy = Command::new(bin.join("edge-dev"));
    proxy
        .arg("--config")
        .arg(root().join("envoy.yaml"))
        .arg("--wasm")
        .arg(wasm_dir.join("filter.wasm"));
    if store == Store::Cookie {
        proxy.args(["--plugin-config-override", COOKIE_STORE_OVERRIDE]);
    }
    let proxy = proxy.spawn().context("cannot start edge-dev")?;
    started.0.push(("edge-dev", proxy));
    if store == Store::Companion {
        wait_for_port(8081, "the companion", &mut started)?;
    }
    wait_for_port(9000, "the legacy app", &mut started)?;
    wait_for_port(8080, "edge-dev", &mut started)?;

    println!(
        "
edge-session demo is up ({stored_in})
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_chosen_by_name_and_anything_else_is_refused() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&[]).unwrap(), Store::Companion);
        assert_eq!(
            parse_args(&args(&["--store", "cookie"])).unwrap(),
            Store::Cookie
        );
        assert_eq!(
            parse_args(&args(&["--store", "companion"])).unwrap(),
            Store::Companion
        );
        assert!(parse_args(&args(&["--store", "redis"])).is_err());
        assert!(parse_args(&args(&["--store"])).is_err());
        assert!(parse_args(&args(&["cookie"])).is_err());
    }
}
