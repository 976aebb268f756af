//! One call on a session: the voucher, written down before it leaves; the receipt, checked; the charge,
//! recorded with its route.

use actp_client::ClientError;
use actp_core::{
    Amount,
    fee::fee_on,
    http::{ErrorBody, NOT_CHARGED_HEADER, TX_ID_HEADER, VOUCHER_HEADER},
    proof::content_hash,
    session::{ReceiptChain, SessionVoucher, SignedReceipt, VoucherHeader},
};

use super::{Outcome, SESSION_OVER, Sent, header_str};
use crate::{
    client::{Call, PaidResponse, PayingClient, target_of},
    error::PayError,
    ledger::{Payment, PendingCall, SessionAccount, SessionCharge, unix_now, utc_day_month},
};

impl PayingClient {
    /// Sends the call with a voucher, checks its receipt, records the charge.
    pub(super) async fn send_in_session(
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
        inner.ledger.check_suspended(inner.agent).await??;
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
            let payment = inner
                .ledger
                .update(inner.agent, &payment.key, |p| {
                    if let Some(s) = p.session.as_mut() {
                        s.signed = s.signed.max(cumulative);
                        s.pending = Some(PendingCall {
                            route: route.to_owned(),
                            max,
                            cumulative,
                            request_hash,
                        });
                    }
                })
                .await?;
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
            let message = crate::client::deliver::message_of(&response.body);
            // The provider may have charged a call it answered without a receipt, or one whose failed answer
            // is neither its refusal nor its handler's (marked as charged nothing): a proxy's, when the
            // replica serving the call died after charging it.
            let not_charged = response
                .headers
                .get(NOT_CHARGED_HEADER)
                .is_some_and(|v| v == "1");
            let unknown = code.is_empty() && !not_charged;
            if response.status.is_success() || code == "storage_unavailable" || unknown {
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
            let payment = inner
                .ledger
                .update(inner.agent, &payment.key, |p| {
                    if let Some(s) = p.session.as_mut() {
                        s.pending = None;
                    }
                })
                .await?;
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
            if let Some(wait) = crate::client::deliver::retry_after(&response.headers) {
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
                let payment = inner
                    .ledger
                    .update(inner.agent, &payment.key, |p| {
                        if let Some(s) = p.session.as_mut() {
                            s.pending = None;
                        }
                        p.note = Some(reason.clone());
                    })
                    .await?;
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
            })
            .await?;
        Ok(PaidResponse {
            payment: Some(payment),
            receipt: Some(receipt),
            ..response
        })
    }
}
