//! The provider's state: one claim per transaction, the delivery outbox, and sessions ([`sessions`]), on one
//! of two backends behind [`Store`]:
//!
//! - embedded: sled in the data directory ([`actp_store::paywall::sled::SledPaywall`]), behind a write-ahead
//!   journal with group commit; one process;
//! - [`shared`]: PostgreSQL ([`actp_store::paywall::PaywallStore`]), which any number of replicas of one
//!   provider share: claims are conditional upserts, the outbox is leased, and a session's headroom changes
//!   under its row lock.
//!
//! The records and both backends are in `actp-store`; what a session's account holds and how a call changes
//! it are here ([`sessions`]).

mod sessions;
mod shared;

use actp_store::paywall::sled::{Account, SledPaywall};

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actp_core::{B256, U256};

pub use actp_store::paywall::{Claim, ClaimStatus, DiskSyncs, Durability};
pub(crate) use actp_store::paywall::{ClaimOutcome, Delivery};
pub(crate) use sessions::{CallHold, HoldRefusal};
pub use sessions::{CloseReason, SessionState, SessionStatus, SessionVoucherRecord};

/// A storage failure. The source is kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store (sled or PostgreSQL) failed.
    #[error("paywall database: {0}")]
    Store(#[from] actp_store::StoreError),
    /// A record does not decode.
    #[error("paywall database: corrupt record: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A paid request in flight, counted while it lives ([`Store::request`]).
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where the paywall keeps its state.
#[derive(Clone)]
pub(crate) enum Store {
    Embedded(SledPaywall<SessionState>),
    Shared(shared::SharedStore),
}

/// A delivery in the outbox, as this process may send it.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) delivery: Delivery,
    /// Another replica (or this one before a restart) may have sent it already: read the chain first.
    pub(crate) doubtful: bool,
}

