//! Errors of the settler.

use actp_client::ClientError;

/// Why the settler stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SettlerError {
    /// The sled database failed.
    #[error("settler storage: {0}")]
    Storage(String),
    /// Another process holds the data directory.
    #[error("another settler is using {0}: stop it, or give this one its own --data-dir")]
    Locked(String),
    /// The data directory belongs to a settler of another kernel or chain.
    #[error(
        "{0} holds the checkpoint of a settler for another kernel or chain: use another --data-dir"
    )]
    WrongDataDir(String),
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
            _ => false,
        }
    }
}
