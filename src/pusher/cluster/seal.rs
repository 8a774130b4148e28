//! The signature on every message of the cluster bus (revurb-scaling(7),
//! "Signed messages").
//!
//! Anyone who can `PUBLISH` on the Redis channel could otherwise make every
//! node deliver an event or restart. A node signs each envelope with
//! HMAC-SHA256 as it hands it to Redis, and accepts only messages signed
//! with its own key: nodes holding the same secret and channel.
//!
//! The wire form is the envelope's JSON with two members appended, so it is
//! still one JSON object:
//!
//! ```text
//! {"v":1,"node":"…","seq":7,"type":"heartbeat","ts":1795443772123,"mac":"<64 hex>"}
//! ```
//!
//! `ts` is the sender's Unix time in milliseconds when the message went to
//! Redis; `mac` is the HMAC of every byte before `,"mac":` (the envelope and
//! `ts`). The key is bound to the channel name, and comes from a dedicated
//! secret (`REVERB_SCALING_SECRET`) or, by default, from every configured
//! app's id and secret ([`Seal::new`]).
//!
//! This module only signs and checks bytes; what a time or a replay means is
//! the cluster part's (`ts` windows, seq rules).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::pusher::App;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key of the key derivation: a different purpose than any other
/// HMAC revurb computes with an app secret, so no bus key is ever a
/// signature a client or API caller could be shown.
const DERIVE_LABEL: &[u8] = b"revurb cluster bus v1";
/// `,"mac":"` + 64 hex digits + `"}`.
const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;
const TS_FIELD: &[u8] = b",\"ts\":";

/// Where the key came from (said in the logs, never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `REVERB_SCALING_SECRET`.
    Secret,
    /// Every app's id and secret.
    Apps,
}

/// A bus key: signs what this node publishes and checks what it receives.
#[derive(Clone)]
pub struct Seal {
    key: [u8; 32],
    pub origin: Origin,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the key stays out of debug output and logs
        write!(f, "Seal({:?})", self.origin)
    }
}

/// Why a message was refused before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `ts` and `mac` in the expected place.
    Unsigned,
    /// A `mac` that is not this key's HMAC of the message.
    BadSignature,
}

impl Seal {
    /// The key of the bus on `channel`: from `secret` when one is given,
    /// else from every app's id and secret (sorted by id, each length-
    /// prefixed so no two app lists give the same input).
    pub fn new<'a>(
        channel: &str,
        secret: Option<&str>,
        apps: impl IntoIterator<Item = &'a App>,
    ) -> Seal {
        let mut input = Vec::new();
        put(&mut input, channel.as_bytes());
        let origin = match secret {
            Some(s) => {
                input.extend_from_slice(b"secret");
                put(&mut input, s.as_bytes());
                Origin::Secret
            }
            None => {
                input.extend_from_slice(b"apps");
                let mut sorted: Vec<&App> = apps.into_iter().collect();
                sorted.sort_by(|a, b| a.id.cmp(&b.id));
                for a in sorted {
                    put(&mut input, a.id.as_bytes());
                    put(&mut input, a.secret.as_bytes());
                }
                Origin::Apps
            }
        };
        Seal {
            key: hmac(DERIVE_LABEL, &[&input]),
            origin,
        }
    }

    /// Whether two seals have the same key (after a reload).
    pub fn same_key(&self, other: &Seal) -> bool {
        crate::auth::constant_time_eq(&self.key, &other.key)
    }

    /// The signed wire form of `envelope` (a JSON object) sent at `ts`.
    pub fn seal(&self, envelope: &[u8], ts: u64) -> Vec<u8> {
        let body = envelope.strip_suffix(b"}").unwrap_or(envelope);
        let mut out = Vec::with_capacity(body.len() + 32 + MAC_SUFFIX_LEN);
        out.extend_from_slice(body);
        out.extend_from_slice(TS_FIELD);
        out.extend_from_slice(ts.to_string().as_bytes());
        let mac = hmac(&self.key, &[&out]);
        out.extend_from_slice(b",\"mac\":\"");
        out.extend_from_slice(hex::encode(mac).as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }

    /// Check a message: its envelope (the JSON object without `ts` and
    /// `mac`) and `ts`, or why it is refused. The MAC is compared in
    /// constant time.
    pub fn open(&self, wire: &[u8]) -> Result<(Vec<u8>, u64), Refusal> {
        let (signed, mac_hex) = split_mac(wire).ok_or(Refusal::Unsigned)?;
        let (envelope, ts) = split_ts(signed).ok_or(Refusal::Unsigned)?;
        let mut expected = [0u8; 64];
        let mac = hmac(&self.key, &[signed]);
        hex::encode_to_slice(mac, &mut expected).map_err(|_| Refusal::BadSignature)?;
        if !crate::auth::constant_time_eq(&expected, mac_hex) {
            return Err(Refusal::BadSignature);
        }
        let mut out = envelope.to_vec();
        out.push(b'}');
        Ok((out, ts))
    }
}

