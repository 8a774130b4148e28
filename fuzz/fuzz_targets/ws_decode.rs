//! The WebSocket decoder fed as the event loop feeds it: bytes arrive in
//! reads split anywhere, are appended to a pending buffer, and the decoder
//! runs until it wants more. The events (and the error that ends the
//! stream, if any) must be those of the whole stream decoded at once, and
//! the bytes left pending the same.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revurb::websocket::{Decoder, OwnedEvent as Owned, Step, WsError};

#[derive(Debug, Arbitrary)]
struct Input {
    /// The message size limit: small, the default, or none at all.
    max: Max,
    /// Sizes of the reads (cycled); 0 is taken as 1.
    reads: Vec<u8>,
    stream: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Max {
    Small(u8),
    Default,
    Unlimited,
}

/// Decode what `pending` holds, as the loop does after each read.
fn pump(
    dec: &mut Decoder,
    pending: &mut Vec<u8>,
    max: usize,
    out: &mut Vec<Owned>,
) -> Result<(), WsError> {
    loop {
        match dec.decode(pending, max)? {
            Step::Incomplete => return Ok(()),
            Step::Frame { used, event } => {
                assert!(used > 0, "a frame uses bytes");
                if let Some(e) = event {
                    out.push(e.into_owned());
                }
                pending.drain(..used);
            }
        }
    }
}

/// (events, the error if any, bytes left pending).
fn run(stream: &[u8], reads: &[u8], max: usize) -> (Vec<Owned>, Option<WsError>, Vec<u8>) {
    let mut dec = Decoder::default();
    let mut pending = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = reads.iter().cycle();
    while at < stream.len() {
        let n = if reads.is_empty() {
            stream.len()
        } else {
            usize::from(*sizes.next().unwrap()).max(1)
        };
        let end = (at + n).min(stream.len());
        pending.extend_from_slice(&stream[at..end]);
        at = end;
        if let Err(e) = pump(&mut dec, &mut pending, max, &mut out) {
            return (out, Some(e), Vec::new());
        }
    }
    (out, None, pending)
}

fuzz_target!(|input: Input| {
    let max = match input.max {
        Max::Small(n) => usize::from(n),
        Max::Default => 10_000,
        Max::Unlimited => usize::MAX,
    };
    let whole = run(&input.stream, &[], max);
    let split = run(&input.stream, &input.reads, max);
    assert_eq!(whole, split);
    for e in &whole.0 {
        match e {
            Owned::Text(t) => assert!(t.len() <= max),
            Owned::Binary(b) => assert!(b.len() <= max),
            Owned::Ping(p) => assert!(p.len() <= 125),
            Owned::Pong | Owned::Close(..) => {}
        }
    }
});
