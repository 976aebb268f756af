//! Sessions on sled: one record per session in the `sessions` tree; while a session is in use its account
//! lives in memory too (this process holds the database alone), and every change to it happens under one
//! lock. Holds stay in memory (they die with the process, and a restart clears them); charges, closes and
//! top-ups are written through before the flush that makes the receipt durable.

use std::collections::{HashMap, hash_map::Entry};

use actp_core::{B256, U256};

use super::{SledStore, records};
use crate::store::{
    CallHold, CloseReason, Delivery, HoldRefusal, OUTBOX, SESSIONS, SessionState, SessionStatus,
    SessionVoucherRecord, StoreError, journal::Batch,
};

impl SledStore {
    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<B256, SessionState>> {
        // A panic while holding the lock leaves whole accounts behind: each change replaces one at once.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's account, if this provider has seen it.
    pub(crate) fn session(&self, tx_id: B256) -> Result<Option<SessionState>, StoreError> {
        let mut accounts = self.accounts();
        if let Some(state) = accounts.get(&tx_id) {
            return Ok(Some(state.clone()));
        }
        let Some(state) = super::read::<SessionState>(&self.sessions, tx_id)? else {
            return Ok(None);
        };
        accounts.insert(tx_id, state.clone());
        Ok(Some(state))
    }

    /// The session's account, created from `fresh` (and written) the first time the session is seen.
    pub(crate) fn session_or_insert(
        &self,
        tx_id: B256,
        fresh: SessionState,
    ) -> Result<SessionState, StoreError> {
        let mut accounts = self.accounts();
        if let Some(state) = accounts.get(&tx_id) {
            return Ok(state.clone());
        }
        let state = match super::read::<SessionState>(&self.sessions, tx_id)? {
            Some(stored) => stored,
            None => {
                let bytes = serde_json::to_vec(&fresh)?;
                self.journal
                    .write(|| Ok((Batch::new().put(SESSIONS, tx_id, bytes), ())))?;
                fresh
            }
        };
        accounts.insert(tx_id, state.clone());
        Ok(state)
    }

    /// Applies `f` to the session's account and writes it through (durable with the next flush); returns what
    /// `f` returned with the account after it, `None` if the session is unknown.
    pub(crate) fn update_session<T>(
        &self,
        tx_id: B256,
        f: impl FnOnce(&mut SessionState) -> T,
    ) -> Result<Option<(T, SessionState)>, StoreError> {
        self.change_session(tx_id, true, f)
    }

    /// Applies `f` to the session's account, in memory only or (`write`) written through. Changes are atomic
    /// per account: one lock guards every account, and a failed write leaves the account as it was.
    fn change_session<T>(
        &self,
        tx_id: B256,
        write: bool,
        f: impl FnOnce(&mut SessionState) -> T,
    ) -> Result<Option<(T, SessionState)>, StoreError> {
        let mut accounts = self.accounts();
        let state = match accounts.entry(tx_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => match super::read::<SessionState>(&self.sessions, tx_id)? {
                Some(stored) => v.insert(stored),
                None => return Ok(None),
            },
        };
        let mut next = state.clone();
        let out = f(&mut next);
        if write {
            let bytes = serde_json::to_vec(&next)?;
            self.journal
                .write(|| Ok((Batch::new().put(SESSIONS, tx_id, bytes), ())))?;
        }
        let done = matches!(
            next.status,
            SessionStatus::Closed { .. } | SessionStatus::Failed { .. }
        );
        *state = next.clone();
        // A closed session takes no more calls: its account stays on disk only.
        if done {
            accounts.remove(&tx_id);
        }
        Ok(Some((out, next)))
    }

    /// Holds `max` on the session for a call (in memory: holds die with the process); the refusal says why
    /// not.
    pub(crate) fn hold(
        &self,
        tx_id: B256,
        max: U256,
        voucher: SessionVoucherRecord,
        now: u64,
    ) -> Result<Option<Result<CallHold, HoldRefusal>>, StoreError> {
        Ok(self
            .change_session(tx_id, false, |s| s.hold(max, voucher, now))?
            .map(|(outcome, _)| outcome.map(|()| CallHold { tx_id, max, id: 0 })))
    }

    /// Gives a call's hold back without a charge.
    pub(crate) fn release_hold(&self, hold: CallHold) -> Result<(), StoreError> {
        self.change_session(hold.tx_id, false, |s| s.release(hold.max))?;
        Ok(())
    }

    /// Every call in flight died with the process that served it: at start, all holds go back.
    pub(crate) fn clear_holds(&self) -> Result<(), StoreError> {
        for item in records(&self.sessions) {
            let (key, _) = item?;
            let id = B256::try_from(key.as_ref())
                .map_err(|_| StoreError::Corrupt(format!("session key {key:?}")))?;
            self.update_session(id, |s| {
                s.held = U256::ZERO;
                s.in_flight = 0;
            })?;
        }
        Ok(())
    }

    /// Stops taking calls on the session and queues its close in the outbox, durably with the next flush;
    /// `false` if it was closing or closed already (the close is queued once).
    pub(crate) fn queue_session_close(
        &self,
        tx_id: B256,
        reason: CloseReason,
    ) -> Result<bool, StoreError> {
        let Some((newly, state)) = self.update_session(tx_id, |s| s.begin_close(reason))? else {
            return Ok(false);
        };
        if newly {
            let seq = self.db.generate_id()?;
            let close = serde_json::to_vec(&Delivery {
                tx_id,
                proof_hash: B256::ZERO,
                started: state.started,
                session: true,
            })?;
            self.journal
                .write(|| Ok((Batch::new().put(OUTBOX, seq.to_be_bytes(), close), ())))?;
        }
        Ok(newly)
    }

    /// Ends a queued session close: records the outcome on the account, then removes it from the outbox.
    /// `false` if it was ended already.
    pub(crate) fn finish_session_close(
        &self,
        seq: u64,
        tx_id: B256,
        outcome: Result<Option<B256>, String>,
    ) -> Result<bool, StoreError> {
        if !self.is_pending(seq) {
            return Ok(false);
        }
        self.update_session(tx_id, |s| {
            s.status = match &outcome {
                Ok(tx) => SessionStatus::Closed { tx: *tx },
                Err(reason) => SessionStatus::Failed {
                    reason: reason.clone(),
                },
            };
        })?;
        self.journal.write(|| {
            let pending = self.is_pending(seq);
            let batch = Batch::new();
            Ok((
                if pending {
                    batch.remove(OUTBOX, seq.to_be_bytes())
                } else {
                    batch
                },
                pending,
            ))
        })
    }

    /// Every session this provider knows, with its account (as in use, for the ones in memory).
    pub(crate) fn sessions(&self) -> Result<Vec<(B256, SessionState)>, StoreError> {
        let stored = records(&self.sessions)
            .map(|item| {
                let (key, value) = item?;
                let id = B256::try_from(key.as_ref())
                    .map_err(|_| StoreError::Corrupt(format!("session key {key:?}")))?;
                Ok((id, value))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let accounts = self.accounts();
        stored
            .into_iter()
            .map(|(id, value)| match accounts.get(&id) {
                Some(state) => Ok((id, state.clone())),
                None => Ok((id, serde_json::from_slice(&value)?)),
            })
            .collect()
    }
}
