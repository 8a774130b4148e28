//! Sans-IO HTTP/1.1 request parsing (on top of `httparse`) and response
//! serialisation.
//!
//! What this module does:
//! - [`parse`] takes the bytes received so far on a connection and either
//!   returns one complete [`Request`] together with the number of bytes it
//!   used, says more bytes are needed, or reports an [`HttpError`] that maps
//!   straight to an error status code. Bytes after a complete request (a
//!   pipelined next request) are left to the caller, who parses them again
//!   after draining the used bytes.
//! - Bodies are delimited only by `Content-Length`; a missing
//!   `Content-Length` means an empty body.
//! - Head and body together are bounded by a caller-supplied size limit, and
//!   an oversized `Content-Length` is rejected as soon as the head is in,
//!   without waiting for the body.
//! - [`Response`] builds a response and [`Response::to_bytes`] serialises it
//!   with a computed `Content-Length` and an optional `Connection: close`.
//!
//! What it does not do:
//! - No I/O at all: it never reads or writes a socket and never reads the
//!   clock (so responses carry no `Date` header).
//! - No chunked (or any other) transfer coding: a request carrying
//!   `Transfer-Encoding` is refused with 411 Length Required.
//! - No pipelining logic beyond reporting the used length: requests are
//!   parsed strictly one at a time, in order, and nothing is reordered.
//! - No percent-decoding of the path or query, no URL normalisation, no
//!   header folding (obsolete line folding is rejected by `httparse`), no
//!   `Expect: 100-continue` handling, no trailers, no HTTP/2.
//! - Header values that are not valid UTF-8 are converted lossily.

use std::fmt;

/// Most request headers accepted; one more is a 431.
pub const MAX_HEADERS: usize = 64;

/// One parsed HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent, e.g. `"GET"`.
    pub method: String,
    /// The raw path part of the request target, before any `?`; not
    /// percent-decoded.
    pub path: String,
    /// The raw query string after the first `?`, without the `?`; empty if
    /// there is none.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Header names lower-cased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (exactly `Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection should stay open after this request.
    ///
    /// HTTP/1.1 defaults to keep-alive unless `Connection` has the token
    /// `close`; HTTP/1.0 keeps alive only with the token `keep-alive` (and no
    /// `close`). `Connection` is read as a comma-separated, case-insensitive
    /// token list; all `Connection` headers are considered.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.version_minor >= 1 || self.has_token("connection", "keep-alive")
    }

    /// Whether the request asks for a WebSocket upgrade: `Upgrade` has the
    /// token `websocket` and `Connection` has the token `upgrade` (both
    /// case-insensitive).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.has_token("upgrade", "websocket") && self.has_token("connection", "upgrade")
    }

    /// Whether any header called `name` holds `token` in its comma-separated
    /// list (case-insensitive, surrounding whitespace ignored).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
    }
}

/// Why a request was refused; each maps to a status code and a short text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request (head + body) is larger than the limit: 413.
    TooLarge,
    /// Malformed request line or headers, bad or conflicting
    /// `Content-Length`: 400. The string is a short detail for logs.
    BadRequest(&'static str),
    /// `Transfer-Encoding` was sent (we do not do chunked): 411.
    LengthRequired,
    /// More than [`MAX_HEADERS`] headers: 431.
    TooManyHeaders,
}

impl HttpError {
    /// The response status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge => 413,
            HttpError::BadRequest(_) => 400,
            HttpError::LengthRequired => 411,
            HttpError::TooManyHeaders => 431,
        }
    }

    /// The response body text for this error.
    pub fn message(&self) -> &'static str {
        match self {
            HttpError::TooLarge => "Payload too large.",
            HttpError::BadRequest(_) => "Bad request.",
            HttpError::LengthRequired => "Length required.",
            HttpError::TooManyHeaders => "Request header fields too large.",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())?;
        if let HttpError::BadRequest(detail) = self {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

/// The outcome of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole request; the `usize` is how many bytes of the input it used
    /// (head + body), so pipelined bytes after it stay in the buffer.
    Complete(Request, usize),
    /// More bytes are needed.
    Incomplete,
    /// The request is unacceptable; answer with the error's status and close.
    Error(HttpError),
}

