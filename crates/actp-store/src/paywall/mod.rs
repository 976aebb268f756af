//! A provider's paywall state: one claim per transaction, the delivery outbox, and sessions (their accounts, of
//! the paywall's own type, and the holds of calls in flight), on two backends:
//!
//! - [`sled::SledPaywall`]: the embedded default, one process, every change through a write-ahead
//!   journal that makes it durable with one `fdatasync` shared by the requests waiting (group commit), or
//!   ([`Durability::Buffered`]) written to the operating system at once and synced in the background;
//! - [`PaywallStore`]: PostgreSQL, which replicas of one provider share.
//!
//! On PostgreSQL, each operation's isolation and locking (READ COMMITTED throughout):
//! - **a claim** is one conditional upsert: `INSERT … ON CONFLICT DO UPDATE … WHERE status = 'released'` (or
//!   an active claim whose lease ran out: its replica died while serving). The row lock it takes makes two
//!   replicas' claims on one transaction exclusive: exactly one gets a row back. No chain transaction, one
//!   round trip.
//! - **serving** writes the outbox entry and the claim's new status in one statement (a data-modifying
//!   `WITH`), so a delivery is queued exactly when its request is recorded as served.
//! - **the outbox** is sent by one replica at a time, the one holding the sender's lease (an upsert that
//!   succeeds only for its holder, or once it has expired): the replicas share the provider's key, and one
//!   sender keeps its nonces in order. The sender leases entries in one `UPDATE` of the oldest whose lease is
//!   free, expired or already its own (`FOR UPDATE SKIP LOCKED`); an entry leased before by another owner is
//!   marked so that its new owner reads the chain before sending. Closing an entry deletes it only while its
//!   owner still holds it.
//! - **a session's headroom** changes in a transaction that locks the session's row (`SELECT … FOR UPDATE`):
//!   calls on one session take turns, across replicas, to hold their maximum, to charge (the receipts chain
//!   in that order), to top up and to close. Holds are rows with a lease, so a replica killed mid-call leaves
//!   a hold that expires.

mod journal;
mod pg;
pub mod sled;

use actp_core::B256;
use serde::{Deserialize, Serialize};

pub use journal::{BUFFERED_SYNC_INTERVAL, DiskSyncs, Durability};
pub use pg::{Hold, Leased, PaywallStore, SessionTx};

/// Where a transaction's one request stands at this provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimStatus {
    /// A request is being verified or served now.
    Active,
    /// The handler failed; the transaction may pay for a retry.
    Released,
    /// Served; the delivery is in the outbox.
    Served,
    /// Delivered on chain.
    Delivered,
    /// Served, but the kernel refused the delivery (e.g. the consumer cancelled first).
    Failed,
}

impl ClaimStatus {
    fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Active => "active",
            ClaimStatus::Released => "released",
            ClaimStatus::Served => "served",
            ClaimStatus::Delivered => "delivered",
            ClaimStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => ClaimStatus::Active,
            "released" => ClaimStatus::Released,
            "served" => ClaimStatus::Served,
            "delivered" => ClaimStatus::Delivered,
            "failed" => ClaimStatus::Failed,
            _ => return None,
        })
    }
}

/// The record of one transaction's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Where it stands.
    pub status: ClaimStatus,
    /// The request being (or that was) served: `request_hash(method, path, bodyHash)`.
    pub request_hash: B256,
    /// Whether this provider moved the transaction to IN_PROGRESS.
    pub started: bool,
    /// The delivery proof hash, once served.
    pub proof_hash: Option<B256>,
    /// The hash of the DELIVERED transaction, once mined.
    pub delivery_tx: Option<B256>,
    /// Why delivery failed, if it did.
    pub failure: Option<String>,
}

/// A delivery (or a session's close) waiting to be put on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The transaction.
    pub tx_id: B256,
    /// The proof hash to deliver with (zero for a session: its close reads the account).
    pub proof_hash: B256,
    /// Whether this provider had moved the transaction to IN_PROGRESS when it was queued.
    pub started: bool,
    /// A session's close rather than a per-call delivery: the claim, voucher and proof hash are read from
    /// the session's account when it is sent.
    #[serde(default)]
    pub session: bool,
}

/// The outcome of trying to claim a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed; `started` if this provider had already moved it to IN_PROGRESS (a retry).
    Claimed {
        /// Whether it is IN_PROGRESS already.
        started: bool,
    },
    /// Someone else holds or used it.
    Taken,
}
