//! The webhook HTTP/1.1 client, sans-IO: the request encoder and an
//! incremental response parser with limits. The sockets, TLS, name
//! resolution and deadlines are `event_loop::webhook`'s; this module only
//! turns a request into bytes and bytes into a status.
//!
//! # Requests
//!
//! [`encode_request`] writes one `POST` with, in this order, `Host`,
//! `Content-Type: application/json`, `Content-Length`, `User-Agent:
//! revurb/<version>` (unless the caller gives its own `User-Agent`), then the
//! caller's headers in the order given (the dispatcher's `X-Pusher-Key` and
//! `X-Pusher-Signature`, then the webhook's configured ones), then the body.
//!
//! A header the encoder cannot send safely is **left out**, never sent
//! mangled ([`header_problem`] says why, so configuration can refuse it at
//! start with the same words): a name that is not an RFC 9110 token, a value
//! with a control character (CR, LF, NUL, ...; HTAB is allowed), and the
//! names the client writes itself because they frame the message or manage
//! the connection (`Host`, `Content-Length`, `Content-Type`,
//! `Transfer-Encoding`, `Connection`). Configuration refuses all of these
//! at start (`config::webhooks`, which also refuses the `X-Pusher-*` names
//! the dispatcher passes in), so in practice nothing is left out; leaving a
//! header out rather than refusing the whole request keeps a delivery going
//! if a bad one got through, and a request cannot be split or re-framed by
//! what a header holds.
//!
//! # Responses
//!
//! [`ResponseParser`] takes the bytes as they come, split anywhere, and
//! gives the status and whether the connection may carry the next request.
//! The body is read and discarded (the status is all a webhook needs):
//!
//! - interim `1xx` responses (`100 Continue`, `102`, `103`) are skipped;
//!   `101 Switching Protocols` was never asked for and is an error;
//! - `204`, `304`: no body;
//! - `Transfer-Encoding` ending in `chunked`: chunks (with extensions) and
//!   trailers; it overrides `Content-Length` (RFC 9112 6.3), and a response
//!   carrying both is not reused, since it may be a smuggling attempt;
//! - `Transfer-Encoding` not ending in `chunked`, or neither header: the
//!   body runs to the end of the connection ([`ResponseParser::eof`]);
//! - `Content-Length`: that many bytes; several equal values are accepted,
//!   different ones are an error.
//!
//! The connection may be kept alive when the response is HTTP/1.1, has no
//! `Connection: close`, is not delimited by the close, and nothing followed
//! it in the same [`ResponseParser::feed`] (a server that sends more than
//! one response per request is not trusted with another). HTTP/1.0 always
//! means close, even with `Connection: keep-alive`.
//!
//! # Limits
//!
//! - Head: [`HEAD_MAX`] bytes, interim responses included (so an endless
//!   stream of `100 Continue` ends), at most [`MAX_RESPONSE_HEADERS`]
//!   header lines each.
//! - Body: [`BODY_MAX`] bytes on the wire after the head (chunk framing and
//!   trailers count). A `Content-Length` or chunk size that cannot fit is
//!   refused as soon as it is read.
//!
//! Past a limit the parser stops with a [`ResponseError`] and the
//! connection must be closed. Once the final head is in, the status is
//! known ([`ResponseParser::status`]) even if the body then fails: the
//! receiver has answered, and the transport reports that status rather than
//! a failure (so a receiver that said 200 and then sent too much is not
//! sent the same events again).
//!
//! Like the rest of the crate this module does no I/O and never reads the
//! clock. It also holds the words the transport reports outcomes in
//! ([`Outcome`], [`Failure`]), so the dispatcher does not depend on the
//! event loop.

use std::fmt;

use super::Url;

/// The most bytes of response head (status line and headers, interim
/// responses included).
pub const HEAD_MAX: usize = 16 * 1024;
/// The most bytes of response body on the wire.
pub const BODY_MAX: usize = 64 * 1024;
/// The most header lines in one response head.
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// What the client calls itself unless the webhook's headers say otherwise.
pub const USER_AGENT: &str = concat!("revurb/", env!("CARGO_PKG_VERSION"));

/// Header names the client writes or must control itself (lower case).
const RESERVED: [&str; 5] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
];

/// Why a header cannot be sent, or `None` if it can. The encoder leaves
/// such headers out; configuration refuses them with these words.
pub fn header_problem(name: &str, value: &str) -> Option<String> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Some(format!("header name {name:?} is not a valid HTTP token"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return Some(format!(
            "header {name:?} is set by revurb itself and cannot be configured"
        ));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Some(format!(
            "header {name:?} has a control character (CR, LF, NUL, ...) in its value"
        ));
    }
    None
}

