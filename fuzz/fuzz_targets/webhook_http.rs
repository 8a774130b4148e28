//! The webhook HTTP client's sans-IO half (`webhook::http`): the response
//! parser on any bytes split anywhere, and the request encoder on any path,
//! headers and body.
//!
//! Checked: feeding the bytes in pieces gives the answer, the error and the
//! status of feeding them at once (bytes after a complete response make it
//! not reusable wherever they come); an error is final; and an encoded
//! request, whatever its headers hold, parses as exactly one request with
//! the same body and no header the encoder should have left out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revurb::http::{self, Parse};
use revurb::webhook::Url;
use revurb::webhook::http::{
    Response, ResponseError, ResponseParser, encode_request, header_problem,
};

type Answer = (Result<Response, ResponseError>, Option<u16>);

/// Feed `pieces`; stop at the first answer (EOF after the last piece).
fn run(pieces: &[&[u8]]) -> Answer {
    let mut p = ResponseParser::new();
    for (i, piece) in pieces.iter().enumerate() {
        match p.feed(piece) {
            Ok(None) => {}
            Ok(Some(mut r)) => {
                if pieces[i + 1..].iter().any(|p| !p.is_empty()) {
                    r.keep_alive = false;
                }
                return (Ok(r), p.status());
            }
            Err(e) => {
                // final: it comes back, whatever follows
                assert_eq!(p.feed(b"more"), Err(e));
                assert_eq!(p.eof(), Err(e));
                return (Err(e), p.status());
            }
        }
    }
    (p.eof(), p.status())
}

fuzz_target!(
    |input: (Vec<u16>, &[u8], String, Vec<(String, String)>, &[u8])| {
        let (cuts, bytes, path, headers, body) = input;

        let whole = run(&[bytes]);
        let mut at: Vec<usize> = cuts
            .iter()
            .map(|c| usize::from(*c) % (bytes.len() + 1))
            .collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for a in at {
            pieces.push(&bytes[from..a]);
            from = a;
        }
        pieces.push(&bytes[from..]);
        assert_eq!(run(&pieces), whole, "cut at {cuts:?}");
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&singles), whole, "byte by byte");

        let Ok(url) = Url::parse(&format!("http://h.test{path}")) else {
            return;
        };
        let req = encode_request(&url, &headers, body);
        match http::parse(&req, req.len()) {
            Parse::Complete(parsed, used) => {
                assert_eq!(used, req.len());
                assert_eq!(parsed.method, "POST");
                assert_eq!(parsed.body, body);
                assert_eq!(parsed.header("host"), Some(url.host_header().as_str()));
                let sent = headers
                    .iter()
                    .filter(|(n, v)| header_problem(n, v).is_none())
                    .count();
                let ua = !headers.iter().any(|(n, v)| {
                    header_problem(n, v).is_none() && n.eq_ignore_ascii_case("user-agent")
                });
                assert_eq!(parsed.headers.len(), 3 + usize::from(ua) + sent);
            }
            other => panic!("the encoded request does not parse: {other:?}"),
        }
    }
);
