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
//! charged without a receipt) counts at its maximum, and the session takes no more calls: the provider is
//! asked to close it, and the next call opens another. A receipt that does not check out is evidence: the
//! session is closed the same way, and the bad call counts as nothing. If the provider then claims more on
//! chain than the receipts (and the lost calls) add up to, [`PayingClient::reconcile`] disputes it.

use std::sync::Arc;

use actp_client::ClientError;
use actp_core::{
    Amount, B256, U256,
    fee::fee_on,
    http::{ErrorBody, PaymentInstructions, SessionOffer, TX_ID_HEADER, VOUCHER_HEADER},
    proof::content_hash,
    session::{MAX_GRACE, MIN_GRACE, ReceiptChain, SessionVoucher, SignedReceipt, VoucherHeader},
};
use http::StatusCode;

use super::{Call, PaidResponse, PayingClient, random_key, target_of};
use crate::{
    error::PayError,
    ledger::{
        Intent, Payment, PaymentState, PendingCall, Reserved, SessionAccount, SessionCharge,
        unix_now, utc_day_month,
    },
};

/// The session currently used with one provider and service: calls on it take turns through this lock.
pub(super) type Slot = Arc<tokio::sync::Mutex<Option<String>>>;

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
pub(super) struct SessionPlan<'a> {
    pub(super) offer: &'a SessionOffer,
    /// `METHOD /path` of the call.
    pub(super) route: String,
    /// The most the call may cost.
    pub(super) max: Amount,
    /// A new session's deposit (and a top-up's size).
    pub(super) deposit: Amount,
}

impl PayingClient {
    pub(super) fn slot(&self, provider: actp_core::Address, service_hash: B256) -> Slot {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry((provider, service_hash)).or_default().clone()
    }

