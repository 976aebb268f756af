//! Calls paid from a session: one escrow for many calls to one provider and service.
//!
//! One call, step by step (calls on one session take turns, so receipts arrive in order):
//! 1. find the agent's session with this provider and service, or open one: the deposit is reserved against
//!    every cap (the policy sets its size), then `openSession` funds it; a session whose deposit cannot cover
//!    the call's maximum is topped up, reserving the top-up the same way;
//! 2. the voucher raises the cumulative to what the receipts charged plus this call's maximum; the ledger
//!    records it, with the call as pending, durably, before the voucher leaves;
//! 3. the receipt that comes back must be the provider's, follow the one before, charge at most the call's
//!    maximum, add up, and name the request sent and the body received. The charge becomes spend, with its
//!    route, in one write with the session's new total.
//!
//! A call whose outcome is lost (no answer, a crash while it was in flight, an answer the provider may have
//! charged without a receipt, a failed answer that is neither the paywall's refusal nor its handler's failure
//! marked with [`NOT_CHARGED_HEADER`](actp_core::http::NOT_CHARGED_HEADER): a proxy's 502 when the replica
//! serving it died after the charge) counts at its maximum, and the session takes no more calls: the provider is
//! asked to close it, and the next call opens another. A receipt that does not check out is evidence: the
//! session is closed the same way, and the bad call counts as nothing. If the provider then claims more on
//! chain than the receipts (and the lost calls) add up to, [`PayingClient::reconcile`] disputes it.

mod call;
mod close;

use std::sync::Arc;

use actp_client::ClientError;
use actp_core::{
    Amount, B256,
    http::{PaymentInstructions, SessionOffer},
    session::{MAX_GRACE, MIN_GRACE},
};

use super::{Call, PaidResponse, PayingClient, random_key};
use crate::{
    error::PayError,
    ledger::{Intent, Payment, PaymentState, Reserved, SessionAccount, unix_now},
};

/// The session currently used with one provider and service: calls on it take turns through this lock.
pub(in crate::client) type Slot = Arc<tokio::sync::Mutex<Option<String>>>;

/// What the provider makes of a call on a session.
enum Outcome {
    /// Served and charged, with a receipt that checks out.
    Served(Box<PaidResponse>),
    /// The session takes no more calls (used up, closing, closed); nothing was charged. Another may serve.
    Retired(PayError),
}

/// Codes of a paywall's refusals meaning the session takes no more calls.
const SESSION_OVER: [&str; 3] = ["session_used_up", "session_closed", "voucher_below_owed"];

/// The voucher a call was sent with.
struct Sent<'a> {
    route: &'a str,
    cumulative: Amount,
    request_hash: B256,
}

/// What a new session is opened with, beyond the call's payment instructions.
pub(in crate::client) struct SessionPlan<'a> {
    pub(in crate::client) offer: &'a SessionOffer,
    /// `METHOD /path` of the call.
    pub(in crate::client) route: String,
    /// The most the call may cost.
    pub(in crate::client) max: Amount,
    /// A new session's deposit (and a top-up's size).
    pub(in crate::client) deposit: Amount,
}

impl PayingClient {
    pub(in crate::client) fn slot(&self, provider: actp_core::Address, service_hash: B256) -> Slot {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry((provider, service_hash)).or_default().clone()
    }

    /// Pays `call` from a session with the provider of `quote`.
    pub(in crate::client) async fn call_in_session(
        &self,
        call: &Call,
        quote: &PaymentInstructions,
        plan: &SessionPlan<'_>,
    ) -> Result<PaidResponse, PayError> {
        let slot = self.slot(quote.terms.provider, plan.offer.service_hash);
        let mut current = slot.lock().await;
        // A session the provider says is used up or closed is replaced, once.
        let mut replaced = false;
        loop {
            let session = self.session_for(&mut current, call, quote, plan).await?;
            match self
                .send_in_session(session, call, &plan.route, plan.max)
                .await?
            {
                Outcome::Served(response) => return Ok(*response),
                Outcome::Retired(_) if !replaced => {
                    *current = None;
                    replaced = true;
                }
                Outcome::Retired(e) => return Err(e),
            }
        }
    }

    /// The session to pay the call from: the current one if it can, topped up if it only lacks funds, or a
    /// new one.
    async fn session_for(
        &self,
        current: &mut Option<String>,
        call: &Call,
        quote: &PaymentInstructions,
        plan: &SessionPlan<'_>,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let provider = quote.terms.provider;
        if current.is_none() {
            *current = self.find_session(provider, plan.offer.service_hash).await?;
        }
        let now = inner.kernel.chain_time().await?;
        // Far enough from the deadline that the provider still serves and closes in time.
        let usable_until = now
            .saturating_add(plan.offer.close_margin)
            .saturating_add(inner.config.authorization_validity.as_secs())
            .saturating_add(60);
        if let Some(key) = current.clone() {
            let payment = inner
                .ledger
                .payment(inner.agent, &key)
                .await?
                .filter(|p| open_for_calls(p) && p.deadline.unwrap_or(0) > usable_until);
            match payment {
                Some(p) if remaining(&p) >= plan.max => return Ok(p),
                Some(p) => match self.top_up(p, plan.deposit).await? {
                    Some(p) => return Ok(p),
                    None => *current = None,
                },
                None => *current = None,
            }
        }
        let opened = self.open_session(call, quote, plan).await?;
        *current = Some(opened.key.clone());
        Ok(opened)
    }

