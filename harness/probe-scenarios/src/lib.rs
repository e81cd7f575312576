//! The probe's scenarios, by name: the probe module (built to wasm) matches on these constants
//! and the harness's and edge-dev's tests (native) send them, so a test's scenario leads to
//! what the probe does with one "go to definition", in either crate.
//!
//! A request names its scenario in the [`NAME_HEADER`]; each constant's documentation says
//! what the probe does for it. A name the probe does not know ([`PLAIN`]) only reports the
//! callbacks and lets the stream go on.
#![no_std]

/// The request header that names the scenario.
pub const NAME_HEADER: &str = "x-probe";
/// The response header the probe adds in every response-headers callback.
pub const SEEN_HEADER: &str = "x-probe-seen";

/// No scenario: the probe reports each callback and continues.
pub const PLAIN: &str = "plain";

/// Reads, adds, replaces and removes request headers, reporting `headers.*`.
pub const HEADERS: &str = "headers";
/// Replaces the whole request header map with three pairs.
pub const SET_PAIRS: &str = "set-pairs";
/// Sets a request map of `x-n` pairs through the raw call, reporting `set_pairs.*`.
pub const SET_PAIRS_COUNT: &str = "set-pairs-count";
/// Sets a request map of one pair serialized to exactly `x-n` bytes, reporting `set_pairs.*`.
pub const SET_PAIRS_BYTES: &str = "set-pairs-bytes";
/// Sends a local reply with `x-n` headers.
pub const LOCAL_MANY_HEADERS: &str = "local-many-headers";
/// Reports `proxy_get_header_map_size` of the request headers (`map_size`).
pub const MAP_SIZE: &str = "map-size";
/// Reads maps and buffers outside the phase that owns them (`maps.*`, `buffers.*`).
pub const MAPS_OUT_OF_PHASE: &str = "maps-out-of-phase";

/// Pauses the request headers, calls out to `x-cluster` (default `companion`) with timeout
/// `x-timeout-ms` (default 500), then adds `x-callout-status` and resumes.
pub const CALLOUT: &str = "callout";
/// As [`CALLOUT`], then answers the client locally with a 403 from the callout's callback.
pub const CALLOUT_LOCAL: &str = "callout-local";
/// As [`CALLOUT`], then resumes the request twice.
pub const RESUME_TWICE: &str = "resume-twice";
/// As [`CALLOUT`], then traps in the callout's callback.
pub const CALLOUT_TRAP: &str = "callout-trap";
/// As [`CALLOUT`], then resumes and writes and reads request headers in the same callback.
pub const RESUME_THEN_WRITE: &str = "resume-then-write";
/// As [`CALLOUT`], then resumes and writes a request header through the SDK (which panics).
pub const RESUME_THEN_SDK_WRITE: &str = "resume-then-sdk-write";
/// Calls out with a body and no timeout, reporting `dispatch`; the request goes on.
pub const CALLOUT_WITH_BODY: &str = "callout-with-body";
/// Calls out without each required pseudo-header, to an unknown cluster and with a negative
/// timeout, reporting each status (`dispatch_*`).
pub const CALLOUT_MISSING: &str = "callout-missing";

/// Answers the request locally (401, `x-local`) and pauses.
pub const LOCAL: &str = "local";
/// As [`LOCAL`], then sends a second local reply (502) from its own response headers.
pub const LOCAL_TWICE: &str = "local-twice";
/// Answers the request locally (418) and returns Continue.
pub const LOCAL_CONTINUE: &str = "local-continue";
/// Replaces the upstream's response with a local reply (502) from the response headers.
pub const LOCAL_IN_RESPONSE: &str = "local-in-response";
/// Resets the stream from the request headers.
pub const CLOSE: &str = "close";
/// Resumes a request that is not paused.
pub const CONTINUE_UNPAUSED: &str = "continue-unpaused";
/// Pauses the request headers and never resumes.
pub const PAUSE: &str = "pause";
/// Traps in the request headers.
pub const TRAP: &str = "trap";
/// Pauses the response headers on a callout, resumes it from the callout's callback.
pub const PAUSE_RESPONSE: &str = "pause-response";
/// As [`PAUSE_RESPONSE`], then writes a response header after resuming.
pub const PAUSE_RESPONSE_WRITE: &str = "pause-response-write";

/// Buffers the request body to its end, upper-cases it, reports its first byte.
pub const BODY: &str = "body";
/// Lets every body chunk through as it comes.
pub const BODY_STREAM: &str = "body-stream";
/// Pauses at the request body's end on a callout, resumes from its callback.
pub const BODY_CALLOUT: &str = "body-callout";
/// Edits the request body's buffer at its start, end and middle, and reads past its end
/// (`buffer.*`).
pub const BUFFER_EDITS: &str = "buffer-edits";

/// Adds trailers from the last body callback of each direction (`add_trailer`,
/// `add_response_trailer`).
pub const ADD_TRAILERS: &str = "add-trailers";
/// Pauses every request body callback; the trailers callback reads the held body.
pub const TRAILERS_HOLD_BODY: &str = "trailers-hold-body";
/// Pauses the request trailers on a callout; its callback adds a trailer and resumes.
pub const TRAILERS_PAUSE: &str = "trailers-pause";

/// Shared data: missing key, set, CAS match and mismatch (`shared.*`).
pub const SHARED: &str = "shared";
/// Writes `x-value` to the shared key `cross-worker`.
pub const SHARED_WRITE: &str = "shared-write";
/// Reads the shared key `cross-worker`.
pub const SHARED_READ: &str = "shared-read";
/// Defines and moves counters, gauges and histograms (`metrics.*`).
pub const METRICS: &str = "metrics";
/// Reports the host's clock (`time.now`).
pub const TIME: &str = "time";
/// Allocates `x-bytes` bytes in the module's memory.
pub const ALLOC: &str = "alloc";
/// Logs `x-n` lines of about 300 bytes.
pub const LOG_MANY: &str = "log-many";
/// Answers the raw log level in the request header `x-log-level`.
pub const LOG_LEVEL_RAW: &str = "log-level-raw";
/// Reports the log level and logs a debug and a warn line.
pub const LOG_LEVEL: &str = "log-level";
/// Reads the plugin's and the request's properties (`property.*`).
pub const PROPERTIES: &str = "properties";
/// Hands the host bad pointers and lengths (`memory.*`).
pub const MEMORY: &str = "memory";
/// Sets the effective context to an unknown id and to its own (`effective.*`).
pub const EFFECTIVE_CONTEXT: &str = "effective-context";
/// Calls host functions the host does not implement (`unimplemented.*`).
pub const UNIMPLEMENTED: &str = "unimplemented";
/// Calls `proxy_done` (`done.status`).
pub const DONE: &str = "done";
