//! How a test answers a callout: the reply the callout's upstream sends back.

use crate::header_map::HeaderMap;
use crate::state::CallReply;

/// A reply to a pending callout, built like an HTTP response.
#[derive(Clone, Debug)]
pub struct CalloutReply {
    status: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

impl CalloutReply {
    pub fn new(status: u16) -> Self {
        Self::with_raw_status(status.to_string().into_bytes())
    }

    /// A reply whose `:status` is any bytes at all, for testing how a module copes with a
    /// malformed one.
    pub fn with_raw_status(status: impl Into<Vec<u8>>) -> Self {
        Self {
            status: status.into(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// The reply Envoy's async client synthesizes when a callout's timeout passes: it arrives
    /// through the success path with `:status` 504, not as a failed call.
    pub fn envoy_timeout() -> Self {
        Self::new(504)
            .header("content-length", "24")
            .header("content-type", "text/plain")
            .body("upstream request timeout")
    }

    pub(crate) fn into_call_reply(self) -> CallReply {
        let mut headers = HeaderMap::new();
        headers.add(b":status", &self.status);
        for (name, value) in &self.headers {
            headers.add(name.as_bytes(), value);
        }
        CallReply {
            headers,
            body: self.body,
            trailers: HeaderMap::from_pairs(&self.trailers),
        }
    }
}
