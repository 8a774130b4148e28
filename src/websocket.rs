//! WebSocket (RFC 6455) for the server side, sans-IO: the upgrade handshake and
//! an incremental frame decoder/encoder built on tungstenite's `FrameHeader`.
//!
//! What it does: validate an upgrade request and build the 101 response; turn
//! client bytes into whole messages (reassembling fragments, unmasking,
//! checking UTF-8 and the message size limit) and control frames; encode
//! server frames (never masked, never fragmented).
//!
//! What it does not do: extensions (no permessage-deflate, like Reverb),
//! subprotocols, or any socket I/O. The decoder keeps no buffer of its own for
//! unfragmented messages: a complete frame is unmasked in place in the caller's
//! buffer and returned as a slice, so an idle connection holds no memory here.

use std::borrow::Cow;
use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::http::{Request, Response};

/// Close codes used by the server (RFC 6455 section 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
}

/// Build the `101 Switching Protocols` answer for a valid upgrade request, or
/// the HTTP error response that explains why the request is not one.
pub fn handshake(req: &Request) -> Result<Vec<u8>, Response> {
    if req.method != "GET" {
        return Err(Response::text(405, "Method not allowed.").header("Allow", "GET"));
    }
    if !req.is_websocket_upgrade() {
        return Err(Response::text(
            400,
            "Bad request: this is a WebSocket endpoint; send `Connection: Upgrade` and `Upgrade: websocket`.",
        ));
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(
            Response::text(426, "Unsupported WebSocket version; use 13.")
                .header("Sec-WebSocket-Version", "13"),
        );
    }
    let key = match req.header("sec-websocket-key") {
        Some(k) if !k.trim().is_empty() && k.len() <= 64 => k.trim(),
        _ => {
            return Err(Response::text(
                400,
                "Bad request: missing Sec-WebSocket-Key.",
            ));
        }
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\nX-Powered-By: revurb\r\n\r\n");
    Ok(out)
}

/// Why a connection must be closed; each maps to a close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// The peer broke the framing rules (unmasked frame, reserved bits or
    /// opcodes, fragmented or oversized control frame, bad continuation).
    Protocol(&'static str),
    /// A message (all fragments together) is larger than the limit.
    TooBig,
    /// A text message (or close reason) that is not UTF-8.
    InvalidUtf8,
}

impl WsError {
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close_code::PROTOCOL_ERROR,
            WsError::TooBig => close_code::TOO_BIG,
            WsError::InvalidUtf8 => close_code::INVALID_DATA,
        }
    }
    pub fn reason(&self) -> &'static str {
        match self {
            WsError::Protocol(why) => why,
            // Ratchet's text, which Reverb's tests and users see.
            WsError::TooBig => "Maximum message size exceeded",
            WsError::InvalidUtf8 => "Invalid UTF-8",
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code())
    }
}

/// One thing the client said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message, checked to be UTF-8.
    Text(Cow<'a, str>),
    /// A whole binary message.
    Binary(Cow<'a, [u8]>),
    Ping(&'a [u8]),
    Pong,
    /// The client's close frame: its code (if any) and reason.
    Close(Option<u16>, &'a str),
}

/// An [`Event`] that owns its bytes, for whoever keeps events past the
/// decoder's next call (tests, the fuzz targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, String),
}

impl Event<'_> {
    pub fn into_owned(self) -> OwnedEvent {
        match self {
            Event::Text(t) => OwnedEvent::Text(t.into_owned()),
            Event::Binary(b) => OwnedEvent::Binary(b.into_owned()),
            Event::Ping(p) => OwnedEvent::Ping(p.to_vec()),
            Event::Pong => OwnedEvent::Pong,
            Event::Close(c, r) => OwnedEvent::Close(c, r.to_string()),
        }
    }
}

/// Result of one decode step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Not enough bytes for the next frame; keep `buf` and read more.
    Incomplete,
    /// `used` bytes were consumed; `event` is `None` for a non-final fragment.
    Frame {
        used: usize,
        event: Option<Event<'a>>,
    },
}

/// Reassembly state for fragmented messages. Empty (no heap) between messages.
#[derive(Debug, Default)]
pub struct Decoder {
    fragments: Vec<u8>,
    /// Opcode of the message being reassembled, if any.
    fragment_kind: Option<Data>,
}

impl Decoder {
    /// A fragmented message being joined: its bytes so far and whether it
    /// is binary (`revurb upgrade` hands them over); `None` between messages.
    pub fn fragments(&self) -> Option<(&[u8], bool)> {
        self.fragment_kind
            .map(|k| (&self.fragments[..], k == Data::Binary))
    }