/// RFC 9110 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One `POST` of `body` (JSON) to `url`, with the caller's `headers` after
/// the client's own; headers [`header_problem`] objects to are left out.
pub fn encode_request(url: &Url, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let extra: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(160 + url.path.len() + extra + body.len());
    out.extend_from_slice(b"POST ");
    // `Url::parse` refuses whitespace and control characters; a `Url` built
    // by hand still cannot break the request line.
    for &b in url.path.as_bytes() {
        if b <= b' ' || b == 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(url.host_header().as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    let sendable = |(n, v): &&(String, String)| header_problem(n, v).is_none();
    if !headers
        .iter()
        .filter(sendable)
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(USER_AGENT.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers.iter().filter(sendable) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A complete response, as far as the client cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection may carry the next request.
    pub keep_alive: bool,
}

/// Why a response could not be read. After any of these the connection is
/// closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Not an HTTP/1.x response head (status line, header syntax).
    Malformed(&'static str),
    /// More than [`MAX_RESPONSE_HEADERS`] header lines.
    TooManyHeaders,
    /// The head (interim responses included) passed [`HEAD_MAX`].
    HeadTooLarge,
    /// `101 Switching Protocols`, which a webhook never asks for.
    Switched,
    /// A `Content-Length` that is not a number, or two different ones.
    BadContentLength,
    /// A chunk size line or chunk terminator that breaks the chunked coding.
    BadChunk(&'static str),
    /// The body passed [`BODY_MAX`].
    BodyTooLarge,
    /// The peer closed before the response was complete.
    ClosedEarly,
    /// Bytes fed to a parser that has already finished.
    Finished,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(what) => write!(f, "malformed response: {what}"),
            ResponseError::TooManyHeaders => write!(
                f,
                "response has more than {MAX_RESPONSE_HEADERS} header lines"
            ),
            ResponseError::HeadTooLarge => {
                write!(f, "response head is larger than {HEAD_MAX} bytes")
            }
            ResponseError::Switched => write!(f, "unexpected 101 Switching Protocols"),
            ResponseError::BadContentLength => write!(f, "invalid Content-Length in the response"),
            ResponseError::BadChunk(what) => write!(f, "invalid chunked body: {what}"),
            ResponseError::BodyTooLarge => {
                write!(f, "response body is larger than {BODY_MAX} bytes")
            }
            ResponseError::ClosedEarly => write!(f, "connection closed before the response ended"),
            ResponseError::Finished => write!(f, "bytes after the end of the response"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// `n` body bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the peer closes.
    UntilClose,
    Done(Response),
    Failed(ResponseError),
}

/// Where the chunked decoder is (RFC 9112 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// Reading hex digits of the size.
    Size(u64),
    /// Whitespace after the size (BWS before an extension).
    SizeSpace(u64),
    /// Inside a chunk extension, up to the end of the line.
    Ext(u64),
    /// A CR ended the size line: LF must follow.
    SizeLf(u64),
    /// Chunk data still to skip.
    Data(u64),
    /// After the data: CRLF (or a bare LF).
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the empty line that ends them).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// A CR at the start of a trailer line: LF ends the message.
    EndLf,
}

/// An incremental HTTP/1.1 response reader; one per request. Feed it what
/// the socket gives, in order; it finishes with a [`Response`] or a
/// [`ResponseError`], and a split anywhere in the bytes changes nothing.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    /// The head bytes not yet parsed (kept across feeds until complete).
    head: Vec<u8>,
    /// Head bytes of interim responses already skipped.
    interim: usize,
    /// Body bytes on the wire so far.
    body: u64,
    /// The final status once its head is in.
    status: Option<u16>,
    keep_alive: bool,
    /// Any byte received at all.
    started: bool,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser::new()
    }
}

impl ResponseParser {
    pub fn new() -> ResponseParser {
        ResponseParser {
            state: State::Head,
            head: Vec::new(),
            interim: 0,
            body: 0,
            status: None,
            keep_alive: false,
            started: false,
        }
    }

    /// The final status, once its head is complete (also after a later
    /// body error).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Whether any byte of the response has been fed.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Give the parser the next bytes. `Ok(None)`: more are needed;
    /// `Ok(Some(response))`: the response is complete (bytes after its end
    /// in the same call make it not reusable); an error is final and comes
    /// back from every later call.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Response>, ResponseError> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::Done(_) if !bytes.is_empty() => return self.fail(ResponseError::Finished),
            State::Done(r) => return Ok(Some(r)),
            _ => {}
        }
        if !bytes.is_empty() {
            self.started = true;
        }
        let mut rest = bytes;
        while self.state == State::Head && !rest.is_empty() {
            rest = self.head_bytes(rest);
        }
        self.body_bytes(rest);
        match self.state {
            State::Failed(e) => Err(e),
            State::Done(r) => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// The peer closed the connection: a body delimited by the close ends
    /// here; anything else was cut short.
    pub fn eof(&mut self) -> Result<Response, ResponseError> {
        match self.state {
            State::Done(r) => Ok(r),
            State::Failed(e) => Err(e),
            State::UntilClose => {
                let r = Response {
                    status: self.status.unwrap_or_default(),
                    keep_alive: false,
                };
                self.state = State::Done(r);
                Ok(r)
            }
            State::Head if !self.head.is_empty() => {
                // a head that never ended may still be garbage
                let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
                match httparse::Response::new(&mut slots).parse(&self.head) {
                    Err(e) => self.fail(head_error(e)),
                    Ok(_) => self.fail(ResponseError::ClosedEarly),
                }
            }
            _ => self.fail(ResponseError::ClosedEarly),
        }
    }

    fn fail<T>(&mut self, e: ResponseError) -> Result<T, ResponseError> {
        self.state = State::Failed(e);
        Err(e)
    }

    fn done(&self) -> State {
        State::Done(Response {
            status: self.status.unwrap_or_default(),
            keep_alive: self.keep_alive,
        })
    }

    /// Add head bytes (no more than the head limit allows) and parse what
    /// is there, interim responses included; returns the bytes not taken.
    fn head_bytes<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        let room = HEAD_MAX.saturating_sub(self.interim + self.head.len());
        let (now, later) = rest.split_at(rest.len().min(room));
        let mut from = self.head.len();
        self.head.extend_from_slice(now);
        loop {
            // httparse starts over on every call: call it only when the head
            // may have ended (or is as long as it may be), so a head that
            // trickles in costs linear time. An error is then found at the
            // end of the head instead of at its first bad byte: the same
            // error, since the bytes before it are the same.
            if !self.head_may_end(from) && self.interim + self.head.len() < HEAD_MAX {
                return later;
            }
            from = 0;
            let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut resp = httparse::Response::new(&mut slots);
            let used = match resp.parse(&self.head) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if self.interim + self.head.len() >= HEAD_MAX {
                        self.state = State::Failed(ResponseError::HeadTooLarge);
                    }
                    return later;
                }
                Err(e) => {
                    self.state = State::Failed(head_error(e));
                    return later;
                }
            };
            let code = resp.code.unwrap_or_default();
            let minor = resp.version.unwrap_or_default();
            let framing = match code {
                101 => Err(ResponseError::Switched),
                0..100 => Err(ResponseError::Malformed("invalid status code")),
                // interim response: skip it, the real one follows
                100..200 => Ok(None),
                _ => framing(minor, code, resp.headers).map(Some),
            };
            match framing {
                Err(e) => {
                    // the head is whole and says what it says; only its
                    // body is refused
                    if e == ResponseError::BodyTooLarge {
                        self.status = Some(code);
                    }
                    self.state = State::Failed(e);
                    return later;
                }
                Ok(None) => {
                    self.interim += used;
                    self.head.drain(..used);
                }
                Ok(Some((state, keep_alive))) => {
                    let body = self.head.split_off(used);
                    self.head = Vec::new();
                    self.status = Some(code);
                    self.keep_alive = keep_alive;
                    self.state = match state {
                        State::Length(0) => self.done(),
                        s => s,
                    };
                    // body bytes that came with the head
                    self.body_bytes(&body);
                    return later;
                }
            }
        }
    }

    /// Whether an empty line (LF LF or LF CR LF) may end in the head buffer
    /// at or after `from`.
    fn head_may_end(&self, from: usize) -> bool {
        let tail = &self.head[from.saturating_sub(2)..];
        // one pass, stopping at the first empty line
        tail.iter().enumerate().any(|(i, &b)| {
            b == b'\n'
                && match tail.get(i + 1) {
                    Some(b'\n') => true,
                    Some(b'\r') => tail.get(i + 2) == Some(&b'\n'),
                    _ => false,
                }
        })
    }

    /// Run bytes through the states after the final head. Bytes left when
    /// the response is done make the connection not reusable.
    fn body_bytes(&mut self, mut rest: &[u8]) {
        loop {
            match self.state {
                State::Failed(_) | State::Head => return,
                State::Done(mut r) => {
                    if !rest.is_empty() {
                        r.keep_alive = false;
                        self.state = State::Done(r);
                    }
                    return;
                }
                _ if rest.is_empty() => return,
                State::Length(n) => {
                    let take = (rest.len() as u64).min(n);
                    self.body += take;
                    rest = &rest[take as usize..];
                    self.state = if take == n {
                        self.done()
                    } else {
                        State::Length(n - take)
                    };
                }
                State::UntilClose => {
                    self.body += rest.len() as u64;
                    rest = &[];
                    if self.body > BODY_MAX as u64 {
                        self.state = State::Failed(ResponseError::BodyTooLarge);
                    }
                }
                State::Chunked(c) => rest = self.chunk_bytes(c, rest),
            }
        }
    }

    /// Chunked coding: framing lines byte by byte, data in bulk.
    fn chunk_bytes<'a>(&mut self, mut c: Chunk, mut rest: &'a [u8]) -> &'a [u8] {
        let limit = BODY_MAX as u64;
        while let Some((&b, tail)) = rest.split_first() {
            if let Chunk::Data(n) = c {
                let take = (rest.len() as u64).min(n);
                self.body += take;
                rest = &rest[take as usize..];
                c = if take == n {
                    Chunk::DataCr
                } else {
                    Chunk::Data(n - take)
                };
                continue;
            }
            rest = tail;
            self.body += 1;
            if self.body > limit {
                self.state = State::Failed(ResponseError::BodyTooLarge);
                return rest;
            }
            let next = match (c, b) {
                (Chunk::SizeStart, _) => match hex(b) {
                    Some(d) => Ok(Chunk::Size(d)),
                    None => Err(ResponseError::BadChunk("chunk size is not hexadecimal")),
                },
                (Chunk::Size(n), _) if hex(b).is_some() => n
                    .checked_mul(16)
                    .and_then(|m| m.checked_add(hex(b).unwrap_or(0)))
                    .filter(|m| *m <= limit)
                    .map(Chunk::Size)
                    .ok_or(ResponseError::BodyTooLarge),
                (Chunk::Size(n) | Chunk::SizeSpace(n), b' ' | b'\t') => Ok(Chunk::SizeSpace(n)),
                (Chunk::Size(n) | Chunk::SizeSpace(n) | Chunk::Ext(n), b';') => Ok(Chunk::Ext(n)),
                (Chunk::Size(n) | Chunk::SizeSpace(n) | Chunk::Ext(n), b'\r') => {
                    Ok(Chunk::SizeLf(n))
                }
                (
                    Chunk::Size(n) | Chunk::SizeSpace(n) | Chunk::Ext(n) | Chunk::SizeLf(n),
                    b'\n',
                ) => self.chunk_start(n),
                (Chunk::Ext(_), _) if (b < 0x20 && b != b'\t') || b == 0x7f => Err(
                    ResponseError::BadChunk("control character in a chunk extension"),
                ),
                (Chunk::Ext(n), _) => Ok(Chunk::Ext(n)),
                (Chunk::Size(_) | Chunk::SizeSpace(_), _) => {
                    Err(ResponseError::BadChunk("invalid chunk size line"))
                }
                (Chunk::SizeLf(_), _) => Err(ResponseError::BadChunk("CR without LF")),
                (Chunk::DataCr, b'\r') => Ok(Chunk::DataLf),
                (Chunk::DataCr | Chunk::DataLf, b'\n') => Ok(Chunk::SizeStart),
                (Chunk::DataCr | Chunk::DataLf, _) => {
                    Err(ResponseError::BadChunk("chunk data longer than its size"))
                }
                (Chunk::TrailerStart, b'\r') => Ok(Chunk::EndLf),
                (Chunk::TrailerStart | Chunk::EndLf, b'\n') => {
                    self.state = self.done();
                    return rest;
                }
                (Chunk::EndLf, _) => Err(ResponseError::BadChunk("CR without LF")),
                (Chunk::Trailer, b'\n') => Ok(Chunk::TrailerStart),
                (Chunk::TrailerStart | Chunk::Trailer, _) => Ok(Chunk::Trailer),
                (Chunk::Data(_), _) => Ok(c), // taken in bulk above
            };
            match next {
                Ok(n) => c = n,
                Err(e) => {
                    self.state = State::Failed(e);
                    return rest;
                }
            }
        }
        self.state = State::Chunked(c);
        rest
    }

    /// A chunk-size line ended: data (if it fits), or the trailers after
    /// the last chunk.
    fn chunk_start(&self, size: u64) -> Result<Chunk, ResponseError> {
        if size == 0 {
            Ok(Chunk::TrailerStart)
        } else if self.body + size > BODY_MAX as u64 {
            Err(ResponseError::BodyTooLarge)
        } else {
            Ok(Chunk::Data(size))
        }
    }
}

