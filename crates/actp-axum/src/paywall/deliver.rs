//! After the handler: a failed handler gives the claim back (the transaction can pay for a retry); a
//! successful one has its body hashed as sent, a delivery proof signed, and the delivery queued durably
//! before the response leaves. A call paid from a session goes to [`super::deliver_session`].

use actp_core::{
    B256, eip712,
    http::{DELIVERY_PROOF_HEADER, PROOF_HASH_HEADER, TX_ID_HEADER},
    proof::{ActpDelivery, SignedDeliveryProof, aip4::DeliveryProof, content_hash},
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

use super::{BoxError, Inner, Payment, session::SessionCall};
use crate::refusal::Refusal;

impl Inner {
    /// The handler failed (an error, or a status that is not 2xx): the call's hold, or the transaction's
    /// claim, goes back, and nothing is charged or delivered.
    pub(super) async fn handler_failed(&self, tx_id: B256, session: Option<SessionCall>) {
        match session {
            Some(call) => self.give_back_hold(call.hold, "handler_failed").await,
            None => self.give_back(tx_id, "handler_failed").await,
        }
    }

    /// The handler succeeded: a session call is charged with its receipt, a per-call request delivered.
    pub(super) async fn handler_succeeded<ResBody>(
        &self,
        payment: Payment,
        session: Option<SessionCall>,
        request_hash: B256,
        started: bool,
        response: Response<ResBody>,
    ) -> Response
    where
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        match session {
            Some(call) => self.deliver_session(call, request_hash, response).await,
            None => self.deliver(payment, request_hash, started, response).await,
        }
    }

    /// The AIP-4 proof signed as the SDKs sign it, and bound to the request served: two signatures, one the
    /// SDKs check and one this project's requesters (and the chain) check. The binding's is shared with the
    /// other calls answered at the same moment (see [`super::sign`]), and is made while the proof is signed.
    /// Returns the signed proof and its proof hash (the binding's signing hash).
    async fn sign_delivery(
        &self,
        proof: DeliveryProof,
        request_hash: B256,
    ) -> actp_client::Result<(SignedDeliveryProof, B256)> {
        let aip4_hash = proof.signing_hash(&self.domain);
        let binding = ActpDelivery::new(proof.txId, aip4_hash, request_hash);
        let proof_hash = eip712::signing_hash(&binding, &self.domain);
        let (signature, bound) = tokio::join!(
            self.signer.sign_hash(&aip4_hash),
            self.batch_signer.sign(proof_hash)
        );
        let mut signed = SignedDeliveryProof::new(proof, signature?);
        let bound = bound?;
        signed.bind_in_batch(request_hash, bound.signature, bound.path);
        Ok((signed, proof_hash))
    }

    /// A proof number larger than any this paywall gave before, also across restarts: the microseconds of
    /// the wall clock, or one more than the last if the clock has not moved (SDK verifiers expect nonces to
    /// increase).
    fn next_proof_nonce(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let previous = self
            .proof_nonce
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |last| Some(now.max(last.saturating_add(1))),
            )
            .unwrap_or_default();
        now.max(previous.saturating_add(1))
    }

    /// The handler failed: nothing is delivered and the transaction may pay for a retry.
    pub(super) async fn give_back(&self, tx_id: B256, outcome: &'static str) {
        tracing::Span::current().record("outcome", outcome);
        self.metrics.request(outcome);
        if let Err(e) = self.store.release(tx_id).await {
            tracing::error!(error = %e, "could not release the claim");
        }
        tracing::info!("handler failed; claim released");
    }

    /// The handler succeeded: hash the body as sent, sign the proof, queue the delivery durably, answer.
    pub(super) async fn deliver<ResBody>(
        &self,
        payment: Payment,
        request_hash: B256,
        started: bool,
        response: Response<ResBody>,
    ) -> Response
    where
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let tx_id = payment.tx_id;
        let (mut parts, body) = response.into_parts();
        let Ok(collected) = body.collect().await else {
            self.give_back(tx_id, "handler_failed").await;
            return (
                StatusCode::BAD_GATEWAY,
                "the service's response body failed; nothing was delivered and the transaction can pay for a retry",
            )
                .into_response();
        };
        let bytes = collected.to_bytes();
        let proof = DeliveryProof::new(
            tx_id,
            self.terms.chain_id,
            self.terms.provider,
            payment.requester,
        )
        .with_result_hash(content_hash(&bytes))
        .delivered_at(self.clock.now(), self.next_proof_nonce());
        let (signed, proof_hash) = match self.sign_delivery(proof, request_hash).await {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(error = %e, "could not sign the delivery proof");
                self.give_back(tx_id, "handler_failed").await;
                return Refusal::StorageUnavailable {
                    retry_after: self.retry_after,
                }
                .into_response();
            }
        };
        if let Err(e) = self.store.serve(tx_id, proof_hash, started).await {
            self.give_back(tx_id, "handler_failed").await;
            return self.storage_failed(&e).into_response();
        }
        self.outbox.notify.notify_one();
        let headers = &mut parts.headers;
        if let Ok(v) = HeaderValue::from_str(&tx_id.to_string()) {
            headers.insert(TX_ID_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&proof_hash.to_string()) {
            headers.insert(PROOF_HASH_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&signed.to_header_value()) {
            headers.insert(DELIVERY_PROOF_HEADER, v);
        }
        headers.remove(header::CONTENT_LENGTH);
        tracing::Span::current().record("outcome", "served");
        self.metrics.request("served");
        tracing::info!(%proof_hash, "served");
        Response::from_parts(parts, Body::from(bytes))
    }
}
