//! HTTP clients for everything this project talks to over HTTP (the JSON-RPC endpoint, paid APIs, a
//! gateway's upstream): rustls with the operating system's trust store, plus extra CA certificates for
//! private endpoints. One place builds them, so TLS works the same everywhere. It never logs URLs.

use std::{path::Path, time::Duration};

use crate::{ClientError, Result};

/// How HTTP clients are built: trust and timeouts.
///
/// ```
/// use actp_client::HttpOptions;
/// let options = HttpOptions::default().connect_timeout(std::time::Duration::from_secs(5));
/// let client: reqwest::Client = options.client().unwrap();
/// # let _ = client;
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    ca_certs: Vec<reqwest::Certificate>,
    ca_count: usize,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
}

impl HttpOptions {
    /// Also trusts the CA certificates in `pem` (one or more PEM blocks), on top of the system's.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| ClientError::Config("the CA certificate is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(ClientError::Config(
                "the CA file holds no certificate (expected PEM blocks `-----BEGIN CERTIFICATE-----`)"
                    .into(),
            ));
        }
        self.ca_count += certs.len();
        self.ca_certs.extend(certs);
        Ok(self)
    }

    /// Also trusts the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(self, path: &Path) -> Result<Self> {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Config(format!(
                "cannot read the CA certificate {}: {e}",
                path.display()
            ))
        })?;
        self.with_ca_pem(&pem).map_err(|e| match e {
            ClientError::Config(why) => ClientError::Config(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// How many extra CA certificates are trusted.
    pub fn extra_ca_count(&self) -> usize {
        self.ca_count
    }

    /// The longest a connection (TCP and TLS handshake) may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The longest a whole request may take.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A builder with these options, to add more (a user agent, redirects) before `build()`.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_merge(self.ca_certs.iter().cloned());
        if let Some(t) = self.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = self.timeout {
            builder = builder.timeout(t);
        }
        builder
    }

    /// A client with these options.
    pub fn client(&self) -> Result<reqwest::Client> {
        self.builder()
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up the HTTP client: {e}")))
    }
}

/// Why a TLS connection failed, found in an error's source chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate did not verify against the trusted CAs (unknown issuer, expired, wrong
    /// name...).
    Untrusted(String),
    /// Another TLS failure (the server does not speak TLS, no common protocol version...).
    Handshake(String),
}

/// Looks for a TLS failure anywhere in `error`'s source chain (also inside `std::io::Error`s, where
/// hyper and rustls put it).
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = as_rustls(e) {
            return Some(found);
        }
        // An `io::Error`'s `source()` skips the error it wraps: look inside it instead (hyper wraps
        // rustls's error in an `io::Error`, itself wrapped in another).
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            current = Some(inner);
            continue;
        }
        current = e.source();
    }
    None
}

fn as_rustls(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let tls = e.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(why) => TlsFailure::Untrusted(format!("{why:?}")),
        rustls::Error::NoCertificatesPresented => {
            TlsFailure::Untrusted("the server presented no certificate".into())
        }
        other => TlsFailure::Handshake(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let err = HttpOptions::default()
            .with_ca_pem(b"not a certificate")
            .unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = HttpOptions::default()
            .with_ca_file(&missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the CA certificate"), "{err}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let options = HttpOptions::default()
            .with_ca_pem(cert.cert.pem().as_bytes())
            .unwrap();
        assert_eq!(options.extra_ca_count(), 1);
        options.client().unwrap();
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper-util reports it: an io::Error wrapping an io::Error wrapping rustls's error.
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, untrusted);
        let io = std::io::Error::other(inner);
        assert!(matches!(tls_failure(&io), Some(TlsFailure::Untrusted(_))));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure(&plain), None);
    }
}
