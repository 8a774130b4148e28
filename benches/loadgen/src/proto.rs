//! Pure protocol helpers: WebSocket frames, HTTP responses, bench payloads, addresses.

use std::net::{Ipv4Addr, SocketAddr};

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A masked client frame (FIN set).
pub fn masked_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 14);
    out.push(0x80 | (opcode & 0x0f));
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// One frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub fin: bool,
    /// Payload range in the buffer (unmasked frames only).
    pub start: usize,
    pub end: usize,
}

/// Parse a server frame at the start of `buf`: `Ok(None)` if incomplete, `Err` if the
/// server sent a masked frame (servers must not) or an absurd length.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    if buf[1] & 0x80 != 0 {
        return Err("masked server frame".into());
    }
    let (len, head) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > (1 << 30) {
        return Err(format!("frame of {len} bytes"));
    }
    let end = head + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        opcode,
        fin,
        start: head,
        end,
    }))
}

/// The code of a close frame's payload, if it has one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Head of an HTTP response.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpHead {
    pub status: u16,
    /// Bytes of the status line and headers, including the blank line.
    pub head_len: usize,
    pub content_length: Option<usize>,
    /// `Connection: close` was sent.
    pub close: bool,
}

/// Parse an HTTP/1.x response head at the start of `buf`: `Ok(None)` if incomplete.
pub fn parse_http_head(buf: &[u8]) -> Result<Option<HttpHead>, String> {
    let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..pos]).map_err(|_| "non-UTF-8 response head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(HttpHead {
        status,
        head_len: pos + 4,
        content_length,
        close,
    }))
}

/// The number following `key` in `hay`, skipping the JSON punctuation between them
/// (`":`, `\":` when the JSON is inside a JSON string, spaces).
pub fn scan_u64_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let pos = hay.windows(key.len()).position(|w| w == key)?;
    let mut i = pos + key.len();
    let mut skipped = 0;
    while i < hay.len() && matches!(hay[i], b'"' | b'\\' | b':' | b' ') {
        i += 1;
        skipped += 1;
        if skipped > 6 {
            return None;
        }
    }
    let start = i;
    let mut v: u64 = 0;
    while i < hay.len() && hay[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(hay[i] - b'0'))?;
        i += 1;
    }
    (i > start).then_some(v)
}

/// Key names that mark a bench message; chosen not to occur in Pusher's own messages.
pub const SEQ_KEY: &[u8] = b"bseq";
pub const TS_KEY: &[u8] = b"bts";

/// The bench payload: a JSON object text carrying a sequence number and a send time,
/// padded with `x` so the text is about `size` bytes long.
pub fn bench_data(seq: u64, ts_ns: u64, size: usize) -> String {
    let mut s = format!("{{\"bseq\":{seq},\"bts\":{ts_ns},\"pad\":\"");
    let close = "\"}";
    let want = size.saturating_sub(s.len() + close.len());
    s.extend(std::iter::repeat_n('x', want));
    s.push_str(close);
    s
}

/// (seq, send time) of a bench message, from the raw text the server sent.
pub fn parse_bench(msg: &[u8]) -> Option<(u64, u64)> {
    Some((scan_u64_after(msg, SEQ_KEY)?, scan_u64_after(msg, TS_KEY)?))
}

/// Host and port of a `ws://host:port[/...]` or `http://` URL; only loopback addresses.
pub fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url}: expected ws://127.0.0.1:PORT"))?;
    let hostport = rest.split('/').next().unwrap_or("");
    let hostport = if hostport.starts_with("localhost:") {
        hostport.replacen("localhost", "127.0.0.1", 1)
    } else {
        hostport.to_string()
    };
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| format!("{url}: expected ws://127.0.0.1:PORT"))?;
    if !addr.ip().is_loopback() || !addr.is_ipv4() {
        return Err(format!(
            "{url}: the load generator only connects to 127.x.x.x"
        ));
    }
    Ok(addr)
}

