//! Phase three: the paid request (retried on the same transaction while the provider fails), the delivery
//! proof checked against the body received, then settling at once or disputing, by policy.

use std::time::Duration;

use actp_client::ClientError;
use actp_core::{
    B256, State,
    authorization::{
        AUTHORIZATION_HEADER, AuthorizationHeader, RequestAuthorization, TX_ID_HEADER,
    },
    http::{DELIVERY_PROOF_HEADER, ErrorBody, PROOF_HASH_HEADER},
    proof::{SignedDeliveryProof, content_hash, verify_delivery},
};
use http::{HeaderMap, StatusCode};

use super::{AfterDelivery, Call, OnMismatch, PaidResponse, PayingClient, target_of};
use crate::{
    error::PayError,
    ledger::{Payment, PaymentState},
};

/// Why an HTTP exchange with a provider failed, without its URL; an untrusted TLS certificate says so and
/// names the option that trusts a private CA.
pub(super) fn http_failure(e: &reqwest::Error) -> String {
    match actp_client::from_reqwest(e) {
        tls @ ClientError::Tls { .. } => tls.to_string(),
        _ => actp_client::redact_urls(&e.to_string()),
    }
}

impl PayingClient {
    /// A call whose key already has a payment: never a second escrow.
    pub(super) async fn resume(
        &self,
        payment: Payment,
        call: &Call,
    ) -> Result<PaidResponse, PayError> {
        match (payment.state, payment.tx_id) {
            (PaymentState::Funded, Some(_)) => self.deliver(payment, call, true).await,
            (PaymentState::Reserved, _) => {
                // An earlier attempt's outcome was lost: find its escrow first.
                let payment = self.recover(payment).await?;
                if payment.state == PaymentState::Funded {
                    self.deliver(payment, call, true).await
                } else {
                    Err(PayError::Unconfirmed {
                        key: payment.key,
                        message: "the escrow of an earlier attempt is not confirmed yet".into(),
                    })
                }
            }
            (_, Some(tx_id)) => Err(PayError::AlreadyServed {
                key: payment.key,
                tx_id,
            }),
            (_, None) => Err(PayError::Unconfirmed {
                key: payment.key,
                message: format!("the payment is {}", payment.state),
            }),
        }
    }

