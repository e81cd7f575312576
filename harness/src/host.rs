//! The process around the VMs, as one Envoy instance provides it: a clock the test controls,
//! the shared-data store (one per `vm_id`), stats, the log, and the cluster names that
//! callouts may target. Every worker VM started from one `Host` sees the same of each.

use crate::abi::{LogLevel, MetricType};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// 2026-01-01T00:00:00Z: a realistic start so time arithmetic in filters sees real dates.
pub const DEFAULT_START_NANOS: u64 = 1_767_225_600_000_000_000;

/// The most linear memory one VM may have: cpp-host's
/// `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES` (`include/proxy-wasm/limits.h`), which it passes
/// to V8 as `--wasm_max_mem_pages` (`src/v8/v8.cc`). Growing past it answers -1, so a Rust
/// module's allocation fails and it aborts: a trap.
pub const MAX_WASM_MEMORY_BYTES: usize = 1 << 30;

/// The host keeps its log as a ring: at most this many lines, the newest (an `edge-dev` that
/// runs for days, or a long test, keeps its memory flat; read the newest with
/// [`Host::newest_logs`])...
pub const LOG_RING_LINES: usize = 10_000;
/// ... and at most this many bytes of text in them, so huge lines cannot hold gigabytes. The
/// newest line is always kept, whatever its size.
pub const LOG_RING_BYTES: usize = 8 << 20;

/// Shared host state for any number of worker VMs. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    clock: Clock,
    shared_data: Mutex<SharedData>,
    stats: Mutex<BTreeMap<String, Metric>>,
    logs: Mutex<LogRing>,
    /// Where each kept line also goes as it comes (`edge-dev`: the terminal).
    log_sink: Mutex<Option<LogSink>>,
    log_level: Mutex<LogLevel>,
    clusters: Mutex<BTreeMap<String, ClusterHealth>>,
    max_memory_bytes: AtomicUsize,
}

