//! edge-dev's log: `tracing` events on stderr, as the companion logs, compact text for a
//! terminal or JSON lines for a machine (`--log-format`), filtered by `RUST_LOG` (default
//! `info`). The filter's own lines (`proxy_log`) and the host's notes about it become events
//! too, under the target `wasm`, with the VM that wrote them (`main`, `worker-0`, ...).

use harness::{Host, LogLevel, LogLine};
use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One short line per event, for a person at a terminal.
    #[default]
    Compact,
    /// One JSON object per event, as the companion writes them.
    Json,
}

/// Installs the process's subscriber. Call once, first thing.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Compact => builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Every line the host keeps from now on (the filter's and its own) becomes an event as it
/// comes; the host keeps only the newest lines (a ring), so memory stays flat however long
/// edge-dev runs.
pub fn forward_host_log(host: &Host) {
    host.set_log_sink(filter_line);
}

/// One host log line as an event at the matching level (Envoy's `critical` is an error).
pub fn filter_line(line: &LogLine) {
    let vm = line.source.as_str();
    let message = line.message.as_str();
    match level(line.level) {
        Some(Level::TRACE) => tracing::trace!(target: "wasm", vm, "{message}"),
        Some(Level::DEBUG) => tracing::debug!(target: "wasm", vm, "{message}"),
        Some(Level::INFO) => tracing::info!(target: "wasm", vm, "{message}"),
        Some(Level::WARN) => tracing::warn!(target: "wasm", vm, "{message}"),
        Some(_) => tracing::error!(target: "wasm", vm, "{message}"),
        None => {}
    }
}

fn level(level: LogLevel) -> Option<Level> {
    match level {
        LogLevel::Trace => Some(Level::TRACE),
        LogLevel::Debug => Some(Level::DEBUG),
        LogLevel::Info => Some(Level::INFO),
        LogLevel::Warn => Some(Level::WARN),
        LogLevel::Error | LogLevel::Critical => Some(Level::ERROR),
        LogLevel::Off => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Where a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn json_events(lines: &[LogLine]) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || lines.iter().for_each(filter_line));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn line(source: &str, level: LogLevel, message: &str) -> LogLine {
        LogLine {
            source: source.to_string(),
            level,
            message: message.to_string(),
        }
    }

    #[test]
    fn filter_lines_become_events_with_their_vm_and_level() {
        let events = json_events(&[
            line("worker-1", LogLevel::Warn, "probe: warn line"),
            line("main", LogLevel::Critical, "plugin \"x\" did not start"),
            line("worker-0", LogLevel::Trace, "probe: trace"),
        ]);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0]["level"], "WARN");
        assert_eq!(events[0]["target"], "wasm");
        assert_eq!(events[0]["fields"]["vm"], "worker-1");
        assert_eq!(events[0]["fields"]["message"], "probe: warn line");
        assert_eq!(events[1]["level"], "ERROR", "critical is an error");
        assert_eq!(events[1]["fields"]["vm"], "main");
        assert_eq!(events[2]["level"], "TRACE");
    }

    #[test]
    fn a_line_at_off_is_no_event() {
        assert!(json_events(&[line("worker-0", LogLevel::Off, "x")]).is_empty());
    }
}