    /// A decoder in the middle of a fragmented message (see
    /// [`Decoder::fragments`]).
    pub fn resume(fragments: Vec<u8>, binary: bool) -> Decoder {
        Decoder {
            fragments,
            fragment_kind: Some(if binary { Data::Binary } else { Data::Text }),
        }
    }

    /// Decode the next frame at the start of `buf`, unmasking it in place.
    /// `max_message` bounds a whole message (strictly greater fails, as in
    /// Ratchet); it is checked from the frame header, before the payload arrives.
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
        max_message: usize,
    ) -> Result<Step<'a>, WsError> {
        let mut cursor = Cursor::new(&buf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Step::Incomplete),
            Err(_) => return Err(WsError::Protocol("Invalid frame header")),
        };
        let head_len = cursor.position() as usize;
        // RFC 6455 5.2: a 64-bit length has its most significant bit clear,
        // and the length uses the fewest bytes (126 for 126..=65535, 127 only
        // above). The second byte's low 7 bits say which form was used.
        match buf[1] & 0x7f {
            126 if len < 126 => return Err(WsError::Protocol("Non-minimal frame length")),
            127 if len >> 63 != 0 => return Err(WsError::Protocol("Invalid frame length")),
            127 if len <= 0xffff => return Err(WsError::Protocol("Non-minimal frame length")),
            _ => {}
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::Protocol("Reserved bits set"));
        }
        let Some(mask) = header.mask else {
            return Err(WsError::Protocol("Client frames must be masked"));
        };
        let is_control = matches!(header.opcode, OpCode::Control(_));
        if is_control && (len > 125 || !header.is_final) {
            return Err(WsError::Protocol("Invalid control frame"));
        }
        if !is_control && (self.fragments.len() as u64).saturating_add(len) > max_message as u64 {
            return Err(WsError::TooBig);
        }
        // bounded by max_message or 125 above; with a max of usize::MAX a
        // frame no buffer can hold is simply never complete
        let len = usize::try_from(len).map_err(|_| WsError::TooBig)?;
        let Some(total) = head_len.checked_add(len) else {
            return Err(WsError::TooBig);
        };
        if buf.len() < total {
            return Ok(Step::Incomplete);
        }
        let payload = &mut buf[head_len..total];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        let payload: &'a [u8] = payload;
        let event = match header.opcode {
            OpCode::Control(Control::Ping) => Some(Event::Ping(payload)),
            OpCode::Control(Control::Pong) => Some(Event::Pong),
            OpCode::Control(Control::Close) => Some(close_event(payload)?),
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(WsError::Protocol("Reserved opcode"));
            }
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                if self.fragment_kind.is_some() {
                    return Err(WsError::Protocol("Expected a continuation frame"));
                }
                if header.is_final {
                    Some(message(kind, Cow::Borrowed(payload))?)
                } else {
                    self.fragment_kind = Some(kind);
                    self.fragments.extend_from_slice(payload);
                    None
                }
            }
            OpCode::Data(Data::Continue) => {
                let Some(kind) = self.fragment_kind else {
                    return Err(WsError::Protocol("Unexpected continuation frame"));
                };
                self.fragments.extend_from_slice(payload);
                if header.is_final {
                    self.fragment_kind = None;
                    Some(message(
                        kind,
                        Cow::Owned(std::mem::take(&mut self.fragments)),
                    )?)
                } else {
                    None
                }
            }
        };
        Ok(Step::Frame { used: total, event })
    }

    /// True while a fragmented message is being reassembled.
    pub fn in_message(&self) -> bool {
        self.fragment_kind.is_some()
    }
}

fn message(kind: Data, payload: Cow<'_, [u8]>) -> Result<Event<'_>, WsError> {
    if kind == Data::Binary {
        return Ok(Event::Binary(payload));
    }
    match payload {
        Cow::Borrowed(b) => std::str::from_utf8(b)
            .map(|s| Event::Text(Cow::Borrowed(s)))
            .map_err(|_| WsError::InvalidUtf8),
        Cow::Owned(v) => String::from_utf8(v)
            .map(|s| Event::Text(Cow::Owned(s)))
            .map_err(|_| WsError::InvalidUtf8),
    }
}

fn close_event(payload: &[u8]) -> Result<Event<'_>, WsError> {
    match payload.len() {
        0 => Ok(Event::Close(None, "")),
        1 => Err(WsError::Protocol("Invalid close frame")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Event::Close(Some(code), reason))
        }
    }
}

fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    // Writing into a Vec cannot fail.
    let _ = header.format(len, &mut out);
    out.extend_from_slice(payload);
    out
}

/// An unmasked, final text frame.
/// The payload of a complete unmasked frame this server built.
pub fn frame_payload(frame: &[u8]) -> Option<&[u8]> {
    split_frame(frame).map(|(_, payload, _)| payload)
}

/// One complete unmasked frame at the start of `buf`: (opcode, payload,
/// bytes used); `None` when incomplete or not a frame.
pub fn split_frame(buf: &[u8]) -> Option<(OpCode, &[u8], usize)> {
    let mut cursor = std::io::Cursor::new(buf);
    let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
    let start = cursor.position() as usize;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    Some((header.opcode, buf.get(start..end)?, end))
}

pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Data(Data::Text), payload)
}

/// The code to echo in reply to a client's close frame (RFC 6455 5.5.1):
/// its own code when it may be sent on the wire, 1002 for one that may not
/// (below 1000, 5000 and up, or 1004, 1005, 1006, 1015: RFC 6455 7.4.1),
/// 1000 when it sent none.
pub fn close_reply_code(code: Option<u16>) -> u16 {
    match code {
        Some(c) if (1000..5000).contains(&c) && ![1004, 1005, 1006, 1015].contains(&c) => c,
        Some(_) => close_code::PROTOCOL_ERROR,
        None => close_code::NORMAL,
    }
}

/// A close frame with a code and a reason (the reason is cut to fit 123 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OpCode::Control(Control::Close), &payload)
}

pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
    frame(
        OpCode::Control(Control::Ping),
        &payload[..payload.len().min(125)],
    )
}

pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    frame(
        OpCode::Control(Control::Pong),
        &payload[..payload.len().min(125)],
    )
}

/// Client-side helpers (masking), used by tests and the load generator.
pub mod client {
    use super::*;

    /// A masked client frame.
    pub fn frame(opcode: OpCode, is_final: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let header = FrameHeader {
            is_final,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: Some(mask),
        };
        let len = payload.len() as u64;
        let mut out = Vec::with_capacity(header.len(len) + payload.len());
        let _ = header.format(len, &mut out);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    pub fn text(payload: &str) -> Vec<u8> {
        frame(
            OpCode::Data(Data::Text),
            true,
            payload.as_bytes(),
            [1, 2, 3, 4],
        )
    }

    /// Parse one unmasked server frame: (opcode, payload, used).
    pub fn parse_server_frame(buf: &[u8]) -> Option<(OpCode, Vec<u8>, usize)> {
        super::split_frame(buf).map(|(op, payload, used)| (op, payload.to_vec(), used))
    }
}

#[cfg(test)]
mod tests {
    use super::OwnedEvent as Owned;
    use super::client;
    use super::*;

    #[test]
    fn close_reply_code_echoes_only_codes_allowed_on_the_wire() {
        for (sent, echoed) in [
            (None, 1000),
            (Some(1000), 1000),
            (Some(1001), 1001),
            (Some(4000), 4000),
            (Some(4999), 4999),
            (Some(999), 1002),
            (Some(5000), 1002),
            (Some(1004), 1002),
            (Some(1005), 1002),
            (Some(1006), 1002),
            (Some(1015), 1002),
        ] {
            assert_eq!(close_reply_code(sent), echoed, "{sent:?}");
        }
    }

    /// Feed `input` split at `cut` (as two reads) through a decoder the way the
    /// connection does, collecting owned events.
    fn run(input: &[u8], cut: usize, max: usize) -> Result<Vec<Owned>, WsError> {
        let mut dec = Decoder::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in [&input[..cut], &input[cut..]] {
            pending.extend_from_slice(chunk);
            loop {
                match dec.decode(&mut pending, max)? {
                    Step::Incomplete => break,
                    Step::Frame { used, event } => {
                        if let Some(e) = event {
                            out.push(e.into_owned());
                        }
                        pending.drain(..used);
                    }
                }
            }
        }
        assert!(pending.is_empty(), "left-over bytes");
        Ok(out)
    }

    fn every_split(input: &[u8], max: usize) -> Result<Vec<Owned>, WsError> {
        let first = run(input, 0, max);
        for cut in 1..=input.len() {
            assert_eq!(run(input, cut, max), first, "split at {cut}");
        }
        first
    }

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const CONT: OpCode = OpCode::Data(Data::Continue);

