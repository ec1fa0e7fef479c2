//! TLS, terminated by rustls: the certificate the server presents, swappable while it serves
//! (a renewed certificate is installed without dropping the listener or any connection; each
//! new connection takes the one installed when it arrived).

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// What new connections speak: plain HTTP (`None`) or TLS with this configuration.
#[derive(Default)]
pub struct Tls(RwLock<Option<Arc<ServerConfig>>>);

impl Tls {
    /// Plain HTTP until [`Tls::install`] says otherwise.
    pub fn plain() -> Arc<Tls> {
        Arc::new(Tls::default())
    }

    /// From the next connection on, TLS with `config` (or plain HTTP with `None`).
    pub fn install(&self, config: Option<Arc<ServerConfig>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A server configuration from a PEM certificate chain (leaf first, as certbot's
/// `fullchain.pem`) and a PEM private key (PKCS#8, PKCS#1 or SEC1). The error says which file
/// is wrong and how; it never contains the key.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let pem = std::fs::read(cert_file)
        .map_err(|e| format!("cannot read the certificate file {}: {e}", cert_file.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate file {} is not valid PEM: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the certificate file {} holds no PEM certificate (BEGIN CERTIFICATE)",
            cert_file.display()
        ));
    }
    check_key_permissions(key_file)?;
    let pem =
        std::fs::read(key_file).map_err(|e| format!("cannot read the private key file {}: {e}", key_file.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        format!("the private key file {} holds no PEM private key (BEGIN PRIVATE KEY)", key_file.display())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "the certificate in {} and the key in {} do not form a usable pair: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// As Postgres treats `ssl_key_file`: a private key others can read is refused (0600, or 0640
/// when root owns it).
fn check_key_permissions(key_file: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key_file)
        .map_err(|e| format!("cannot read the private key file {}: {e}", key_file.display()))?;
    let allowed = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & allowed != 0 {
        return Err(format!(
            "the private key file {} is readable by others (mode {:o}): chmod 600 it (0640 if root owns it)",
            key_file.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}