    /// Pays `call` from a session with the provider of `quote`.
    pub(super) async fn call_in_session(
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
                .payment(inner.agent, &key)?
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
        for p in inner.ledger.open_sessions(inner.agent)? {
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
        let reserved = inner.ledger.reserve(Intent {
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
        })??;
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
        let (grown, soft) = inner.ledger.top_up(inner.agent, &payment.key, extra)??;
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
                    inner.ledger.update(inner.agent, &payment.key, |p| {
                        p.amount = payment.amount;
                    })?;
                    tracing::warn!(%tx_id, error = %e, "top-up refused; the session is closed and another opened");
                    self.retire(&grown, "its top-up was refused").await?;
                    return Ok(None);
                }
                // Possibly sent: the ledger keeps the larger deposit (reconcile reads the real one at the end).
                Err(e.into())
            }
        }
    }

    /// Sends the call with a voucher, checks its receipt, records the charge.
    async fn send_in_session(
        &self,
        payment: Payment,
        call: &Call,
        route: &str,
        max: Amount,
    ) -> Result<Outcome, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        let deadline = payment.deadline.unwrap_or_default();
        let Some(account) = payment.session.clone() else {
            return Err(PayError::Unconfirmed {
                key: payment.key,
                message: "not a session".into(),
            });
        };
        inner.ledger.kill_switch().check(inner.agent)?;
        let target = target_of(&call.url).ok_or_else(|| PayError::Unreachable {
            url: call.url.clone(),
            message: "not a valid URL".into(),
        })?;
        let cumulative = Amount::from_base_units(
            account
                .charged
                .base_units()
                .saturating_add(max.base_units()),
        );
        let body_hash = content_hash(&call.body);
        let mut backoff = inner.config.retry_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let expires =
                inner.kernel.chain_time().await? + inner.config.authorization_validity.as_secs();
            let voucher = SessionVoucher::for_request(
                tx_id,
                cumulative.to_u256(),
                call.method.as_str(),
                &target,
                body_hash,
                expires,
            );
            let request_hash = voucher.requestHash;
            // Durable before the voucher leaves: a crash cannot make the agent forget what it signed.
            let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
                if let Some(s) = p.session.as_mut() {
                    s.signed = s.signed.max(cumulative);
                    s.pending = Some(PendingCall {
                        route: route.to_owned(),
                        max,
                        cumulative,
                        request_hash,
                    });
                }
            })?;
            let signer = inner
                .kernel
                .signer()
                .ok_or_else(|| ClientError::Config("no signing key".into()))?;
            let signature = signer
                .sign_hash(&voucher.signing_hash(&inner.kernel.domain()))
                .await?;
            let header = VoucherHeader::from_signature(&voucher, signature).to_string();
            let sent = self
                .send_with(
                    call,
                    &[(TX_ID_HEADER, tx_id.to_string()), (VOUCHER_HEADER, header)],
                )
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(message) => {
                    self.lose(&payment, &format!("no answer: {message}"))
                        .await?;
                    return Err(PayError::ProviderFailed {
                        tx_id,
                        attempts,
                        message: format!("{message}; the session was closed"),
                        deadline,
                    });
                }
            };
            if let Some(value) = header_str(&response, actp_core::http::RECEIPT_HEADER) {
                let sent = Sent {
                    route,
                    cumulative,
                    request_hash,
                };
                return self
                    .accept_receipt(payment, &account, response, &value, &sent)
                    .await
                    .map(|r| Outcome::Served(Box::new(r)));
            }
            let code = serde_json::from_slice::<ErrorBody>(&response.body)
                .map(|b| b.code)
                .unwrap_or_default();
            let message = super::deliver::message_of(&response.body);
            // The provider may have charged a call it answered without a receipt.
            if response.status.is_success() || code == "storage_unavailable" {
                self.lose(&payment, "answered without a receipt").await?;
                return Err(PayError::BadReceipt {
                    tx_id,
                    reason: format!(
                        "{} without a receipt ({message}); the call counts at its maximum and the session was closed",
                        response.status
                    ),
                });
            }
            // Refused or failed before any charge.
            let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
                if let Some(s) = p.session.as_mut() {
                    s.pending = None;
                }
            })?;
            let refused = PayError::SessionRefused {
                tx_id,
                status: response.status.as_u16(),
                message: message.clone(),
            };
            if SESSION_OVER.contains(&code.as_str()) {
                self.retire(&payment, &message).await?;
                return Ok(Outcome::Retired(refused));
            }
            if !response.status.is_server_error() || attempts >= inner.config.attempts.max(1) {
                return Err(refused);
            }
            if let Some(wait) = super::deliver::retry_after(&response.headers) {
                backoff = wait;
            }
            tracing::info!(%tx_id, attempts, failure = %message, "provider failed; retrying on the session");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// Checks the receipt of a served call and records its charge; a receipt that does not check out closes
    /// the session and the call counts as nothing.
    async fn accept_receipt(
        &self,
        payment: Payment,
        account: &SessionAccount,
        response: PaidResponse,
        value: &str,
        sent: &Sent<'_>,
    ) -> Result<PaidResponse, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        let mut chain = ReceiptChain::resume(
            tx_id,
            payment.provider,
            inner.kernel.domain(),
            account.receipts,
            account.head,
            account.charged.to_u256(),
        );
        let checked = SignedReceipt::from_header(value).and_then(|signed| {
            chain
                .accept(
                    &signed,
                    sent.cumulative.to_u256(),
                    sent.request_hash,
                    content_hash(&response.body),
                )
                .map(|()| signed.receipt)
        });
        let receipt = match checked {
            Ok(receipt) => receipt,
            Err(e) => {
                let reason = format!("the receipt does not check out: {e}");
                tracing::warn!(%tx_id, %reason, "session receipt refused");
                let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
                    if let Some(s) = p.session.as_mut() {
                        s.pending = None;
                    }
                    p.note = Some(reason.clone());
                })?;
                self.retire(&payment, &reason).await?;
                return Err(PayError::BadReceipt {
                    tx_id,
                    reason: format!(
                        "{reason}; the call counts as nothing and the session was closed"
                    ),
                });
            }
        };
        let charge = Amount::try_from_u256(receipt.charge).unwrap_or(Amount::ZERO);
        let fee = fee_on(account.charged.to_u256(), receipt.charge, inner.fee_bps);
        let fee = Amount::try_from_u256(fee).unwrap_or(Amount::ZERO);
        let now = unix_now();
        let record = SessionCharge {
            seq: receipt.seq,
            route: sent.route.to_owned(),
            charge,
            fee,
            day: utc_day_month(now).0,
            at: now,
        };
        let total = Amount::try_from_u256(chain.charged()).unwrap_or(account.charged);
        let payment = inner
            .ledger
            .charge(inner.agent, &payment.key, &record, |p| {
                p.fee =
                    Amount::from_base_units(p.fee.base_units().saturating_add(fee.base_units()));
                p.proof_hash = Some(chain.head());
                if let Some(s) = p.session.as_mut() {
                    s.charged = total;
                    s.receipts = chain.len();
                    s.head = chain.head();
                    s.pending = None;
                }
            })?;
        Ok(PaidResponse {
            payment: Some(payment),
            receipt: Some(receipt),
            ..response
        })
    }

    /// The call in flight on `payment` has no known outcome: it counts at its maximum, and the session is
    /// closed.
    pub(super) async fn lose(&self, payment: &Payment, why: &str) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
            if let Some(s) = p.session.as_mut()
                && let Some(call) = s.pending.take()
            {
                s.lost = Amount::from_base_units(
                    s.lost.base_units().saturating_add(call.max.base_units()),
                );
            }
            p.note = Some(format!("a call was lost: {why}"));
        })?;
        tracing::warn!(tx_id = %payment.tx_id.unwrap_or_default(), why, "session call lost; closing the session");
        self.retire(&payment, why).await
    }

    /// Takes the session out of use and asks the provider to close it; if the provider cannot be asked, asks
    /// the kernel to end it (the provider then has the grace period to close).
    pub(super) async fn retire(&self, payment: &Payment, why: &str) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
            if let Some(s) = p.session.as_mut() {
                s.closing_since.get_or_insert(unix_now());
            }
        })?;
        match self.ask_close(&payment).await {
            Ok(()) => Ok(payment),
            Err(refused) => {
                tracing::warn!(
                    tx_id = %payment.tx_id.unwrap_or_default(), why, refused = %refused,
                    "the provider could not be asked to close; ending the session on chain"
                );
                self.end_on_chain(payment).await
            }
        }
    }

    /// `POST`s the provider's close path with a voucher over that request (it raises nothing).
    async fn ask_close(&self, payment: &Payment) -> Result<(), String> {
        let inner = &*self.inner;
        let account = payment.session.as_ref().ok_or("not a session")?;
        let tx_id = payment.tx_id.unwrap_or_default();
        let expires = unix_now() + inner.config.authorization_validity.as_secs();
        let voucher = SessionVoucher::for_request(
            tx_id,
            U256::ZERO,
            "POST",
            &account.close_path,
            content_hash(b""),
            expires,
        );
        let signer = inner.kernel.signer().ok_or("no signing key")?;
        let signature = signer
            .sign_hash(&voucher.signing_hash(&inner.kernel.domain()))
            .await
            .map_err(|e| e.to_string())?;
        let call = Call {
            method: http::Method::POST,
            url: format!("{}{}", account.origin, account.close_path),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            session: None,
        };
        let header = VoucherHeader::from_signature(&voucher, signature).to_string();
        let response = self
            .send_with(
                &call,
                &[(TX_ID_HEADER, tx_id.to_string()), (VOUCHER_HEADER, header)],
            )
            .await?;
        // 409: closing or closed already.
        if response.status.is_success() || response.status == StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                response.status.as_u16(),
                super::deliver::message_of(&response.body)
            ))
        }
    }

    /// Asks the kernel to end the session (requester only; the provider keeps the grace period to close).
    pub(super) async fn end_on_chain(&self, payment: Payment) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        match inner.kernel.end_session(tx_id).await {
            Ok(_) => {
                tracing::info!(%tx_id, "session ended on chain; the provider has its grace period to close");
                Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
                    if let Some(s) = p.session.as_mut() {
                        s.ended = true;
                        s.closing_since.get_or_insert(unix_now());
                    }
                })?)
            }
            // Closed meanwhile, or ended already: reconcile follows the chain from here.
            Err(e @ ClientError::Rejected { .. }) => {
                tracing::info!(%tx_id, error = %e, "the session could not be ended; it is closed or ending already");
                Ok(payment)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks the provider of every session of this agent still taking calls to close it (ending it on chain
    /// where the provider cannot be reached). Call it when the agent is done; [`PayingClient::reconcile`]
    /// then follows each to its settlement and refund, ending on chain any the provider does not close within
    /// [`PayConfig::session_close_wait`](super::PayConfig::session_close_wait). Returns how many were asked.
    pub async fn close_sessions(&self) -> Result<u64, PayError> {
        let inner = &*self.inner;
        let mut asked = 0;
        for p in inner.ledger.open_sessions(inner.agent)? {
            let Some(service_hash) = p.session.as_ref().map(|s| s.service_hash) else {
                continue;
            };
            let slot = self.slot(p.provider, service_hash);
            let mut current = slot.lock().await;
            let Some(p) = inner.ledger.payment(inner.agent, &p.key)? else {
                continue;
            };
            let Some(session) = &p.session else { continue };
            if p.state != PaymentState::Funded || session.closing_since.is_some() {
                continue;
            }
            if session.pending.is_some() {
                self.lose(
                    &p,
                    "the call in flight when the agent stopped never got its receipt",
                )
                .await?;
            } else {
                self.retire(&p, "the agent is done").await?;
            }
            if current.as_deref() == Some(p.key.as_str()) {
                *current = None;
            }
            asked += 1;
        }
        Ok(asked)
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
