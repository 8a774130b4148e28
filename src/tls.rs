//! TLS for the listener with rustls (ring provider): loading the certificate
//! chain and key from PEM files (an encrypted PKCS#8 key is decrypted with
//! the passphrase), and finding a Laravel Herd or Valet certificate for
//! `--hostname` the way Reverb does (`src/Certificate.php`).
//!
//! It also builds the client configurations for `rediss://` (scaling) and
//! `https://` webhooks, with the CA roots of `SSL_CERT_FILE` or the system.
//!
//! It does no I/O on sockets: `conn.rs` drives each `ServerConnection`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pkcs8::EncryptedPrivateKeyInfoRef;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where the certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub passphrase: Option<String>,
}

/// Build the rustls server configuration, or say what is wrong with the files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "TLS certificate {} is not valid PEM: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {} holds no CERTIFICATE block",
            files.cert.display()
        ));
    }
    let key = load_key(&files.key, files.passphrase.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not work together: {e}"))?;
    // WebSocket over TLS negotiates HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // conn.rs takes the traffic keys of a quiet TLS 1.3 session and drops
    // rustls's state (see `tls_record`).
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

fn load_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let name = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read TLS key {name}: {e}"))?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(pass) = passphrase else {
            return Err(format!(
                "TLS key {name} is encrypted: set tls passphrase (REVERB_TLS_PASSPHRASE)"
            ));
        };
        let (_, doc) = pkcs8::Document::from_pem(&text)
            .map_err(|e| format!("TLS key {name} is not valid PEM: {e}"))?;
        let info = EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes())
            .map_err(|e| format!("TLS key {name} is not an encrypted PKCS#8 key: {e}"))?;
        let plain = info.decrypt(pass.as_bytes()).map_err(|_| {
            format!("cannot decrypt TLS key {name}: wrong passphrase or unsupported cipher")
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        format!("TLS key {name} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")
    })
}

/// The Herd or Valet certificate for `hostname`, if one exists under `home`:
/// `{host}.crt` and `{host}.key` in Herd's or Valet's `Certificates` folder.
pub fn herd_valet_certificate(home: &Path, hostname: &str) -> Option<TlsFiles> {
    if hostname.is_empty() || hostname.contains('/') || hostname.contains("..") {
        return None;
    }
    let dirs = [
        "Library/Application Support/Herd/config/valet/Certificates",
        ".config/herd/config/valet/Certificates",
        ".config/valet/Certificates",
        ".valet/Certificates",
    ];
    dirs.iter().map(|d| home.join(d)).find_map(|dir| {
        let cert = dir.join(format!("{hostname}.crt"));
        let key = dir.join(format!("{hostname}.key"));
        (cert.is_file() && key.is_file()).then_some(TlsFiles {
            cert,
            key,
            passphrase: None,
        })
    })
}

/// The rustls client configuration for `rediss://`: the ring provider and
/// the CA certificates from `SSL_CERT_FILE`, else the system bundle.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let (roots, _) = ca_roots().map_err(|e| format!("rediss:// needs CA certificates: {e}"))?;
    client_config_with_roots(roots, &[])
}

/// The `rediss://` configuration with secret extraction on: for the
/// subscriber connection an upgrade hands over, whose TLS 1.3 traffic keys
/// go to the new binary (see `event_loop::upgrade`).
pub fn client_config_for_handover() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut cfg = (*client_config()?).clone();
    cfg.enable_secret_extraction = true;
    Ok(Arc::new(cfg))
}

/// The rustls client configuration for `https://` webhooks: the roots of
/// [`ca_roots`], ALPN `http/1.1`. The error says why https is unavailable.
pub fn webhook_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let (roots, _) =
        ca_roots().map_err(|e| format!("https:// webhooks need CA certificates: {e}"))?;
    client_config_with_roots(roots, &[b"http/1.1"])
}

/// The CA certificates to trust, and the file they came from: the PEM file
/// named by `SSL_CERT_FILE` if it is set, else the first of the usual system
/// bundles that holds any certificate.
pub fn ca_roots() -> Result<(rustls::RootCertStore, String), String> {
    let candidates: Vec<String> = match std::env::var("SSL_CERT_FILE") {
        Ok(f) if !f.is_empty() => vec![f],
        _ => [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
            "/etc/ssl/ca-bundle.pem",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    for path in &candidates {
        let Ok(iter) = CertificateDer::pem_file_iter(path) else {
            continue;
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in iter.flatten() {
            let _ = roots.add(cert);
        }
        if !roots.is_empty() {
            return Ok((roots, path.clone()));
        }
    }
    Err(format!(
        "none found in {}; set SSL_CERT_FILE to a PEM bundle",
        candidates.join(", ")
    ))
}

/// A client configuration (ring provider, safe defaults) that trusts
/// `roots` and offers the `alpn` protocols.
pub fn client_config_with_roots(
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("revurb-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_pair(dir: &Path) -> TlsFiles {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let files = TlsFiles {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
            passphrase: None,
        };
        std::fs::write(&files.cert, ck.cert.pem()).unwrap();
        std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn loads_a_pem_pair() {
        let files = write_pair(&temp("ok"));
        assert!(server_config(&files).is_ok());
    }

    #[test]
    fn clear_errors() {
        let dir = temp("bad");
        let mut files = write_pair(&dir);
        files.cert = dir.join("missing.pem");
        assert!(
            server_config(&files)
                .unwrap_err()
                .contains("cannot read TLS certificate")
        );
        let mut files = write_pair(&dir);
        std::fs::write(dir.join("empty.pem"), "nothing here").unwrap();
        files.key = dir.join("empty.pem");
        assert!(
            server_config(&files)
                .unwrap_err()
                .contains("no usable private key")
        );
        std::fs::write(
            dir.join("enc.pem"),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        files.key = dir.join("enc.pem");
        assert!(server_config(&files).unwrap_err().contains("passphrase"));
    }

    #[test]
    fn decrypts_an_encrypted_pkcs8_key() {
        let dir = temp("enc");
        let mut files = write_pair(&dir);
        let enc = dir.join("enc.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-passout",
                "pass:s3cret",
                "-in",
            ])
            .arg(&files.key)
            .arg("-out")
            .arg(&enc)
            .status()
            .expect("openssl is needed to make an encrypted key (apt-get install openssl)");
        assert!(status.success());
        files.key = enc;
        files.passphrase = Some("s3cret".into());
        assert!(server_config(&files).is_ok());
        files.passphrase = Some("wrong".into());
        assert!(
            server_config(&files)
                .unwrap_err()
                .contains("wrong passphrase")
        );
    }

    #[test]
    fn finds_valet_certificates() {
        let home = temp("home");
        assert_eq!(herd_valet_certificate(&home, "laravel.test"), None);
        let dir = home.join(".config/valet/Certificates");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("laravel.test.crt"), "c").unwrap();
        std::fs::write(dir.join("laravel.test.key"), "k").unwrap();
        let found = herd_valet_certificate(&home, "laravel.test").unwrap();
        assert_eq!(found.cert, dir.join("laravel.test.crt"));
        assert_eq!(herd_valet_certificate(&home, "../x"), None);
    }
}
