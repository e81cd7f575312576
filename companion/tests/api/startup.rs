use crate::helpers::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_edge-session-companion");

fn companion() -> Command {
    let mut command = Command::new(BINARY);
    // Nothing from the environment of the test run may configure it.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPANION_") {
            command.env_remove(key);
        }
    }
    command.env("MONGODB_URI", mongodb_uri());
    command
}

#[test]
fn refuses_to_start_without_a_token() {
    let out = companion().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-no-token"), "{stderr}");
    let weak = companion().args(["--token", "short"]).output().unwrap();
    assert_eq!(weak.status.code(), Some(2));
}

#[test]
fn serves_then_stops_gracefully_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = companion()
        .args([
            "--token",
            TOKEN,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            &unique_database(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                break true;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(ready, "never became ready: {logs}");
    assert!(status.success(), "exit {status}: {logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token is never logged");
}
