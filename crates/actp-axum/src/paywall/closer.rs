//! Closing sessions, through the outbox, once: by themselves, a session nobody calls for the idle time, one
//! whose deadline is near, one used up (what remains cannot pay for the cheapest call) and not topped up for a
//! while, and one whose requester asked on chain to end it (the grace period runs); and one whose consumer
//! asks, on the close path (a call with [`super::CLOSE_HEADER`] is closed after it: [`super::deliver_session`]).

use std::sync::Weak;

use actp_core::{B256, http::TX_ID_HEADER, proof::content_hash};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header, request::Parts};
use tokio::sync::watch;

use super::Inner;
use crate::{
    refusal::Refusal,
    store::{CloseReason, SessionStatus},
};

/// While the kernel's events are followed, end requests arrive through them ([`super::follow`]); the chain
/// is still asked on every this many passes (the first included), in case a node's logs lagged its head.
const END_READ_EVERY: u64 = 12;

/// Looks for sessions to close every `check_every` until the paywall is dropped or `stop` fires.
pub(super) async fn run(paywall: Weak<Inner>, mut stop: watch::Receiver<()>) {
    let mut pass = 0u64;
    loop {
        let every = match paywall.upgrade() {
            Some(inner) => {
                let read_end_requests =
                    inner.follower.is_none() || pass.is_multiple_of(END_READ_EVERY);
                pass += 1;
                inner.close_due_sessions(read_end_requests).await;
                match &inner.sessions {
                    Some(config) => config.check_every,
                    None => return,
                }
            }
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Inner {
    /// Queues the close of every open session that is due; with `read_end_requests`, one chain read per
    /// open session not otherwise due (has its requester asked to end it?).
    pub(super) async fn close_due_sessions(&self, read_end_requests: bool) {
        let Some(config) = &self.sessions else {
            return;
        };
        let now = self.clock.now();
        let sessions = match self.store.sessions().await {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the sessions");
                return;
            }
        };
        let mut due = Vec::new();
        for (id, session) in sessions {
            if session.status != SessionStatus::Open {
                continue;
            }
            let reason = if session.deadline <= now.saturating_add(config.close_margin.as_secs()) {
                Some(CloseReason::Deadline)
            } else if session.in_flight == 0
                && now.saturating_sub(session.last_call) >= config.idle_close.as_secs()
            {
                Some(CloseReason::Idle)
            } else if session.in_flight == 0
                && self
                    .cheapest_session_call
                    .is_some_and(|min| session.available() < min.to_u256())
                && now.saturating_sub(session.last_call) >= config.used_up_close.as_secs()
            {
                Some(CloseReason::UsedUp)
            } else if !read_end_requests {
                None
            } else {
                match self.kernel.session_of(id).await {
                    Ok(Some(terms)) if terms.close_by != 0 => Some(CloseReason::EndRequested),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(tx_id = %id, error = %e, "could not read the session");
                        None
                    }
                }
            };
            if let Some(reason) = reason {
                due.push((id, reason));
            }
        }
        self.queue_closes(due).await;
    }

    /// Queues the close of each session (unless it is closing already), makes the queue durable and wakes the
    /// outbox.
    pub(super) async fn queue_closes(&self, closes: Vec<(B256, CloseReason)>) {
        let mut queued = false;
        for (id, reason) in closes {
            match self.store.queue_session_close(id, reason).await {
                Ok(true) => {
                    tracing::info!(tx_id = %id, ?reason, "closing session");
                    queued = true;
                }
                Ok(false) => {}
                Err(e) => tracing::error!(tx_id = %id, error = %e, "could not queue the close"),
            }
        }
        if queued {
            if let Err(e) = self.store.flush().await {
                tracing::error!(error = %e, "could not flush the queued closes");
            }
            self.outbox.notify.notify_one();
        }
    }

    /// Answers a `POST` on the close path: `202` with the session's close queued, or the refusal (counted).
    pub(super) async fn answer_close_path<B>(&self, parts: &Parts, body: B) -> Response
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<super::BoxError>,
    {
        let target = super::verify::request_target(parts);
        let outcome = match super::verify::read_body(body, self.body_limit).await {
            Ok(bytes) => self.close_requested(parts, &target, &bytes).await,
            Err(refusal) => Err(refusal),
        };
        outcome.unwrap_or_else(|refusal| {
            self.metrics.request(refusal.code());
            refusal.into_response()
        })
    }

    /// `POST` on the close path: the requester asks (with a voucher over this request) to close its session.
    async fn close_requested(
        &self,
        parts: &Parts,
        target: &str,
        body: &[u8],
    ) -> Result<Response, Refusal> {
        let tx_id = parts
            .headers
            .get(TX_ID_HEADER)
            .and_then(super::verify::parse_tx_id)
            .ok_or(Refusal::MalformedTxId)?;
        let voucher = super::verify::voucher_header(parts)?.ok_or(Refusal::MissingAuthorization)?;
        let state = match self.store.session(tx_id).await {
            Ok(Some(state)) => state,
            Ok(None) => return Err(Refusal::NotASession { tx_id }),
            Err(e) => return Err(self.storage_failed(&e)),
        };
        let signed = voucher.voucher(tx_id, parts.method.as_str(), target, content_hash(body));
        voucher
            .verify(
                &signed,
                &self.domain,
                state.requester,
                self.clock.now(),
                self.max_authorization_validity,
            )
            .map_err(Refusal::Unauthorized)?;
        let queued = self
            .store
            .queue_session_close(tx_id, CloseReason::Asked)
            .await
            .map_err(|e| self.storage_failed(&e))?;
        self.store
            .flush()
            .await
            .map_err(|e| self.storage_failed(&e))?;
        self.outbox.notify.notify_one();
        let body = serde_json::json!({
            "txId": tx_id,
            "closing": true,
            "alreadyClosing": !queued,
            "charged": state.charged.to_string(),
            "proofHash": state.head,
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = StatusCode::ACCEPTED;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }
}