/// The port of the server's first stdout line, `revurb: listening on 127.0.0.1:PORT ...`.
pub fn parse_listen_line(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("revurb: listening on ")?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Clients per source address: few, so the kernel finds a free port for connect() at once
/// (an address has ~14 000 ports for connect, searched linearly).
pub const PER_SOURCE: usize = 1000;

/// The loopback source address of the `i`-th client: blocks of [`PER_SOURCE`] per address,
/// over 127.0.0.1..=127.0.0.250, starting at an offset (`salt`) so consecutive runs do not
/// meet the previous run's TIME_WAIT ports.
pub fn source_ip(i: usize, salt: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, (1 + (i / PER_SOURCE + salt) % 250) as u8)
}

/// The `auth` field of a private-channel subscription.
pub fn channel_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    let sig = revurb::auth::hmac_sha256_hex(
        secret.as_bytes(),
        format!("{socket_id}:{channel}").as_bytes(),
    );
    format!("{key}:{sig}")
}

/// The `auth` field of a presence-channel subscription with its `channel_data`.
pub fn presence_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: &str,
) -> String {
    let sig = revurb::auth::hmac_sha256_hex(
        secret.as_bytes(),
        format!("{socket_id}:{channel}:{channel_data}").as_bytes(),
    );
    format!("{key}:{sig}")
}

/// The `auth` field of a `pusher:signin` (user authentication).
pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    let sig = revurb::auth::hmac_sha256_hex(
        secret.as_bytes(),
        format!("{socket_id}::user::{user_data}").as_bytes(),
    );
    format!("{key}:{sig}")
}

