//! One HTTP stream through the filter, both directions, as the host tracks it: what the filter
//! has seen, whether each direction is paused, what went upstream and what reached the client.

use crate::header_map::HeaderMap;
use crate::state::LocalResponse;
use std::collections::BTreeMap;

/// Which side of a stream: the request (towards the upstream) or the response (towards the
/// client). Every host API that acts on one direction of a stream takes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Request,
    Response,
}

/// Where one direction of a stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Headers not received yet.
    Idle,
    /// The filter returned Pause from its headers callback and has not resumed.
    Paused,
    /// Headers went on (upstream for a request, to the client for a response).
    Forwarded,
    /// A local response or a reset ended this direction.
    Stopped,
}

/// One direction (request or response) of a stream.
#[derive(Clone, Debug)]
pub struct Direction {
    /// The headers as the filter has left them.
    pub headers: HeaderMap,
    pub flow: Flow,
    /// Body bytes held back by the filter (it returned Pause from a body callback).
    pub buffered_body: Vec<u8>,
    /// Body bytes that arrived while the headers were paused, given to the filter on resume.
    pub pending_body: Vec<u8>,
    pub body_paused: bool,
    /// The peer has sent its last byte.
    pub end_of_stream: bool,
    /// How often the filter resumed this direction with `proxy_continue_stream`.
    pub resumes: u32,
    /// Whether headers are readable/writable through the ABI (Envoy drops its pointer to the
    /// header map once the headers have gone on).
    pub headers_accessible: bool,
    /// Trailers the peer sent, or the filter added from its last body callback, as the
    /// filter has left them. They end the direction: the body before them did not.
    pub trailers: Option<HeaderMap>,
    /// Whether the trailers are readable/writable through the ABI: from their callback until
    /// they go on.
    pub trailers_accessible: bool,
    /// The filter returned Pause from its trailers callback and has not resumed.
    pub trailers_paused: bool,
    /// The trailers callback ran (or the filter made the trailers itself, which Envoy does
    /// not hand back to the same filter).
    pub(crate) trailers_delivered: bool,
}

impl Direction {
    pub(crate) fn fresh() -> Self {
        Self {
            headers: HeaderMap::new(),
            flow: Flow::Idle,
            buffered_body: Vec::new(),
            pending_body: Vec::new(),
            body_paused: false,
            end_of_stream: false,
            resumes: 0,
            headers_accessible: false,
            trailers: None,
            trailers_accessible: false,
            trailers_paused: false,
            trailers_delivered: false,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.flow == Flow::Paused || self.body_paused || self.trailers_paused
    }

    /// Whether the body the filter holds is the last of this direction (no trailers follow):
    /// the `end_of_stream` its body callback gets.
    pub(crate) fn body_ends(&self) -> bool {
        self.end_of_stream && self.trailers.is_none()
    }
}

/// Headers, body and trailers as they left the filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Trailers, once they went on (they end the message).
    pub trailers: Option<HeaderMap>,
    pub end_of_stream: bool,
}

impl Message {
    /// `:status` of a response, if present and numeric.
    pub fn status(&self) -> Option<u16> {
        self.headers.get(":status").and_then(|s| s.parse().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// An HTTP stream (one request and its response) on one VM.
#[derive(Clone, Debug)]
pub struct Stream {
    pub id: u32,
    pub request: Direction,
    pub response: Direction,
    /// The request as the upstream would receive it, once forwarded.
    pub upstream: Option<Message>,
    /// The response as the client would receive it, once forwarded.
    pub client: Option<Message>,
    /// The local response the filter sent, if any.
    pub local_response: Option<LocalResponse>,
    /// The filter reset the stream (`proxy_close_stream`).
    pub reset: bool,
    /// The VM failed on this stream; Envoy's `failStream` answered or bypassed.
    pub failure: Option<String>,
    /// Things the filter did that Envoy does not allow or would misbehave on (resuming a
    /// stream that was not paused, for example). Tests usually assert this stays empty.
    pub violations: Vec<String>,
    /// Property values set for this stream, keyed by path segments (`["source", "address"]`).
    /// `source.address` reads as [`DEFAULT_SOURCE_ADDRESS`] until set.
    pub properties: BTreeMap<Vec<String>, Vec<u8>>,
    pub(crate) done: bool,
}

/// The client address a stream reports (`source.address`) unless a test sets another.
pub const DEFAULT_SOURCE_ADDRESS: &str = "127.0.0.1:40000";

impl Stream {
    pub(crate) fn new(id: u32) -> Self {
        Self {
            id,
            request: Direction::fresh(),
            response: Direction::fresh(),
            upstream: None,
            client: None,
            local_response: None,
            reset: false,
            failure: None,
            violations: Vec::new(),
            properties: BTreeMap::new(),
            done: false,
        }
    }

    /// The status the client received, if a response reached it.
    pub fn client_status(&self) -> Option<u16> {
        self.client.as_ref().and_then(Message::status)
    }

    pub(crate) fn side_mut(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Request => &mut self.request,
            Side::Response => &mut self.response,
        }
    }

    /// Ends both directions where they stand: whatever has not gone on never will, and the
    /// filter no longer reaches the headers or a held body.
    pub(crate) fn stop(&mut self) {
        for d in [&mut self.request, &mut self.response] {
            if d.flow != Flow::Forwarded {
                d.flow = Flow::Stopped;
            }
            d.headers_accessible = false;
            d.body_paused = false;
            d.trailers_accessible = false;
            d.trailers_paused = false;
            d.pending_body.clear();
        }
    }

    /// One side of the stream, as the filter has left it.
    pub fn side(&self, side: Side) -> &Direction {
        match side {
            Side::Request => &self.request,
            Side::Response => &self.response,
        }
    }

    /// Where that side's message goes once it leaves the filter: upstream for the request, to
    /// the client for the response.
    pub(crate) fn forwarded_mut(&mut self, side: Side) -> &mut Option<Message> {
        match side {
            Side::Request => &mut self.upstream,
            Side::Response => &mut self.client,
        }
    }
}
