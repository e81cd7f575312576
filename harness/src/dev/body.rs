//! Bodies and trailers on their way through the filter, chunk by chunk, a few chunks in
//! flight at most, with the trailers after the last chunk.

use super::ask;
use super::wire::{trailer_pairs, wire_trailers};
use super::worker::{BodyOutcome, LocalVm, Msg};
use crate::Side;
use bytes::Bytes;
use http_body_util::channel::Sender;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use std::rc::Rc;

/// How many body chunks may wait between the filter and the peer before reading stops.
pub(super) const BODY_CHUNKS_IN_FLIGHT: usize = 4;

/// A body failed part-way (the peer or the filter stopped it): the receiving side must see an
/// error, never a body that looks complete.
#[derive(Debug, thiserror::Error)]
#[error("the body was cut short: {0}")]
pub struct BodyCut(&'static str);

impl BodyCut {
    pub(super) fn new(why: &'static str) -> Self {
        Self(why)
    }
}

pub(super) type ProxyBody = BoxBody<Bytes, BodyCut>;

pub(super) fn whole(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Where a body comes from: the peer, or a whole body the proxy made up.
pub(super) enum Source {
    Incoming(Incoming),
    Whole(Option<Bytes>),
}

/// What a body source yields next.
enum Chunk {
    Data(Bytes),
    Trailers(hyper::HeaderMap),
}

impl Source {
    pub(super) fn is_end_stream(&self) -> bool {
        match self {
            Source::Incoming(body) => body.is_end_stream(),
            Source::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    /// A made-up body, whole.
    pub(super) fn into_whole(self) -> Bytes {
        match self {
            Source::Whole(bytes) => bytes.unwrap_or_default(),
            Source::Incoming(_) => Bytes::new(),
        }
    }

    /// The next data chunk or the trailers; `None` at the end, an error when the peer broke
    /// off.
    async fn next(&mut self) -> Option<Result<Chunk, ()>> {
        match self {
            Source::Whole(bytes) => bytes.take().map(|b| Ok(Chunk::Data(b))),
            Source::Incoming(body) => match body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => Some(Ok(Chunk::Data(data))),
                    Err(frame) => frame.into_trailers().ok().map(|t| Ok(Chunk::Trailers(t))),
                },
                Err(_) => Some(Err(())),
            },
        }
    }
}

/// Moves one side's body, then its trailers, through the filter to the receiving peer.
pub(super) async fn pump(
    worker: Rc<LocalVm>,
    stream: u32,
    side: Side,
    mut source: Source,
    mut sender: Sender<Bytes, BodyCut>,
) {
    loop {
        let (outcome, last) = match source.next().await {
            Some(Ok(Chunk::Data(chunk))) => {
                let end_of_stream = source.is_end_stream();
                (
                    body(&worker, stream, side, chunk, end_of_stream).await,
                    end_of_stream,
                )
            }
            None => (body(&worker, stream, side, Bytes::new(), true).await, true),
            Some(Ok(Chunk::Trailers(trailers))) => {
                let pairs = trailer_pairs(&trailers);
                let outcome = ask(&worker, |reply| Msg::Trailers {
                    stream,
                    side,
                    trailers: pairs,
                    reply,
                })
                .await;
                (outcome, true)
            }
            Some(Err(())) => return sender.abort(BodyCut("the sending peer broke off")),
        };
        match outcome {
            BodyOutcome::Data {
                bytes,
                end,
                trailers,
            } => {
                if !bytes.is_empty() && sender.send_data(bytes).await.is_err() {
                    // The receiving peer is gone; the guard ends the stream.
                    return;
                }
                if let Some(trailers) = trailers {
                    let _ = sender.send_trailers(wire_trailers(&trailers)).await;
                }
                if end {
                    return;
                }
                if last {
                    // The filter has the last of it but did not finish the body.
                    return sender.abort(BodyCut("the filter did not end the body"));
                }
            }
            BodyOutcome::Stopped => return sender.abort(BodyCut("the stream was stopped")),
        }
    }
}

async fn body(
    worker: &Rc<LocalVm>,
    stream: u32,
    side: Side,
    chunk: Bytes,
    end_of_stream: bool,
) -> BodyOutcome {
    ask(worker, |reply| Msg::Body {
        stream,
        response: side.is_response(),
        chunk,
        end_of_stream,
        reply,
    })
    .await
}
