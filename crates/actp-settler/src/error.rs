//! Errors of the settler.

use actp_client::ClientError;

/// Why the settler stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SettlerError {
    /// The store failed: a sled directory in use by another daemon or written for another kernel, a
    /// PostgreSQL server that refused, a corrupt record.
    #[error("settler store: {0}")]
    Store(#[from] actp_store::StoreError),
    /// Settling sends transactions.
    #[error("the settler sends transactions: set ACTP_PRIVATE_KEY or --keystore")]
    NoSigner,
    /// The chain client failed (RPC, timeout, rejection).
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl SettlerError {
    /// Whether the daemon should wait and try again (chain and RPC trouble) rather than stop. A problem of
    /// configuration (an untrusted TLS certificate, no key, a kernel or token this client cannot use) stops
    /// it with the error, since waiting cannot fix it.
    pub fn is_retryable(&self) -> bool {
        match self {
            SettlerError::Client(e) => !matches!(
                e,
                ClientError::Tls { .. }
                    | ClientError::Config(_)
                    | ClientError::Signer(_)
                    | ClientError::UnsupportedToken { .. }
                    | ClientError::UnknownState { .. }
                    | ClientError::Devnet(_)
            ),
            SettlerError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}
