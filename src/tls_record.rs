//! The TLS 1.3 record layer of an established, idle-capable connection,
//! sans-IO: the traffic keys rustls negotiated, and nothing else.
//!
//! Why: a rustls `ServerConnection` keeps about 7 KB per connection after
//! its handshake (a 4 KiB receive buffer, the 1.2 KB struct, the handshake
//! reassembly buffer, the key schedule, its queues), and none of it can be
//! given back while the connection lives (measured with heaptrack, issue
//! 15). Once a TLS 1.3 handshake is over and the connection is quiet,
//! `conn.rs` asks rustls for the traffic secrets
//! (`dangerous_extract_secrets`, the kTLS hand-off) and drops the session;
//! from then on a [`Records`] holds the two AEAD keys (ring), their IVs and
//! sequence numbers (about 1.1 KB with AES-256-GCM), and the raw keys so
//! that `revurb upgrade` can hand the layer to the new binary as plain
//! data ([`Records::export`], [`Records::import`]), and lends buffers only
//! while bytes move: an incomplete incoming record is kept in `partial`,
//! sealed records the socket did not take in `out`; both are empty, and
//! freed, when the connection is idle.
//!
//! What it does (RFC 8446 section 5): application data both ways, records
//! of at most 2^14 bytes of plaintext, the peer's `close_notify` (end of
//! stream) and ours. What it refuses, closing the connection: any other
//! alert, and post-handshake handshake messages (a client `KeyUpdate`;
//! browsers and the Pusher clients do not send one). TLS 1.2 sessions are
//! not handed over and stay with rustls.
//!
//! It does no I/O: [`Records::open`] decrypts records in place in a buffer
//! the caller read into, [`Records::seal`] appends records to `out`.

use std::fmt;

use ring::aead::{
    AES_128_GCM, AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce,
    UnboundKey,
};
use rustls::ConnectionTrafficSecrets;

/// Largest plaintext in one record.
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Record header: type, legacy version, length.
pub const HEADER: usize = 5;
/// Largest record on the wire (RFC 8446 5.2: at most 2^14 + 256 of ciphertext).
pub const MAX_RECORD: usize = HEADER + MAX_PLAINTEXT + 256;
/// The AEAD tag of every suite TLS 1.3 uses.
const TAG: usize = 16;
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;

/// Why a record was refused; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not an application_data record, or a length out of bounds.
    Malformed,
    /// The AEAD tag did not verify.
    Decrypt,
    /// An alert other than close_notify.
    Alert(u8),
    /// A post-handshake handshake message (KeyUpdate).
    Handshake,
    /// The sequence number would wrap.
    Exhausted,
    /// A cipher suite other than the TLS 1.3 AEADs.
    Unsupported,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Malformed => write!(f, "malformed TLS record"),
            RecordError::Decrypt => write!(f, "TLS record failed to decrypt"),
            RecordError::Alert(d) => write!(f, "TLS alert {d}"),
            RecordError::Handshake => write!(f, "post-handshake TLS message not supported"),
            RecordError::Exhausted => write!(f, "TLS sequence numbers exhausted"),
            RecordError::Unsupported => write!(f, "TLS cipher suite not supported"),
        }
    }
}

impl std::error::Error for RecordError {}

/// One direction: its key, IV and the next record's sequence number.
struct Half {
    key: LessSafeKey,
    /// The suite and the raw key, kept for `revurb upgrade` (ring's key
    /// cannot give its bytes back): a few dozen bytes per connection.
    suite: Suite,
    raw: [u8; 32],
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// Records this key may protect (RFC 8446 5.5); past it the connection
    /// is closed, since these keys cannot be updated.
    limit: u64,
}

/// RFC 8446 5.5: AES-GCM keys protect at most 2^24.5 records; rustls updates
/// its keys at 2^24, and so do we, by closing the connection there (a
/// handed-over connection has no key schedule left to run a KeyUpdate).
/// A client that stays connected through 16.7 million records reconnects.
pub const AES_GCM_RECORD_LIMIT: u64 = 1 << 24;

