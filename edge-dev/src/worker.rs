//! A worker's filter VM, as an Envoy worker owns its VM: the worker thread's connections call
//! into it directly, in the thread that serves them, so no request waits on another thread.
//! Requests, responses, body chunks and callout replies are handed to [`LocalVm::handle`];
//! the filter's decision comes back on a oneshot channel, already sent when the filter
//! decided at once. Callouts leave as real HTTP requests on the worker's own runtime. The host
//! clock follows real time so ticks and callout timeouts fire, and a caller left waiting
//! longer than the stream idle timeout gets Envoy's idle-timeout answer.

use bytes::Bytes;
use harness::{Callout, CalloutReply, Flow, HeaderMap, Host, Message, Side, Vm};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// What the filter decided for a request's or a response's headers.
#[derive(Debug)]
pub enum Outcome {
    /// Send this request upstream; the stream id comes back with the body and the response.
    Upstream { stream: u32, message: Message },
    /// Answer the client with this: the response headers after the filter (more body follows
    /// unless `end_of_stream`), or a whole local reply.
    Client(Message),
}

/// What became of a body chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    /// These bytes go on (possibly none while the filter holds the body), then these
    /// trailers if any; `end` when the direction is complete.
    Data {
        bytes: Bytes,
        end: bool,
        trailers: Option<HeaderMap>,
    },
    /// The stream was reset or answered locally: this direction goes no further.
    Stopped,
}

/// What a caller gets when its stream went away before the filter decided.
pub trait Unanswered {
    fn unanswered() -> Self;
}

impl Unanswered for Outcome {
    fn unanswered() -> Self {
        Outcome::Client(service_unavailable())
    }
}

impl Unanswered for BodyOutcome {
    fn unanswered() -> Self {
        BodyOutcome::Stopped
    }
}

pub enum Msg {
    RequestHeaders {
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        end_of_stream: bool,
        reply: oneshot::Sender<Outcome>,
    },
    ResponseHeaders {
        stream: u32,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        end_of_stream: bool,
        reply: oneshot::Sender<Outcome>,
    },
    Body {
        stream: u32,
        side: Side,
        chunk: Bytes,
        end_of_stream: bool,
        reply: oneshot::Sender<BodyOutcome>,
    },
    /// The trailers of one side arrive, ending it.
    Trailers {
        stream: u32,
        side: Side,
        trailers: Vec<(Vec<u8>, Vec<u8>)>,
        reply: oneshot::Sender<BodyOutcome>,
    },
    /// The client or the upstream went away: end the stream if it is still open.
    Abort { stream: u32 },
    CalloutDone {
        token: u32,
        reply: Option<CalloutReply>,
    },
    /// Nothing new: move the clock and run the filter's timers.
    Tick,
}

/// Performs a callout for real, in the background; its reply comes back to the VM as
/// [`Msg::CalloutDone`]. Given the worker's own handle so the reply lands on the same VM.
pub type CalloutRunner = Box<dyn Fn(Callout, Rc<LocalVm>)>;

/// A caller waiting for the filter's decision on one direction of a stream.
enum Waiter {
    Headers(oneshot::Sender<Outcome>),
    Body {
        end_of_stream: bool,
        reply: oneshot::Sender<BodyOutcome>,
    },
}

/// Waiters are keyed by stream and side: a request body may still be flowing while the
/// response headers arrive. Each notes when it began to wait.
type Waiting = HashMap<(u32, Side), (Waiter, Instant)>;

/// How often the worker's clock moves and the filter's timers run when nothing else happens.
pub const TICK: Duration = Duration::from_millis(10);

/// One worker thread's VM and the callers waiting on it. Used from that thread only.
pub struct LocalVm {
    host: Host,
    state: RefCell<VmState>,
    run_callout: CalloutRunner,
    /// `stream_idle_timeout`: how long a caller may wait on the filter; `None` for ever.
    idle_timeout: Option<Duration>,
}

struct VmState {
    vm: Vm,
    waiting: Waiting,
    /// Callouts already handed to the runner, by token.
    started: HashSet<u32>,
}