fn head_error(e: httparse::Error) -> ResponseError {
    match e {
        httparse::Error::TooManyHeaders => ResponseError::TooManyHeaders,
        httparse::Error::Version => ResponseError::Malformed("not HTTP/1.0 or 1.1"),
        httparse::Error::Status => ResponseError::Malformed("invalid status line"),
        httparse::Error::HeaderName => ResponseError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => ResponseError::Malformed("invalid header value"),
        httparse::Error::NewLine => ResponseError::Malformed("invalid line ending"),
        _ => ResponseError::Malformed("invalid head"),
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// How the body of a final response is delimited, and whether the
/// connection may be reused after it.
fn framing(
    minor: u8,
    code: u16,
    headers: &[httparse::Header<'_>],
) -> Result<(State, bool), ResponseError> {
    let mut close = minor == 0;
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for h in headers {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("connection") {
            close |= tokens(value).any(|t| t.eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // the last coding decides; a later header continues the list
            if let Some(last) = tokens(value).last() {
                chunked = Some(last.eq_ignore_ascii_case("chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for v in value.split(',') {
                let v = v.trim_matches([' ', '\t']);
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ResponseError::BadContentLength);
                }
                // digits only: a parse failure is an overflow
                let n: u64 = v.parse().map_err(|_| ResponseError::BodyTooLarge)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ResponseError::BadContentLength);
                }
                length = Some(n);
            }
        }
    }
    if code == 204 || code == 304 {
        return Ok((State::Length(0), !close));
    }
    match (chunked, length) {
        // HTTP/1.0 has no chunked coding: the framing is faulty, read to
        // the close (RFC 9112 6.3, item 4)
        (Some(true), _) if minor == 0 => Ok((State::UntilClose, false)),
        (Some(true), l) => Ok((State::Chunked(Chunk::SizeStart), !close && l.is_none())),
        (Some(false), _) => Ok((State::UntilClose, false)),
        (None, Some(n)) if n > BODY_MAX as u64 => Err(ResponseError::BodyTooLarge),
        (None, Some(n)) => Ok((State::Length(n), !close)),
        (None, None) => Ok((State::UntilClose, false)),
    }
}

/// The comma-separated tokens of a list header, trimmed, empty ones skipped.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

/// How one request ended, as the transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered with this status (2xx is a delivery).
    Status(u16),
    /// No status: what went wrong.
    Failed(Failure),
}

/// What went wrong with a request that got no status, in words fit for a
/// log line (`Display`), with a short label for metrics ([`Failure::kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host name did not resolve (or the lookup timed out).
    Dns(String),
    /// The receiver's address refused the connection: which address.
    Refused(String),
    /// The TCP connection failed otherwise (unreachable, ...): the error.
    Connect(String),
    /// TCP connect and TLS handshake took longer than the connect deadline.
    ConnectTimeout,
    /// The TLS handshake or session failed, or `https://` has no CA roots.
    Tls(String),
    /// No complete response head within the response deadline.
    ResponseTimeout,
    /// The bytes that came back are not an acceptable HTTP/1.1 response.
    BadResponse(ResponseError),
    /// The connection closed or broke before a status came back.
    Closed(String),
    /// The transport's bounded queue for the origin (or its bytes in
    /// flight) was full: the request was not started.
    QueueFull,
}

