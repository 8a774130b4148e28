//! The HTTP request parser (`http::parse`) on any bytes, with any limit.
//!
//! Checked: a complete request used no more bytes than it had and within the
//! limit, parses the same from exactly those bytes, and every shorter prefix
//! is incomplete; what the loop does next with a request (headers,
//! keep-alive, the WebSocket handshake, an error response) does not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revurb::http::{self, Parse, Response};

fuzz_target!(|input: (u16, u16, &[u8])| {
    let (limit, cut, buf) = input;
    let max = usize::from(limit).max(1);
    match http::parse(buf, max) {
        Parse::Complete(req, used) => {
            assert!(
                used <= buf.len() && used <= max,
                "used {used} of {}",
                buf.len()
            );
            assert_eq!(
                http::parse(&buf[..used], max),
                Parse::Complete(req.clone(), used)
            );
            let cut = usize::from(cut) % used;
            assert_eq!(
                http::parse(&buf[..cut], max),
                Parse::Incomplete,
                "prefix {cut}"
            );
            let _ = req.keep_alive();
            let _ = req.header("content-type");
            if req.is_websocket_upgrade() {
                match revurb::websocket::handshake(&req) {
                    Ok(answer) => assert!(answer.starts_with(b"HTTP/1.1 101 ")),
                    Err(resp) => {
                        let _ = resp.to_bytes(true);
                    }
                }
            }
        }
        Parse::Incomplete => assert!(buf.len() <= max),
        Parse::Error(e) => {
            let bytes = Response::text(e.status(), e.message()).to_bytes(true);
            assert!(bytes.starts_with(b"HTTP/1.1 "));
        }
    }
});
