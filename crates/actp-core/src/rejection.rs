//! Why the kernel refuses an action: one variant per custom error of the escrow kernel, with the same name
//! and data, so a model rejection and a decoded on-chain revert compare equal.

use alloy_primitives::{Address, B256, U256};

use crate::State;

/// A rejection by the lifecycle rules. Each message says what went wrong and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No transaction has this id.
    #[error("no transaction {0}: check the id and the kernel address")]
    TransactionNotFound(B256),
    /// A transaction with this id already exists.
    #[error("transaction {0} already exists")]
    TransactionExists(B256),
    /// The lifecycle has no such move from the current state.
    #[error("transaction {id} cannot move from {from} to {to}")]
    InvalidTransition {
        /// The transaction.
        id: B256,
        /// Its current state.
        from: State,
        /// The state asked for.
        to: State,
    },
    /// The operation is not allowed in the current state.
    #[error("transaction {id} is {state}: this operation is not allowed in that state")]
    InvalidState {
        /// The transaction.
        id: B256,
        /// Its current state.
        state: State,
    },
    /// The caller is not the party the rule names.
    #[error("{caller} may not do this: only {expected} may")]
    Unauthorized {
        /// The caller.
        caller: Address,
        /// Who may.
        expected: Address,
    },
    /// The caller is neither requester nor provider.
    #[error("{0} is neither the requester nor the provider of this transaction")]
    NotParty(Address),
    /// The caller may not resolve this dispute.
    #[error(
        "{0} may not resolve this dispute: only the admin or an approved mediator, each after its delay, and \
         never the requester or the provider"
    )]
    NotResolver(Address),
    /// The caller is not the admin.
    #[error("{0} is not the admin")]
    NotAdmin(Address),
    /// The caller is not the pending admin.
    #[error("{0} is not the pending admin")]
    NotPendingAdmin(Address),
    /// The caller may not pause.
    #[error("{0} is neither the pauser nor the admin")]
    NotPauser(Address),
    /// `createTransaction` names a requester other than the caller.
    #[error("requester {requester} must be the caller {caller}: sign with the requester's key")]
    RequesterMismatch {
        /// The requester argument.
        requester: Address,
        /// The caller.
        caller: Address,
    },
    /// Requester and provider are the same address.
    #[error("{0} cannot pay itself: requester and provider must differ")]
    SelfDealing(Address),
    /// An address argument is zero.
    #[error("an address argument is zero")]
    ZeroAddress,
    /// The kernel is paused.
    #[error("the kernel is paused: no new transactions or funding until it is unpaused")]
    KernelIsPaused,
    /// Amount out of range.
    #[error("amount {amount} is outside {min}..={max} base units")]
    AmountOutOfRange {
        /// The amount.
        amount: U256,
        /// Minimum.
        min: U256,
        /// Maximum.
        max: U256,
    },
    /// Deadline out of range.
    #[error("deadline {deadline} must be after {min} and at most {max}")]
    DeadlineOutOfRange {
        /// The deadline.
        deadline: U256,
        /// Exclusive lower bound (the current time).
        min: U256,
        /// Inclusive upper bound.
        max: U256,
    },
    /// Dispute window out of range.
    #[error("dispute window {window}s is outside {min}..={max}s")]
    DisputeWindowOutOfRange {
        /// The window.
        window: U256,
        /// Minimum (at delivery: the requester's window).
        min: U256,
        /// Maximum.
        max: U256,
    },
    /// The deadline has passed.
    #[error("the deadline {0} has passed")]
    DeadlinePassed(U256),
    /// The requester must wait for the deadline.
    #[error("the requester may do this only after the deadline {0}")]
    DeadlineNotPassed(U256),
    /// Only the requester may settle before the window ends.
    #[error("the dispute window is open until {0}: only the requester may settle before then")]
    DisputeWindowOpen(U256),
    /// The dispute window has ended.
    #[error("the dispute window ended at {0}")]
    DisputeWindowClosed(U256),
    /// Proof bytes of an unaccepted length.
    #[error("proof of {0} bytes is not accepted for this transition")]
    InvalidProofLength(U256),
    /// A zero quote hash.
    #[error("a quote hash must be non-zero")]
    ZeroQuoteHash,
    /// A resolution that does not add up.
    #[error(
        "resolution {to_requester} + {to_provider} must add up to the {remaining} the escrow holds"
    )]
    ResolutionMismatch {
        /// To the requester.
        to_requester: U256,
        /// To the provider.
        to_provider: U256,
        /// What the escrow holds.
        remaining: U256,
    },
    /// A milestone of zero or more than remains.
    #[error("milestone {amount} must be non-zero and at most the {remaining} the escrow holds")]
    InvalidMilestone {
        /// The milestone.
        amount: U256,
        /// What the escrow holds.
        remaining: U256,
    },
    /// An escrow contract other than the kernel.
    #[error("escrow contract {0} is not this kernel: the kernel is its own escrow vault")]
    UnsupportedEscrowContract(Address),
    /// An unusable escrow id.
    #[error("escrow id {0} is zero, already linked, or another transaction's id")]
    EscrowIdUnavailable(B256),
    /// The token moved a different amount.
    #[error(
        "the token moved {received} instead of {expected}: fee-on-transfer tokens are not supported"
    )]
    TransferAmountMismatch {
        /// Asked for.
        expected: U256,
        /// Arrived.
        received: U256,
    },
    /// A zero attestation uid.
    #[error("an attestation uid must be non-zero")]
    ZeroAttestation,
    /// Fee rate above the cap.
    #[error("fee {fee_bps} bps is above the cap of {cap} bps")]
    FeeAboveCap {
        /// The rate.
        fee_bps: U256,
        /// The cap.
        cap: U256,
    },
    /// No fee change scheduled.
    #[error("no fee change is scheduled")]
    NoPendingFeeChange,
    /// The fee change is not due yet.
    #[error("the fee change can execute from {0}")]
    FeeChangeNotReady(U256),
    /// No fees to collect.
    #[error("there are no accrued fees to collect")]
    NoFeesAccrued,
    /// Nothing to claim.
    #[error("there is no deferred payment to claim")]
    NothingToClaim,
    /// A session operation on an ordinary transaction.
    #[error("transaction {0} is not a session")]
    NotSession(B256),
    /// A per-call operation on a session.
    #[error(
        "transaction {0} is a session: it is delivered by closing it with a voucher (closeSession) and pays no milestones"
    )]
    SessionOperationRefused(B256),
    /// A grace period outside the allowed range.
    #[error("grace period {grace}s must be between {min}s and {max}s")]
    GraceOutOfRange {
        /// Given.
        grace: U256,
        /// Shortest.
        min: U256,
        /// Longest.
        max: U256,
    },
    /// The requester has asked to end the session.
    #[error(
        "the requester asked to end session {id}: no more top-ups; the provider may close it until {close_by}"
    )]
    SessionEnding {
        /// The session.
        id: B256,
        /// The last second the provider may close.
        close_by: U256,
    },
    /// The grace period after the end request is over.
    #[error(
        "the grace period ended at {0}: the provider can no longer close the session, and the requester may cancel it"
    )]
    GracePeriodOver(U256),
    /// The provider may still close.
    #[error(
        "the provider may still close the session until {0}: the requester can cancel it after that"
    )]
    GracePeriodNotOver(U256),
    /// A claim above the voucher or the deposit.
    #[error(
        "claim {claim} is above the voucher's {cumulative} or the deposit of {deposit}: claim at most the smaller"
    )]
    ClaimTooHigh {
        /// The claim.
        claim: U256,
        /// The voucher's cumulative amount.
        cumulative: U256,
        /// The deposit.
        deposit: U256,
    },
    /// The voucher is not the requester's signature over these fields.
    #[error(
        "the voucher is not signed by the session's requester {0} over these fields: close with a voucher it signed"
    )]
    InvalidVoucherSignature(Address),
    /// A resolution giving a session's provider more than it claimed.
    #[error(
        "a resolution may give the provider at most the {claimed} it claimed, not {to_provider}"
    )]
    ResolutionAboveClaim {
        /// Given to the provider.
        to_provider: U256,
        /// The claim.
        claimed: U256,
    },
    /// A top-up of zero or beyond the largest deposit.
    #[error("top-up {amount} must be non-zero and keep the deposit ({deposit} now) at most {max}")]
    InvalidTopUp {
        /// The top-up.
        amount: U256,
        /// The deposit before it.
        deposit: U256,
        /// The largest deposit.
        max: U256,
    },
}