impl LocalVm {
    pub fn new(
        vm: Vm,
        host: Host,
        run_callout: CalloutRunner,
        idle_timeout: Option<Duration>,
    ) -> Rc<Self> {
        Rc::new(Self {
            host,
            state: RefCell::new(VmState {
                vm,
                waiting: Waiting::new(),
                started: HashSet::new(),
            }),
            run_callout,
            idle_timeout,
        })
    }

    /// Hands one event to the filter, then starts the callouts it asked for and answers
    /// every caller whose decision is made. Never called while the VM is in use: each call
    /// runs to completion on the worker's thread, and nothing it does calls back in.
    pub fn handle(self: &Rc<Self>, message: Msg) {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            // Only a drop in the middle of a VM call could get here (an aborted stream):
            // handle it as soon as the call is over.
            let this = self.clone();
            tokio::task::spawn_local(async move { this.handle(message) });
            return;
        };
        self.host.clock().advance_to(now_nanos());
        let VmState {
            vm,
            waiting,
            started,
        } = &mut *state;
        if let Err(err) = vm.run_timers() {
            tracing::error!(error = %err, "the filter's timers");
        }
        // Errors from the VM (traps) are reflected in the stream's state, as Envoy fails the
        // stream; `settle` reads that state.
        match message {
            Msg::RequestHeaders {
                headers,
                end_of_stream,
                reply,
            } => match vm.create_stream() {
                Ok(id) => {
                    let _ = vm.request_headers(id, &headers, end_of_stream);
                    let waiter = Waiter::Headers(reply);
                    waiting.insert((id, Side::Request), (waiter, Instant::now()));
                }
                Err(err) => {
                    tracing::error!(error = %err, "the filter did not take a new stream");
                    let _ = reply.send(Outcome::Client(service_unavailable()));
                }
            },
            Msg::ResponseHeaders {
                stream,
                headers,
                end_of_stream,
                reply,
            } => {
                let _ = vm.response_headers(stream, &headers, end_of_stream);
                let waiter = Waiter::Headers(reply);
                waiting.insert((stream, Side::Response), (waiter, Instant::now()));
            }
            Msg::Body {
                stream,
                side,
                chunk,
                end_of_stream,
                reply,
            } => {
                let _ = match side {
                    Side::Request => vm.request_body(stream, &chunk, end_of_stream),
                    Side::Response => vm.response_body(stream, &chunk, end_of_stream),
                };
                let waiter = Waiter::Body {
                    end_of_stream,
                    reply,
                };
                waiting.insert((stream, side), (waiter, Instant::now()));
            }
            Msg::Trailers {
                stream,
                side,
                trailers,
                reply,
            } => {
                let _ = match side {
                    Side::Request => vm.request_trailers(stream, &trailers),
                    Side::Response => vm.response_trailers(stream, &trailers),
                };
                let waiter = Waiter::Body {
                    end_of_stream: true,
                    reply,
                };
                waiting.insert((stream, side), (waiter, Instant::now()));
            }
            Msg::Abort { stream } => {
                waiting.retain(|(id, _), _| *id != stream);
                // Already finished is fine: the stream ended normally before the abort.
                let _ = vm.finish_stream(stream);
            }
            Msg::CalloutDone { token, reply } => {
                // A callout already timed out by the clock is no longer known: that is fine.
                let _ = match reply {
                    Some(reply) => vm.answer_callout(token, reply),
                    None => vm.fail_callout(token),
                };
            }
            Msg::Tick => {}
        }
        if let Some(limit) = self.idle_timeout {
            time_out_idle_waiters(vm, waiting, limit);
        }
        let callouts = vm.pending_callouts();
        started.retain(|token| callouts.iter().any(|c| c.token == *token));
        for callout in callouts {
            if started.insert(callout.token) {
                (self.run_callout)(callout, self.clone());
            }
        }
        settle(vm, waiting);
    }
}

