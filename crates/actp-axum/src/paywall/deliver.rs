//! After the handler: a failed handler gives the claim back (the transaction can pay for a retry); a
//! successful one has its body hashed as sent, a delivery proof signed, and the delivery queued durably
//! before the response leaves.

use actp_core::{
    B256, U256,
    http::{DELIVERY_PROOF_HEADER, PROOF_HASH_HEADER, TX_ID_HEADER},
    proof::{DeliveryProof, SignedDeliveryProof, content_hash},
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

use super::{BoxError, Inner, Payment};
use crate::refusal::Refusal;

impl Inner {
    /// The handler failed: nothing is delivered and the transaction may pay for a retry.
    pub(super) fn give_back(&self, tx_id: B256, outcome: &'static str) {
        tracing::Span::current().record("outcome", outcome);
        self.metrics.request(outcome);
        if let Err(e) = self.store.release(tx_id) {
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
            self.give_back(tx_id, "handler_failed");
            return (
                StatusCode::BAD_GATEWAY,
                "the service's response body failed; nothing was delivered and the transaction can pay for a retry",
            )
                .into_response();
        };
        let bytes = collected.to_bytes();
        let proof = DeliveryProof {
            txId: tx_id,
            provider: self.terms.provider,
            consumer: payment.requester,
            resultHash: content_hash(&bytes),
            requestHash: request_hash,
            deliveredAt: U256::from(self.clock.now()),
            chainId: U256::from(self.terms.chain_id),
            nonce: U256::ZERO,
        };
        let signed = match self.signer.sign_typed(&proof, &self.domain).await {
            Ok(signature) => SignedDeliveryProof { proof, signature },
            Err(e) => {
                tracing::error!(error = %e, "could not sign the delivery proof");
                self.give_back(tx_id, "handler_failed");
                return Refusal::StorageUnavailable {
                    retry_after: self.retry_after,
                }
                .into_response();
            }
        };
        let proof_hash = signed.proof.proof_hash(&self.domain);
        if let Err(e) = self.store.serve(tx_id, proof_hash, started).await {
            self.give_back(tx_id, "handler_failed");
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
