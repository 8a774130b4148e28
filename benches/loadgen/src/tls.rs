//! `--tls`: a rustls client per connection (WebSocket clients and HTTP
//! publishers), and the certificate the spawned server is given.
//!
//! The generator makes a self-signed certificate for `localhost` and
//! `127.0.0.1` (rcgen), writes it and its key to a private temporary
//! directory, and starts the server with `REVERB_TLS_CERT` and
//! `REVERB_TLS_KEY` pointing at them; the client trusts exactly that
//! certificate. With `--url`, `--ca FILE` names the PEM certificate to trust.
//!
//! [`read`] and [`write`] move bytes between a socket and a
//! `ClientConnection` for the engine, which otherwise handles plaintext
//! exactly as it does without TLS.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The certificate and key written for a spawned server; the directory is
/// removed on drop.
pub struct Generated {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Drop for Generated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Make a self-signed certificate for `localhost` and `127.0.0.1` in a new
/// temporary directory.
pub fn generate() -> Result<Generated, String> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("cannot make a TLS certificate: {e}"))?;
    let dir = std::env::temp_dir().join(format!("loadgen-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let g = Generated {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        dir,
    };
    std::fs::write(&g.cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", g.cert.display()))?;
    std::fs::write(&g.key, ck.signing_key.serialize_pem())
        .map_err(|e| format!("{}: {e}", g.key.display()))?;
    Ok(g)
}

/// A client configuration trusting the certificates in the PEM file `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // every client is new: no resumption, each connection a full handshake
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A new client session for the server `localhost`.
pub fn connect(config: &Arc<ClientConfig>) -> io::Result<Box<ClientConnection>> {
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    ClientConnection::new(config.clone(), name)
        .map(Box::new)
        .map_err(io::Error::other)
}

/// Read what the socket has, decrypt it and append the plaintext to `out`.
/// Returns whether the stream ended (EOF or close_notify); `WouldBlock` is
/// not an error. Handshake replies are written before returning.
pub fn read(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut ended = false;
    loop {
        match tls.read_tls(sock) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let state = tls.process_new_packets().map_err(io::Error::other)?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let start = out.len();
            out.resize(start + n, 0);
            tls.reader().read_exact(&mut out[start..])?;
        }
        if state.peer_has_closed() {
            ended = true;
            break;
        }
    }
    write(tls, sock, &[])?;
    Ok(ended)
}

/// Hand `plain` to rustls (as much as it takes) and write records until the
/// socket is full. Returns the plaintext bytes taken.
pub fn write(tls: &mut ClientConnection, sock: &mut TcpStream, plain: &[u8]) -> io::Result<usize> {
    let taken = if plain.is_empty() {
        0
    } else {
        tls.writer().write(plain)?
    };
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}
