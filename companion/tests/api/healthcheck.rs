//! `edge-session-companion healthcheck`, the container health check of the distroless image:
//! exit 0 against a ready service, 1 when nothing answers.

use crate::helpers::*;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_edge-session-companion");

fn healthcheck(listen: &str) -> std::process::Output {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPANION_") {
            command.env_remove(key);
        }
    }
    // No token: the probe needs none, and must not refuse to run for want of one.
    command
        .env("COMPANION_LISTEN", listen)
        .args(["healthcheck", "--timeout-ms", "3000"])
        .output()
        .unwrap()
}

// Multi-threaded: the probe blocks this thread while the app answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_0_for_a_ready_service_and_1_when_nothing_listens() {
    let app = spawn().await;
    // The app listens on loopback; a wildcard listen address is probed there.
    let out = healthcheck(&format!("0.0.0.0:{}", app.addr.port()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = healthcheck(&free.to_string());
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