/// Whether a cluster has a host a callout can go to. Envoy's async client returns no request
/// when the router cannot start one (no healthy host), and `proxy_http_call` then fails at
/// once with `InternalFailure` (`Context::httpCall`), with no callback ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterHealth {
    Healthy,
    NoHealthyHost,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    pub fn new() -> Self {
        let engine = shared_engine();
        Self {
            inner: Arc::new(Inner {
                engine,
                clock: Clock::starting_at(DEFAULT_START_NANOS),
                shared_data: Mutex::new(SharedData::default()),
                stats: Mutex::new(BTreeMap::new()),
                logs: Mutex::new(LogRing::default()),
                log_sink: Mutex::new(None),
                log_level: Mutex::new(LogLevel::Info),
                clusters: Mutex::new(BTreeMap::new()),
                max_memory_bytes: AtomicUsize::new(MAX_WASM_MEMORY_BYTES),
            }),
        }
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Caps the memory of VMs started from now on ([`MAX_WASM_MEMORY_BYTES`] unless set): a
    /// test lowers it to reach the cap without touching a gigabyte.
    pub fn set_max_memory_bytes(&self, bytes: usize) {
        self.inner.max_memory_bytes.store(bytes, Ordering::SeqCst);
    }

    pub fn max_memory_bytes(&self) -> usize {
        self.inner.max_memory_bytes.load(Ordering::SeqCst)
    }

    /// Declares a cluster that `proxy_http_call` may name (Envoy's cluster manager), healthy
    /// unless it was declared before with another health.
    pub fn add_cluster(&self, name: &str) {
        lock(&self.inner.clusters)
            .entry(name.to_string())
            .or_insert(ClusterHealth::Healthy);
    }

    pub fn has_cluster(&self, name: &str) -> bool {
        lock(&self.inner.clusters).contains_key(name)
    }

    /// Sets a cluster's health for every VM on this host, declaring the cluster if needed.
    pub fn set_cluster_health(&self, name: &str, health: ClusterHealth) {
        lock(&self.inner.clusters).insert(name.to_string(), health);
    }

    /// A declared cluster's health; `None` for a cluster Envoy would not know.
    pub fn cluster_health(&self, name: &str) -> Option<ClusterHealth> {
        lock(&self.inner.clusters).get(name).copied()
    }

    /// The level below which `proxy_log` lines are dropped (Envoy's logger level; default info).
    /// [`LogLevel::Off`] drops every line, and the module reads 6.
    pub fn set_log_level(&self, level: LogLevel) {
        *lock(&self.inner.log_level) = level;
    }

    pub fn log_level(&self) -> LogLevel {
        *lock(&self.inner.log_level)
    }

    pub(crate) fn push_log(&self, line: LogLine) {
        if line.level < self.log_level() {
            return;
        }
        let sink = lock(&self.inner.log_sink).clone();
        if let Some(sink) = sink {
            sink(&line);
        }
        lock(&self.inner.logs).push(line);
    }

    /// Hands every log line kept from now on to `sink` as well, as it comes: `edge-dev` writes
    /// them to the terminal.
    pub fn set_log_sink(&self, sink: impl Fn(&LogLine) + Send + Sync + 'static) {
        *lock(&self.inner.log_sink) = Some(Arc::new(sink));
    }

    /// The kept log lines (the newest [`LOG_RING_LINES`] at most), from every VM and from the
    /// host itself, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.inner.logs).lines.iter().cloned().collect()
    }

    /// The newest `n` kept lines, oldest of them first.
    pub fn newest_logs(&self, n: usize) -> Vec<LogLine> {
        let logs = lock(&self.inner.logs);
        let skip = logs.lines.len().saturating_sub(n);
        logs.lines.iter().skip(skip).cloned().collect()
    }

    /// Whether any kept log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        lock(&self.inner.logs)
            .lines
            .iter()
            .any(|l| l.message.contains(needle))
    }

    pub fn clear_logs(&self) {
        *lock(&self.inner.logs) = LogRing::default();
    }

    /// A metric's current value by the name the module defined, if it was ever defined.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        lock(&self.inner.stats).get(name).cloned()
    }

    /// A counter's value, 0 if never defined or incremented.
    pub fn counter(&self, name: &str) -> u64 {
        match self.metric(name) {
            Some(Metric { value, .. }) => value,
            None => 0,
        }
    }

    /// Adds to one of the proxy's own counters (Envoy keeps them in the same stats store as
    /// the module's: `http1.dropped_headers_with_underscores`, say).
    pub fn add_to_counter(&self, name: &str, delta: u64) {
        self.with_stats(|stats| {
            let metric = stats.entry(name.to_string()).or_insert(Metric {
                kind: MetricType::Counter,
                value: 0,
                samples: Vec::new(),
            });
            metric.value = metric.value.saturating_add(delta);
        });
    }

    pub fn metrics(&self) -> BTreeMap<String, Metric> {
        lock(&self.inner.stats).clone()
    }

    pub(crate) fn with_stats<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Metric>) -> R) -> R {
        f(&mut lock(&self.inner.stats))
    }

    pub(crate) fn with_shared_data<R>(&self, f: impl FnOnce(&mut SharedData) -> R) -> R {
        f(&mut lock(&self.inner.shared_data))
    }

    /// A shared-data value and its CAS, as a module on `vm_id` would read it.
    pub fn shared_data(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.with_shared_data(|store| store.get(vm_id, key))
    }
}

/// One engine for the whole process: compiled modules are tied to an engine, so sharing it
/// lets every host reuse one compilation of a module (see `Plugin::from_bytes`). Wasmtime's
/// defaults keep wasm backtraces, which trap messages include.
fn shared_engine() -> wasmtime::Engine {
    static ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
    ENGINE.get_or_init(wasmtime::Engine::default).clone()
}

