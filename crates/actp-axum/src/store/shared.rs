//! The shared backend: the paywall's state in PostgreSQL ([`actp_store::paywall`]), for replicas of one
//! provider. Session accounts are read, changed by [`SessionState`]'s rules and written back inside a
//! transaction that locks the session's row, so replicas take turns on one session; what calls in flight hold
//! is the sum of their live hold rows, never a number one replica could leave behind.

use std::{
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

use actp_core::{B256, U256};
use actp_store::paywall::{Hold, PaywallStore, SessionTx};

use super::{
    CallHold, CloseReason, HoldRefusal, Queued, SessionState, SessionVoucherRecord, StoreError,
};

/// How many outbox entries one replica leases at a time.
const LEASE_BATCH: usize = 256;

#[derive(Clone)]
pub(crate) struct SharedStore {
    pub(super) store: PaywallStore,
    /// How long an outbox entry is held without being renewed.
    lease: Duration,
    /// How long a call's hold lasts if the call never ends.
    hold_lease: Duration,
    requests: Arc<AtomicUsize>,
}

/// `state` with what the live `holds` hold.
fn with_holds(mut state: SessionState, holds: &[Hold]) -> SessionState {
    state.held = holds
        .iter()
        .fold(U256::ZERO, |sum, h| sum.saturating_add(h.max));
    state.in_flight = u32::try_from(holds.len()).unwrap_or(u32::MAX);
    state
}

fn decode(bytes: &[u8]) -> Result<SessionState, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

impl SharedStore {
    pub(super) fn new(store: PaywallStore, lease: Duration, hold_lease: Duration) -> Self {
        SharedStore {
            store,
            lease,
            hold_lease,
            requests: Arc::default(),
        }
    }

    /// How long a request in progress holds its claim or its session hold if its replica dies.
    pub(super) fn hold_lease(&self) -> Duration {
        self.hold_lease
    }

    pub(super) fn requests(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.requests)
    }

    /// A quarter of the lease, so that work a dead replica held is taken over soon after its lease ends.
    pub(super) fn poll(&self) -> Duration {
        (self.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    pub(super) async fn pending(&self) -> Result<Vec<Queued>, StoreError> {
        Ok(self
            .store
            .lease(LEASE_BATCH, self.lease)
            .await?
            .into_iter()
            .map(|l| Queued {
                seq: l.seq,
                delivery: l.delivery,
                doubtful: l.taken_over,
            })
            .collect())
    }

    pub(super) async fn session(&self, tx_id: B256) -> Result<Option<SessionState>, StoreError> {
        match self.store.session(tx_id).await? {
            Some((bytes, holds)) => Ok(Some(with_holds(decode(&bytes)?, &holds))),
            None => Ok(None),
        }
    }

    pub(super) async fn session_or_insert(
        &self,
        tx_id: B256,
        fresh: SessionState,
    ) -> Result<SessionState, StoreError> {
        self.store
            .insert_session(tx_id, &serde_json::to_vec(&fresh)?)
            .await?;
        self.session(tx_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("session {tx_id} vanished")))
    }

    /// The session locked, with its account as its live holds make it.
    async fn begin(&self, tx_id: B256) -> Result<Option<(SessionTx, SessionState)>, StoreError> {
        let Some(tx) = self.store.begin_session(tx_id).await? else {
            return Ok(None);
        };
        let state = with_holds(decode(tx.state())?, tx.holds());
        Ok(Some((tx, state)))
    }

    /// Applies `f` under the session's lock; with `ending`, that call's hold ends with it (counted as held
    /// while `f` runs, even if its lease ran out).
    pub(super) async fn update_session<T>(
        &self,
        tx_id: B256,
        ending: Option<CallHold>,
        f: impl FnOnce(&mut SessionState) -> T,
    ) -> Result<Option<(T, SessionState)>, StoreError> {
        let Some((mut tx, mut state)) = self.begin(tx_id).await? else {
            return Ok(None);
        };
        if let Some(hold) = ending
            && !tx.holds().iter().any(|h| h.id == hold.id)
        {
            // Expired: `f` takes the call's maximum out of what is held, so count it in first.
            state.held = state.held.saturating_add(hold.max);
            state.in_flight = state.in_flight.saturating_add(1);
        }
        let out = f(&mut state);
        let bytes = serde_json::to_vec(&state)?;
        match ending {
            Some(hold) => tx.put_and_unhold(&bytes, hold.id).await?,
            None => tx.put(&bytes).await?,
        }
        tx.commit().await?;
        Ok(Some((out, state)))
    }

    pub(super) async fn hold(
        &self,
        tx_id: B256,
        max: U256,
        voucher: SessionVoucherRecord,
        now: u64,
    ) -> Result<Option<Result<CallHold, HoldRefusal>>, StoreError> {
        let Some((mut tx, mut state)) = self.begin(tx_id).await? else {
            return Ok(None);
        };
        if let Err(refused) = state.hold(max, voucher, now) {
            return Ok(Some(Err(refused)));
        }
        let hold = tx
            .put_and_hold(&serde_json::to_vec(&state)?, max, self.hold_lease)
            .await?;
        tx.commit().await?;
        Ok(Some(Ok(CallHold {
            tx_id,
            max,
            id: hold.id,
        })))
    }

    pub(super) async fn queue_session_close(
        &self,
        tx_id: B256,
        reason: CloseReason,
    ) -> Result<bool, StoreError> {
        let Some((mut tx, mut state)) = self.begin(tx_id).await? else {
            return Ok(false);
        };
        if !state.begin_close(reason) {
            return Ok(false);
        }
        tx.put(&serde_json::to_vec(&state)?).await?;
        tx.queue_close(state.started).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn finish_session_close(
        &self,
        seq: u64,
        tx_id: B256,
        outcome: Result<Option<B256>, String>,
    ) -> Result<bool, StoreError> {
        let Some((mut tx, mut state)) = self.begin(tx_id).await? else {
            return Ok(false);
        };
        if !tx.finish_close(seq).await? {
            return Ok(false);
        }
        state.status = super::closed(outcome, &state.status);
        tx.put(&serde_json::to_vec(&state)?).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn sessions(&self) -> Result<Vec<(B256, SessionState)>, StoreError> {
        self.store
            .sessions()
            .await?
            .into_iter()
            .map(|(id, bytes, holds)| Ok((id, with_holds(decode(&bytes)?, &holds))))
            .collect()
    }
}