impl Half {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Half, RecordError> {
        let (suite, key, iv): (Suite, &[u8], &[u8]) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (Suite::Aes128Gcm, key.as_ref(), iv.as_ref())
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (Suite::Aes256Gcm, key.as_ref(), iv.as_ref())
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Suite::Chacha20Poly1305, key.as_ref(), iv.as_ref())
            }
            _ => return Err(RecordError::Unsupported),
        };
        Half::from_parts(suite, key, iv, seq)
    }

    fn from_parts(suite: Suite, key: &[u8], iv: &[u8], seq: u64) -> Result<Half, RecordError> {
        let (alg, limit): (&'static Algorithm, u64) = match suite {
            Suite::Aes128Gcm => (&AES_128_GCM, AES_GCM_RECORD_LIMIT),
            Suite::Aes256Gcm => (&AES_256_GCM, AES_GCM_RECORD_LIMIT),
            // the sequence number wraps first (RFC 8446 5.5)
            Suite::Chacha20Poly1305 => (&CHACHA20_POLY1305, u64::MAX),
        };
        if key.len() != alg.key_len() || key.len() > 32 {
            return Err(RecordError::Unsupported);
        }
        let unbound = UnboundKey::new(alg, key).map_err(|_| RecordError::Unsupported)?;
        let iv: [u8; NONCE_LEN] = iv.try_into().map_err(|_| RecordError::Unsupported)?;
        let mut raw = [0u8; 32];
        raw[..key.len()].copy_from_slice(key);
        Ok(Half {
            key: LessSafeKey::new(unbound),
            suite,
            raw,
            iv,
            seq,
            limit,
        })
    }

    fn export(&self) -> HalfExport {
        let len = match self.suite {
            Suite::Aes128Gcm => 16,
            Suite::Aes256Gcm | Suite::Chacha20Poly1305 => 32,
        };
        HalfExport {
            key: hex::encode(&self.raw[..len]),
            iv: hex::encode(self.iv),
            seq: self.seq,
        }
    }

    fn import(suite: Suite, h: &HalfExport) -> Result<Half, RecordError> {
        let key = hex::decode(&h.key).map_err(|_| RecordError::Unsupported)?;
        let iv = hex::decode(&h.iv).map_err(|_| RecordError::Unsupported)?;
        Half::from_parts(suite, &key, &iv, h.seq)
    }

    /// The per-record nonce (RFC 8446 5.3), and the sequence number moved on.
    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        let seq = self.seq;
        if seq >= self.limit {
            return Err(RecordError::Exhausted);
        }
        self.seq = seq.checked_add(1).ok_or(RecordError::Exhausted)?;
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// The TLS 1.3 AEADs a [`Records`] layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

/// One direction as plain data: key and IV (hex) and the next sequence
/// number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HalfExport {
    pub key: String,
    pub iv: String,
    pub seq: u64,
}

/// A [`Records`] layer as plain data, for `revurb upgrade`: the traffic
/// keys and sequence numbers both ways, the incomplete incoming record and
/// the sealed bytes not yet written (hex). The new process goes on with
/// the next sequence numbers, so no nonce is ever used twice, provided the
/// old one seals nothing after exporting (it executes the new binary next).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordsExport {
    pub suite: Suite,
    pub rx: HalfExport,
    pub tx: HalfExport,
    pub partial: String,
    pub unsent: String,
    pub peer_closed: bool,
}

/// What [`Records::open`] found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext bytes, now at the front of the buffer.
    pub plain: usize,
    /// Bytes of whole records used; the rest is an incomplete record.
    pub consumed: usize,
    /// The peer sent close_notify (nothing after it is read).
    pub closed: bool,
}

/// The record layer of one connection after its handshake.
pub struct Records {
    rx: Half,
    tx: Half,
    /// An incomplete incoming record (empty, unallocated when idle).
    pub partial: Vec<u8>,
    /// Sealed records not yet taken by the socket, from `out_offset`.
    pub out: Vec<u8>,
    pub out_offset: usize,
    /// The peer's close_notify has been read.
    pub peer_closed: bool,
}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("rx_seq", &self.rx.seq)
            .field("tx_seq", &self.tx.seq)
            .field("partial", &self.partial.len())
            .field("out", &(self.out.len() - self.out_offset))
            .finish()
    }
}

impl Records {
    /// The record layer for the secrets rustls handed over (TLS 1.3 only).
    pub fn new(secrets: rustls::ExtractedSecrets) -> Result<Records, RecordError> {
        let (rx_seq, rx) = secrets.rx;
        let (tx_seq, tx) = secrets.tx;
        Ok(Records {
            rx: Half::new(rx_seq, rx)?,
            tx: Half::new(tx_seq, tx)?,
            partial: Vec::new(),
            out: Vec::new(),
            out_offset: 0,
            peer_closed: false,
        })
    }