impl Store {
    /// The sled database in `path`, its commits as durable as `durability` says.
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        Ok(Store::Embedded(SledPaywall::open(path, durability)?))
    }

    /// The shared store `store`, with the leases of outbox entries and of session holds.
    pub(crate) fn shared(
        store: actp_store::paywall::PaywallStore,
        outbox_lease: Duration,
        hold_lease: Duration,
    ) -> Self {
        Store::Shared(shared::SharedStore::new(store, outbox_lease, hold_lease))
    }

    /// How often the outbox looks for work no one holds (another replica's expired leases); `None` when
    /// only this process queues work.
    pub(crate) fn poll(&self) -> Option<Duration> {
        match self {
            Store::Embedded(_) => None,
            Store::Shared(s) => Some(s.poll()),
        }
    }

    /// Counts a paid request in flight until the guard drops.
    pub(crate) fn request(&self) -> InFlight {
        let requests = match self {
            Store::Embedded(s) => s.requests(),
            Store::Shared(s) => s.requests(),
        };
        requests.fetch_add(1, Ordering::SeqCst);
        InFlight(requests)
    }

    pub(crate) async fn claim_of(&self, tx_id: B256) -> Result<Option<Claim>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.claim_of(tx_id)?),
            Store::Shared(s) => Ok(s.store.claim_of(tx_id).await?),
        }
    }

    /// Atomically takes `tx_id` for a request if nobody holds or used it (a released claim can be retaken).
    pub(crate) async fn claim(
        &self,
        tx_id: B256,
        request_hash: B256,
    ) -> Result<ClaimOutcome, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.claim(tx_id, request_hash)?),
            Store::Shared(s) => Ok(s.store.claim(tx_id, request_hash, s.hold_lease()).await?),
        }
    }

    pub(crate) async fn mark_started(&self, tx_id: B256) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.mark_started(tx_id)?),
            Store::Shared(s) => Ok(s.store.mark_started(tx_id).await?),
        }
    }

    /// Gives the transaction back: the handler failed or the request was refused after the claim.
    pub(crate) async fn release(&self, tx_id: B256) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.release(tx_id)?),
            Store::Shared(s) => Ok(s.store.release(tx_id).await?),
        }
    }

    /// Queues the delivery and records the request as served, together and durably.
    pub(crate) async fn serve(
        &self,
        tx_id: B256,
        proof_hash: B256,
        started: bool,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.serve(tx_id, proof_hash, started).await?),
            Store::Shared(s) => Ok(s.store.serve(tx_id, proof_hash, started).await?),
        }
    }

    /// The deliveries this process may send now, oldest first (on the shared store: the ones it leased).
    pub(crate) async fn pending(&self) -> Result<Vec<Queued>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s
                .pending()?
                .into_iter()
                .map(|(seq, delivery)| Queued {
                    seq,
                    delivery,
                    doubtful: false,
                })
                .collect()),
            Store::Shared(s) => s.pending().await,
        }
    }

    /// Whether delivery `seq` is still queued (and, on the shared store, leased by this process).
    pub(crate) async fn is_pending(&self, seq: u64) -> bool {
        match self {
            Store::Embedded(s) => s.is_pending(seq),
            Store::Shared(s) => s.store.holds_lease(seq).await.unwrap_or(false),
        }
    }

    /// Closes a delivery with its outcome. `false` if it was closed already (or, on the shared store, taken
    /// over by another replica).
    pub(crate) async fn finish(
        &self,
        seq: u64,
        tx_id: B256,
        outcome: Result<Option<B256>, String>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.finish(seq, tx_id, outcome)?),
            Store::Shared(s) => Ok(s.store.finish(seq, tx_id, outcome).await?),
        }
    }

    pub(crate) async fn outbox_len(&self) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.outbox_len()),
            Store::Shared(s) => Ok(s.store.outbox_len().await?),
        }
    }

    /// Makes every write made before this call durable (embedded: one journal sync shared by every request
    /// waiting; shared: each change is committed when made).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.flush().await?),
            Store::Shared(_) => Ok(()),
        }
    }

    /// The embedded store's journal syncs, and how many were slow (none for a shared store).
    pub(crate) fn disk_syncs(&self) -> DiskSyncs {
        match self {
            Store::Embedded(s) => s.disk_syncs(),
            Store::Shared(_) => DiskSyncs::default(),
        }
    }

    /// The session's account, if this provider has seen it.
    pub(crate) async fn session(&self, tx_id: B256) -> Result<Option<SessionState>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.session(tx_id)?),
            Store::Shared(s) => s.session(tx_id).await,
        }
    }

    /// The session's account, created from `fresh` the first time the session is seen.
    pub(crate) async fn session_or_insert(
        &self,
        tx_id: B256,
        fresh: SessionState,
    ) -> Result<SessionState, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.session_or_insert(tx_id, fresh)?),
            Store::Shared(s) => s.session_or_insert(tx_id, fresh).await,
        }
    }

    /// Applies `f` to the session's account and writes it through; returns what `f` returned with the account
    /// after it, `None` if the session is unknown.
    pub(crate) async fn update_session<T: Send>(
        &self,
        tx_id: B256,
        f: impl FnOnce(&mut SessionState) -> T + Send,
    ) -> Result<Option<(T, SessionState)>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.update_session(tx_id, f)?),
            Store::Shared(s) => s.update_session(tx_id, None, f).await,
        }
    }

    /// Ends `hold` with `f` (which charges the call) and writes the account through.
    pub(crate) async fn charge<T: Send>(
        &self,
        hold: CallHold,
        f: impl FnOnce(&mut SessionState) -> T + Send,
    ) -> Result<Option<(T, SessionState)>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.update_session(hold.tx_id, f)?),
            Store::Shared(s) => s.update_session(hold.tx_id, Some(hold), f).await,
        }
    }

    /// Holds `max` on the session for a call; the refusal says why not.
    pub(crate) async fn hold(
        &self,
        tx_id: B256,
        max: U256,
        voucher: SessionVoucherRecord,
        now: u64,
    ) -> Result<Option<Result<CallHold, HoldRefusal>>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s
                .hold_in_memory(tx_id, |st| st.hold(max, voucher, now))?
                .map(|(outcome, _)| outcome.map(|()| CallHold { tx_id, max, id: 0 }))),
            Store::Shared(s) => s.hold(tx_id, max, voucher, now).await,
        }
    }

    /// Gives a call's hold back without a charge.
    pub(crate) async fn release_hold(&self, hold: CallHold) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s
                .hold_in_memory(hold.tx_id, |st| st.release(hold.max))
                .map(drop)
                .map_err(StoreError::from),
            Store::Shared(s) => s
                .update_session(hold.tx_id, Some(hold), |st| st.release(hold.max))
                .await
                .map(drop),
        }
    }

    /// At start: the calls in flight died with the process that served them, and their holds go back
    /// (embedded; shared holds expire with their lease instead, since other replicas' calls may be running).
    pub(crate) fn clear_holds(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.clear_holds()?),
            Store::Shared(_) => Ok(()),
        }
    }

    /// Stops taking calls on the session and queues its close in the outbox, once.
    pub(crate) async fn queue_session_close(
        &self,
        tx_id: B256,
        reason: CloseReason,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.queue_close(tx_id, |st| st.begin_close(reason))?),
            Store::Shared(s) => s.queue_session_close(tx_id, reason).await,
        }
    }

    /// Ends a queued session close with its outcome. `false` if it was ended already.
    pub(crate) async fn finish_session_close(
        &self,
        seq: u64,
        tx_id: B256,
        outcome: Result<Option<B256>, String>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.finish_close(seq, tx_id, |st| {
                st.status = closed(outcome, &st.status);
            })?),
            Store::Shared(s) => s.finish_session_close(seq, tx_id, outcome).await,
        }
    }

    /// Records that this provider moved the session to IN_PROGRESS.
    pub(crate) async fn mark_session_started(&self, tx_id: B256) -> Result<(), StoreError> {
        self.update_session(tx_id, |s| s.started = true)
            .await
            .map(drop)
    }

    /// Every session this provider knows, with its account.
    pub(crate) async fn sessions(&self) -> Result<Vec<(B256, SessionState)>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.sessions()?),
            Store::Shared(s) => s.sessions().await,
        }
    }
}

#[cfg(test)]
mod tests;

/// What a session's close came to, as its status; `closing` is its status while the close was queued (which
/// says why).
pub(crate) fn closed(
    outcome: Result<Option<B256>, String>,
    closing: &SessionStatus,
) -> SessionStatus {
    match outcome {
        Ok(tx) => SessionStatus::Closed {
            tx,
            reason: match closing {
                SessionStatus::Closing { reason } => Some(*reason),
                _ => None,
            },
        },
        Err(reason) => SessionStatus::Failed { reason },
    }
}

impl Account for SessionState {
    fn is_done(&self) -> bool {
        matches!(
            self.status,
            SessionStatus::Closed { .. } | SessionStatus::Failed { .. }
        )
    }

    fn started(&self) -> bool {
        self.started
    }

    fn clear_holds(&mut self) {
        self.held = U256::ZERO;
        self.in_flight = 0;
    }
}
