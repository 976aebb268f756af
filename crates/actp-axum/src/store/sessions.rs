//! Sessions at the provider: what each session's deposit covers, what its calls were charged, what the calls in
//! flight hold, the best voucher, and the receipt chain. Concurrent calls on one session never overdraw it: a
//! call holds its maximum before its handler runs and turns the hold into its charge (or gives it back) when it
//! ends, each change made atomically per session by the store (under one lock in process on the embedded
//! store, under the session's row lock on the shared one).
//!
//! The rules live on [`SessionState`] as pure functions; [`Store`](super::Store) applies them atomically.

use actp_core::{
    Address, B256, U256,
    session::{SessionReceipt, SessionVoucher},
};
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

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
        /// Why it was closed (absent from records written before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<CloseReason>,
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
    /// The hold's row on the shared store (0 on the embedded store, where holds live in memory).
    pub(crate) id: i64,
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

#[cfg(test)]
pub(super) mod tests;
