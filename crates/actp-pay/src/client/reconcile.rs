//! Finishing what crashes and failed providers left open: escrows of reservations whose outcome was lost,
//! reservations that never became escrows, unserved escrows past their deadline, mismatches to dispute.

use actp_client::SessionTerms;
use actp_core::{Amount, State, U256};

use super::{AfterDelivery, PayingClient};
use crate::{
    error::PayError,
    ledger::{Payment, PaymentState, unix_now},
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
                && !inner.ledger.knows_tx(created.id).await?
            {
                let record = inner.kernel.get(created.id).await?;
                if record.state == State::Initiated {
                    continue;
                }
                return Ok(inner
                    .ledger
                    .update(inner.agent, &payment.key, |p| {
                        p.state = PaymentState::Funded;
                        p.tx_id = Some(created.id);
                        p.deadline = Some(record.deadline);
                        p.note = Some("escrow found on chain after an interrupted payment".into());
                    })
                    .await?);
            }
        }
        if inner.kernel.has_pending(inner.agent).await? {
            return Ok(payment);
        }
        Ok(inner
            .ledger
            .update(inner.agent, &payment.key, |p| {
                p.state = PaymentState::Released;
                p.note = Some(
                    "no escrow was created: the interrupted payment never reached the chain".into(),
                );
            })
            .await?)
    }

    /// Finishes what calls left open (see the module docs). Safe to run at any time, from a loop or a cron;
    /// calls running in this process are left alone.
    pub async fn reconcile(&self) -> Result<ReconcileReport, PayError> {
        let inner = &*self.inner;
        let mut report = ReconcileReport::default();
        let now = inner.kernel.chain_time().await?;
        for payment in inner.ledger.payments(inner.agent).await? {
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
                inner.ledger.update(inner.agent, &key, move |p| {
                    p.state = state;
                    if let Some(r) = refunded {
                        p.refunded = Amount::try_from_u256(r).unwrap_or(p.amount).min(p.amount);
                    }
                })
            };
            if payment.session.is_some() && payment.tx_id.is_some() {
                self.reconcile_session(payment, now, &mut report).await?;
                continue;
            }
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
                    update(PaymentState::Settled, None).await?;
                    report.settled += 1;
                }
                (_, State::Cancelled) | (PaymentState::Disputed, State::Settled) => {
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    let state = if payment.state == PaymentState::Disputed {
                        PaymentState::Resolved
                    } else {
                        PaymentState::Refunded
                    };
                    update(state, Some(refunded)).await?;
                    report.refunded += 1;
                }
                (PaymentState::Funded, State::Committed | State::InProgress)
                    if now > record.deadline =>
                {
                    inner.kernel.cancel(tx_id).await?;
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    update(PaymentState::Refunded, Some(refunded)).await?;
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
                    update(PaymentState::Disputed, None).await?;
                    report.waiting += 1;
                }
                _ => report.waiting += 1,
            }
        }
        Ok(report)
    }
}

