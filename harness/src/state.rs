//! What one worker VM's host side holds between calls: the module's memory and allocator, the
//! contexts and their streams, callouts in flight, and actions deferred until the VM returns.

use crate::abi::{LogLevel, MetricType, StreamType};
use crate::header_map::HeaderMap;
use crate::host::{Host, LogLine};
use crate::stream::Stream;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use wasmtime::{Memory, StoreLimits, TypedFunc};

/// The callback the module is running, which decides what host calls may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `_initialize`/`_start`/`main`: Envoy allows only logging while these run.
    Starting,
    /// Any callback on the root context (vm start, configure, tick, done...).
    Root,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    /// `proxy_on_http_call_response`: the callout's headers and body are readable.
    HttpCallResponse,
    /// `proxy_on_log`: request and response headers readable, nothing writable.
    Log,
    /// `proxy_on_done`/`proxy_on_delete` of a stream.
    StreamEnd,
}

/// A host call the module made whose effect Envoy applies once the VM call returns.
#[derive(Clone, Debug)]
pub(crate) enum Deferred {
    Continue {
        context: u32,
        stream: StreamType,
    },
    /// `proxy_close_stream`: Envoy resets the whole stream, whichever direction is named.
    Close {
        context: u32,
    },
    LocalResponse {
        context: u32,
        response: LocalResponse,
    },
}

impl Deferred {
    /// The stream the action is for.
    pub(crate) fn context(&self) -> u32 {
        match self {
            Deferred::Continue { context, .. }
            | Deferred::Close { context }
            | Deferred::LocalResponse { context, .. } => *context,
        }
    }
}

/// A response the filter generated instead of (or in place of) the upstream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Envoy's response-code details (`proxy_send_local_response`'s `details`).
    pub details: String,
    /// gRPC status, when the module gave one in 0..=16.
    pub grpc_status: Option<u32>,
}

/// An HTTP callout the module dispatched with `proxy_http_call`, not yet answered.
#[derive(Clone, Debug)]
pub struct Callout {
    pub token: u32,
    /// The context that was effective when the call was made (the stream, for SDK filters).
    pub context: u32,
    pub cluster: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    /// `None` when the module asked for no timeout (`timeout_ms == 0`).
    pub timeout: Option<Duration>,
    /// Host clock, in nanoseconds, when the call was made.
    pub dispatched_at: u64,
}

impl Callout {
    pub fn method(&self) -> Option<&str> {
        self.headers.get(":method")
    }

    pub fn path(&self) -> Option<&str> {
        self.headers.get(":path")
    }

    pub fn authority(&self) -> Option<&str> {
        self.headers.get(":authority")
    }
}

/// What the callout's upstream answered, readable during `proxy_on_http_call_response`.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallReply {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

/// A metric id handed to this VM: ids are per VM, values live in the host's stats by name.
#[derive(Clone, Debug)]
pub(crate) struct MetricHandle {
    pub name: String,
    pub kind: MetricType,
}

pub(crate) struct HostState {
    pub host: Host,
    pub source: String,
    pub vm_id: String,
    pub plugin_name: String,
    pub root_id: String,
    pub plugin_configuration: Vec<u8>,
    pub vm_configuration: Vec<u8>,
    pub root_context: u32,

    /// The VM's memory cap (the host's, when it started).
    pub limits: StoreLimits,
    pub memory: Option<Memory>,
    pub allocator: Option<TypedFunc<i32, i32>>,

    pub phase: Phase,
    /// The context of the running callback.
    pub current_context: u32,
    /// Set by `proxy_set_effective_context`; host calls act on it.
    pub effective_context: u32,
    pub streams: BTreeMap<u32, Stream>,

    pub callouts: BTreeMap<u32, Callout>,
    pub next_token: u32,
    pub call_reply: Option<CallReply>,
    /// `proxy_get_status` answer for the callback running now.
    pub call_status: Option<(u32, Vec<u8>)>,

    pub deferred: Vec<Deferred>,
    pub tick_period: Option<Duration>,
    pub next_tick_at: Option<u64>,
    pub metrics: HashMap<u32, MetricHandle>,
    pub next_metric_id: u32,
}

impl HostState {
    pub(crate) fn log(&self, level: LogLevel, message: String) {
        self.host.push_log(LogLine {
            source: self.source.clone(),
            level,
            message,
        });
    }

    /// Logs a host-side note (unsupported call, refused operation) under the `host` source.
    pub(crate) fn host_note(&self, level: LogLevel, message: String) {
        self.host.push_log(LogLine {
            source: format!("host:{}", self.source),
            level,
            message,
        });
    }

    pub(crate) fn effective_stream(&mut self) -> Option<&mut Stream> {
        self.streams.get_mut(&self.effective_context)
    }
}
