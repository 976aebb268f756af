//! Finishing what crashes and failed providers left open: escrows of reservations whose outcome was lost,
//! reservations that never became escrows, unserved escrows past their deadline, mismatches to dispute.

use actp_core::{Amount, State, U256};

use super::{AfterDelivery, PayingClient};
use crate::{
    error::PayError,
    ledger::{Payment, PaymentState},
};

/// What [`PayingClient::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Reservations whose escrow was found on chain (now spend).
    pub recovered: u64,
    /// Reservations with no escrow, given back.
    pub released: u64,
    /// Unserved escrows cancelled after their deadline and refunded.
    pub reclaimed: u64,
    /// Escrows seen settled (or settled now, with [`AfterDelivery::SettleNow`]).
    pub settled: u64,
    /// Mismatched deliveries disputed.
    pub disputed: u64,
    /// Disputes resolved or escrows cancelled by the provider, refunds recorded.
    pub refunded: u64,
    /// Still waiting (in flight, before a deadline, within a window).
    pub waiting: u64,
}

impl PayingClient {
    /// Finds the escrow of a reservation whose outcome was lost: an escrow created by the agent from the
    /// reservation's block on, with its provider, amount and service, that no other payment claims. With none
    /// and nothing of the agent's still pending at the node, the reservation is given back.
    pub(super) async fn recover(&self, payment: Payment) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let service_hash = actp_core::ids::service_hash(&payment.service);
        for created in inner.kernel.created_by(inner.agent, payment.block).await? {
            if created.provider == payment.provider
                && created.amount == payment.amount.to_u256()
                && created.service_hash == service_hash
                && !inner.ledger.knows_tx(created.id)?
            {
                let record = inner.kernel.get(created.id).await?;
                if record.state == State::Initiated {
                    continue;
                }
                return Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
                    p.state = PaymentState::Funded;
                    p.tx_id = Some(created.id);
                    p.deadline = Some(record.deadline);
                    p.note = Some("escrow found on chain after an interrupted payment".into());
                })?);
            }
        }
        if inner.kernel.has_pending(inner.agent).await? {
            return Ok(payment);
        }
        Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
            p.state = PaymentState::Released;
            p.note = Some(
                "no escrow was created: the interrupted payment never reached the chain".into(),
            );
        })?)
    }

    /// Finishes what calls left open (see the module docs). Safe to run at any time, from a loop or a cron;
    /// calls running in this process are left alone.
    pub async fn reconcile(&self) -> Result<ReconcileReport, PayError> {
        let inner = &*self.inner;
        let mut report = ReconcileReport::default();
        let now = inner.kernel.chain_time().await?;
        for payment in inner.ledger.payments(inner.agent)? {
            if payment.state.is_final()
                || inner
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&payment.key)
            {
                continue;
            }
            let key = payment.key.clone();
            let update = |state: PaymentState, refunded: Option<U256>| {
                inner.ledger.update(inner.agent, &key, |p| {
                    p.state = state;
                    if let Some(r) = refunded {
                        p.refunded = Amount::try_from_u256(r).unwrap_or(p.amount).min(p.amount);
                    }
                })
            };
            let Some(tx_id) = payment.tx_id else {
                let after = self.recover(payment).await?;
                match after.state {
                    PaymentState::Funded => report.recovered += 1,
                    PaymentState::Released => report.released += 1,
                    _ => report.waiting += 1,
                }
                continue;
            };
            let record = inner.kernel.get(tx_id).await?;
            match (payment.state, record.state) {
                (_, State::Settled) if payment.state != PaymentState::Disputed => {
                    update(PaymentState::Settled, None)?;
                    report.settled += 1;
                }
                (_, State::Cancelled) | (PaymentState::Disputed, State::Settled) => {
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    let state = if payment.state == PaymentState::Disputed {
                        PaymentState::Resolved
                    } else {
                        PaymentState::Refunded
                    };
                    update(state, Some(refunded))?;
                    report.refunded += 1;
                }
                (PaymentState::Funded, State::Committed | State::InProgress)
                    if now > record.deadline =>
                {
                    inner.kernel.cancel(tx_id).await?;
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    update(PaymentState::Refunded, Some(refunded))?;
                    tracing::info!(%tx_id, "unserved escrow reclaimed after its deadline");
                    report.reclaimed += 1;
                }
                (PaymentState::Mismatched, State::Delivered) => {
                    if self.dispute_when_delivered(&payment).await? {
                        report.disputed += 1;
                    } else {
                        report.waiting += 1;
                    }
                }
                (PaymentState::Served, State::Delivered)
                    if inner.config.after_delivery == AfterDelivery::SettleNow =>
                {
                    let after = self.settle_when_delivered(payment).await?;
                    if after.state == PaymentState::Settled {
                        report.settled += 1;
                    } else {
                        report.waiting += 1;
                    }
                }
                (_, State::Disputed) if payment.state != PaymentState::Disputed => {
                    update(PaymentState::Disputed, None)?;
                    report.waiting += 1;
                }
                _ => report.waiting += 1,
            }
        }
        Ok(report)
    }
}