/// Parse one request from the start of `buf`.
///
/// `max_request_size` bounds head and body together:
/// - head not complete yet and `buf.len() > max_request_size`: `TooLarge`;
/// - head complete and head + `Content-Length` over the limit: `TooLarge` at
///   once, without waiting for the body;
/// - otherwise `Incomplete` until the whole body is present.
///
/// A missing `Content-Length` means no body. Any `Transfer-Encoding` gives
/// `LengthRequired`. `Content-Length` must be plain ASCII digits; repeated
/// `Content-Length` headers must agree.
pub fn parse(buf: &[u8], max_request_size: usize) -> Parse {
    // Only look at as much as could hold an acceptable head: a head that is
    // not complete within the limit is too large whatever follows.
    let window = buf.get(..max_request_size).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_request_size {
                Parse::Error(HttpError::TooLarge)
            } else {
                Parse::Incomplete
            };
        }
        Err(e) => return Parse::Error(map_httparse_error(e)),
    };

    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Error(HttpError::BadRequest("incomplete request line"));
    };

    let (headers, content_length) = match read_headers(req.headers) {
        Ok(h) => h,
        Err(e) => return Parse::Error(e),
    };

    let body_len = content_length.unwrap_or(0);
    let total = match head_len.checked_add(body_len) {
        Some(t) if t <= max_request_size => t,
        _ => return Parse::Error(HttpError::TooLarge),
    };
    let Some(body) = buf.get(head_len..total) else {
        return Parse::Incomplete;
    };

    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };

    Parse::Complete(
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            version_minor: version,
            headers,
            body: body.to_vec(),
        },
        total,
    )
}

/// A request's headers: lower-cased names, trimmed values, in order.
type Headers = Vec<(String, String)>;

/// Owned, lower-cased headers with trimmed values, and the body length they
/// announce. Any `Transfer-Encoding` is refused (411: we read no chunked
/// bodies); repeated `Content-Length` headers must agree.
fn read_headers(raw: &[httparse::Header<'_>]) -> Result<(Headers, Option<usize>), HttpError> {
    let mut headers = Vec::with_capacity(raw.len());
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = false;
    for h in raw {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value)
            .trim_matches([' ', '\t'])
            .to_owned();
        match name.as_str() {
            "transfer-encoding" => transfer_encoding = true,
            "content-length" => {
                let n = parse_content_length(&value)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::BadRequest("conflicting Content-Length headers"));
                }
                content_length = Some(n);
            }
            _ => {}
        }
        headers.push((name, value));
    }
    if transfer_encoding {
        return Err(HttpError::LengthRequired);
    }
    Ok((headers, content_length))
}

/// Parse a `Content-Length` value: one or more ASCII digits, nothing else.
/// A number too big for `usize` is certainly over any limit.
fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadRequest("invalid Content-Length"));
    }
    value.parse::<usize>().map_err(|_| HttpError::TooLarge)
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => HttpError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid header value"),
        httparse::Error::NewLine => HttpError::BadRequest("invalid line ending"),
        httparse::Error::Status => HttpError::BadRequest("invalid status"),
        httparse::Error::Token => HttpError::BadRequest("invalid token in request line"),
        httparse::Error::Version => HttpError::BadRequest("invalid HTTP version"),
    }
}