    /// The agent's open session with `provider` for `service_hash` from an earlier run, if one can take calls.
    /// A session left with a call in flight (a crash) counts that call as lost and is closed.
    async fn find_session(
        &self,
        provider: actp_core::Address,
        service_hash: B256,
    ) -> Result<Option<String>, PayError> {
        let inner = &*self.inner;
        let mut found = None;
        for p in inner.ledger.open_sessions(inner.agent).await? {
            let Some(session) = &p.session else { continue };
            if p.provider != provider || session.service_hash != service_hash {
                continue;
            }
            if session.pending.is_some() && session.closing_since.is_none() {
                self.lose(
                    &p,
                    "the call in flight when the agent stopped never got its receipt",
                )
                .await?;
            } else if found.is_none() && open_for_calls(&p) {
                found = Some(p.key.clone());
            }
        }
        Ok(found)
    }

    /// Reserves and opens a new session.
    async fn open_session(
        &self,
        call: &Call,
        quote: &PaymentInstructions,
        plan: &SessionPlan<'_>,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let origin = origin_of(&call.url).ok_or_else(|| PayError::Unreachable {
            url: call.url.clone(),
            message: "not a valid URL".into(),
        })?;
        let (block, _) = inner.kernel.head().await?;
        let account = SessionAccount {
            origin,
            close_path: plan.offer.close_path.clone(),
            service_hash: plan.offer.service_hash,
            grace: plan.offer.grace.clamp(MIN_GRACE, MAX_GRACE),
            signed: Amount::ZERO,
            charged: Amount::ZERO,
            receipts: 0,
            head: B256::ZERO,
            lost: Amount::ZERO,
            pending: None,
            closing_since: None,
            ended: false,
            claimed: None,
        };
        let reserved = inner
            .ledger
            .reserve(Intent {
                key: format!("session-{}", random_key()),
                agent: inner.agent,
                provider: quote.terms.provider,
                route: plan.route.clone(),
                url: call.url.clone(),
                service: plan.offer.service.clone(),
                amount: plan.deposit,
                fee: Amount::ZERO,
                block,
                now: unix_now(),
                session: Some(account),
            })
            .await??;
        let payment = match reserved {
            Reserved::New(payment, soft) => {
                self.soft_limits(&soft);
                payment
            }
            // A fresh random key is never seen before.
            Reserved::Existing(payment) => payment,
        };
        let payment = self.fund(payment, quote, Some(plan.offer)).await?;
        tracing::info!(
            tx_id = %payment.tx_id.unwrap_or_default(), deposit = %payment.amount,
            provider = %payment.provider, "session opened"
        );
        Ok(payment)
    }

    /// Adds `extra` to an open session whose deposit runs short; `None` if the chain refused it (the session
    /// is then left to close and another is opened).
    async fn top_up(&self, payment: Payment, extra: Amount) -> Result<Option<Payment>, PayError> {
        let inner = &*self.inner;
        let (grown, soft) = inner
            .ledger
            .top_up(inner.agent, &payment.key, extra)
            .await??;
        self.soft_limits(&soft);
        let tx_id = payment.tx_id.unwrap_or_default();
        let sent = async {
            let _in_flight = self.in_flight(extra);
            self.top_up_allowance().await?;
            inner.kernel.top_up_session(tx_id, extra.to_u256()).await
        }
        .await;
        match sent {
            Ok(_) => {
                tracing::info!(%tx_id, %extra, deposit = %grown.amount, "session topped up");
                Ok(Some(grown))
            }
            Err(e) => {
                let unsent = matches!(e, ClientError::Rejected { .. } | ClientError::Token(_));
                if unsent {
                    inner
                        .ledger
                        .update(inner.agent, &payment.key, |p| {
                            p.amount = payment.amount;
                        })
                        .await?;
                    tracing::warn!(%tx_id, error = %e, "top-up refused; the session is closed and another opened");
                    self.retire(&grown, "its top-up was refused").await?;
                    return Ok(None);
                }
                // Possibly sent: the ledger keeps the larger deposit (reconcile reads the real one at the end).
                Err(e.into())
            }
        }
    }
}

/// Whether a session takes calls: funded, not closing, nothing in flight.
fn open_for_calls(p: &Payment) -> bool {
    p.state == PaymentState::Funded
        && p.session
            .as_ref()
            .is_some_and(|s| s.closing_since.is_none() && s.pending.is_none() && !s.ended)
}

/// What the deposit still covers by what the agent knows.
fn remaining(p: &Payment) -> Amount {
    let owed = p
        .session
        .as_ref()
        .map_or(Amount::ZERO, |s| s.owed_at_most());
    Amount::from_base_units(p.amount.base_units().saturating_sub(owed.base_units()))
}

fn header_str(response: &PaidResponse, name: &str) -> Option<String> {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `scheme://host[:port]` of `url`.
fn origin_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let origin = parsed.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_keep_scheme_host_and_port() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/v1/chat?x=1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin_of("https://api.example.com/v1").as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(origin_of("not a url"), None);
    }
}