impl Failure {
    /// The label in metrics and the order of [`Failure::KINDS`].
    pub const fn kind(&self) -> &'static str {
        match self {
            Failure::Dns(_) => "dns",
            Failure::Refused(_) => "refused",
            Failure::Connect(_) => "connect",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::Tls(_) => "tls",
            Failure::ResponseTimeout => "timeout",
            Failure::BadResponse(_) => "bad_response",
            Failure::Closed(_) => "closed",
            Failure::QueueFull => "queue_full",
        }
    }

    /// Every label [`Failure::kind`] gives.
    pub const KINDS: [&'static str; 9] = [
        "dns",
        "refused",
        "connect",
        "connect_timeout",
        "tls",
        "timeout",
        "bad_response",
        "closed",
        "queue_full",
    ];
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Dns(e) => write!(f, "name resolution failed: {e}"),
            Failure::Refused(addr) => write!(f, "connection refused by {addr}"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::ConnectTimeout => write!(f, "connect timed out"),
            Failure::Tls(e) => write!(f, "TLS failed: {e}"),
            Failure::ResponseTimeout => write!(f, "response timeout"),
            Failure::BadResponse(e) => write!(f, "{e}"),
            Failure::Closed(e) => write!(f, "connection closed before a response: {e}"),
            Failure::QueueFull => write!(f, "too many requests waiting for this origin"),
        }
    }
}