/// An HTTP response to be serialised with [`Response::to_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers, written in order. `Content-Length` and
    /// `Connection: close` are added by [`Response::to_bytes`]; do not add
    /// `Content-Length` here.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status` and no extra headers.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response (`Content-Type: application/json`,
    /// `Cache-Control: no-cache, private`).
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", "application/json".to_owned()),
                ("Cache-Control", "no-cache, private".to_owned()),
            ],
            body: body.into(),
        }
    }

    /// A plain-text response (`Content-Type: text/plain; charset=utf-8`).
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// Add a header (builder style).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Serialise: status line, the extra headers, `Content-Length` (always,
    /// also when 0, except for 1xx and 204 responses, which must not carry
    /// one), `Connection: close` when `close` is true (nothing otherwise),
    /// the blank line and the body.
    ///
    /// CR and LF inside header names or values are written as spaces so a
    /// value can never start a new header line.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        const CLOSE: &[u8] = b"Connection: close\r\n";
        let status = self.status.to_string();
        let reason = reason_phrase(self.status);
        let content_length = if self.has_content_length() {
            Some(self.body.len().to_string())
        } else {
            None
        };

        let mut len = "HTTP/1.1 ".len() + status.len() + 1 + reason.len() + 2;
        for (name, value) in &self.headers {
            len += name.len() + 2 + value.len() + 2;
        }
        if let Some(cl) = &content_length {
            len += "Content-Length: ".len() + cl.len() + 2;
        }
        if close {
            len += CLOSE.len();
        }
        len += 2 + self.body.len();

        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            push_sanitised(&mut out, name.as_bytes());
            out.extend_from_slice(b": ");
            push_sanitised(&mut out, value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(cl) = &content_length {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(cl.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(CLOSE);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// RFC 9110 §8.6: no `Content-Length` on 1xx or 204 responses.
    fn has_content_length(&self) -> bool {
        !((100..200).contains(&self.status) || self.status == 204)
    }
}

/// Append `bytes`, turning CR and LF into spaces (same length).
fn push_sanitised(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
}

/// The reason phrase for a status code, `"Unknown"` for codes not listed.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 10_000;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(
        method: &str,
        path: &str,
        query: &str,
        version_minor: u8,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            version_minor,
            headers: h(headers),
            body: body.to_vec(),
        }
    }

    type Headers<'a> = &'a [(&'a str, &'a str)];

    fn bare(version_minor: u8, headers: &[(&str, &str)]) -> Request {
        req("GET", "/", "", version_minor, headers, b"")
    }

    /// A fixture: the raw bytes and the requests they hold, in order.
    struct Fixture {
        raw: Vec<u8>,
        expected: Vec<Request>,
    }

    /// Every fixture, one literal per case: a table of data, long because
    /// each case is spelled out rather than built by code.
    fn fixtures() -> Vec<Fixture> {
        let get = Fixture {
            raw:
                b"GET /apps/123/channels?auth_key=abc&auth_timestamp=1&info=user_count HTTP/1.1\r\n\
                   Host: example.com\r\n\
                   User-Agent: test/1.0\r\n\
                   Accept: */*\r\n\
                   X-Custom:   padded value  \r\n\
                   \r\n"
                    .to_vec(),
            expected: vec![req(
                "GET",
                "/apps/123/channels",
                "auth_key=abc&auth_timestamp=1&info=user_count",
                1,
                &[
                    ("host", "example.com"),
                    ("user-agent", "test/1.0"),
                    ("accept", "*/*"),
                    ("x-custom", "padded value"),
                ],
                b"",
            )],
        };
        let post = Fixture {
            raw: b"POST /apps/1/events?body_md5=x HTTP/1.1\r\n\
                   Host: localhost\r\n\
                   Content-Type: application/json\r\n\
                   Content-Length: 26\r\n\
                   \r\n\
                   {\"name\":\"e\",\"data\":\"{}\"}\r\n"
                .to_vec(),
            expected: vec![req(
                "POST",
                "/apps/1/events",
                "body_md5=x",
                1,
                &[
                    ("host", "localhost"),
                    ("content-type", "application/json"),
                    ("content-length", "26"),
                ],
                b"{\"name\":\"e\",\"data\":\"{}\"}\r\n",
            )],
        };
        let http10 = Fixture {
            raw: b"GET /up HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".to_vec(),
            expected: vec![req(
                "GET",
                "/up",
                "",
                0,
                &[("connection", "Keep-Alive")],
                b"",
            )],
        };
        let pipelined = Fixture {
            raw: b"POST /a?x=1?y HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                   GET /b? HTTP/1.1\r\nHost: h\r\n\r\n"
                .to_vec(),
            expected: vec![
                req("POST", "/a", "x=1?y", 1, &[("content-length", "3")], b"abc"),
                req("GET", "/b", "", 1, &[("host", "h")], b""),
            ],
        };
        let upgrade = Fixture {
            raw: b"GET /app/my-key?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\n\
                   Host: localhost:8080\r\n\
                   Connection: keep-alive, Upgrade\r\n\
                   Pragma: no-cache\r\n\
                   Cache-Control: no-cache\r\n\
                   User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
                   Upgrade: websocket\r\n\
                   Origin: http://localhost:3000\r\n\
                   Sec-WebSocket-Version: 13\r\n\
                   Accept-Encoding: gzip, deflate, br\r\n\
                   Accept-Language: en-US,en;q=0.9\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
                   \r\n"
                .to_vec(),
            expected: vec![req(
                "GET",
                "/app/my-key",
                "protocol=7&client=js&version=8.4.0&flash=false",
                1,
                &[
                    ("host", "localhost:8080"),
                    ("connection", "keep-alive, Upgrade"),
                    ("pragma", "no-cache"),
                    ("cache-control", "no-cache"),
                    (
                        "user-agent",
                        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
                    ),
                    ("upgrade", "websocket"),
                    ("origin", "http://localhost:3000"),
                    ("sec-websocket-version", "13"),
                    ("accept-encoding", "gzip, deflate, br"),
                    ("accept-language", "en-US,en;q=0.9"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    (
                        "sec-websocket-extensions",
                        "permessage-deflate; client_max_window_bits",
                    ),
                ],
                b"",
            )],
        };
        vec![get, post, http10, pipelined, upgrade]
    }

    /// Parse everything in `buf`, request after request, like a reader that
    /// has received it all at once.
    fn parse_all(mut buf: &[u8]) -> Vec<Request> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            match parse(buf, LIMIT) {
                Parse::Complete(r, used) => {
                    assert!(used > 0 && used <= buf.len());
                    out.push(r);
                    buf = &buf[used..];
                }
                other => panic!("unexpected {other:?} with {} bytes left", buf.len()),
            }
        }
        out
    }

    #[test]
    fn every_prefix_of_first_request_is_incomplete() {
        for f in fixtures() {
            let first = &f.expected[0];
            let first_len = match parse(&f.raw, LIMIT) {
                Parse::Complete(r, used) => {
                    assert_eq!(&r, first);
                    used
                }
                other => panic!("full buffer gave {other:?}"),
            };
            for i in 0..first_len {
                assert_eq!(
                    parse(&f.raw[..i], LIMIT),
                    Parse::Incomplete,
                    "prefix of {i} bytes of {:?}",
                    String::from_utf8_lossy(&f.raw)
                );
            }
        }
    }

    #[test]
    fn every_proper_prefix_incomplete_and_full_buffer_complete() {
        // Single-request fixtures: every proper prefix of the whole buffer is
        // Incomplete and the whole buffer is Complete using every byte.
        for f in fixtures().into_iter().filter(|f| f.expected.len() == 1) {
            for i in 0..f.raw.len() {
                assert_eq!(parse(&f.raw[..i], LIMIT), Parse::Incomplete, "prefix {i}");
            }
            assert_eq!(
                parse(&f.raw, LIMIT),
                Parse::Complete(f.expected[0].clone(), f.raw.len())
            );
        }
    }

    #[test]
    fn pipelined_requests_leave_the_rest_in_the_buffer() {
        let f = &fixtures()[3];
        let first_len = b"POST /a?x=1?y HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".len();
        assert_eq!(
            parse(&f.raw, LIMIT),
            Parse::Complete(f.expected[0].clone(), first_len)
        );
        let rest = &f.raw[first_len..];
        for i in 0..rest.len() {
            assert_eq!(parse(&rest[..i], LIMIT), Parse::Incomplete);
        }
        assert_eq!(
            parse(rest, LIMIT),
            Parse::Complete(f.expected[1].clone(), rest.len())
        );
        assert_eq!(parse_all(&f.raw), f.expected);
    }

    #[test]
    fn chunked_arrival_at_every_split_gives_the_same_requests() {
        for f in fixtures() {
            for split in 0..=f.raw.len() {
                let (a, b) = f.raw.split_at(split);
                let mut acc: Vec<u8> = Vec::new();
                let mut got = Vec::new();
                for chunk in [a, b] {
                    acc.extend_from_slice(chunk);
                    loop {
                        match parse(&acc, LIMIT) {
                            Parse::Complete(r, used) => {
                                got.push(r);
                                acc.drain(..used);
                            }
                            Parse::Incomplete => break,
                            Parse::Error(e) => panic!("split {split}: {e}"),
                        }
                    }
                }
                assert!(acc.is_empty(), "split {split}: leftover {acc:?}");
                assert_eq!(got, f.expected, "split {split}");
            }
        }
    }

    #[test]
    fn byte_by_byte_arrival_gives_the_same_requests() {
        for f in fixtures() {
            let mut acc: Vec<u8> = Vec::new();
            let mut got = Vec::new();
            for &byte in &f.raw {
                acc.push(byte);
                if let Parse::Complete(r, used) = parse(&acc, LIMIT) {
                    got.push(r);
                    acc.drain(..used);
                }
            }
            assert!(acc.is_empty());
            assert_eq!(got, f.expected);
        }
    }

    #[test]
    fn bad_request_line() {
        for raw in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / FOO/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            match parse(raw, LIMIT) {
                Parse::Error(HttpError::BadRequest(_)) => {}
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(raw)),
            }
        }
    }

    #[test]
    fn bad_header_line() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", LIMIT),
            Parse::Error(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn non_numeric_content_length() {
        for cl in ["abc", "-1", "+5", "5 5", "0x10", "5, 5", "", "1.0"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nhello");
            assert_eq!(
                parse(raw.as_bytes(), LIMIT),
                Parse::Error(HttpError::BadRequest("invalid Content-Length")),
                "Content-Length: {cl:?}"
            );
        }
    }

    #[test]
    fn content_length_overflowing_usize_is_too_large() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(parse(raw, LIMIT), Parse::Error(HttpError::TooLarge));
    }

    #[test]
    fn conflicting_content_lengths() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(
            parse(raw, LIMIT),
            Parse::Error(HttpError::BadRequest("conflicting Content-Length headers"))
        );
    }

    #[test]
    fn repeated_identical_content_length_is_accepted() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc";
        match parse(raw, LIMIT) {
            Parse::Complete(r, used) => {
                assert_eq!(r.body, b"abc");
                assert_eq!(used, raw.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transfer_encoding_is_length_required() {
        for raw in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
        ] {
            assert_eq!(parse(raw, LIMIT), Parse::Error(HttpError::LengthRequired));
        }
        // Not decided before the head is complete.
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", LIMIT),
            Parse::Incomplete
        );
    }

    fn with_headers(n: usize) -> Vec<u8> {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..n {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw
    }

    #[test]
    fn too_many_headers() {
        assert_eq!(
            parse(&with_headers(MAX_HEADERS + 1), LIMIT),
            Parse::Error(HttpError::TooManyHeaders)
        );
        assert_eq!(
            parse(&with_headers(200), LIMIT),
            Parse::Error(HttpError::TooManyHeaders)
        );
        let raw = with_headers(MAX_HEADERS);
        match parse(&raw, LIMIT) {
            Parse::Complete(r, used) => {
                assert_eq!(r.headers.len(), MAX_HEADERS);
                assert_eq!(used, raw.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_over_limit_without_end() {
        let mut raw = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        raw.resize(100, b'a');
        assert_eq!(parse(&raw, 100), Parse::Incomplete);
        assert_eq!(parse(&raw, 99), Parse::Error(HttpError::TooLarge));
        // A huge buffer with no end to the head is refused, not scanned.
        raw.resize(1_000_000, b'a');
        assert_eq!(parse(&raw, 4096), Parse::Error(HttpError::TooLarge));
    }

    #[test]
    fn complete_head_over_limit() {
        let raw = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert!(matches!(parse(raw, raw.len()), Parse::Complete(_, _)));
        assert_eq!(parse(raw, raw.len() - 1), Parse::Error(HttpError::TooLarge));
    }

    #[test]
    fn content_length_over_limit_fails_before_body() {
        let head = b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n";
        assert_eq!(parse(head, 500), Parse::Error(HttpError::TooLarge));
        // Just one byte over: refused with no body bytes present.
        let limit = head.len() + 999;
        assert_eq!(parse(head, limit), Parse::Error(HttpError::TooLarge));
        // Exactly at the limit: waits for the body.
        assert_eq!(parse(head, limit + 1), Parse::Incomplete);
    }

    #[test]
    fn exactly_at_limit_succeeds() {
        let mut raw = b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n".to_vec();
        raw.extend_from_slice(b"0123456789");
        let limit = raw.len();
        assert_eq!(
            parse(&raw, limit),
            Parse::Complete(
                req(
                    "POST",
                    "/x",
                    "",
                    1,
                    &[("content-length", "10")],
                    b"0123456789"
                ),
                limit
            )
        );
        // Pipelined bytes beyond the limit do not matter once a request fits.
        raw.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(parse(&raw, limit), Parse::Complete(_, n) if n == limit));
        assert_eq!(
            parse(&raw[..limit], limit - 1),
            Parse::Error(HttpError::TooLarge)
        );
    }

    #[test]
    fn zero_content_length_and_empty_query() {
        let raw = b"POST /p? HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        match parse(raw, LIMIT) {
            Parse::Complete(r, used) => {
                assert_eq!(r.path, "/p");
                assert_eq!(r.query, "");
                assert!(r.body.is_empty());
                assert_eq!(used, raw.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn path_is_not_decoded() {
        let raw = b"GET /a%20b/c?x=%2F&y=1+2 HTTP/1.1\r\n\r\n";
        match parse(raw, LIMIT) {
            Parse::Complete(r, _) => {
                assert_eq!(r.path, "/a%20b/c");
                assert_eq!(r.query, "x=%2F&y=1+2");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive_first_match() {
        let r = bare(1, &[("x-a", "1"), ("host", "h"), ("x-a", "2")]);
        assert_eq!(r.header("X-A"), Some("1"));
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.header("HOST"), Some("h"));
        assert_eq!(r.header("Host"), Some("h"));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.header("hos"), None);
    }

    #[test]
    fn keep_alive_truth_table() {
        let cases: &[(u8, Headers, bool)] = &[
            (1, &[], true),
            (1, &[("connection", "close")], false),
            (1, &[("connection", "Close")], false),
            (1, &[("connection", "keep-alive")], true),
            (1, &[("connection", "Upgrade")], true),
            (1, &[("connection", "keep-alive, close")], false),
            (1, &[("connection", "upgrade,CLOSE")], false),
            (1, &[("connection", "closed")], true),
            (
                1,
                &[("connection", "keep-alive"), ("connection", "close")],
                false,
            ),
            (0, &[], false),
            (0, &[("connection", "keep-alive")], true),
            (0, &[("connection", "Keep-Alive")], true),
            (0, &[("connection", "foo , keep-alive")], true),
            (0, &[("connection", "close")], false),
            (0, &[("connection", "keep-alive, close")], false),
            (0, &[("connection", "keep-alives")], false),
            (0, &[("x-connection", "keep-alive")], false),
        ];
        for (minor, headers, want) in cases {
            assert_eq!(
                bare(*minor, headers).keep_alive(),
                *want,
                "HTTP/1.{minor} {headers:?}"
            );
        }
    }

    #[test]
    fn websocket_upgrade_truth_table() {
        let cases: &[(Headers, bool)] = &[
            (&[("upgrade", "websocket"), ("connection", "Upgrade")], true),
            (&[("upgrade", "WebSocket"), ("connection", "upgrade")], true),
            (
                &[
                    ("connection", "keep-alive, Upgrade"),
                    ("upgrade", "websocket"),
                ],
                true,
            ),
            (
                &[("upgrade", "h2c, websocket"), ("connection", "upgrade")],
                true,
            ),
            (
                &[("upgrade", "websocket"), ("connection", "keep-alive")],
                false,
            ),
            (&[("upgrade", "websocket")], false),
            (&[("connection", "upgrade")], false),
            (&[("upgrade", "h2c"), ("connection", "upgrade")], false),
            (
                &[("upgrade", "websockets"), ("connection", "upgrade")],
                false,
            ),
            (
                &[("upgrade", "websocket"), ("connection", "upgraded")],
                false,
            ),
            (&[], false),
        ];
        for (headers, want) in cases {
            assert_eq!(
                bare(1, headers).is_websocket_upgrade(),
                *want,
                "{headers:?}"
            );
        }
        // The browser fixture, through the parser.
        match parse(&fixtures()[4].raw, LIMIT) {
            Parse::Complete(r, _) => {
                assert!(r.is_websocket_upgrade());
                assert!(r.keep_alive());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_status_and_message() {
        assert_eq!(HttpError::TooLarge.status(), 413);
        assert_eq!(HttpError::TooLarge.message(), "Payload too large.");
        assert_eq!(HttpError::BadRequest("x").status(), 400);
        assert_eq!(HttpError::BadRequest("x").message(), "Bad request.");
        assert_eq!(HttpError::LengthRequired.status(), 411);
        assert_eq!(HttpError::LengthRequired.message(), "Length required.");
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(
            HttpError::TooManyHeaders.message(),
            "Request header fields too large."
        );
        assert_eq!(
            HttpError::BadRequest("invalid token").to_string(),
            "400 Bad request. (invalid token)"
        );
        assert_eq!(HttpError::TooLarge.to_string(), "413 Payload too large.");
        for e in [
            HttpError::TooLarge,
            HttpError::BadRequest("x"),
            HttpError::LengthRequired,
            HttpError::TooManyHeaders,
        ] {
            assert_ne!(reason_phrase(e.status()), "Unknown");
        }
    }

    #[test]
    fn json_response_bytes() {
        let r = Response::json(200, "{}");
        let keep = r.to_bytes(false);
        assert_eq!(
            keep,
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: application/json\r\n\
              Cache-Control: no-cache, private\r\n\
              Content-Length: 2\r\n\
              \r\n\
              {}"
        );
        assert_eq!(keep.capacity(), keep.len());
        let close = r.to_bytes(true);
        assert_eq!(
            close,
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: application/json\r\n\
              Cache-Control: no-cache, private\r\n\
              Content-Length: 2\r\n\
              Connection: close\r\n\
              \r\n\
              {}"
        );
        assert_eq!(close.capacity(), close.len());
    }

    #[test]
    fn text_and_empty_response_bytes() {
        let r = Response::text(413, "Payload too large.").header("X-Extra", "1");
        assert_eq!(
            r.to_bytes(true),
            b"HTTP/1.1 413 Payload Too Large\r\n\
              Content-Type: text/plain; charset=utf-8\r\n\
              X-Extra: 1\r\n\
              Content-Length: 18\r\n\
              Connection: close\r\n\
              \r\n\
              Payload too large."
        );
        assert_eq!(
            Response::new(404).to_bytes(false),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            Response::new(599).to_bytes(false),
            b"HTTP/1.1 599 Unknown\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn switching_protocols_has_no_content_length() {
        let r = Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let bytes = r.to_bytes(false);
        assert_eq!(
            bytes,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              \r\n"
        );
        assert_eq!(bytes.capacity(), bytes.len());
        assert_eq!(
            Response::new(204).to_bytes(false),
            b"HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let bytes = Response::new(200)
            .header("X-Evil", "a\r\nSet-Cookie: b")
            .to_bytes(false);
        assert_eq!(
            bytes,
            b"HTTP/1.1 200 OK\r\nX-Evil: a  Set-Cookie: b\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(bytes.capacity(), bytes.len());
    }

    #[test]
    fn reason_phrases() {
        for (code, text) in [
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (411, "Length Required"),
            (413, "Payload Too Large"),
            (422, "Unprocessable Entity"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (0, "Unknown"),
            (299, "Unknown"),
        ] {
            assert_eq!(reason_phrase(code), text, "{code}");
        }
    }
}