/// The WebSocket upgrade request for the app key.
pub fn upgrade_request(server: SocketAddr, key: &str) -> Vec<u8> {
    format!(
        "GET /app/{key}?protocol=7&client=loadgen&version=1.0 HTTP/1.1\r\n\
         Host: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use revurb::websocket::{client, text_frame};

    #[test]
    fn masked_frames_match_the_crate_encoder() {
        for len in [0, 5, 125, 126, 1000, 65_535, 65_536, 70_000] {
            let payload = "a".repeat(len);
            assert_eq!(
                masked_frame(OP_TEXT, payload.as_bytes(), [1, 2, 3, 4]),
                client::text(&payload),
                "length {len}"
            );
        }
    }

    #[test]
    fn parses_server_frames() {
        for len in [0, 3, 125, 126, 65_535, 65_536] {
            let payload = vec![b'z'; len];
            let mut f = text_frame(&payload);
            let total = f.len();
            assert_eq!(
                parse_frame(&f),
                Ok(Some(Frame {
                    opcode: OP_TEXT,
                    fin: true,
                    start: total - len,
                    end: total
                }))
            );
            f.pop();
            if !f.is_empty() {
                assert_eq!(parse_frame(&f[..f.len().min(total - 1)]), Ok(None));
            }
            assert_eq!(parse_frame(&f[..1]), Ok(None));
        }
        assert!(parse_frame(&client::text("hi")).is_err());
        let close = revurb::websocket::close_frame(4100, "over");
        let f = parse_frame(&close).unwrap().unwrap();
        assert_eq!(f.opcode, OP_CLOSE);
        assert_eq!(close_code(&close[f.start..f.end]), Some(4100));
        assert_eq!(close_code(&[]), None);
    }

    #[test]
    fn http_heads() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            parse_http_head(r),
            Ok(Some(HttpHead {
                status: 200,
                head_len: r.len() - 2,
                content_length: Some(2),
                close: false
            }))
        );
        assert_eq!(parse_http_head(&r[..20]), Ok(None));
        let c = b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let h = parse_http_head(c).unwrap().unwrap();
        assert_eq!((h.status, h.close, h.content_length), (413, true, Some(0)));
        let old = b"HTTP/1.0 200 OK\r\n\r\n";
        assert!(parse_http_head(old).unwrap().unwrap().close);
        assert!(parse_http_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_http_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_http_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn bench_payload_round_trip() {
        let data = bench_data(42, 123_456_789, 100);
        assert_eq!(data.len(), 100);
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["bseq"], 42);
        assert_eq!(v["bts"], 123_456_789u64);
        assert!(bench_data(1, 2, 0).len() < 40);
        // As the server relays it: the data string inside a JSON message.
        let msg = serde_json::json!({"event": "bench", "channel": "bench-0", "data": data});
        let text = serde_json::to_string(&msg).unwrap();
        assert!(text.contains("\\\"bseq\\\""));
        assert_eq!(parse_bench(text.as_bytes()), Some((42, 123_456_789)));
        // As a client event relays it: the data an object.
        let ce = br#"{"event":"client-bench","channel":"private-b","data":{"bseq":7,"bts":9}}"#;
        assert_eq!(parse_bench(ce), Some((7, 9)));
        assert_eq!(parse_bench(br#"{"event":"pusher:ping","data":{}}"#), None);
        assert_eq!(scan_u64_after(b"bseq\":", SEQ_KEY), None);
        assert_eq!(
            scan_u64_after(b"bseq: 99999999999999999999999", SEQ_KEY),
            None
        );
        assert_eq!(scan_u64_after(b"bseq\":::::::::1", SEQ_KEY), None);
    }

    #[test]
    fn urls_and_lines() {
        assert_eq!(
            parse_url("ws://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_url("ws://localhost:9/app/x").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_url("ws://10.0.0.1:80").is_err());
        assert!(parse_url("wss://127.0.0.1:80").is_err());
        assert!(parse_url("ws://127.0.0.1").is_err());
        assert_eq!(
            parse_listen_line("revurb: listening on 127.0.0.1:40123\n"),
            Some(40123)
        );
        assert_eq!(
            parse_listen_line("revurb: listening on 127.0.0.1:8080 (path /ws)"),
            Some(8080)
        );
        assert_eq!(parse_listen_line("hello"), None);
    }

    #[test]
    fn source_addresses() {
        assert_eq!(source_ip(0, 0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(PER_SOURCE - 1, 0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(PER_SOURCE, 0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_ip(0, 249), Ipv4Addr::new(127, 0, 0, 250));
        assert_eq!(source_ip(PER_SOURCE, 249), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(250 * PER_SOURCE, 0), Ipv4Addr::new(127, 0, 0, 1));
    }

    #[test]
    fn auth_string() {
        let a = channel_auth("key", "secret", "1234.5678", "private-foo");
        let expected = revurb::auth::hmac_sha256_hex(b"secret", b"1234.5678:private-foo");
        assert_eq!(a, format!("key:{expected}"));
        // The server's own checks accept each signature, and only for what was signed.
        use revurb::auth::{verify_channel_auth, verify_user_auth};
        let sid = "1234.5678";
        assert!(verify_channel_auth(
            "key",
            "secret",
            sid,
            "private-foo",
            None,
            Some(&a)
        ));
        assert!(!verify_channel_auth(
            "key",
            "other",
            sid,
            "private-foo",
            None,
            Some(&a)
        ));
        let data = r#"{"user_id":"u1","user_info":{}}"#;
        let p = presence_auth("key", "secret", sid, "presence-x", data);
        assert!(verify_channel_auth(
            "key",
            "secret",
            sid,
            "presence-x",
            Some(data),
            Some(&p)
        ));
        assert!(!verify_channel_auth(
            "key",
            "secret",
            sid,
            "presence-y",
            Some(data),
            Some(&p)
        ));
        let ud = r#"{"id":"u1"}"#;
        let u = user_auth("key", "secret", sid, ud);
        assert!(verify_user_auth("key", "secret", sid, ud, &u));
        assert!(!verify_user_auth("key", "secret", "1.2", ud, &u));
        assert!(!verify_user_auth("other", "secret", sid, ud, &u));
    }
}