    /// Sends the paid request (retrying with the same txId while the provider fails) and verifies it.
    pub(super) async fn deliver(
        &self,
        payment: Payment,
        call: &Call,
        resumed: bool,
    ) -> Result<PaidResponse, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        let deadline = payment.deadline.unwrap_or_default();
        let target = target_of(&call.url).ok_or_else(|| PayError::Unreachable {
            url: call.url.clone(),
            message: "not a valid URL".into(),
        })?;
        let mut backoff = inner.config.retry_backoff;
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            let expires =
                inner.kernel.chain_time().await? + inner.config.authorization_validity.as_secs();
            let request = RequestAuthorization::new(
                tx_id,
                call.method.as_str(),
                &target,
                content_hash(&call.body),
                expires,
            );
            let signer = inner
                .kernel
                .signer()
                .ok_or_else(|| ClientError::Config("no signing key".into()))?;
            let signature = signer.sign_typed(&request, &inner.kernel.domain()).await?;
            let authorization = AuthorizationHeader::from_signature(&request, signature);
            let failure = match self
                .send_http(call, Some((tx_id, authorization.to_string())))
                .await
            {
                Ok(r) if r.status.is_success() => break r,
                Ok(r) if r.status.is_server_error() => {
                    if let Some(wait) = retry_after(&r.headers) {
                        backoff = wait;
                    }
                    format!("{} {}", r.status.as_u16(), message_of(&r.body))
                }
                // An earlier, interrupted attempt of this call was served: its response is lost, and the
                // escrow pays for that one request. It is never paid again.
                Ok(r) if r.status == StatusCode::CONFLICT && resumed => {
                    inner
                        .ledger
                        .update(inner.agent, &payment.key, |p| {
                            p.note = Some(
                                "served to an earlier, interrupted attempt; the response was lost"
                                    .into(),
                            );
                        })
                        .await?;
                    return Err(PayError::AlreadyServed {
                        key: payment.key,
                        tx_id,
                    });
                }
                Ok(r) => {
                    return Err(PayError::Refused {
                        tx_id,
                        status: r.status.as_u16(),
                        message: message_of(&r.body),
                        deadline,
                    });
                }
                Err(e) => e,
            };
            if attempts >= inner.config.attempts.max(1) {
                return Err(PayError::ProviderFailed {
                    tx_id,
                    attempts,
                    message: failure,
                    deadline,
                });
            }
            tracing::info!(%tx_id, attempts, failure = %failure, "provider failed; retrying with the same transaction");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        };
        self.verify(payment, response).await
    }

    pub(super) async fn verify(
        &self,
        payment: Payment,
        mut response: PaidResponse,
    ) -> Result<PaidResponse, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let announced: Option<B256> = header(PROOF_HASH_HEADER).and_then(|h| h.parse().ok());
        let checked = match header(DELIVERY_PROOF_HEADER) {
            None => Err(("the response carries no delivery proof".to_owned(), None)),
            Some(value) => match SignedDeliveryProof::from_header_value(&value) {
                Err(e) => Err((format!("the delivery proof is unreadable: {e}"), None)),
                Ok(signed) => verify_delivery(
                    &signed,
                    &response.body,
                    tx_id,
                    payment.provider,
                    &inner.kernel.domain(),
                    announced,
                )
                .map_err(|m| (m.to_string(), Some(Box::new(m)))),
            },
        };
        match checked {
            Ok(proof_hash) => {
                let mut payment = inner
                    .ledger
                    .update(inner.agent, &payment.key, |p| {
                        p.state = PaymentState::Served;
                        p.proof_hash = Some(proof_hash);
                    })
                    .await?;
                if inner.config.after_delivery == AfterDelivery::SettleNow {
                    payment = self.settle_when_delivered(payment).await?;
                }
                response.payment = Some(payment);
                Ok(response)
            }
            Err((reason, mismatch)) => {
                tracing::warn!(%tx_id, %reason, "delivery does not match its proof");
                let payment = inner
                    .ledger
                    .update(inner.agent, &payment.key, |p| {
                        p.state = PaymentState::Mismatched;
                        p.note = Some(reason.clone());
                    })
                    .await?;
                let disputed = if inner.config.on_mismatch == OnMismatch::Dispute {
                    self.dispute_when_delivered(&payment).await?
                } else {
                    false
                };
                Err(PayError::DeliveryMismatch {
                    tx_id,
                    reason,
                    mismatch,
                    disputed,
                    body: response.body,
                })
            }
        }
    }

    /// Waits (up to `delivery_wait`) for the provider to mark `tx_id` delivered; returns its state then.
    pub(super) async fn delivered(&self, tx_id: B256) -> Result<State, PayError> {
        let inner = &*self.inner;
        let until = tokio::time::Instant::now() + inner.config.delivery_wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let state = inner.kernel.get(tx_id).await?.state;
            if state != State::Committed && state != State::InProgress {
                return Ok(state);
            }
            if tokio::time::Instant::now() >= until {
                return Ok(state);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Settles a verified delivery as requester once the chain shows DELIVERED with the same proof hash; a
    /// different hash on chain is a mismatch and is disputed instead.
    pub(super) async fn settle_when_delivered(
        &self,
        payment: Payment,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        match self.delivered(tx_id).await? {
            State::Delivered => {}
            State::Settled => {
                return Ok(inner
                    .ledger
                    .update(inner.agent, &payment.key, |p| {
                        p.state = PaymentState::Settled
                    })
                    .await?);
            }
            // Not delivered yet: the window (or a later reconcile) takes it from here.
            _ => return Ok(payment),
        }
        let recorded = inner
            .kernel
            .recorded_proof_hash(tx_id, payment.block)
            .await?;
        if recorded.is_some() && recorded != payment.proof_hash {
            let note = format!(
                "the proof hash recorded on chain ({}) is not the one delivered ({})",
                recorded.unwrap_or_default(),
                payment.proof_hash.unwrap_or_default()
            );
            let payment = inner
                .ledger
                .update(inner.agent, &payment.key, |p| {
                    p.state = PaymentState::Mismatched;
                    p.note = Some(note);
                })
                .await?;
            self.dispute_when_delivered(&payment).await?;
            return Ok(inner
                .ledger
                .payment(inner.agent, &payment.key)
                .await?
                .unwrap_or(payment));
        }
        inner.kernel.settle(tx_id).await?;
        tracing::info!(%tx_id, "settled as requester");
        Ok(inner
            .ledger
            .update(inner.agent, &payment.key, |p| {
                p.state = PaymentState::Settled
            })
            .await?)
    }

    /// Disputes a mismatched delivery once the provider has marked it delivered. `false` if it was not
    /// delivered in time (reconcile disputes it later, within the window).
    pub(super) async fn dispute_when_delivered(&self, payment: &Payment) -> Result<bool, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        if self.delivered(tx_id).await? != State::Delivered {
            return Ok(false);
        }
        inner.kernel.dispute(tx_id, Vec::new()).await?;
        tracing::warn!(%tx_id, "delivery disputed");
        inner
            .ledger
            .update(inner.agent, &payment.key, |p| {
                p.state = PaymentState::Disputed
            })
            .await?;
        Ok(true)
    }

    /// One HTTP exchange; `paid` adds the transaction id and authorization headers.
    pub(super) async fn send_http(
        &self,
        call: &Call,
        paid: Option<(B256, String)>,
    ) -> Result<PaidResponse, String> {
        match paid {
            Some((tx_id, authorization)) => {
                let headers = [
                    (TX_ID_HEADER, tx_id.to_string()),
                    (AUTHORIZATION_HEADER, authorization),
                ];
                self.send_with(call, &headers).await
            }
            None => self.send_with(call, &[]).await,
        }
    }

    /// One HTTP exchange with extra headers.
    pub(super) async fn send_with(
        &self,
        call: &Call,
        extra: &[(&str, String)],
    ) -> Result<PaidResponse, String> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), &call.url)
            .headers(call.headers.clone())
            .body(call.body.clone());
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| http_failure(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| http_failure(&e))?;
        Ok(PaidResponse {
            status,
            headers,
            body,
            payment: None,
            receipt: None,
        })
    }
}

/// A provider's `Retry-After` in seconds, capped at 10 s.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(10)))
}

/// The `message` of an ACTP error body, or the body's start.
pub(super) fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body).map_or_else(
        |_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        |b| format!("{}: {}", b.code, b.message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_is_capped() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("600"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(10)));
    }

    #[test]
    fn message_of_reads_error_bodies() {
        let body = br#"{"error":"Conflict","code":"already_used","message":"used"}"#;
        assert_eq!(message_of(body), "already_used: used");
        assert_eq!(message_of(b"plain"), "plain");
    }
}
