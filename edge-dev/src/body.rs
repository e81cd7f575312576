//! Bodies and trailers on their way through the proxy: through the filter chunk by chunk, a
//! few chunks in flight at most, with the trailers after the last chunk; or, without the
//! filter, straight through with only the codec's rule applied to the request's trailers.

use crate::connection_options::Codec;
use crate::proxy::ask;
use crate::wire::{trailer_pairs, wire_trailers};
use crate::worker::{BodyOutcome, LocalVm, Msg};
use bytes::Bytes;
use harness::{HeaderMap, Side};
use http_body_util::channel::Sender;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// How many body chunks may wait between the filter and the peer before reading stops.
pub(crate) const BODY_CHUNKS_IN_FLIGHT: usize = 4;

/// A body failed part-way (the peer or the filter stopped it): the receiving side must see an
/// error, never a body that looks complete.
#[derive(Debug, thiserror::Error)]
#[error("the body was cut short: {0}")]
pub struct BodyCut(&'static str);

impl BodyCut {
    pub(crate) fn new(why: &'static str) -> Self {
        Self(why)
    }
}

pub(crate) type ProxyBody = BoxBody<Bytes, BodyCut>;

pub(crate) fn whole(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Where a body comes from: the peer, or a whole body the proxy made up.
pub(crate) enum Source {
    Incoming(Incoming),
    Whole(Option<Bytes>),
}

/// What a body source yields next.
enum Chunk {
    Data(Bytes),
    Trailers(hyper::HeaderMap),
}

impl Source {
    pub(crate) fn is_end_stream(&self) -> bool {
        match self {
            Source::Incoming(body) => body.is_end_stream(),
            Source::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    /// A made-up body, whole.
    pub(crate) fn into_whole(self) -> Bytes {
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

/// Moves one side's body, then its trailers, through the filter to the receiving peer. On the
/// request side `codec` applies Envoy's underscore rule to the trailers first.
pub(crate) async fn pump(
    worker: Rc<LocalVm>,
    stream: u32,
    side: Side,
    mut source: Source,
    mut sender: Sender<Bytes, BodyCut>,
    codec: Option<Codec>,
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
                let mut pairs = trailer_pairs(&trailers);
                if let Some(codec) = &codec
                    && codec.check(&mut pairs).is_err()
                {
                    return sender.abort(BodyCut("a trailer name has an underscore"));
                }
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
        side,
        chunk,
        end_of_stream,
        reply,
    })
    .await
}

/// A client's request body going upstream without the filter, the codec's underscore rule
/// applied to its trailers.
pub(crate) struct CheckedTrailers {
    pub inner: Incoming,
    pub codec: Codec,
}

impl Body for CheckedTrailers {
    type Data = Bytes;
    type Error = BodyCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyCut>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(trailers) => {
                    let mut pairs = trailer_pairs(&trailers);
                    Poll::Ready(Some(match this.codec.check(&mut pairs) {
                        Ok(()) => Ok(Frame::trailers(wire_trailers(&HeaderMap::from_pairs(
                            &pairs,
                        )))),
                        Err(_) => Err(BodyCut("a trailer name has an underscore")),
                    }))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(BodyCut("the client broke off")))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
