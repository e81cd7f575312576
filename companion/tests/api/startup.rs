use crate::helpers::*;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_edge-session-companion");
const PLACEHOLDER: &str = "REPLACE-ME-openssl-rand-hex-24";
/// The demo's token: 30 characters, two short of the rule.
const WEAK: &str = "dev-token-change-me-0123456789";

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

/// Runs `command` to its exit, or kills it after 15 s (a companion that should have refused
/// to start serves instead) and returns `None`.
fn exit_of(command: &mut Command) -> Option<Output> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

/// Whether `command` refused to start (exit 2), and what it said.
fn refusal(command: &mut Command) -> String {
    let out = exit_of(command).expect("it started instead of refusing");
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts `command` on a free port, waits until it is ready, stops it with SIGTERM and
/// returns whether it became ready, how it exited and its log (stdout).
fn serve_until_sigterm(command: &mut Command) -> (bool, ExitStatus, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = command
        .args([
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
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
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
    let logs = String::from_utf8_lossy(&output.stdout).into_owned();
    (ready, status, logs)
}

#[test]
fn refuses_to_start_without_a_token() {
    let stderr = refusal(&mut companion());
    assert!(stderr.contains("--insecure-no-token"), "{stderr}");
    refusal(companion().args(["--token", "short"]));
}

/// The shipped templates' placeholder started the companion, and got past its auth.
#[test]
fn a_placeholder_token_is_refused_even_with_the_development_switch() {
    for switch in [None, Some("true")] {
        let mut command = companion();
        command.args(["--token", PLACEHOLDER]);
        if let Some(value) = switch {
            command.env("COMPANION_ALLOW_DEVELOPMENT_SECRETS", value);
        }
        let stderr = refusal(&mut command);
        assert!(stderr.contains("openssl rand -hex 24"), "{stderr}");
        assert!(stderr.contains("placeholder"), "{stderr}");
        assert!(!stderr.contains(PLACEHOLDER), "never the token: {stderr}");
    }
}

#[test]
fn a_weak_token_is_refused_naming_the_development_switch() {
    let stderr = refusal(companion().env("COMPANION_TOKEN", WEAK));
    for hint in [
        "--allow-development-secrets",
        "COMPANION_ALLOW_DEVELOPMENT_SECRETS",
        "openssl rand -hex 24",
    ] {
        assert!(stderr.contains(hint), "{hint}: {stderr}");
    }
    assert!(!stderr.contains(WEAK), "never the token: {stderr}");
    let stderr = refusal(companion().env("COMPANION_TOKEN", format!("{WEAK}\n")));
    assert!(stderr.contains("newline"), "{stderr}");
}

#[test]
fn a_weak_token_with_the_development_switch_serves_and_warns_at_start() {
    let (ready, status, logs) = serve_until_sigterm(
        companion()
            .env("COMPANION_TOKEN", WEAK)
            .env("COMPANION_ALLOW_DEVELOPMENT_SECRETS", "true"),
    );
    assert!(ready, "never became ready: {logs}");
    assert!(status.success(), "exit {status}: {logs}");
    let warning = logs
        .lines()
        .find(|line| line.contains("WEAK token"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    assert!(warning.contains(r#""level":"WARN""#), "{warning}");
    assert!(warning.contains("--allow-development-secrets"), "{warning}");
    assert!(warning.contains("shorter than 32 characters"), "{warning}");
    assert!(!logs.contains(WEAK), "the token is never logged");
}

#[test]
fn serves_then_stops_gracefully_on_sigterm() {
    let (ready, status, logs) = serve_until_sigterm(companion().args(["--token", TOKEN]));
    assert!(ready, "never became ready: {logs}");
    assert!(status.success(), "exit {status}: {logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(!logs.contains("WEAK token"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token is never logged");
}
