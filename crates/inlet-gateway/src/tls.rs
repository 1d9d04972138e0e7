//! Built-in TLS (rustls with the `ring` provider): analytics-kotlin and analytics-swift only
//! speak `https://`, so a gateway without a TLS-terminating proxy in front still serves them.

use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("reading TLS certificate {}", tls.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", tls.cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "TLS certificate file {} holds no certificate", tls.cert.display());
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("reading TLS private key {}", tls.key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("choosing TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
