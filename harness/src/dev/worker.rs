//! A worker: one thread owning one filter VM, as an Envoy worker owns its VM. Requests,
//! responses and callout replies arrive as messages; callouts leave as real HTTP requests on
//! the shared runtime. The host clock follows real time so ticks and callout timeouts fire.

use crate::{CalloutReply, Host, Message, Plugin, PluginConfig, Vm};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// What the filter decided for a request or a response.
#[derive(Debug)]
pub enum Outcome {
    /// Send this request upstream; the stream id comes back with the response.
    Upstream { stream: u32, message: Message },
    /// Answer the client with this (a local reply, or the response after the filter).
    Client(Message),
}

pub enum Msg {
    Request {
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Bytes,
        reply: oneshot::Sender<Outcome>,
    },
    Response {
        stream: u32,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Bytes,
        reply: oneshot::Sender<Outcome>,
    },
    CalloutDone {
        token: u32,
        reply: Option<CalloutReply>,
    },
}

/// Performs a callout for real; `None` means the call failed (reset).
pub type CalloutRunner = Box<dyn Fn(crate::Callout, mpsc::Sender<Msg>) + Send>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Request,
    Response,
}

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
    let mut waiting: HashMap<u32, (Waiting, oneshot::Sender<Outcome>)> = HashMap::new();
    let mut started: HashSet<u32> = HashSet::new();
    loop {
        let message = rx.recv_timeout(Duration::from_millis(10));
        host.clock().advance_to(now_nanos());
        if let Err(err) = vm.run_timers() {
            eprintln!("edge-dev: {err}");
        }
        match message {
            Ok(Msg::Request {
                headers,
                body,
                reply,
            }) => match vm.create_stream() {
                Ok(id) => {
                    // Errors (traps) are reflected in the stream's state, as Envoy fails it.
                    let _ = vm.request_headers(id, &headers, body.is_empty());
                    if !body.is_empty() {
                        let _ = vm.request_body(id, &body, true);
                    }
                    waiting.insert(id, (Waiting::Request, reply));
                }
                Err(err) => {
                    eprintln!("edge-dev: {err}");
                    let _ = reply.send(Outcome::Client(service_unavailable()));
                }
            },
            Ok(Msg::Response {
                stream,
                headers,
                body,
                reply,
            }) => {
                let _ = vm.response_headers(stream, &headers, body.is_empty());
                if !body.is_empty() {
                    let _ = vm.response_body(stream, &body, true);
                }
                waiting.insert(stream, (Waiting::Response, reply));
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

/// Answers every waiting request or response whose filter decision is made.
fn settle(vm: &mut Vm, waiting: &mut HashMap<u32, (Waiting, oneshot::Sender<Outcome>)>) {
    let ready: Vec<u32> = waiting
        .iter()
        .filter(|(id, (phase, _))| match vm.stream(**id) {
            None => true,
            Some(s) => {
                s.client.is_some()
                    || s.reset
                    || (*phase == Waiting::Request && s.upstream.is_some())
            }
        })
        .map(|(id, _)| *id)
        .collect();
    for id in ready {
        let Some((phase, reply)) = waiting.remove(&id) else {
            continue;
        };
        let outcome = match vm.stream(id) {
            Some(s) if s.client.is_some() => s.client.clone().map(Outcome::Client),
            Some(s) if phase == Waiting::Request && !s.reset => {
                s.upstream.clone().map(|message| Outcome::Upstream {
                    stream: id,
                    message,
                })
            }
            _ => None,
        };
        let finished = !matches!(outcome, Some(Outcome::Upstream { .. }));
        let _ = reply.send(outcome.unwrap_or_else(|| Outcome::Client(service_unavailable())));
        if finished {
            let _ = vm.finish_stream(id);
        }
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
