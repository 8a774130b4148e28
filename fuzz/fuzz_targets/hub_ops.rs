//! The Pusher core (`Hub`) driven by structured operations: connections
//! open, send messages (subscribes with fuzzed names and channel data,
//! client events, sign-ins, pings, anything), close or are kicked; the
//! clock moves; the API triggers and terminates users; apps are reloaded;
//! the server shuts down. The harness (`common`) checks every output, and
//! at the end, with every connection closed, that nothing is left occupied.
#![no_main]

mod common;

use common::{Apps, Harness, Op};
use libfuzzer_sys::fuzz_target;
use revurb::pusher::Hub;

fuzz_target!(|input: (Apps, Vec<Op>)| {
    let (apps, ops) = input;
    let mut h = Harness::new(Hub::new(apps.list(), 0x5eed, false));
    for op in ops.iter().take(256) {
        h.apply(op);
    }
    h.close_all();
    h.check_empty(false);
    // and the clock can still run: cache expiry, nothing to ping
    h.advance(3_600_000);
    assert!(h.open.is_empty());
});
