//! Errors of the chain client: typed kernel rejections decoded from revert data, token errors, RPC and
//! timeout errors that say whether retrying can help. Never carries a key or an RPC URL.

use std::time::Duration;

use actp_core::{B256, Rejection, U256};
use alloy::{
    primitives::Bytes,
    transports::{RpcError, TransportErrorKind},
};

/// Result alias.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An error of the chain client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kernel refused the call (decoded from its custom error).
    #[error("rejected by the kernel: {0}")]
    Rejected(#[from] Rejection),
    /// The token refused a transfer the call needed.
    #[error("rejected by the token: {0}")]
    Token(#[from] TokenError),
    /// The call reverted with data that matches no known error.
    #[error("the call reverted without a known error (data {data}): check the contract address")]
    UnknownRevert {
        /// The raw revert data, for support.
        data: Bytes,
    },
    /// The RPC endpoint failed, could not be reached, or answered something unusable.
    #[error("RPC error: {message}")]
    Rpc {
        /// What happened (URLs redacted).
        message: String,
        /// Whether trying again may succeed: decided from the transport's typed error and the HTTP status
        /// (connection failures, timeouts, 429 and 5xx are; other 4xx, TLS and malformed answers are not).
        retryable: bool,
        /// How long the server asked to wait first (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// A TLS connection could not be set up; retrying does not help.
    #[error("{}", tls_message(.untrusted, .reason))]
    Tls {
        /// True when the server's certificate was not trusted (as opposed to another handshake failure).
        untrusted: bool,
        /// What rustls reported.
        reason: String,
    },
    /// A transaction would cost more per gas than the configured cap.
    #[error(
        "the network asks up to {asked} wei per gas, above the cap of {cap} wei: wait for fees to fall, or raise --max-fee-per-gas (ACTP_MAX_FEE_PER_GAS)"
    )]
    FeeCapExceeded {
        /// The fee the transaction would have offered (max fee per gas, wei).
        asked: u128,
        /// The cap (wei).
        cap: u128,
    },
    /// The kernel's token does not have the 6 decimals every amount here assumes.
    #[error(
        "token {token} has {decimals} decimals: ACTP amounts are in units of a 6-decimal token (USDC); use a kernel whose token has 6 decimals"
    )]
    UnsupportedToken {
        /// The token.
        token: actp_core::Address,
        /// Its decimals.
        decimals: u8,
    },
    /// The chain reported a state code this client does not know (a newer or different kernel).
    #[error(
        "transaction {id} has state code {code}, which this client does not know: check the kernel address, or upgrade actp"
    )]
    UnknownState {
        /// The transaction.
        id: B256,
        /// The code read.
        code: u8,
    },
    /// The node refused an `eth_getLogs` range (too many blocks or results); [`crate::LogReader`] halves it.
    #[error("the node refused the log range: {message}")]
    LogRangeTooLarge {
        /// What the node said.
        message: String,
    },
    /// No receipt arrived in time.
    #[error(
        "no receipt for {tx_hash} after {seconds}s: it may still be mined; check it (actp tx show) before sending again"
    )]
    ReceiptTimeout {
        /// The sent transaction.
        tx_hash: B256,
        /// How long we waited.
        seconds: u64,
    },
    /// A sent transaction was mined but reverted.
    #[error("transaction {tx_hash} reverted on chain: {reason}")]
    RevertedOnChain {
        /// The transaction.
        tx_hash: B256,
        /// The decoded reason, when it could be recovered.
        reason: String,
        /// The kernel's rejection, when the reason is one: another sender's transaction got there first
        /// between this one's estimate and its block (two replicas starting the same transaction).
        rejection: Option<Box<Rejection>>,
    },
    /// A key or keystore could not be used.
    #[error("signer error: {0}")]
    Signer(String),
    /// Bad configuration or input.
    #[error("{0}")]
    Config(String),
    /// The devnet could not start.
    #[error("devnet: {0}")]
    Devnet(String),
}

impl ClientError {
    /// Whether retrying the same call may succeed (transport failures, timeouts, rate limits).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Rpc {
                retryable: true,
                ..
            }
        )
    }

    /// The kernel's rejection, if that is what this is: refused at the estimate, or mined and reverted.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            ClientError::Rejected(r) => Some(r),
            ClientError::RevertedOnChain {
                rejection: Some(r), ..
            } => Some(r.as_ref()),
            _ => None,
        }
    }

    /// How long the server asked to wait before a retry, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Rpc { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// An answer that is not what the protocol promises (a receipt without its event, a missing block):
    /// not retried.
    pub(crate) fn protocol(what: impl std::fmt::Display) -> Self {
        ClientError::Rpc {
            message: redact_urls(&what.to_string()),
            retryable: false,
            retry_after: None,
        }
    }

    /// Classifies a transport error by its type and HTTP status, never by its text.
    pub fn from_transport(err: RpcError<TransportErrorKind>) -> Self {
        let message = redact_urls(&err.to_string());
        let (retryable, retry_after) = match &err {
            RpcError::Transport(kind) => match kind {
                TransportErrorKind::HttpError(http) => (retryable_status(http.status), None),
                TransportErrorKind::HttpErrorWithRetryAfter { error, retry_after } => {
                    (retryable_status(error.status), Some(*retry_after))
                }
                TransportErrorKind::Custom(source) => {
                    if let Some(tls) = crate::http::tls_failure(source.as_ref()) {
                        return tls_error(tls);
                    }
                    (retryable_connection(source.as_ref()), None)
                }
                TransportErrorKind::NonRetryable(_) | TransportErrorKind::PubsubUnavailable => {
                    (false, None)
                }
                TransportErrorKind::MissingBatchResponse(_) | TransportErrorKind::BackendGone => {
                    (true, None)
                }
                _ => (false, None),
            },
            // A JSON-RPC error object: rate limits by their codes (429, -32005, ...); everything else is
            // an answer, and asking again gets the same answer.
            RpcError::ErrorResp(payload) => (payload.is_retry_err(), None),
            // A 200 whose body is not JSON-RPC: a proxy's error page or a truncated answer.
            RpcError::DeserError { .. } | RpcError::NullResp => (true, None),
            _ => (false, None),
        };
        ClientError::Rpc {
            message,
            retryable,
            retry_after,
        }
    }
}

