//! Built-in TLS (rustls with the `ring` provider): analytics-kotlin and analytics-swift only
//! speak `https://`, so a gateway without a TLS-terminating proxy in front still serves them.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::error::StartupError;

pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, StartupError> {
    let failed = |what: &str, path: &std::path::Path, error: &dyn std::fmt::Display| {
        StartupError::Tls(format!("{what} {}: {error}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| failed("reading certificate", &tls.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| failed("parsing certificate", &tls.cert, &e))?;
    if certs.is_empty() {
        return Err(failed("certificate file", &tls.cert, &"holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| failed("reading private key", &tls.key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls(format!("choosing protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartupError::Tls(format!("the certificate and key do not match: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
