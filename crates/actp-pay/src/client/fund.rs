//! Phase two of a call: the allowance, a last look at the kill switch, `createAndFund` for exactly the
//! price, and the reservation turned into spend; or, if nothing was created, given back.

use actp_client::ClientError;
use actp_client::OpenSession;
use actp_core::{
    U256,
    http::{PaymentInstructions, SessionOffer},
    model::CreateParams,
};

use super::PayingClient;
use crate::{
    error::PayError,
    ledger::{Payment, PaymentState},
};

/// The deadline of a new escrow: `ttl` from `now`, or a minute past the provider's earliest acceptable
/// deadline if that is later; never more than `max_ttl` from `now` (the caller has refused instructions whose
/// earliest deadline lies beyond that). Saturating: numbers from the network cannot overflow it.
fn escrow_deadline(now: u64, ttl: u64, min_deadline: u64, max_ttl: u64) -> u64 {
    let wanted = now.saturating_add(ttl).max(min_deadline.saturating_add(60));
    wanted.min(now.saturating_add(max_ttl)).max(min_deadline)
}

impl PayingClient {
    /// Phase two: allowance, last look at the kill switch, `createAndFund` (or `openSession` with `session`
    /// terms), reservation → spend.
    pub(super) async fn fund(
        &self,
        payment: Payment,
        quote: &PaymentInstructions,
        session: Option<&SessionOffer>,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let (agent, key) = (inner.agent, payment.key.clone());
        let release = |note: String| {
            inner.ledger.update(agent, &key, move |p| {
                p.state = PaymentState::Released;
                p.note = Some(note);
            })
        };
        let in_flight = self.in_flight(payment.amount);
        let prepared = async {
            self.top_up_allowance().await?;
            let now = inner.kernel.chain_time().await?;
            Ok::<_, ClientError>(now)
        }
        .await;
        let now = match prepared {
            Ok(now) => now,
            Err(e) => {
                release(format!("not funded: {e}")).await?;
                return Err(e.into());
            }
        };
        if let Err(refused) = inner.ledger.check_suspended(agent).await? {
            release(refused.to_string()).await?;
            return Err(refused.into());
        }
        let ttl = match session {
            Some(_) => inner.config.session_ttl,
            None => inner.config.escrow_ttl,
        };
        let deadline = escrow_deadline(
            now,
            ttl.as_secs(),
            quote.min_deadline,
            inner.ledger.policy(agent).await?.escrow_ttl_limit(),
        );
        let window = inner.config.dispute_window.as_secs();
        let created = match session {
            None => {
                let terms = CreateParams::new(
                    quote.terms.provider,
                    payment.amount.to_u256(),
                    deadline,
                    window,
                    quote.service_hash,
                );
                inner.kernel.create_and_fund(&terms).await
            }
            Some(offer) => {
                let terms = OpenSession {
                    provider: quote.terms.provider,
                    deposit: payment.amount.to_u256(),
                    deadline,
                    dispute_window: window,
                    service_hash: offer.service_hash,
                    grace: payment.session.as_ref().map_or(offer.grace, |s| s.grace),
                };
                inner.kernel.open_session(&terms).await
            }
        };
        drop(in_flight);
        match created {
            Ok(tx_id) => {
                tracing::info!(%tx_id, amount = %payment.amount, provider = %payment.provider, "escrow funded");
                Ok(inner
                    .ledger
                    .update(agent, &key, |p| {
                        p.state = PaymentState::Funded;
                        p.tx_id = Some(tx_id);
                        p.deadline = Some(deadline);
                    })
                    .await?)
            }
            // Refused before anything was sent: no escrow exists.
            Err(e @ (ClientError::Rejected { .. } | ClientError::Token(_))) => {
                release(format!("not funded: {e}")).await?;
                Err(e.into())
            }
            // Possibly sent: keep the reservation until reconcile knows.
            Err(e) => Err(PayError::Unconfirmed {
                key,
                message: e.to_string(),
            }),
        }
    }

    /// Approves the kernel for everything being escrowed now (plus `approve_ahead`) when the allowance
    /// does not cover it. Top-ups are serialized, so concurrent calls never overwrite each other's approval.
    pub(super) async fn top_up_allowance(&self) -> Result<(), ClientError> {
        let inner = &*self.inner;
        let _one = inner.approving.lock().await;
        let needed = *inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let have = inner.kernel.allowance(inner.agent).await?;
        if have < U256::from(needed) {
            let target = needed.saturating_add(inner.config.approve_ahead.base_units());
            inner.kernel.approve(U256::from(target)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escrow_deadlines_stay_within_the_limit() {
        let now = 1_000_000;
        // The client's own lifetime, when the provider asks for less.
        assert_eq!(escrow_deadline(now, 900, now + 300, 3_600), now + 900);
        // A minute past the provider's earliest deadline, when it asks for more.
        assert_eq!(escrow_deadline(now, 900, now + 1_800, 3_600), now + 1_860);
        // Never past the limit, but never before the provider's earliest deadline.
        assert_eq!(escrow_deadline(now, 7_200, now + 300, 3_600), now + 3_600);
        assert_eq!(escrow_deadline(now, 900, now + 3_590, 3_600), now + 3_600);
        // Numbers near u64::MAX from a hostile 402 saturate instead of wrapping.
        assert_eq!(escrow_deadline(now, 900, u64::MAX, 3_600), u64::MAX);
        assert_eq!(escrow_deadline(u64::MAX - 5, 900, 0, 3_600), u64::MAX);
    }
}