    /// Everything this layer holds, for the hand-over (see [`RecordsExport`]).
    pub fn export(&self) -> RecordsExport {
        RecordsExport {
            suite: self.tx.suite,
            rx: self.rx.export(),
            tx: self.tx.export(),
            partial: hex::encode(&self.partial),
            unsent: hex::encode(self.unsent()),
            peer_closed: self.peer_closed,
        }
    }

    /// The layer an upgraded process goes on with. The file is untrusted:
    /// a key or IV of the wrong length, or buffers that are not hex or too
    /// large, are refused.
    pub fn import(x: &RecordsExport) -> Result<Records, RecordError> {
        let partial = hex::decode(&x.partial).map_err(|_| RecordError::Malformed)?;
        let out = hex::decode(&x.unsent).map_err(|_| RecordError::Malformed)?;
        if partial.len() > MAX_RECORD {
            return Err(RecordError::Malformed);
        }
        Ok(Records {
            rx: Half::import(x.suite, &x.rx)?,
            tx: Half::import(x.suite, &x.tx)?,
            partial,
            out,
            out_offset: 0,
            peer_closed: x.peer_closed,
        })
    }

    /// Decrypt the whole records at the front of `buf` in place and move
    /// their application data to the front. Stops after a close_notify.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, RecordError> {
        let mut at = 0;
        let mut plain = 0;
        while buf.len() - at >= HEADER {
            let header: [u8; HEADER] =
                [buf[at], buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]];
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            if header[0] != APPLICATION_DATA
                || header[1] != 3
                || len < TAG + 1
                || HEADER + len > MAX_RECORD
            {
                return Err(RecordError::Malformed);
            }
            if buf.len() - at < HEADER + len {
                break;
            }
            let nonce = self.rx.next_nonce()?;
            let body = &mut buf[at + HEADER..at + HEADER + len];
            let inner = self
                .rx
                .key
                .open_in_place(nonce, Aad::from(header), body)
                .map_err(|_| RecordError::Decrypt)?;
            // strip the padding; the last non-zero byte is the real type
            let end = inner
                .iter()
                .rposition(|&b| b != 0)
                .ok_or(RecordError::Malformed)?;
            let kind = inner[end];
            if end > MAX_PLAINTEXT {
                return Err(RecordError::Malformed);
            }
            let start = at + HEADER;
            at += HEADER + len;
            match kind {
                APPLICATION_DATA => {
                    buf.copy_within(start..start + end, plain);
                    plain += end;
                }
                ALERT => {
                    let body = &buf[start..start + end];
                    return match body {
                        [_, 0] => Ok(Opened {
                            plain,
                            consumed: at,
                            closed: true,
                        }),
                        [_, d] => Err(RecordError::Alert(*d)),
                        _ => Err(RecordError::Malformed),
                    };
                }
                HANDSHAKE => return Err(RecordError::Handshake),
                _ => return Err(RecordError::Malformed),
            }
        }
        Ok(Opened {
            plain,
            consumed: at,
            closed: false,
        })
    }

    /// Append `plain` to `out` as application_data records.
    pub fn seal(&mut self, plain: &[u8]) -> Result<(), RecordError> {
        for piece in plain.chunks(MAX_PLAINTEXT) {
            self.seal_one(APPLICATION_DATA, piece)?;
        }
        Ok(())
    }

    /// Append a close_notify alert to `out`.
    pub fn seal_close_notify(&mut self) -> Result<(), RecordError> {
        self.seal_one(ALERT, &[1, 0])
    }

    /// Sealed bytes waiting for the socket.
    pub fn unsent(&self) -> &[u8] {
        &self.out[self.out_offset..]
    }

    /// The socket took `n` more bytes; the buffer is freed once all are gone.
    pub fn sent(&mut self, n: usize) {
        self.out_offset += n;
        if self.out_offset >= self.out.len() {
            self.out = Vec::new();
            self.out_offset = 0;
        }
    }

    fn seal_one(&mut self, kind: u8, plain: &[u8]) -> Result<(), RecordError> {
        let len = plain.len() + 1 + TAG;
        let [hi, lo] = (len as u16).to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, hi, lo];
        let nonce = self.tx.next_nonce()?;
        let start = self.out.len();
        self.out.reserve(HEADER + len);
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(plain);
        self.out.push(kind);
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.out[start + HEADER..])
            .map_err(|_| RecordError::Exhausted)?;
        self.out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConnection, ServerConnection};
    use std::io::{Read, Write};
    use std::sync::Arc;

    #[test]
    fn aes_gcm_keys_stop_at_the_rfc_8446_limit_and_chacha_does_not() {
        use rustls::crypto::cipher::{AeadKey, Iv};
        let aes = || ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::new([1u8; 12]),
        };
        let mut half = Half::new(AES_GCM_RECORD_LIMIT - 1, aes()).unwrap();
        assert!(
            half.next_nonce().is_ok(),
            "the last record the key may protect"
        );
        assert!(matches!(half.next_nonce(), Err(RecordError::Exhausted)));
        let chacha = ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::new([1u8; 12]),
        };
        let mut half = Half::new(AES_GCM_RECORD_LIMIT, chacha).unwrap();
        assert!(half.next_nonce().is_ok());
        let mut records = Records::new(rustls::ExtractedSecrets {
            tx: (AES_GCM_RECORD_LIMIT, aes()),
            rx: (0, aes()),
        })
        .unwrap();
        assert_eq!(records.seal(b"one more"), Err(RecordError::Exhausted));
    }

    /// A server (secret extraction on) and a client trusting its fresh
    /// self-signed `localhost` certificate, with these protocol versions
    /// and, if given, only this cipher suite (also `conn`'s tests).
    pub(crate) fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
        suite: Option<rustls::SupportedCipherSuite>,
    ) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(s) = suite {
            provider.cipher_suites = vec![s];
        }
        let provider = Arc::new(provider);
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        server.enable_secret_extraction = true;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    fn pair(suite: Option<rustls::SupportedCipherSuite>) -> (ClientConnection, ServerConnection) {
        let (server, client) = configs(&[&rustls::version::TLS13], suite);
        let c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
        let s = ServerConnection::new(server).unwrap();
        (c, s)
    }

    /// Move records between the two until neither has anything to say.
    fn pump(c: &mut ClientConnection, s: &mut ServerConnection) {
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                s.read_tls(&mut &buf[..]).unwrap();
                s.process_new_packets().unwrap();
            }
            let mut back = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut back).unwrap();
            }
            if !back.is_empty() {
                c.read_tls(&mut &back[..]).unwrap();
                c.process_new_packets().unwrap();
            }
            if buf.is_empty() && back.is_empty() {
                return;
            }
        }
    }

    fn established(suite: Option<rustls::SupportedCipherSuite>) -> (ClientConnection, Records) {
        let (mut c, mut s) = pair(suite);
        pump(&mut c, &mut s);
        assert!(!s.is_handshaking() && !c.is_handshaking());
        let r = Records::new(s.dangerous_extract_secrets().unwrap()).unwrap();
        (c, r)
    }

    fn client_records(c: &mut ClientConnection, data: &[u8]) -> Vec<u8> {
        c.writer().write_all(data).unwrap();
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        wire
    }

    fn client_reads(c: &mut ClientConnection, wire: &[u8]) -> (Vec<u8>, bool) {
        let mut rd = wire;
        let mut got = Vec::new();
        let mut closed = false;
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
            closed = match c.reader().read_to_end(&mut got) {
                Ok(_) => true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Err(e) => panic!("{e}"),
            };
        }
        (got, closed)
    }

    #[test]
    fn both_ways_with_every_suite() {
        let suites = [
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        for suite in suites {
            let (mut c, mut r) = established(Some(suite));
            for round in 0..3 {
                let msg = format!("hello {round} from the client").into_bytes();
                let mut wire = client_records(&mut c, &msg);
                let o = r.open(&mut wire).unwrap();
                assert_eq!((o.consumed, o.closed), (wire.len(), false));
                assert_eq!(&wire[..o.plain], &msg[..]);

                let reply = vec![b'x'; 40_000 + round];
                r.seal(&reply).unwrap();
                let sealed = r.unsent().to_vec();
                r.sent(sealed.len());
                assert!(r.out.is_empty() && r.out.capacity() == 0);
                let (got, closed) = client_reads(&mut c, &sealed);
                assert_eq!(got, reply);
                assert!(!closed);
            }
        }
    }

    #[test]
    fn records_cut_anywhere() {
        let (mut c, mut r) = established(None);
        let mut wire = client_records(&mut c, b"first");
        wire.extend(client_records(&mut c, &[7u8; 20_000]));
        wire.extend(client_records(&mut c, b"last"));
        let mut expect = b"first".to_vec();
        expect.extend([7u8; 20_000]);
        expect.extend(b"last");
        for cut in [1, 4, 5, 6, 30, 5000, 16_500, 20_040] {
            let (mut c2, mut r2) = established(None);
            let mut wire = client_records(&mut c2, b"first");
            wire.extend(client_records(&mut c2, &[7u8; 20_000]));
            wire.extend(client_records(&mut c2, b"last"));
            // feed the first `cut` bytes, keep the tail like conn.rs does
            let mut got = Vec::new();
            let mut held: Vec<u8> = Vec::new();
            for part in [&wire[..cut.min(wire.len())], &wire[cut.min(wire.len())..]] {
                let mut buf = std::mem::take(&mut held);
                buf.extend_from_slice(part);
                let o = r2.open(&mut buf).unwrap();
                got.extend_from_slice(&buf[..o.plain]);
                held = buf[o.consumed..].to_vec();
            }
            assert!(held.is_empty());
            assert_eq!(got, expect, "cut at {cut}");
        }
        let o = r.open(&mut wire).unwrap();
        assert_eq!(&wire[..o.plain], &expect[..]);
    }

    #[test]
    fn close_notify_both_ways() {
        let (mut c, mut r) = established(None);
        let mut wire = client_records(&mut c, b"bye");
        c.send_close_notify();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let o = r.open(&mut wire).unwrap();
        assert!(o.closed);
        assert_eq!(&wire[..o.plain], b"bye");
        r.seal_close_notify().unwrap();
        let sealed = r.unsent().to_vec();
        let (got, closed) = client_reads(&mut c, &sealed);
        assert!(got.is_empty() && closed);
    }

    #[test]
    fn refuses_tampering_and_garbage() {
        let (mut c, mut r) = established(None);
        let mut wire = client_records(&mut c, b"payload");
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(r.open(&mut wire), Err(RecordError::Decrypt));
        let (_, mut r) = established(None);
        let mut plain_http = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        assert_eq!(r.open(&mut plain_http), Err(RecordError::Malformed));
        let mut huge = vec![23, 3, 3, 0xff, 0xff];
        assert_eq!(r.open(&mut huge), Err(RecordError::Malformed));
        // a record replayed: the sequence number has moved on
        let (mut c, mut r) = established(None);
        let wire = client_records(&mut c, b"once");
        let mut first = wire.clone();
        assert!(r.open(&mut first).is_ok());
        let mut again = wire;
        assert_eq!(r.open(&mut again), Err(RecordError::Decrypt));
    }

    #[test]
    fn key_update_is_refused() {
        let (mut c, mut r) = established(None);
        c.refresh_traffic_keys().unwrap();
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        assert_eq!(r.open(&mut wire), Err(RecordError::Handshake));
    }
    #[test]
    fn a_layer_goes_on_after_the_hand_over_in_every_suite() {
        use rustls::crypto::ring::cipher_suite as cs;
        for suite in [
            None,
            Some(cs::TLS13_AES_128_GCM_SHA256),
            Some(cs::TLS13_CHACHA20_POLY1305_SHA256),
        ] {
            let (mut c, mut old) = established(suite);
            let mut wire = client_records(&mut c, b"before");
            let opened = old.open(&mut wire).unwrap();
            assert_eq!(&wire[..opened.plain], b"before");
            old.seal(b"sealed, not yet written").unwrap();
            old.partial = vec![23, 3];
            // through the file format, as the upgrade writes it
            let json = serde_json::to_string(&old.export()).unwrap();
            drop(old);
            let x: RecordsExport = serde_json::from_str(&json).unwrap();
            let mut new = Records::import(&x).unwrap();
            assert_eq!(new.partial, [23, 3]);
            new.partial.clear();
            new.seal(b" and after").unwrap();
            let (got, closed) = client_reads(&mut c, new.unsent());
            assert!(!closed);
            assert_eq!(got, b"sealed, not yet written and after", "{suite:?}");
            let mut wire = client_records(&mut c, b"still the same session");
            let opened = new.open(&mut wire).unwrap();
            assert_eq!(&wire[..opened.plain], b"still the same session");
        }
    }

    #[test]
    fn a_bad_hand_over_is_refused() {
        let (_, r) = established(None);
        let good = r.export();
        let mut x = good.clone();
        x.tx.key.truncate(10);
        assert_eq!(Records::import(&x).err(), Some(RecordError::Unsupported));
        let mut x = good.clone();
        x.rx.iv = "zz".into();
        assert_eq!(Records::import(&x).err(), Some(RecordError::Unsupported));
        let mut x = good.clone();
        x.suite = Suite::Aes128Gcm; // a 32-byte key for a 16-byte suite
        assert_eq!(Records::import(&x).err(), Some(RecordError::Unsupported));
        let mut x = good;
        x.partial = "00".repeat(MAX_RECORD + 1);
        assert_eq!(Records::import(&x).err(), Some(RecordError::Malformed));
    }
}
