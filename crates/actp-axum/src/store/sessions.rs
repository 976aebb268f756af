//! Sessions at the provider: what each session's deposit covers, what its calls were charged, what the calls in
//! flight hold, the best voucher, and the receipt chain. One record per session in the `sessions` tree; while a
//! session is in use its account lives in memory too, and every change to it happens under one lock, so
//! concurrent calls on one session never overdraw it: a call holds its maximum before its handler runs and turns
//! the hold into its charge (or gives it back) when it ends. Holds stay in memory (they die with the process,
//! and a restart clears them); charges, closes and top-ups are written through before the flush that makes the
//! receipt durable.
//!
//! The rules live on [`SessionState`] as pure functions; [`Store`] applies them atomically.

use std::collections::{HashMap, hash_map::Entry};

use actp_core::{
    Address, B256, U256,
    session::{SessionReceipt, SessionVoucher},
};
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

use super::{Batch, OUTBOX, SESSIONS, Store, StoreError, records};

/// The voucher the provider will close with: the requester's signature over
/// `SessionVoucher(txId, cumulative, requestHash, expiresAt)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionVoucherRecord {
    /// The most the provider may take from the session in total.
    pub cumulative: U256,
    /// The call the voucher authorized.
    pub request_hash: B256,
    /// The call's expiry.
    pub expires_at: u64,
    /// The requester's 65-byte signature (hex in the store).
    pub signature: actp_core::Bytes,
}

impl SessionVoucherRecord {
    /// The voucher struct it signs, for session `tx_id`.
    pub fn voucher(&self, tx_id: B256) -> SessionVoucher {
        SessionVoucher::new(tx_id, self.cumulative, self.request_hash, self.expires_at)
    }
}

/// Why the provider closes a session by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// No call for the configured idle time.
    Idle,
    /// What remains cannot cover the route's maximum.
    UsedUp,
    /// The deadline is near.
    Deadline,
    /// The consumer asked.
    Asked,
    /// The requester asked to end it on chain; the grace period runs.
    EndRequested,
}

/// Where a session stands at this provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SessionStatus {
    /// Calls are served.
    Open,
    /// No new calls; the close is queued and waits for the calls in flight.
    Closing {
        /// Why.
        reason: CloseReason,
    },
    /// Closed on chain.
    Closed {
        /// The close transaction, once mined.
        tx: Option<B256>,
    },
    /// The kernel refused the close (e.g. the requester cancelled after the grace period).
    Failed {
        /// What the kernel said.
        reason: String,
    },
}

/// A session's account at this provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    /// Who pays.
    pub requester: Address,
    /// The deposit as last read from chain (top-ups raise it).
    pub deposit: U256,
    /// The session's deadline.
    pub deadline: u64,
    /// What the calls served so far cost: the sum of the receipts.
    pub charged: U256,
    /// The maxima held by calls in flight.
    pub held: U256,
    /// Calls in flight.
    pub in_flight: u32,
    /// The voucher with the highest cumulative amount received.
    pub best: Option<SessionVoucherRecord>,
    /// The next receipt's position.
    pub next_seq: u64,
    /// The last receipt's hash (zero before any): the proof hash of the close.
    pub head: B256,
    /// When the last call arrived (unix seconds, chain time).
    pub last_call: u64,
    /// Whether this provider moved the session to IN_PROGRESS.
    pub started: bool,
    /// Where it stands.
    pub status: SessionStatus,
}

/// Why a call on a session is refused before its handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HoldRefusal {
    /// The session no longer takes calls.
    NotOpen(SessionStatus),
    /// What remains of the deposit (less what calls in flight hold) cannot cover this call's maximum.
    UsedUp {
        /// What remains for new calls.
        remaining: U256,
        /// This call's maximum.
        needed: U256,
    },
    /// The best voucher, this one included, does not cover what would be owed with this call.
    VoucherBelowOwed {
        /// What would be owed: charged + held + this call's maximum.
        owed: U256,
        /// The highest cumulative amount signed.
        cumulative: U256,
    },
}

/// A call's hold on a session, turned into a charge or given back when the call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallHold {
    /// The session.
    pub(crate) tx_id: B256,
    /// The call's maximum.
    pub(crate) max: U256,
}