/// Locks a mutex; a poisoned lock (a panic elsewhere while holding it) still holds valid data
/// for a test host, so use it rather than propagate the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Time as the host keeps it, in nanoseconds since the Unix epoch. Moves only when told.
///
/// Two readings, as in Envoy: [`Clock::now_nanos`] drives ticks and callout timeouts (Envoy's
/// timers run on the monotonic clock) and never goes back; [`Clock::wall_nanos`] is what the
/// module reads (`proxy_get_current_time_nanoseconds` and WASI's realtime clock: Envoy's
/// `Context::getCurrentTimeNanoseconds` reads `systemTime`), and a test can step it back
/// with [`Clock::step_back`], as NTP or an operator steps a machine's wall clock.
#[derive(Clone)]
pub struct Clock {
    nanos: Arc<AtomicU64>,
    /// What the wall clock is off the monotonic one, in nanoseconds (negative once stepped
    /// back).
    wall_offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn starting_at(nanos: u64) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(nanos)),
            wall_offset: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The timer clock: ticks and callout timeouts fall due by it.
    pub fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }

    /// The wall clock, as the module reads it.
    pub fn wall_nanos(&self) -> u64 {
        let wall =
            i128::from(self.now_nanos()) + i128::from(self.wall_offset.load(Ordering::SeqCst));
        u64::try_from(wall.max(0)).unwrap_or(u64::MAX)
    }

    /// Steps the wall clock back by `by`; the timer clock and every timer stay as they were.
    pub fn step_back(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.wall_offset.fetch_sub(by, Ordering::SeqCst);
    }

    /// Moves the clock to `nanos` if that is later than now; time never goes back.
    pub fn advance_to(&self, nanos: u64) {
        self.nanos.fetch_max(nanos, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

type LogSink = Arc<dyn Fn(&LogLine) + Send + Sync>;

/// The kept log: the newest lines within [`LOG_RING_LINES`] and [`LOG_RING_BYTES`].
#[derive(Default)]
struct LogRing {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl LogRing {
    fn push(&mut self, line: LogLine) {
        self.bytes += line.text_len();
        self.lines.push_back(line);
        while self.lines.len() > 1
            && (self.lines.len() > LOG_RING_LINES || self.bytes > LOG_RING_BYTES)
        {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.text_len();
            }
        }
    }
}

/// One log line: which VM (or `host`) said it, at what level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub source: String,
    pub level: LogLevel,
    pub message: String,
}

impl LogLine {
    fn text_len(&self) -> usize {
        self.source.len() + self.message.len()
    }
}

/// `worker-0 info: message`, as a terminal shows it.
impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.source, self.level.name(), self.message)
    }
}

/// A metric as Envoy's stats store holds it, shared by every VM defining the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub kind: MetricType,
    /// Counter total, gauge level, or the last value recorded into a histogram.
    pub value: u64,
    /// Every value recorded into a histogram, in order.
    pub samples: Vec<u64>,
}

/// A stored value and its CAS.
pub(crate) type SharedValue = (Vec<u8>, u32);

/// proxy-wasm-cpp-host's shared-data store: per `vm_id`, each value carries a CAS from one
/// global counter that is never 0.
#[derive(Default)]
pub(crate) struct SharedData {
    by_vm: HashMap<String, HashMap<Vec<u8>, SharedValue>>,
    last_cas: u32,
}

impl SharedData {
    pub(crate) fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.by_vm.get(vm_id).and_then(|m| m.get(key)).cloned()
    }

    /// `cas == 0` writes unconditionally; otherwise it must match the stored CAS, unless the
    /// key does not exist yet, which accepts any CAS (cpp-host `shared_data.cc`).
    pub(crate) fn set(&mut self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> bool {
        let next = self.next_cas();
        let map = self.by_vm.entry(vm_id.to_string()).or_default();
        match map.get_mut(key) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return false;
                }
                *entry = (value.to_vec(), next);
            }
            None => {
                map.insert(key.to_vec(), (value.to_vec(), next));
            }
        }
        true
    }

    fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1);
        if self.last_cas == 0 {
            self.last_cas = 1;
        }
        self.last_cas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: String) -> LogLine {
        LogLine {
            source: String::new(),
            level: LogLevel::Info,
            message,
        }
    }

    #[test]
    fn the_ring_keeps_exactly_its_line_bound() {
        let mut ring = LogRing::default();
        for i in 0..LOG_RING_LINES {
            ring.push(line(i.to_string()));
        }
        assert_eq!(ring.lines.len(), LOG_RING_LINES);
        assert_eq!(ring.lines[0].message, "0");
        ring.push(line("newest".into()));
        assert_eq!(ring.lines.len(), LOG_RING_LINES);
        assert_eq!(ring.lines[0].message, "1");
        assert_eq!(ring.lines[LOG_RING_LINES - 1].message, "newest");
    }

    #[test]
    fn the_ring_keeps_exactly_its_byte_bound_and_always_the_newest_line() {
        let mut ring = LogRing::default();
        let half = LOG_RING_BYTES / 2;
        ring.push(line("a".repeat(half)));
        ring.push(line("b".repeat(LOG_RING_BYTES - half)));
        assert_eq!((ring.lines.len(), ring.bytes), (2, LOG_RING_BYTES));
        ring.push(line("c".into()));
        assert_eq!(
            ring.lines.len(),
            2,
            "one byte past the bound drops the oldest"
        );
        assert!(ring.lines[0].message.starts_with('b'));
        ring.push(line("d".repeat(LOG_RING_BYTES + 1)));
        assert_eq!(ring.lines.len(), 1);
        assert_eq!(ring.bytes, LOG_RING_BYTES + 1);
    }
}
