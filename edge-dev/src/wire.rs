//! Between hyper's messages and the filter's: header lists as the filter sees them, requests
//! and responses built from what the filter let through, upstream requests and callouts made
//! for real, and the responses the proxy makes up itself.

use crate::body::{ProxyBody, Source, whole};
use bytes::Bytes;
use harness::{Callout, CalloutReply, HeaderMap, Message};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;

pub(crate) type HttpClient = Client<HttpConnector, ProxyBody>;

/// Header lists as the filter gets them: `(name, value)` in order, repeats kept.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Hop-by-hop headers, never forwarded. `trailer` is not among them: it announces the
/// trailers of a chunked body, and hyper sends (over HTTP/1) only the trailers it names. `te`
/// is kept as `te: trailers` when a request has that token, as Envoy sanitizes it: hyper
/// sends a response's trailers only to a client that asked so.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Whether a header of a message goes onto the wire as it is: pseudo-headers become the
/// request or status line, hop-by-hop headers stay behind, and `content-length` goes on with
/// a streamed body (hyper frames by it) but is recomputed for a whole one.
fn forwardable(name: &[u8], streamed: bool) -> bool {
    !(name.starts_with(b":")
        || (name == b"content-length" && !streamed)
        || (name != b"te" && HOP_BY_HOP.iter().any(|h| h.as_bytes() == name)))
}

/// The request as the filter sees it: pseudo-headers first, then the client's headers.
pub(crate) fn request_headers(parts: &hyper::http::request::Parts) -> Pairs {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = parts
        .headers
        .get(hyper::header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    let mut headers = vec![
        (
            b":method".to_vec(),
            parts.method.as_str().as_bytes().to_vec(),
        ),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), authority.to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    let asks_for_trailers = parts.headers.get_all(hyper::header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|token| {
                token
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        })
    });
    if asks_for_trailers {
        headers.push((b"te".to_vec(), b"trailers".to_vec()));
    }
    headers
}

pub(crate) fn response_headers(parts: &hyper::http::response::Parts) -> Pairs {
    let mut headers = vec![(
        b":status".to_vec(),
        parts.status.as_str().as_bytes().to_vec(),
    )];
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    headers
}

/// Trailers as the filter gets them.
pub(crate) fn trailer_pairs(trailers: &hyper::HeaderMap) -> Pairs {
    trailers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

/// Trailers for the wire, from what the filter left; a name or value hyper cannot send is
/// left out.
pub(crate) fn wire_trailers(trailers: &HeaderMap) -> hyper::HeaderMap {
    let mut out = hyper::HeaderMap::new();
    for (name, value) in trailers.iter() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name),
            hyper::header::HeaderValue::from_bytes(value),
        ) {
            out.append(name, value);
        }
    }
    out
}

/// Builds an HTTP request from a message's headers (pseudo-headers become the request line).
/// `content-length` is kept when the body streams (hyper then frames by it) and recomputed
/// when it is whole.
fn to_request(address: &str, message: &Message, body: ProxyBody) -> Option<Request<ProxyBody>> {
    let method = message.header(":method").unwrap_or("GET");
    let path = message.header(":path").unwrap_or("/");
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    if let Some(authority) = message.header(":authority") {
        builder = builder.header(hyper::header::HOST, authority);
    }
    let streamed = !body.is_end_stream();
    for (name, value) in message.headers.iter() {
        if forwardable(name, streamed) {
            builder = builder.header(name, value);
        }
    }
    builder.body(body).ok()
}

/// Sends a request to a cluster and waits for the response headers; a connection failure
/// becomes Envoy's 503 text.
pub(crate) async fn send(
    client: &HttpClient,
    address: &str,
    message: &Message,
    body: ProxyBody,
) -> Result<Response<Incoming>, &'static str> {
    let Some(request) = to_request(address, message, body) else {
        return Err("malformed upstream request");
    };
    match tokio::time::timeout(Duration::from_secs(60), client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        _ => Err("upstream connect error or disconnect/reset before headers"),
    }
}

/// A callout, made for real. Envoy's async client answers a failed connection with a 503
/// through the success path; the callout timeout is the host clock's job.
pub(crate) async fn call(
    client: &HttpClient,
    address: &str,
    callout: Callout,
) -> Option<CalloutReply> {
    let message = Message {
        headers: callout.headers.clone(),
        body: Vec::new(),
        trailers: None,
        end_of_stream: true,
    };
    let body = whole(Bytes::from(callout.body));
    let (headers, body) = match send(client, address, &message, body).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (response_headers(&parts), body)
        }
        Err(text) => {
            let (headers, source) = synthesized(503, text);
            (headers, source.into_whole())
        }
    };
    let status = headers
        .first()
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| b"503".to_vec());
    let mut reply = CalloutReply::with_raw_status(status).body(body.to_vec());
    for (name, value) in headers.iter().skip(1) {
        reply = reply.header(&String::from_utf8_lossy(name), value);
    }
    Some(reply)
}

/// A response the proxy makes up itself (no route, upstream unreachable), as Envoy would.
pub(crate) fn synthesized(status: u16, text: &str) -> (Pairs, Source) {
    let body = Bytes::from(format!("{text}\n"));
    let headers = vec![
        (b":status".to_vec(), status.to_string().into_bytes()),
        (b"content-type".to_vec(), b"text/plain".to_vec()),
        (
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ),
    ];
    (headers, Source::Whole(Some(body)))
}

fn response_builder(message: &Message, streamed: bool) -> hyper::http::response::Builder {
    let mut builder = Response::builder().status(message.status().unwrap_or(502));
    for (name, value) in message.headers.iter() {
        if forwardable(name, streamed) {
            builder = builder.header(name, value);
        }
    }
    builder
}

/// A response whose body is all in `message` (a local reply, or headers only).
pub(crate) fn whole_response(message: Message) -> Response<ProxyBody> {
    response_builder(&message, false)
        .body(whole(Bytes::from(message.body)))
        .unwrap_or_else(|_| plain(502, "malformed response"))
}

/// A response whose body follows through the filter.
pub(crate) fn streamed_response(message: &Message, body: ProxyBody) -> Response<ProxyBody> {
    response_builder(message, true)
        .body(body)
        .unwrap_or_else(|_| plain(502, "malformed response"))
}

pub(crate) fn plain(status: u16, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(whole(Bytes::from(format!("{text}\n"))));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    response
}

/// Envoy's HTTP/1 codec's answer to a request it refuses (a header name with `_` under
/// `REJECT_REQUEST`): 400 "Bad Request" (`sendProtocolError`), and the connection closes.
pub(crate) fn bad_request() -> Response<ProxyBody> {
    let body = "Bad Request";
    Response::builder()
        .status(400)
        .header("content-type", "text/plain")
        .header("content-length", body.len())
        .header("connection", "close")
        .body(whole(Bytes::from_static(body.as_bytes())))
        .unwrap_or_else(|_| plain(400, body))
}
