//! The load generator, a second process: `wrk` with its latency distribution, parsed.

use std::process::Command;
use std::time::Duration;

/// What one load run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadResult {
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests_per_second: f64,
    /// Non-2xx/3xx answers and socket errors.
    pub errors: u64,
}

/// Runs `wrk` against `url` with `connections` open connections for `duration`.
pub fn run(
    url: &str,
    connections: usize,
    duration: Duration,
    headers: &[String],
) -> Result<LoadResult, String> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", connections.clamp(1, 2)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    for header in headers {
        cmd.args(["-H", header]);
    }
    let output = cmd
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("wrk failed: {text}"));
    }
    parse(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))
}

fn parse(text: &str) -> Option<LoadResult> {
    let mut result = LoadResult::default();
    let (mut p50, mut p99, mut rps) = (None, None, None);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = micros(value),
            ["99%", value] => p99 = micros(value),
            ["Requests/sec:", value] => rps = value.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => result.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                result.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    result.p50_us = p50?;
    result.p99_us = p99?;
    result.requests_per_second = rps?;
    Some(result)
}

/// `635.00us`, `1.23ms`, `2.00s` in microseconds.
fn micros(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// The median of each measure over several runs (each measure on its own).
pub fn median(runs: &[LoadResult]) -> LoadResult {
    let pick = |f: fn(&LoadResult) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    LoadResult {
        p50_us: pick(|r| r.p50_us),
        p99_us: pick(|r| r.p99_us),
        requests_per_second: pick(|r| r.requests_per_second),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}