impl SessionState {
    /// A session first seen at `now`, with its terms read from chain.
    pub fn new(requester: Address, deposit: U256, deadline: u64, now: u64) -> Self {
        SessionState {
            requester,
            deposit,
            deadline,
            charged: U256::ZERO,
            held: U256::ZERO,
            in_flight: 0,
            best: None,
            next_seq: 0,
            head: B256::ZERO,
            last_call: now,
            started: false,
            status: SessionStatus::Open,
        }
    }

    /// What the deposit still covers for new calls.
    pub fn available(&self) -> U256 {
        self.deposit
            .saturating_sub(self.charged)
            .saturating_sub(self.held)
    }

    /// What the deposit covers after the calls served (the receipts' `remaining`).
    pub fn remaining(&self) -> U256 {
        self.deposit.saturating_sub(self.charged)
    }

    /// Holds `max` for a call authorized by `voucher`. The voucher is kept if it is the best so far; the call
    /// is refused unless the best voucher covers everything that would be owed with it and the deposit does.
    pub(crate) fn hold(
        &mut self,
        max: U256,
        voucher: SessionVoucherRecord,
        now: u64,
    ) -> Result<(), HoldRefusal> {
        if self.status != SessionStatus::Open {
            return Err(HoldRefusal::NotOpen(self.status.clone()));
        }
        let owed = self.charged.saturating_add(self.held).saturating_add(max);
        let best = self
            .best
            .as_ref()
            .map_or(voucher.cumulative, |b| b.cumulative.max(voucher.cumulative));
        if best < owed {
            return Err(HoldRefusal::VoucherBelowOwed {
                owed,
                cumulative: best,
            });
        }
        if self.available() < max {
            return Err(HoldRefusal::UsedUp {
                remaining: self.available(),
                needed: max,
            });
        }
        if self
            .best
            .as_ref()
            .is_none_or(|b| voucher.cumulative > b.cumulative)
        {
            self.best = Some(voucher);
        }
        self.held = self.held.saturating_add(max);
        self.in_flight = self.in_flight.saturating_add(1);
        self.last_call = self.last_call.max(now);
        Ok(())
    }

    /// Ends a held call with its charge (at most its maximum) and returns the receipt to sign, chained to the
    /// one before in `domain`.
    pub(crate) fn charge(
        &mut self,
        tx_id: B256,
        max: U256,
        charge: U256,
        request_hash: B256,
        result_hash: B256,
        domain: &Eip712Domain,
    ) -> SessionReceipt {
        let charge = charge.min(max);
        self.held = self.held.saturating_sub(max);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.charged = self.charged.saturating_add(charge);
        let receipt = SessionReceipt {
            txId: tx_id,
            seq: self.next_seq,
            charge,
            charged: self.charged,
            remaining: self.remaining(),
            requestHash: request_hash,
            resultHash: result_hash,
            previous: self.head,
        };
        self.next_seq = self.next_seq.saturating_add(1);
        self.head = receipt.hash(domain);
        receipt
    }

    /// Ends a held call without a charge (its handler failed).
    pub(crate) fn release(&mut self, max: U256) {
        self.held = self.held.saturating_sub(max);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Stops taking calls for `reason`; `false` if the session was not open.
    pub(crate) fn begin_close(&mut self, reason: CloseReason) -> bool {
        if self.status != SessionStatus::Open {
            return false;
        }
        self.status = SessionStatus::Closing { reason };
        true
    }
}

impl Store {
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
            .map(|(outcome, _)| outcome.map(|()| CallHold { tx_id, max })))
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
                .map_err(|_| StoreError(format!("corrupt session key {key:?}")))?;
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
            let close = serde_json::to_vec(&super::Delivery {
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

    /// Records that this provider moved the session to IN_PROGRESS.
    pub(crate) fn mark_session_started(&self, tx_id: B256) -> Result<(), StoreError> {
        self.update_session(tx_id, |s| s.started = true)?;
        Ok(())
    }

    /// Every session this provider knows, with its account (as in use, for the ones in memory).
    pub(crate) fn sessions(&self) -> Result<Vec<(B256, SessionState)>, StoreError> {
        let stored = records(&self.sessions)
            .map(|item| {
                let (key, value) = item?;
                let id = B256::try_from(key.as_ref())
                    .map_err(|_| StoreError(format!("corrupt session key {key:?}")))?;
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

#[cfg(test)]
mod tests;