/// 429 and 5xx: the server may answer next time. Other statuses (400, 401, 403, 404...) will not change.
fn retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status)
}

/// A reqwest failure that says nothing about the request itself: connecting, timing out, a connection
/// dropped mid-answer. A request that could not be built or a redirect loop is not retried.
fn retryable_connection(source: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    match source.downcast_ref::<reqwest::Error>() {
        Some(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
        None => false,
    }
}

fn tls_error(failure: crate::http::TlsFailure) -> ClientError {
    match failure {
        crate::http::TlsFailure::Untrusted(reason) => ClientError::Tls {
            untrusted: true,
            reason,
        },
        crate::http::TlsFailure::Handshake(reason) => ClientError::Tls {
            untrusted: false,
            reason,
        },
    }
}

/// A reqwest error as a [`ClientError`]: TLS failures typed, the rest classified like transport errors.
pub fn from_reqwest(err: &reqwest::Error) -> ClientError {
    if let Some(tls) = crate::http::tls_failure(err) {
        return tls_error(tls);
    }
    let retryable = err.is_connect() || err.is_timeout() || err.is_request() || err.is_body();
    ClientError::Rpc {
        message: redact_urls(&err.to_string()),
        retryable,
        retry_after: None,
    }
}

fn tls_message(untrusted: &bool, reason: &str) -> String {
    if *untrusted {
        format!(
            "the server's TLS certificate was not trusted ({reason}): if the endpoint uses a private CA, pass its certificate (PEM) with --ca-cert or ACTP_CA_CERT"
        )
    } else {
        format!(
            "the TLS handshake failed ({reason}): check that the URL's scheme (https://) matches the server, or pass a private CA with --ca-cert"
        )
    }
}

/// Errors of the escrow token (OpenZeppelin ERC-20 custom errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The payer's allowance to the kernel is too small.
    #[error(
        "allowance {allowance} is below {needed}: approve the kernel for at least the amount first"
    )]
    InsufficientAllowance {
        /// Current allowance.
        allowance: U256,
        /// Needed.
        needed: U256,
    },
    /// The payer's balance is too small.
    #[error("balance {balance} is below {needed}: fund the account")]
    InsufficientBalance {
        /// Current balance.
        balance: U256,
        /// Needed.
        needed: U256,
    },
    /// Another token error.
    #[error("token error {0}")]
    Other(String),
}

/// Replaces every `http(s)://…` / `ws(s)://…` in `text` with `<rpc-url>`: URLs of hosted RPCs carry API keys.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | ',' | '>'))
            .unwrap_or(tail.len());
        out.push_str("<rpc-url>");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_urls("error sending request for url (https://mainnet.example/v3/SECRETKEY) x"),
            "error sending request for url (<rpc-url>) x"
        );
        assert_eq!(redact_urls("no url"), "no url");
    }

    fn http(status: u16, retry_after: Option<u64>) -> ClientError {
        ClientError::from_transport(TransportErrorKind::http_error_with_retry_after(
            status,
            "body".into(),
            retry_after.map(Duration::from_secs),
        ))
    }

    #[test]
    fn retries_follow_the_status_not_the_words() {
        for status in [429, 500, 502, 503, 504] {
            assert!(http(status, None).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 405, 413] {
            assert!(!http(status, None).is_retryable(), "{status}");
        }
        // A 400 whose body happens to say "timeout" or "connection" is still a 400.
        let worded = ClientError::from_transport(TransportErrorKind::http_error(
            400,
            "connection timeout while rate limited: 503".into(),
        ));
        assert!(!worded.is_retryable());
        let limited = http(429, Some(7));
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        // JSON-RPC errors: rate limits by their codes, other answers are final.
        let answer = |code: i64, message: &str| {
            let payload: alloy::rpc::json_rpc::ErrorPayload =
                serde_json::from_value(serde_json::json!({"code": code, "message": message}))
                    .unwrap_or_else(|_| unreachable!());
            ClientError::from_transport(RpcError::ErrorResp(payload))
        };
        assert!(answer(429, "too many requests").is_retryable());
        assert!(!answer(-32000, "insufficient funds for gas").is_retryable());
    }
}
