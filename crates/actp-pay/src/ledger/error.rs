//! The ledger's errors: storage failures and the spend policy's refusals.

use std::path::PathBuf;

use actp_core::{Address, Amount};

use crate::policy::CapKind;

/// Why the ledger could not do what was asked (storage, not policy).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process has this sled ledger open (sled allows one process at a time).
    #[error(
        "the spend ledger in {} is open in another process (an agent paying with this data directory): stop it first, use `actp budget suspend` to stop its payments at once, or share the ledger through PostgreSQL (--store postgres://…)",
        path.display()
    )]
    Busy {
        /// The ledger directory.
        path: PathBuf,
    },
    /// The store failed (the source says how).
    #[error("spend ledger storage failed: {0}")]
    Store(#[source] actp_store::StoreError),
    /// An entry does not decode (written by an incompatible version, or damaged).
    #[error(
        "spend ledger entry {0} is unreadable: the store was written by another version, or damaged"
    )]
    Corrupt(String),
    /// No payment has this idempotency key.
    #[error("no payment with idempotency key {0:?} in the ledger")]
    UnknownPayment(String),
    /// The policy cannot be enforced as written.
    #[error(transparent)]
    InvalidPolicy(#[from] crate::policy::PolicyError),
    /// The idempotency key is empty or too long.
    #[error("idempotency key {0:?} is not usable: give 1 to 200 printable characters")]
    InvalidKey(String),
}

impl From<actp_store::StoreError> for LedgerError {
    fn from(e: actp_store::StoreError) -> Self {
        match e {
            actp_store::StoreError::Locked { path } => LedgerError::Busy { path },
            other => LedgerError::Store(other),
        }
    }
}

/// A payment refused by the spend policy, before any escrow exists. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The agent's kill switch is on.
    #[error(
        "agent {agent} is suspended{}: no payment is made until `actp budget resume {agent}`",
        reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    Suspended {
        /// The agent.
        agent: Address,
        /// Why, as given when suspending.
        reason: Option<String>,
    },
    /// The provider is on the denylist, or not on the allowlist.
    #[error(
        "provider {provider} is not allowed by agent {agent}'s policy: add it to `allow` (or remove it from `deny`) with `actp budget set`"
    )]
    ProviderNotAllowed {
        /// The agent.
        agent: Address,
        /// The provider.
        provider: Address,
    },
    /// The provider's earliest acceptable deadline would lock the funds longer than the policy allows.
    #[error(
        "provider {provider} wants the escrow to last at least {needed_seconds}s, but agent {agent}'s policy allows at most {max_seconds}s: raise `max_escrow_ttl` with `actp budget set --max-escrow-ttl` if you trust this provider"
    )]
    EscrowTooLong {
        /// The agent.
        agent: Address,
        /// The provider.
        provider: Address,
        /// How long the provider's instructions need the escrow to last, from now.
        needed_seconds: u64,
        /// The policy's limit.
        max_seconds: u64,
    },
    /// The payment would take a cap past its limit: the hard limit.
    #[error(
        "{cap} of {limit} reached for {period}: {used} spent or reserved, this call needs {amount}; raise `{}` with `actp budget set` or wait for the next period",
        cap.field()
    )]
    CapReached {
        /// Which cap.
        cap: CapKind,
        /// Its limit.
        limit: Amount,
        /// Already spent or reserved in the period.
        used: Amount,
        /// What the call needs.
        amount: Amount,
        /// The period (`2026-11-23`, `2026-11`, or `this call`).
        period: String,
        /// The provider, for per-provider caps.
        provider: Option<Address>,
    },
}
