//! The upgrade's hand-over read as untrusted input (issue 14): a hub built
//! by structured operations (as `hub_ops`) is exported and serialized,
//! then the JSON is cut and spliced with fuzzed bytes, or replaced by
//! fuzzed bytes whole, and read back: as a hub state (`HubState`, checked,
//! then imported into a fresh hub) and as a whole hand-over
//! (`upgrade::Handover`, checked, and its TLS record layers and webhook
//! queues rebuilt as the new image does).
//!
//! Checked: nothing panics; an unchanged export is accepted and imports
//! into a hub that exports the same state and sends nothing; whatever is
//! imported sends nothing and exports a state that passes the check.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::{Apps, Harness, Op};
use libfuzzer_sys::fuzz_target;
use revurb::pusher::Hub;
use revurb::pusher::handover::HubState;
use revurb::tls_record::Records;
use revurb::upgrade::Handover;
use revurb::webhook::dispatch::Dispatcher;

#[derive(Debug, Arbitrary)]
struct Input {
    apps: Apps,
    ops: Vec<Op>,
    /// Where to cut the serialized state, how much to take out, and what
    /// to put in its place.
    at: u32,
    cut: u16,
    insert: Vec<u8>,
    /// Fuzzed bytes read instead, whole.
    raw: Option<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(Hub::new(input.apps.clone().list(), 0x5eed, false));
    for op in input.ops.iter().take(128) {
        h.apply(op);
    }
    h.drain();
    let state = h.hub.export();
    assert_eq!(state.check(), Ok(()), "an export passes its own check");
    let mut bytes = serde_json::to_vec(&state).expect("a state serializes");
    // the apps the hub has now (a reload may have changed them)
    let apps: Vec<_> = h.hub.apps().cloned().collect();
    // unchanged: accepted, and the same state comes back
    let mut fresh = Hub::new(apps.clone(), 7, false);
    let back: HubState = serde_json::from_slice(&bytes).expect("an export parses");
    fresh.import(h.now, back).expect("an export imports");
    assert!(fresh.poll_output().is_none(), "importing sends nothing");
    assert_eq!(
        fresh.export().conns,
        state.conns,
        "the same connections come back"
    );
    // changed
    let at = (input.at as usize).min(bytes.len());
    let end = (at + input.cut as usize).min(bytes.len());
    bytes.splice(at..end, input.insert.iter().copied());
    let bytes = input.raw.unwrap_or(bytes);
    if let Ok(st) = serde_json::from_slice::<HubState>(&bytes) {
        let _ = st.check();
        let mut fresh = Hub::new(apps.clone(), 7, false);
        if fresh.import(h.now, st).is_ok() {
            assert!(fresh.poll_output().is_none(), "importing sends nothing");
            assert_eq!(fresh.export().check(), Ok(()));
        }
    }
    if let Ok(hand) = serde_json::from_slice::<Handover>(&bytes) {
        let _ = hand.check();
        // what the new image rebuilds from the file: TLS record layers and
        // webhook queues, each refused or taken without a panic
        let layers = hand.conns.iter().filter_map(|c| c.tls.as_ref());
        for x in layers.chain(hand.redis.as_ref().and_then(|r| r.tls.as_ref())) {
            let _ = Records::import(x);
        }
        let mut d = Dispatcher::new(0);
        d.reconfigure(&apps);
        let _ = d.import(h.now, hand.webhooks);
    }
});
