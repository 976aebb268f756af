//! Why a paid call did not return a verified response. Each message says whether money moved and what to do.

use actp_client::ClientError;
use actp_core::{Address, B256, proof::DeliveryMismatch};
use bytes::Bytes;

use crate::ledger::{BudgetError, LedgerError};

/// A paid call's failure.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The spend policy refused the payment (the hard limit, a denied provider, a suspended agent). No escrow
    /// was created.
    #[error("payment refused by the spend policy: {0}")]
    Budget(#[from] BudgetError),
    /// The ledger failed. No escrow was created after a ledger failure.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A chain operation failed (creating, settling or disputing the escrow).
    #[error("{0}")]
    Chain(#[from] ClientError),
    /// The provider could not be reached for the first, unpaid request. Nothing was paid.
    #[error(
        "could not reach {url}: {message}: check the URL and that the provider is up; nothing was paid"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The 402 answer carries no usable ACTP payment instructions. Nothing was paid.
    #[error(
        "{url} answered 402 without usable ACTP payment instructions ({reason}); nothing was paid"
    )]
    BadInstructions {
        /// The URL.
        url: String,
        /// What is wrong with them.
        reason: String,
    },
    /// The provider asks for payment on another chain, kernel or token than this client's. Nothing was paid.
    #[error(
        "the provider asks for payment on chain {chain_id}, kernel {kernel}, token {token}; this client pays on chain {our_chain_id}, kernel {our_kernel}, token {our_token}: connect the client to that kernel"
    )]
    WrongKernel {
        /// Asked for.
        chain_id: u64,
        /// Asked for.
        kernel: Address,
        /// Asked for.
        token: Address,
        /// Ours.
        our_chain_id: u64,
        /// Ours.
        our_kernel: Address,
        /// Ours.
        our_token: Address,
    },
    /// The escrow transaction was sent but its outcome is unknown (timeout, lost connection). The amount stays
    /// reserved until [`PayingClient::reconcile`](crate::PayingClient::reconcile) finds the escrow or proves
    /// there is none; calling again with the same idempotency key never pays twice.
    #[error(
        "the payment for idempotency key {key:?} was sent but not confirmed ({message}): call again with the same key, or run reconcile; it will not be paid twice"
    )]
    Unconfirmed {
        /// The idempotency key.
        key: String,
        /// What failed.
        message: String,
    },
    /// Paid, but the provider failed (5xx, timeout, unreachable) on every attempt with the same txId. The
    /// escrow is funded and not lost: a later call with the same key retries it, and reconcile reclaims it
    /// once its deadline passes.
    #[error(
        "paid into escrow {tx_id} but the provider failed {attempts} times ({message}); the escrow is reclaimable after its deadline {deadline} (reconcile does it), or call again with the same key to retry"
    )]
    ProviderFailed {
        /// The escrow.
        tx_id: B256,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
        /// The escrow's deadline.
        deadline: u64,
    },
    /// Paid, but the provider refused the paid request (a 4xx). The escrow is funded and reclaimable after
    /// its deadline.
    #[error(
        "paid into escrow {tx_id} but the provider refused the request with {status} ({message}); the escrow is reclaimable after its deadline {deadline} (reconcile does it)"
    )]
    Refused {
        /// The escrow.
        tx_id: B256,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
        /// The escrow's deadline.
        deadline: u64,
    },
    /// Served, but the body does not match the provider's delivery proof (or there is no proof). The client
    /// disputes within the window when its policy says so.
    #[error(
        "the response for escrow {tx_id} does not match the provider's delivery proof: {reason}{}",
        if *disputed { "; the escrow was disputed" } else { "; dispute it within the window" }
    )]
    DeliveryMismatch {
        /// The escrow.
        tx_id: B256,
        /// What does not match.
        reason: String,
        /// The typed mismatch, when the proof could be read.
        mismatch: Option<Box<DeliveryMismatch>>,
        /// Whether the client disputed it.
        disputed: bool,
        /// The body received, for the record.
        body: Bytes,
    },
    /// This idempotency key already paid for a call that was served; its response is not kept.
    #[error(
        "idempotency key {key:?} already paid for a served call (escrow {tx_id}): use a new key for a new call"
    )]
    AlreadyServed {
        /// The key.
        key: String,
        /// Its escrow.
        tx_id: B256,
    },
    /// A call paid from a session came back without a receipt that checks out (none, or not the
    /// provider's, out of order, charging more than authorized, naming another call or body). The session
    /// takes no more calls and is being closed; a claim on chain above the receipts is disputed by
    /// reconcile.
    #[error("session {tx_id}: {reason}")]
    BadReceipt {
        /// The session.
        tx_id: B256,
        /// What is wrong.
        reason: String,
    },
    /// The provider refused a call paid from a session, or failed it, before charging anything.
    #[error(
        "the provider refused the call paid from session {tx_id} with {status} ({message}); nothing was charged"
    )]
    SessionRefused {
        /// The session.
        tx_id: B256,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
}
