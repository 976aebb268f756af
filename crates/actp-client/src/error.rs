//! Errors of the chain client: typed kernel rejections decoded from revert data, token errors, RPC and
//! timeout errors that say whether retrying can help. Never carries a key or an RPC URL.

use actp_core::{B256, Rejection, U256};
use alloy::primitives::Bytes;
use alloy::sol_types::SolInterface;

use crate::bindings::{EscrowKernel::EscrowKernelErrors as K, MockUSDC::MockUSDCErrors as T};

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
    /// The RPC endpoint failed or could not be reached.
    #[error("RPC error: {message}")]
    Rpc {
        /// What happened (URLs redacted).
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
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

    /// The kernel's rejection, if that is what this is.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            ClientError::Rejected(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn rpc(err: impl std::fmt::Display) -> Self {
        let message = redact_urls(&err.to_string());
        let lower = message.to_ascii_lowercase();
        let retryable = [
            "connection",
            "timed out",
            "timeout",
            "429",
            "too many requests",
            "503",
            "502",
            "504",
            "temporarily",
            "reset",
            "broken pipe",
            "eof",
            "error sending request",
            "dns",
            "unavailable",
        ]
        .iter()
        .any(|needle| lower.contains(needle));
        ClientError::Rpc { message, retryable }
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

/// Decodes revert data into the kernel's or the token's typed error.
pub fn decode_revert(data: &[u8]) -> ClientError {
    if let Ok(err) = K::abi_decode(data) {
        return match err {
            K::SafeERC20FailedOperation(e) => ClientError::Token(TokenError::Other(format!(
                "token {} refused the operation",
                e.token
            ))),
            K::ReentrancyGuardReentrantCall(_) => ClientError::Token(TokenError::Other(
                "re-entrant call refused by the kernel".into(),
            )),
            other => ClientError::Rejected(kernel_rejection(other)),
        };
    }
    if let Ok(err) = T::abi_decode(data) {
        return ClientError::Token(match err {
            T::ERC20InsufficientAllowance(e) => TokenError::InsufficientAllowance {
                allowance: e.allowance,
                needed: e.needed,
            },
            T::ERC20InsufficientBalance(e) => TokenError::InsufficientBalance {
                balance: e.balance,
                needed: e.needed,
            },
            other => TokenError::Other(format!("{other:?}")),
        });
    }
    ClientError::UnknownRevert {
        data: Bytes::copy_from_slice(data),
    }
}

fn state(code: u8) -> actp_core::State {
    actp_core::State::try_from(code).unwrap_or(actp_core::State::Initiated)
}

/// Maps the kernel's generated error enum to the model's [`Rejection`] (same names, same data). The two
/// errors inherited from OpenZeppelin are not lifecycle rules; [`decode_revert`] reports them as token errors.
fn kernel_rejection(err: K) -> Rejection {
    use Rejection as R;
    match err {
        K::TransactionNotFound(e) => R::TransactionNotFound(e.transactionId),
        K::TransactionExists(e) => R::TransactionExists(e.transactionId),
        K::InvalidTransition(e) => R::InvalidTransition {
            id: e.transactionId,
            from: state(e.from),
            to: state(e.to),
        },
        K::InvalidState(e) => R::InvalidState {
            id: e.transactionId,
            state: state(e.state),
        },
        K::Unauthorized(e) => R::Unauthorized {
            caller: e.caller,
            expected: e.expected,
        },
        K::NotParty(e) => R::NotParty(e.caller),
        K::NotResolver(e) => R::NotResolver(e.caller),
        K::NotAdmin(e) => R::NotAdmin(e.caller),
        K::NotPendingAdmin(e) => R::NotPendingAdmin(e.caller),
        K::NotPauser(e) => R::NotPauser(e.caller),
        K::RequesterMismatch(e) => R::RequesterMismatch {
            requester: e.requester,
            caller: e.caller,
        },
        K::SelfDealing(e) => R::SelfDealing(e.account),
        K::ZeroAddress(_) => R::ZeroAddress,
        K::KernelIsPaused(_) => R::KernelIsPaused,
        K::AmountOutOfRange(e) => R::AmountOutOfRange {
            amount: e.amount,
            min: e.min,
            max: e.max,
        },
        K::DeadlineOutOfRange(e) => R::DeadlineOutOfRange {
            deadline: e.deadline,
            min: e.min,
            max: e.max,
        },
        K::DisputeWindowOutOfRange(e) => R::DisputeWindowOutOfRange {
            window: e.disputeWindow,
            min: e.min,
            max: e.max,
        },
        K::DeadlinePassed(e) => R::DeadlinePassed(e.deadline),
        K::DeadlineNotPassed(e) => R::DeadlineNotPassed(e.deadline),
        K::DisputeWindowOpen(e) => R::DisputeWindowOpen(e.windowEnd),
        K::DisputeWindowClosed(e) => R::DisputeWindowClosed(e.windowEnd),
        K::InvalidProofLength(e) => R::InvalidProofLength(e.length),
        K::ZeroQuoteHash(_) => R::ZeroQuoteHash,
        K::ResolutionMismatch(e) => R::ResolutionMismatch {
            to_requester: e.toRequester,
            to_provider: e.toProvider,
            remaining: e.remaining,
        },
        K::InvalidMilestone(e) => R::InvalidMilestone {
            amount: e.amount,
            remaining: e.remaining,
        },
        K::UnsupportedEscrowContract(e) => R::UnsupportedEscrowContract(e.escrowContract),
        K::EscrowIdUnavailable(e) => R::EscrowIdUnavailable(e.escrowId),
        K::TransferAmountMismatch(e) => R::TransferAmountMismatch {
            expected: e.expected,
            received: e.received,
        },
        K::ZeroAttestation(_) => R::ZeroAttestation,
        K::FeeAboveCap(e) => R::FeeAboveCap {
            fee_bps: e.feeBps,
            cap: e.cap,
        },
        K::NoPendingFeeChange(_) => R::NoPendingFeeChange,
        K::FeeChangeNotReady(e) => R::FeeChangeNotReady(e.executeAfter),
        K::NoFeesAccrued(_) => R::NoFeesAccrued,
        K::NothingToClaim(_) => R::NothingToClaim,
        K::ReentrancyGuardReentrantCall(_) | K::SafeERC20FailedOperation(_) => R::ZeroAddress,
    }
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
}