/// Envoy's stream idle timeout for callers the filter has kept waiting that long (a stream
/// whose callout callback trapped waits for ever otherwise, as in Envoy): the VM answers
/// them as Envoy would (`Vm::stream_idle_timeout`), and `settle` passes the answer on.
fn time_out_idle_waiters(vm: &mut Vm, waiting: &Waiting, limit: Duration) {
    let idle: HashSet<u32> = waiting
        .iter()
        .filter(|(_, (_, since))| since.elapsed() >= limit)
        .map(|((id, _), _)| *id)
        .collect();
    for id in idle {
        if let Err(err) = vm.stream_idle_timeout(id) {
            tracing::error!(stream = id, error = %err, "stream idle timeout");
        }
    }
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Answers every waiter whose filter decision is made. A stream ends (`on_done`, `on_log`)
/// once its response has fully reached the client, or it was stopped.
fn settle(vm: &mut Vm, waiting: &mut Waiting) {
    let ready: Vec<(u32, Side)> = waiting
        .iter()
        .filter(|(key, (waiter, _))| is_decided(vm, key.0, key.1, waiter))
        .map(|(key, _)| *key)
        .collect();
    for (id, side) in ready {
        let Some((waiter, _)) = waiting.remove(&(id, side)) else {
            continue;
        };
        let finished = match waiter {
            Waiter::Headers(reply) => {
                let outcome = headers_outcome(vm, id, side);
                let finished = match &outcome {
                    Outcome::Client(message) => message.end_of_stream,
                    Outcome::Upstream { .. } => false,
                };
                let _ = reply.send(outcome);
                finished
            }
            Waiter::Body { reply, .. } => {
                let outcome = body_outcome(vm, id, side);
                let finished = match &outcome {
                    BodyOutcome::Data { end, .. } => side == Side::Response && *end,
                    BodyOutcome::Stopped => false,
                };
                let _ = reply.send(outcome);
                finished
            }
        };
        if finished || vm.stream(id).is_some_and(|s| s.reset) {
            waiting.retain(|(other, _), _| *other != id);
            let _ = vm.finish_stream(id);
        }
    }
}

fn is_decided(vm: &Vm, id: u32, side: Side, waiter: &Waiter) -> bool {
    let Some(s) = vm.stream(id) else {
        return true;
    };
    if s.reset {
        return true;
    }
    match waiter {
        Waiter::Headers(_) => s.client.is_some() || (side == Side::Request && s.upstream.is_some()),
        // A held body is answered at once (the filter may want more of it before it decides),
        // except its end, which waits for the filter to let it go.
        Waiter::Body { end_of_stream, .. } => {
            let d = s.side(side);
            !(*end_of_stream && d.is_paused()) || d.flow == Flow::Stopped
        }
    }
}

fn headers_outcome(vm: &mut Vm, id: u32, side: Side) -> Outcome {
    // To the client: the response headers, or a local reply (which may come at either phase).
    // Upstream: the request headers, unless the stream was reset.
    let towards = match vm.stream(id) {
        Some(s) if s.client.is_some() => Side::Response,
        Some(s) if side == Side::Request && !s.reset && s.upstream.is_some() => Side::Request,
        _ => return Outcome::Client(service_unavailable()),
    };
    // The body first, so that only the headers are copied out of the stream.
    let body = vm
        .take_forwarded_body(id, towards)
        .map(|(body, _)| body)
        .unwrap_or_default();
    let message = vm.stream(id).and_then(|s| match towards {
        Side::Response => s.client.clone(),
        Side::Request => s.upstream.clone(),
    });
    match (message, towards) {
        (Some(message), Side::Response) => Outcome::Client(Message { body, ..message }),
        (Some(message), Side::Request) => Outcome::Upstream {
            stream: id,
            message: Message { body, ..message },
        },
        (None, _) => Outcome::Client(service_unavailable()),
    }
}

fn body_outcome(vm: &mut Vm, id: u32, side: Side) -> BodyOutcome {
    let stopped = vm.stream(id).is_none_or(|s| {
        s.reset
            || (side == Side::Request && s.local_response.is_some())
            || s.side(side).flow == Flow::Stopped
    });
    if stopped {
        return BodyOutcome::Stopped;
    }
    match (
        vm.take_forwarded_body(id, side),
        vm.take_forwarded_trailers(id, side),
    ) {
        (Ok((bytes, end)), Ok(trailers)) => BodyOutcome::Data {
            bytes: Bytes::from(bytes),
            end,
            trailers,
        },
        _ => BodyOutcome::Stopped,
    }
}

/// What a reset stream looks like to the client of a proxy: 503.
pub fn service_unavailable() -> Message {
    let mut message = Message::default();
    message.headers.add(b":status", b"503");
    message.body = b"stream reset by the session filter\n".to_vec();
    message.end_of_stream = true;
    message
}
