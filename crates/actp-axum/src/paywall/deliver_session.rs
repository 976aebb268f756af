//! After the handler of a call paid from a session: a failed handler gives the call's hold back; a successful
//! one is charged by its usage (at most its maximum), its signed receipt, chained to the one before, recorded
//! durably before the response leaves with it.

use actp_core::{
    B256,
    http::{NOT_CHARGED_HEADER, RECEIPT_HEADER, TX_ID_HEADER},
    meter::Usage,
    proof::content_hash,
    session::SignedReceipt,
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

use super::{BoxError, Inner, session::SessionCall};
use crate::{
    refusal::Refusal,
    route::Price,
    store::{CallHold, CloseReason},
};

impl Inner {
    /// The handler failed: the call's hold goes back and nothing is charged.
    pub(super) async fn give_back_hold(&self, hold: CallHold, outcome: &'static str) {
        tracing::Span::current().record("outcome", outcome);
        self.metrics.request(outcome);
        if let Err(e) = self.store.release_hold(hold).await {
            tracing::error!(error = %e, "could not release the session hold");
        }
    }

    /// The handler succeeded: charge the call by its usage (at most its maximum), record the receipt durably,
    /// sign it, answer with it; close the session if what remains cannot pay for another call like this one.
    pub(super) async fn deliver_session<ResBody>(
        &self,
        call: SessionCall,
        request_hash: B256,
        response: Response<ResBody>,
    ) -> Response
    where
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let tx_id = call.hold.tx_id;
        let (mut parts, body) = response.into_parts();
        let Ok(collected) = body.collect().await else {
            self.give_back_hold(call.hold, "handler_failed").await;
            return (
                StatusCode::BAD_GATEWAY,
                "the service's response body failed; nothing was charged",
            )
                .into_response();
        };
        let bytes = collected.to_bytes();
        let charge = match &call.price {
            Price::Metered(meter) => {
                meter.charge(parts.extensions.get::<Usage>().unwrap_or(&Usage::new()))
            }
            _ => call.max,
        };
        let result_hash = content_hash(&bytes);
        let charged = self
            .store
            .charge(call.hold, |s| {
                s.charge(
                    tx_id,
                    call.hold.max,
                    charge.to_u256(),
                    request_hash,
                    result_hash,
                    &self.domain,
                )
            })
            .await;
        // The account's head is the receipt's EIP-712 hash, computed once by the charge.
        let (receipt, hash) = match charged {
            Ok(Some((receipt, account))) => (receipt, account.head),
            Ok(None) => {
                tracing::error!(%tx_id, "session account vanished");
                return self.storage_failed_response();
            }
            Err(e) => {
                self.give_back_hold(call.hold, "handler_failed").await;
                return self.storage_failed(&e).into_response();
            }
        };
        // Asked to close after this call. (A used-up session waits a little for a top-up before the closer
        // closes it.)
        let reason = call.close_after.then_some(CloseReason::Asked);
        if let Some(reason) = reason
            && let Err(e) = self.store.queue_session_close(tx_id, reason).await
        {
            tracing::error!(error = %e, "could not queue the session's close");
        }
        // The charge and the receipt chain are durable before the receipt leaves. The receipt is signed (in a
        // batch with the other calls answered now) while the journal syncs (the commit asks for its sync when
        // first polled).
        let (flushed, signature) = tokio::join!(self.store.flush(), self.batch_signer.sign(hash));
        if let Err(e) = flushed {
            return self.storage_failed(&e).into_response();
        }
        if reason.is_some() {
            self.outbox.notify.notify_one();
        }
        let signed = match signature {
            Ok(signed) => SignedReceipt {
                receipt,
                signature: signed.signature,
                path: signed.path,
            },
            Err(e) => {
                // Charged and chained already: the receipt can be signed again; the call is not repeated.
                tracing::error!(error = %e, "could not sign the receipt");
                return self.storage_failed_response();
            }
        };
        let headers = &mut parts.headers;
        if let Ok(v) = HeaderValue::from_str(&tx_id.to_string()) {
            headers.insert(TX_ID_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&signed.to_header()) {
            headers.insert(RECEIPT_HEADER, v);
        }
        headers.remove(header::CONTENT_LENGTH);
        tracing::Span::current().record("outcome", "served");
        self.metrics.request("served");
        tracing::info!(charge = %charge, charged = %signed.receipt.charged, "served from session");
        Response::from_parts(parts, Body::from(bytes))
    }

    fn storage_failed_response(&self) -> Response {
        Refusal::StorageUnavailable {
            retry_after: self.retry_after,
        }
        .into_response()
    }
}

/// A failed handler's response as it leaves: on a session call, marked as charged nothing
/// ([`NOT_CHARGED_HEADER`]), so that the consumer keeps its session (a failed response without the mark
/// may have come from a proxy after a charge).
pub(super) fn uncharged(mut response: Response, session: bool) -> Response {
    if session {
        response
            .headers_mut()
            .insert(NOT_CHARGED_HEADER, HeaderValue::from_static("1"));
    }
    response
}