    #[test]
    fn text_message_at_every_split() {
        let input = client::text(r#"{"event":"pusher:ping","data":{}}"#);
        let got = every_split(&input, 10_000).unwrap();
        assert_eq!(
            got,
            vec![Owned::Text(r#"{"event":"pusher:ping","data":{}}"#.into())]
        );
    }

    #[test]
    fn medium_and_large_lengths() {
        let long = "x".repeat(300);
        let huge = "y".repeat(70_000);
        let mut input = client::text(&long);
        input.extend(client::text(&huge));
        let got = run(&input, 5, 100_000).unwrap();
        assert_eq!(got, vec![Owned::Text(long), Owned::Text(huge)]);
    }

    #[test]
    fn fragmented_message_with_interleaved_ping() {
        let mut input = client::frame(TEXT, false, b"Hel", [9, 8, 7, 6]);
        input.extend(client::frame(
            OpCode::Control(Control::Ping),
            true,
            b"hi",
            [1, 1, 1, 1],
        ));
        input.extend(client::frame(CONT, false, b"lo, ", [0, 0, 0, 0]));
        input.extend(client::frame(CONT, true, "wörld".as_bytes(), [5, 6, 7, 8]));
        let got = every_split(&input, 10_000).unwrap();
        assert_eq!(
            got,
            vec![
                Owned::Ping(b"hi".to_vec()),
                Owned::Text("Hello, wörld".into())
            ]
        );
    }

    #[test]
    fn control_frames_and_binary() {
        let mut input = client::frame(OpCode::Control(Control::Pong), true, b"", [1, 2, 3, 4]);
        input.extend(client::frame(
            OpCode::Data(Data::Binary),
            true,
            &[0, 255, 1],
            [1, 2, 3, 4],
        ));
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        input.extend(client::frame(
            OpCode::Control(Control::Close),
            true,
            &close,
            [4, 3, 2, 1],
        ));
        let got = every_split(&input, 10).unwrap();
        assert_eq!(
            got,
            vec![
                Owned::Pong,
                Owned::Binary(vec![0, 255, 1]),
                Owned::Close(Some(1000), "bye".into())
            ]
        );
    }

    #[test]
    fn size_limit_is_cumulative_and_strict() {
        // exactly at the limit is fine
        assert!(run(&client::text("12345"), 0, 5).is_ok());
        assert_eq!(run(&client::text("123456"), 0, 5), Err(WsError::TooBig));
        let mut input = client::frame(TEXT, false, b"123", [1, 2, 3, 4]);
        input.extend(client::frame(CONT, true, b"456", [1, 2, 3, 4]));
        assert_eq!(run(&input, 0, 5), Err(WsError::TooBig));
        // detected from the header alone, before the payload arrives
        let big = client::text(&"z".repeat(1000));
        let mut dec = Decoder::default();
        let mut head = big[..8].to_vec(); // 2 + 2 length + 4 mask bytes, no payload
        assert_eq!(dec.decode(&mut head, 10), Err(WsError::TooBig));
        assert_eq!(WsError::TooBig.reason(), "Maximum message size exceeded");
        assert_eq!(WsError::TooBig.close_code(), 1009);
    }

    #[test]
    fn protocol_errors() {
        let unmasked = text_frame(b"hi");
        assert!(matches!(run(&unmasked, 0, 100), Err(WsError::Protocol(_))));
        let cont = client::frame(CONT, true, b"x", [1, 2, 3, 4]);
        assert!(matches!(run(&cont, 0, 100), Err(WsError::Protocol(_))));
        let mut two_starts = client::frame(TEXT, false, b"a", [1, 2, 3, 4]);
        two_starts.extend(client::text("b"));
        assert!(matches!(
            run(&two_starts, 0, 100),
            Err(WsError::Protocol(_))
        ));
        let frag_ping = client::frame(OpCode::Control(Control::Ping), false, b"", [1, 2, 3, 4]);
        assert!(matches!(run(&frag_ping, 0, 100), Err(WsError::Protocol(_))));
        let big_ping = client::frame(
            OpCode::Control(Control::Ping),
            true,
            &[0; 126],
            [1, 2, 3, 4],
        );
        assert!(matches!(run(&big_ping, 0, 1000), Err(WsError::Protocol(_))));
        let mut rsv = client::text("x");
        rsv[0] |= 0x40;
        assert!(matches!(run(&rsv, 0, 100), Err(WsError::Protocol(_))));
        let reserved = client::frame(OpCode::Data(Data::Reserved(3)), true, b"", [1, 2, 3, 4]);
        assert!(matches!(run(&reserved, 0, 100), Err(WsError::Protocol(_))));
    }

    /// A client frame header with the given length bytes after the second
    /// byte's 7-bit length field (`field`), then a mask.
    fn raw_header(field: u8, len_bytes: &[u8]) -> Vec<u8> {
        let mut h = vec![0x81, 0x80 | field];
        h.extend_from_slice(len_bytes);
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn length_with_top_bit_set_is_1002_not_1009() {
        // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0
        let mut head = raw_header(127, &(1u64 << 63 | 5).to_be_bytes());
        let got = Decoder::default().decode(&mut head, 1 << 20);
        assert!(matches!(got, Err(WsError::Protocol(_))), "{got:?}");
        assert_eq!(got.unwrap_err().close_code(), 1002);
        let mut head = raw_header(127, &u64::MAX.to_be_bytes());
        let got = Decoder::default().decode(&mut head, usize::MAX);
        assert!(matches!(got, Err(WsError::Protocol(_))), "{got:?}");
    }

    #[test]
    fn non_minimal_length_encodings_are_1002() {
        // 5 in the 16-bit form, 125 in the 16-bit form, 200 and 65535 in the 64-bit form
        for (field, bytes) in [
            (126u8, 5u16.to_be_bytes().to_vec()),
            (126, 125u16.to_be_bytes().to_vec()),
            (127, 200u64.to_be_bytes().to_vec()),
            (127, 65_535u64.to_be_bytes().to_vec()),
        ] {
            let mut head = raw_header(field, &bytes);
            let got = Decoder::default().decode(&mut head, 1 << 20);
            assert!(
                matches!(got, Err(WsError::Protocol(_))),
                "{bytes:?}: {got:?}"
            );
        }
        // the minimal forms at each boundary are accepted (incomplete: no payload yet)
        for (field, bytes) in [
            (126u8, 126u16.to_be_bytes().to_vec()),
            (126, 65_535u16.to_be_bytes().to_vec()),
            (127, 65_536u64.to_be_bytes().to_vec()),
        ] {
            let mut head = raw_header(field, &bytes);
            let got = Decoder::default().decode(&mut head, 1 << 20);
            assert_eq!(got, Ok(Step::Incomplete), "{bytes:?}");
        }
    }

    #[test]
    fn no_limit_does_not_overflow() {
        // max = usize::MAX: head_len + len overflowed (a panic in debug) for
        // a length near u64::MAX; now refused
        let mut head = raw_header(127, &u64::MAX.to_be_bytes());
        assert!(Decoder::default().decode(&mut head, usize::MAX).is_err());
        // the largest legal length is never complete, no panic
        let mut head = raw_header(127, &(u64::MAX >> 1).to_be_bytes());
        assert_eq!(
            Decoder::default().decode(&mut head, usize::MAX),
            Ok(Step::Incomplete)
        );
        let got = run(&client::text("hello"), 2, usize::MAX).unwrap();
        assert_eq!(got, vec![Owned::Text("hello".into())]);
    }

    #[test]
    fn invalid_utf8_is_1007() {
        let bad = client::frame(TEXT, true, &[0xff, 0xfe], [1, 2, 3, 4]);
        assert_eq!(run(&bad, 0, 100), Err(WsError::InvalidUtf8));
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        // a multi-byte character split across fragments is fine
        let bytes = "é".as_bytes();
        let mut split = client::frame(TEXT, false, &bytes[..1], [1, 2, 3, 4]);
        split.extend(client::frame(CONT, true, &bytes[1..], [1, 2, 3, 4]));
        assert_eq!(run(&split, 0, 100).unwrap(), vec![Owned::Text("é".into())]);
    }

    #[test]
    fn server_frames_round_trip() {
        let f = text_frame(b"hello");
        assert_eq!(f, b"\x81\x05hello");
        let (op, payload, used) = client::parse_server_frame(&f).unwrap();
        assert_eq!((op, payload.as_slice(), used), (TEXT, &b"hello"[..], 7));
        let c = close_frame(4200, "Server shutting down");
        let (op, payload, _) = client::parse_server_frame(&c).unwrap();
        assert_eq!(op, OpCode::Control(Control::Close));
        assert_eq!(&payload[..2], &4200u16.to_be_bytes());
        assert_eq!(&payload[2..], b"Server shutting down");
        let long = "é".repeat(100);
        let c = close_frame(1000, &long);
        assert!(c.len() <= 2 + 125);
        assert_eq!(pong_frame(b"abc"), b"\x8a\x03abc");
        assert_eq!(ping_frame(b""), b"\x89\x00");
        let big = text_frame(&[b'a'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
    }
}
