//! A worker: one thread owning one filter VM, as an Envoy worker owns its VM. Requests,
//! responses and callout replies arrive as messages; callouts leave as real HTTP requests on
//! the shared runtime. The host clock follows real time so ticks and callout timeouts fire.

use crate::{CalloutReply, Flow, Host, Message, Plugin, PluginConfig, Vm};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
    /// These bytes go on (possibly none while the filter holds the body); `end` when the
    /// direction is complete.
    Data { bytes: Bytes, end: bool },
    /// The stream was reset or answered locally: this direction goes no further.
    Stopped,
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
        response: bool,
        chunk: Bytes,
        end_of_stream: bool,
        reply: oneshot::Sender<BodyOutcome>,
    },
    /// The client or the upstream went away: end the stream if it is still open.
    Abort { stream: u32 },
    CalloutDone {
        token: u32,
        reply: Option<CalloutReply>,
    },
}

/// Performs a callout for real; `None` means the call failed (reset).
pub type CalloutRunner = Box<dyn Fn(crate::Callout, mpsc::Sender<Msg>) + Send>;

/// A caller waiting for the filter's decision on one direction of a stream.
enum Waiter {
    Headers(oneshot::Sender<Outcome>),
    Body {
        end_of_stream: bool,
        reply: oneshot::Sender<BodyOutcome>,
    },
}

/// Waiters are keyed by stream and direction (`true` for the response): a request body may
/// still be flowing while the response headers arrive.
type Waiting = HashMap<(u32, bool), Waiter>;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Starts a worker thread; returns its mailbox once its VM has started (or the reason it did not).
pub fn spawn(
    name: String,
    plugin: Plugin,
    config: PluginConfig,
    run_callout: CalloutRunner,
) -> Result<mpsc::Sender<Msg>, String> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let own = tx.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let host = plugin.host.clone();
            host.clock().advance_to(now_nanos());
            let vm = match Vm::start_named(&plugin, config, &name) {
                Ok(vm) => {
                    let _ = ready_tx.send(Ok(()));
                    vm
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err.to_string()));
                    return;
                }
            };
            run(vm, host, rx, own, run_callout);
        })
        .map_err(|e| e.to_string())?;
    ready_rx
        .recv()
        .map_err(|_| "the worker thread died while starting".to_string())??;
    Ok(tx)
}