impl PayingClient {
    /// One session: a call lost in a crash counts at its maximum and closes it; a provider that does not
    /// close when asked gets the session ended on chain; a claim above the receipts is disputed; the refund
    /// is recorded when it settles; past its grace period or deadline, the deposit is reclaimed.
    async fn reconcile_session(
        &self,
        payment: Payment,
        now: u64,
        report: &mut ReconcileReport,
    ) -> Result<(), PayError> {
        let inner = &*self.inner;
        let Some(account) = payment.session.clone() else {
            return Ok(());
        };
        // A call is running on it in this process: leave it alone.
        let slot = self.slot(payment.provider, account.service_hash);
        let Ok(_turn) = slot.try_lock() else {
            report.waiting += 1;
            return Ok(());
        };
        let mut payment = payment;
        if account.pending.is_some() {
            payment = self
                .lose(
                    &payment,
                    "the call in flight when the agent stopped never got its receipt",
                )
                .await?;
        }
        let tx_id = payment.tx_id.unwrap_or_default();
        let key = payment.key.clone();
        let record = inner.kernel.get(tx_id).await?;
        let finish = |state: PaymentState, refunded: U256| {
            inner.ledger.update(inner.agent, &key, move |p| {
                p.state = state;
                // The deposit on chain, top-ups included, is what the refund comes out of.
                p.amount = Amount::try_from_u256(record.amount).unwrap_or(p.amount);
                p.refunded = Amount::try_from_u256(refunded)
                    .unwrap_or(p.amount)
                    .min(p.amount);
            })
        };
        match record.state {
            State::Initiated | State::Quoted | State::Committed | State::InProgress => {
                let terms = inner
                    .kernel
                    .session_of(tx_id)
                    .await?
                    .unwrap_or(SessionTerms {
                        grace: account.grace,
                        close_by: 0,
                        claimed: U256::ZERO,
                    });
                let ended = terms.close_by != 0;
                if (ended && now > terms.close_by) || now > record.deadline {
                    inner.kernel.cancel(tx_id).await?;
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    finish(PaymentState::Refunded, refunded).await?;
                    tracing::info!(%tx_id, "session reclaimed: the provider did not close it in time");
                    report.reclaimed += 1;
                    return Ok(());
                }
                let asked = payment.session.as_ref().and_then(|s| s.closing_since);
                let waited = inner.config.session_close_wait.as_secs();
                if !ended && asked.is_some_and(|t| unix_now() >= t.saturating_add(waited)) {
                    self.end_on_chain(payment).await?;
                }
                report.waiting += 1;
            }
            State::Delivered => {
                let claimed = inner
                    .kernel
                    .session_of(tx_id)
                    .await?
                    .map_or(U256::ZERO, |t| t.claimed);
                let claimed = Amount::try_from_u256(claimed).unwrap_or(payment.amount);
                let owed = account.owed_at_most();
                if claimed > owed {
                    let note = format!(
                        "the provider claimed {claimed} but the receipts (and lost calls) add up to {owed}"
                    );
                    tracing::warn!(%tx_id, %note, "session over-claimed; disputing");
                    let payment = inner
                        .ledger
                        .update(inner.agent, &key, |p| {
                            p.state = PaymentState::Mismatched;
                            p.note = Some(note);
                            if let Some(s) = p.session.as_mut() {
                                s.claimed = Some(claimed);
                            }
                        })
                        .await?;
                    if self.dispute_when_delivered(&payment).await? {
                        report.disputed += 1;
                    } else {
                        report.waiting += 1;
                    }
                    return Ok(());
                }
                inner
                    .ledger
                    .update(inner.agent, &key, |p| {
                        p.state = PaymentState::Served;
                        if let Some(s) = p.session.as_mut() {
                            s.claimed = Some(claimed);
                        }
                    })
                    .await?;
                if inner.config.after_delivery != AfterDelivery::SettleNow {
                    report.waiting += 1;
                    return Ok(());
                }
                match inner.kernel.settle(tx_id).await {
                    Ok(_) => {
                        let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                        finish(PaymentState::Settled, refunded).await?;
                        tracing::info!(%tx_id, "session settled as requester");
                        report.settled += 1;
                    }
                    // Settled (or disputed) by someone else meanwhile: the next reconcile records it.
                    Err(e) if e.rejection().is_some() => report.waiting += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            State::Settled | State::Cancelled => {
                let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                let state = match (payment.state, record.state) {
                    (PaymentState::Disputed, _) => PaymentState::Resolved,
                    (_, State::Cancelled) => PaymentState::Refunded,
                    _ => PaymentState::Settled,
                };
                finish(state, refunded).await?;
                if state == PaymentState::Settled {
                    report.settled += 1;
                } else {
                    report.refunded += 1;
                }
            }
            State::Disputed => {
                if payment.state != PaymentState::Disputed {
                    inner
                        .ledger
                        .update(inner.agent, &key, |p| {
                            p.state = PaymentState::Disputed;
                        })
                        .await?;
                }
                report.waiting += 1;
            }
        }
        Ok(())
    }
}