/// The dispatcher's view of an outcome: a label for the metrics and the
/// words for its log line.
impl From<Outcome> for super::dispatch::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Status(s) => super::dispatch::Outcome::Status(s),
            Outcome::Failed(f) => super::dispatch::Outcome::Failed {
                reason: f.kind(),
                detail: f.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn h(n: &str, v: &str) -> (String, String) {
        (n.to_string(), v.to_string())
    }

    #[test]
    fn encodes_a_post() {
        let req = encode_request(
            &url("http://hooks.test:8080/p?x=1"),
            &[h("X-Pusher-Key", "k"), h("X-Pusher-Signature", "ab")],
            b"{}",
        );
        let want = format!(
            "POST /p?x=1 HTTP/1.1\r\nHost: hooks.test:8080\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nUser-Agent: {USER_AGENT}\r\nX-Pusher-Key: k\r\n\
             X-Pusher-Signature: ab\r\n\r\n{{}}"
        );
        assert_eq!(String::from_utf8(req).unwrap(), want);
        // it parses as a request with the same body
        let req = encode_request(&url("https://h/"), &[], b"[1,2]");
        match crate::http::parse(&req, 1024) {
            crate::http::Parse::Complete(r, n) => {
                assert_eq!(n, req.len());
                assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
                assert_eq!(r.header("host"), Some("h"));
                assert_eq!(r.body, b"[1,2]");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leaves_out_headers_it_cannot_send() {
        let headers = [
            h("Host", "evil"),
            h("content-length", "0"),
            h("Transfer-Encoding", "chunked"),
            h("Connection", "close"),
            h("X-Split", "a\r\nX-Injected: 1"),
            h("X-Nul", "a\0b"),
            h("Bad Name", "v"),
            h("", "v"),
            h("X-Ok", "  spaced\tvalue "),
            h("user-agent", "mine/1"),
        ];
        let req = String::from_utf8(encode_request(&url("http://h/"), &headers, b"")).unwrap();
        assert_eq!(
            req,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\
             X-Ok: spaced\tvalue\r\nuser-agent: mine/1\r\n\r\n"
        );
        assert!(
            header_problem("Host", "x")
                .unwrap()
                .contains("set by revurb")
        );
        assert!(header_problem("X-A", "a\nb").unwrap().contains("control"));
        assert!(header_problem("a:b", "x").unwrap().contains("token"));
        assert_eq!(header_problem("Authorization", "Bearer x"), None);
        // configuration refuses every name the encoder would leave out
        for name in RESERVED {
            assert!(
                crate::config::webhooks::RESERVED_HEADERS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(name)),
                "{name}"
            );
        }
        // a hand-built URL cannot break the request line
        let mut u = url("http://h/");
        u.path = "/a b\r\nX: y".into();
        let req = encode_request(&u, &[], b"");
        assert!(req.starts_with(b"POST /a%20b%0D%0AX:%20y HTTP/1.1\r\n"));
    }

    type Result1 = (Result<Response, ResponseError>, Option<u16>);

    /// Feed `chunks` in order; stop at the first answer; EOF at the end.
    fn run(chunks: &[&[u8]]) -> Result1 {
        let (result, rest) = run_until_done(chunks);
        // a complete response leaves nothing unread
        assert!(!rest, "bytes after the response");
        result
    }

    /// Like `run`, and whether bytes came after the response in a later
    /// chunk (as the transport sees them: on an idle connection).
    fn run_until_done(chunks: &[&[u8]]) -> (Result1, bool) {
        let mut p = ResponseParser::new();
        for (i, c) in chunks.iter().enumerate() {
            match p.feed(c) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    let rest = chunks[i + 1..].iter().any(|c| !c.is_empty());
                    return ((Ok(r), p.status()), rest);
                }
                Err(e) => return ((Err(e), p.status()), false),
            }
        }
        ((p.eof(), p.status()), false)
    }

    fn ok(status: u16, keep_alive: bool) -> Result1 {
        (Ok(Response { status, keep_alive }), Some(status))
    }

    fn err(e: ResponseError, status: Option<u16>) -> Result1 {
        (Err(e), status)
    }

    fn fixtures() -> Vec<(&'static str, Vec<u8>, Result1)> {
        let big_head = format!(
            "HTTP/1.1 200 OK\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(HEAD_MAX)
        );
        let max_head = {
            let base = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: \r\n\r\n".len();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: {}\r\n\r\n",
                "a".repeat(HEAD_MAX - base)
            )
        };
        let big_body = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
            BODY_MAX + 1,
            "x".repeat(BODY_MAX + 1)
        );
        let max_body = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {BODY_MAX}\r\n\r\n{}",
            "x".repeat(BODY_MAX)
        );
        let big_close = format!("HTTP/1.1 200 OK\r\n\r\n{}", "x".repeat(BODY_MAX + 1));
        let big_chunks = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            format!("400\r\n{}\r\n", "x".repeat(0x400)).repeat(BODY_MAX / 0x400)
        );
        let many_headers = format!(
            "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
            "X-A: b\r\n".repeat(MAX_RESPONSE_HEADERS)
        );
        let endless_continue = "HTTP/1.1 100 Continue\r\n\r\n".repeat(HEAD_MAX / 25 + 1);
        use ResponseError::*;
        vec![
            (
                "content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
                ok(200, true),
            ),
            (
                "empty content-length",
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec(),
                ok(202, true),
            ),
            (
                "same content-length twice",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok".to_vec(),
                ok(200, true),
            ),
            (
                "chunked with extensions and trailers",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
                  5;name=\"v;x\"\r\nhello\r\n1a ; a=b\r\nabcdefghijklmnopqrstuvwxyz\r\n\
                  0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n"
                    .to_vec(),
                ok(200, true),
            ),
            (
                "chunked with bare LF",
                b"HTTP/1.1 500 Oops\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n".to_vec(),
                ok(500, true),
            ),
            (
                "chunked beats content-length, not reused",
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n0\r\n\r\n"
                    .to_vec(),
                ok(200, false),
            ),
            (
                "close-delimited",
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it".to_vec(),
                ok(200, false),
            ),
            (
                "close-delimited, not chunked",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz".to_vec(),
                ok(200, false),
            ),
            (
                "100-continue then 200",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                  HTTP/1.1 204 No Content\r\n\r\n"
                    .to_vec(),
                ok(204, true),
            ),
            (
                "connection close",
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
                ok(200, false),
            ),
            (
                "HTTP/1.0 with keep-alive still closes",
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
                ok(200, false),
            ),
            (
                "HTTP/1.0 chunked is read to the close",
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                ok(200, false),
            ),
            (
                "304 has no body",
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n".to_vec(),
                ok(304, true),
            ),
            ("head at the limit", max_head.into_bytes(), ok(200, true)),
            ("body at the limit", max_body.into_bytes(), ok(200, true)),
            ("garbage", b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(), {
                err(Malformed("not HTTP/1.0 or 1.1"), None)
            }),
            (
                "HTTP/2 status line",
                b"HTTP/2 200\r\n\r\n".to_vec(),
                err(Malformed("not HTTP/1.0 or 1.1"), None),
            ),
            (
                "bad header",
                b"HTTP/1.1 200 OK\r\nX Y: z\r\n\r\n".to_vec(),
                err(Malformed("invalid header name"), None),
            ),
            (
                "101",
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec(),
                err(Switched, None),
            ),
            (
                "oversize head",
                big_head.into_bytes(),
                err(HeadTooLarge, None),
            ),
            (
                "endless 100 Continue",
                endless_continue.into_bytes(),
                err(HeadTooLarge, None),
            ),
            (
                "too many headers",
                many_headers.into_bytes(),
                err(TooManyHeaders, None),
            ),
            (
                "oversize content-length",
                big_body.into_bytes(),
                err(BodyTooLarge, Some(200)),
            ),
            (
                "huge content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
                err(BodyTooLarge, Some(200)),
            ),
            (
                "oversize close-delimited body",
                big_close.into_bytes(),
                err(BodyTooLarge, Some(200)),
            ),
            (
                "oversize chunked body",
                big_chunks.into_bytes(),
                err(BodyTooLarge, Some(200)),
            ),
            (
                "oversize chunk size",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n"
                    .to_vec(),
                err(BodyTooLarge, Some(200)),
            ),
            (
                "bad chunk size",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
                err(BadChunk("chunk size is not hexadecimal"), Some(200)),
            ),
            (
                "chunk size with junk",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
                err(BadChunk("invalid chunk size line"), Some(200)),
            ),
            (
                "chunk longer than its size",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"
                    .to_vec(),
                err(BadChunk("chunk data longer than its size"), Some(200)),
            ),
            (
                "bad content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n".to_vec(),
                err(BadContentLength, None),
            ),
            (
                "negative content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(),
                err(BadContentLength, None),
            ),
            (
                "conflicting content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
                err(BadContentLength, None),
            ),
            (
                "closed in the head",
                b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
                err(ClosedEarly, None),
            ),
            (
                "closed in the body",
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
                err(ClosedEarly, Some(200)),
            ),
            (
                "closed in the chunks",
                b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab".to_vec(),
                err(ClosedEarly, Some(503)),
            ),
            ("closed at once", Vec::new(), err(ClosedEarly, None)),
        ]
    }

    #[test]
    fn every_fixture_at_every_split_gives_the_same_answer() {
        for (name, bytes, want) in fixtures() {
            assert_eq!(run(&[&bytes]), want, "{name}: whole");
            // byte by byte
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(run(&singles), want, "{name}: byte by byte");
            // every split offset (every one for the short fixtures, a
            // stride through the long ones to keep the test quick)
            let step = if bytes.len() > 4096 { 97 } else { 1 };
            for at in (0..=bytes.len()).step_by(step) {
                let (a, b) = bytes.split_at(at);
                assert_eq!(run(&[a, b]), want, "{name}: split at {at}");
            }
            // and three pieces around the middle
            for at in (0..bytes.len()).step_by(step.max(7)) {
                let mid = (at + bytes.len()) / 2;
                let pieces = [&bytes[..at], &bytes[at..mid], &bytes[mid..]];
                assert_eq!(run(&pieces), want, "{name}: split at {at} and {mid}");
            }
        }
    }

    #[test]
    fn long_fixtures_at_every_split_near_the_limits() {
        // the long fixtures, split at every offset near where the limits bite
        for (name, bytes, want) in fixtures() {
            if bytes.len() <= 4096 {
                continue;
            }
            let marks = [
                0,
                HEAD_MAX,
                bytes.len().saturating_sub(BODY_MAX),
                bytes.len(),
            ];
            for m in marks {
                for at in m.saturating_sub(70)..(m + 70).min(bytes.len() + 1) {
                    let (a, b) = bytes.split_at(at);
                    assert_eq!(run(&[a, b]), want, "{name}: split at {at}");
                }
            }
        }
    }

    #[test]
    fn mutated_fixtures_split_anywhere_give_the_same_answer() {
        // a small xorshift so the test is the same on every run
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let fixtures: Vec<Vec<u8>> = fixtures()
            .into_iter()
            .map(|f| f.1)
            .filter(|b| b.len() < 4096)
            .collect();
        let alphabet = b"\r\n0123456789abcdefABCDEF:; \t,HTTP/1.0chunkedContent-Length\x00\xff";
        for _ in 0..3000 {
            let mut bytes = fixtures[rand(fixtures.len())].clone();
            for _ in 0..1 + rand(3) {
                if bytes.is_empty() {
                    break;
                }
                let at = rand(bytes.len());
                match rand(3) {
                    0 => bytes[at] = alphabet[rand(alphabet.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, alphabet[rand(alphabet.len())]),
                }
            }
            // bytes after the response make it not reusable whenever they come
            let reusable = |(mut r, rest): (Result1, bool)| {
                if let Ok(resp) = &mut r.0 {
                    resp.keep_alive &= !rest;
                }
                r
            };
            let want = reusable(run_until_done(&[&bytes]));
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            let text = String::from_utf8_lossy(&bytes);
            assert_eq!(reusable(run_until_done(&singles)), want, "{text:?}");
            let at = rand(bytes.len() + 1);
            let (a, b) = bytes.split_at(at);
            assert_eq!(reusable(run_until_done(&[a, b])), want, "{text:?} at {at}");
        }
    }

    #[test]
    fn bytes_after_the_response() {
        let mut p = ResponseParser::new();
        let r = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n")
            .unwrap();
        assert_eq!(
            r,
            Some(Response {
                status: 200,
                keep_alive: false
            })
        );
        assert_eq!(p.feed(b"more"), Err(ResponseError::Finished));
        assert_eq!(p.feed(b""), Err(ResponseError::Finished));
        // a finished parser answers the same until fed more
        let mut p = ResponseParser::new();
        let done = p.feed(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(p.feed(b"").unwrap(), done);
        assert_eq!(p.eof().unwrap(), done.unwrap());
    }

    #[test]
    fn started_and_status() {
        let mut p = ResponseParser::new();
        assert!(!p.started());
        assert_eq!(p.feed(b"").unwrap(), None);
        assert!(!p.started());
        p.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2").unwrap();
        assert!(p.started());
        assert_eq!(p.status(), None); // an interim status is not the status
        p.feed(b"00 OK\r\nContent-Length: 3\r\n\r\na").unwrap();
        assert_eq!(p.status(), Some(200));
        assert_eq!(p.eof(), Err(ResponseError::ClosedEarly));
        assert_eq!(p.status(), Some(200));
    }

    #[test]
    fn failures_have_kinds_and_words() {
        let all = [
            Failure::Dns("x".into()),
            Failure::Refused("x".into()),
            Failure::Connect("x".into()),
            Failure::ConnectTimeout,
            Failure::Tls("x".into()),
            Failure::ResponseTimeout,
            Failure::BadResponse(ResponseError::HeadTooLarge),
            Failure::Closed("x".into()),
            Failure::QueueFull,
        ];
        let kinds: Vec<&str> = all.iter().map(Failure::kind).collect();
        assert_eq!(kinds, Failure::KINDS);
        assert_eq!(
            Failure::BadResponse(ResponseError::HeadTooLarge).to_string(),
            "response head is larger than 16384 bytes"
        );
    }
}