/// The unsigned envelope of a message this node signed (a publish handed
/// back by a failed publisher is signed again, with a new `ts`, when it goes
/// out again); `wire` itself when it is not signed.
pub fn strip(wire: &[u8]) -> Vec<u8> {
    match split_mac(wire).and_then(|(signed, _)| split_ts(signed)) {
        Some((envelope, _)) => {
            let mut out = envelope.to_vec();
            out.push(b'}');
            out
        }
        None => wire.to_vec(),
    }
}

/// (everything before `,"mac":"`, the 64 hex digits).
fn split_mac(wire: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = wire.len().checked_sub(MAC_SUFFIX_LEN)?;
    let (signed, suffix) = wire.split_at(at);
    let hex = suffix.strip_prefix(b",\"mac\":\"")?.strip_suffix(b"\"}")?;
    Some((signed, hex))
}

/// (the envelope without its closing brace, `ts`).
fn split_ts(signed: &[u8]) -> Option<(&[u8], u64)> {
    let at = signed
        .windows(TS_FIELD.len())
        .rposition(|w| w == TS_FIELD)?;
    let digits = &signed[at + TS_FIELD.len()..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ts = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((&signed[..at], ts))
}

/// Append `bytes` with its length, so concatenations cannot collide.
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length: keying cannot fail
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, secret: &str) -> App {
        App::new(id, "key", secret)
    }

    const ENV: &[u8] = br#"{"v":1,"node":"n","seq":3,"type":"heartbeat"}"#;

    #[test]
    fn a_sealed_message_opens_to_its_envelope_and_time() {
        let s = Seal::new("reverb", None, &[app("1", "s")]);
        let wire = s.seal(ENV, 1_795_443_772_123);
        let text = String::from_utf8(wire.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"v":1,"node":"n","seq":3,"type":"heartbeat","ts":1795443772123,"mac":""#
            ),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(v["mac"].as_str().unwrap().len(), 64);
        assert_eq!(s.open(&wire), Ok((ENV.to_vec(), 1_795_443_772_123)));
        assert_eq!(strip(&wire), ENV.to_vec());
        assert_eq!(strip(ENV), ENV.to_vec());
    }

    #[test]
    fn unsigned_tampered_and_foreign_keys_are_refused() {
        let s = Seal::new("reverb", None, &[app("1", "s")]);
        let wire = s.seal(ENV, 5);
        assert_eq!(s.open(ENV), Err(Refusal::Unsigned));
        assert_eq!(s.open(b""), Err(Refusal::Unsigned));
        // every single byte flipped before the MAC is caught
        for i in 0..wire.len() - MAC_SUFFIX_LEN {
            let mut t = wire.clone();
            t[i] ^= 0x01;
            assert!(s.open(&t).is_err(), "byte {i}");
        }
        let mut t = wire.clone();
        let n = t.len();
        t[n - 3] = if t[n - 3] == b'0' { b'1' } else { b'0' };
        assert_eq!(s.open(&t), Err(Refusal::BadSignature));
        for other in [
            Seal::new("reverb", None, &[app("1", "other")]),
            Seal::new("reverb", None, &[app("1", "s"), app("2", "t")]),
            Seal::new("other-channel", None, &[app("1", "s")]),
            Seal::new("reverb", Some("s"), &[app("1", "s")]),
        ] {
            assert!(!other.same_key(&s));
            assert_eq!(other.open(&wire), Err(Refusal::BadSignature));
        }
    }

    #[test]
    fn the_derived_key_ignores_app_order_and_the_secret_ignores_apps() {
        let a = Seal::new("c", None, &[app("1", "s"), app("2", "t")]);
        let b = Seal::new("c", None, &[app("2", "t"), app("1", "s")]);
        assert!(a.same_key(&b));
        // length prefixes: ("12","3") is not ("1","23")
        let c = Seal::new("c", None, &[app("12", "3")]);
        let d = Seal::new("c", None, &[app("1", "23")]);
        assert!(!c.same_key(&d));
        let e = Seal::new("c", Some("k"), &[app("1", "s")]);
        let f = Seal::new("c", Some("k"), &[]);
        assert!(e.same_key(&f));
        assert_eq!(e.origin, Origin::Secret);
        assert_eq!(a.origin, Origin::Apps);
    }
}