fn run(
    mut vm: Vm,
    host: Host,
    rx: mpsc::Receiver<Msg>,
    own: mpsc::Sender<Msg>,
    run_callout: CalloutRunner,
) {
    let mut waiting = Waiting::new();
    let mut started: HashSet<u32> = HashSet::new();
    loop {
        let message = rx.recv_timeout(Duration::from_millis(10));
        host.clock().advance_to(now_nanos());
        if let Err(err) = vm.run_timers() {
            eprintln!("edge-dev: {err}");
        }
        // Errors from the VM (traps) are reflected in the stream's state, as Envoy fails the
        // stream; `settle` reads that state.
        match message {
            Ok(Msg::RequestHeaders {
                headers,
                end_of_stream,
                reply,
            }) => match vm.create_stream() {
                Ok(id) => {
                    let _ = vm.request_headers(id, &headers, end_of_stream);
                    waiting.insert((id, false), Waiter::Headers(reply));
                }
                Err(err) => {
                    eprintln!("edge-dev: {err}");
                    let _ = reply.send(Outcome::Client(service_unavailable()));
                }
            },
            Ok(Msg::ResponseHeaders {
                stream,
                headers,
                end_of_stream,
                reply,
            }) => {
                let _ = vm.response_headers(stream, &headers, end_of_stream);
                waiting.insert((stream, true), Waiter::Headers(reply));
            }
            Ok(Msg::Body {
                stream,
                response,
                chunk,
                end_of_stream,
                reply,
            }) => {
                let _ = if response {
                    vm.response_body(stream, &chunk, end_of_stream)
                } else {
                    vm.request_body(stream, &chunk, end_of_stream)
                };
                waiting.insert(
                    (stream, response),
                    Waiter::Body {
                        end_of_stream,
                        reply,
                    },
                );
            }
            Ok(Msg::Abort { stream }) => {
                waiting.retain(|(id, _), _| *id != stream);
                // Already finished is fine: the stream ended normally before the abort.
                let _ = vm.finish_stream(stream);
            }
            Ok(Msg::CalloutDone { token, reply }) => {
                // A callout already timed out by the clock is no longer known: that is fine.
                let _ = match reply {
                    Some(reply) => vm.answer_callout(token, reply),
                    None => vm.fail_callout(token),
                };
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for callout in vm.pending_callouts() {
            if started.insert(callout.token) {
                run_callout(callout, own.clone());
            }
        }
        settle(&mut vm, &mut waiting);
    }
}

/// Answers every waiter whose filter decision is made. A stream ends (`on_done`, `on_log`)
/// once its response has fully reached the client, or it was stopped.
fn settle(vm: &mut Vm, waiting: &mut Waiting) {
    let ready: Vec<(u32, bool)> = waiting
        .iter()
        .filter(|(key, waiter)| is_decided(vm, key.0, key.1, waiter))
        .map(|(key, _)| *key)
        .collect();
    for (id, response) in ready {
        let Some(waiter) = waiting.remove(&(id, response)) else {
            continue;
        };
        let finished = match waiter {
            Waiter::Headers(reply) => {
                let outcome = headers_outcome(vm, id, response);
                let finished = match &outcome {
                    Outcome::Client(message) => message.end_of_stream,
                    Outcome::Upstream { .. } => false,
                };
                let _ = reply.send(outcome);
                finished
            }
            Waiter::Body { reply, .. } => {
                let outcome = body_outcome(vm, id, response);
                let finished = match &outcome {
                    BodyOutcome::Data { end, .. } => response && *end,
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

fn is_decided(vm: &Vm, id: u32, response: bool, waiter: &Waiter) -> bool {
    let Some(s) = vm.stream(id) else {
        return true;
    };
    if s.reset {
        return true;
    }
    match waiter {
        Waiter::Headers(_) => s.client.is_some() || (!response && s.upstream.is_some()),
        // A held body is answered at once (the filter may want more of it before it decides),
        // except its end, which waits for the filter to let it go.
        Waiter::Body { end_of_stream, .. } => {
            let d = if response { &s.response } else { &s.request };
            !(*end_of_stream && d.is_paused()) || d.flow == Flow::Stopped
        }
    }
}

fn headers_outcome(vm: &mut Vm, id: u32, response: bool) -> Outcome {
    // To the client: the response headers, or a local reply (which may come at either phase).
    // Upstream: the request headers, unless the stream was reset.
    let to_client = match vm.stream(id) {
        Some(s) if s.client.is_some() => true,
        Some(s) if !response && !s.reset && s.upstream.is_some() => false,
        _ => return Outcome::Client(service_unavailable()),
    };
    // The body first, so that only the headers are copied out of the stream.
    let body = vm
        .take_forwarded_body(id, to_client)
        .map(|(body, _)| body)
        .unwrap_or_default();
    let message = vm.stream(id).and_then(|s| match to_client {
        true => s.client.clone(),
        false => s.upstream.clone(),
    });
    match (message, to_client) {
        (Some(message), true) => Outcome::Client(Message { body, ..message }),
        (Some(message), false) => Outcome::Upstream {
            stream: id,
            message: Message { body, ..message },
        },
        (None, _) => Outcome::Client(service_unavailable()),
    }
}

fn body_outcome(vm: &mut Vm, id: u32, response: bool) -> BodyOutcome {
    let stopped = vm.stream(id).is_none_or(|s| {
        s.reset || (!response && s.local_response.is_some()) || {
            let d = if response { &s.response } else { &s.request };
            d.flow == Flow::Stopped
        }
    });
    if stopped {
        return BodyOutcome::Stopped;
    }
    match vm.take_forwarded_body(id, response) {
        Ok((bytes, end)) => BodyOutcome::Data {
            bytes: Bytes::from(bytes),
            end,
        },
        Err(_) => BodyOutcome::Stopped,
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
