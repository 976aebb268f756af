//! The delivery outbox: puts every served request's DELIVERED transition on chain, once, off the request path.
//!
//! A served request leaves a [`Delivery`] in sled (written and flushed before the response). The worker sends
//! `IN_PROGRESS` (unless this provider already did) and `DELIVERED` with the 64-byte proof
//! `abi.encode(0, proofHash)` (0 keeps the requester's dispute window), many deliveries at once on one nonce
//! sequence. Exactly once: after any doubt (a restart, an RPC error, a receipt that did not come) it reads
//! the transaction's state before sending again, and a transaction already DELIVERED (or later) is closed
//! without a send. A delivery the kernel refuses for good (the consumer cancelled first, the deadline
//! passed) is closed as failed, logged and counted; it is never retried forever.
//!
//! A session's close is queued the same way. It waits until the session's calls in flight have ended, then
//! sends `IN_PROGRESS` (unless already sent) and `closeSession` with what the calls were charged, the best
//! voucher, and the last receipt's hash as the proof hash (or an empty close when nothing was charged).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use actp_client::{ClientError, Kernel};
use actp_core::{B256, Rejection, State, session::VoucherHeader};
use tokio::sync::{Notify, Semaphore, watch};

use crate::{
    metrics::Metrics,
    store::{Delivery, Queued, Store},
};

#[derive(Clone)]
pub(crate) struct Outbox {
    pub(crate) store: Store,
    pub(crate) kernel: Kernel,
    pub(crate) notify: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) concurrency: usize,
    pub(crate) retry_delay: Duration,
}

/// What one attempt came to.
enum Attempt {
    /// Closed (delivered, or refused for good).
    Done,
    /// Try again later, reading the state first.
    Retry,
}

impl Outbox {
    /// Runs until `stop` is dropped or signalled. Deliveries found at start were interrupted: each is
    /// checked against the chain before anything is sent.
    pub(crate) async fn run(self, mut stop: watch::Receiver<()>) {
        let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let doubtful: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        match self.store.pending().await {
            Ok(pending) => {
                if !pending.is_empty() {
                    tracing::info!(
                        count = pending.len(),
                        "outbox resuming interrupted deliveries"
                    );
                }
                if let Ok(mut d) = doubtful.lock() {
                    d.extend(pending.iter().map(|q| q.seq));
                }
            }
            Err(e) => tracing::error!(error = %e, "outbox cannot read its queue"),
        }
        // On a shared store, other replicas' work whose lease ran out is found by looking again now and then.
        let poll = self.store.poll();
        loop {
            let pending = match self.store.pending().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "outbox cannot read its queue");
                    Vec::new()
                }
            };
            for Queued {
                seq,
                delivery,
                doubtful: taken_over,
            } in pending
            {
                let fresh = in_flight.lock().map(|mut s| s.insert(seq)).unwrap_or(false);
                if !fresh {
                    continue;
                }
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                // While this loop waited for a permit, the delivery may have been sent and closed by an
                // earlier pass: the snapshot is older than the queue.
                if !self.store.is_pending(seq).await {
                    if let Ok(mut s) = in_flight.lock() {
                        s.remove(&seq);
                    }
                    continue;
                }
                let check = taken_over || doubtful.lock().map(|s| s.contains(&seq)).unwrap_or(true);
                let this = self.clone();
                let in_flight = Arc::clone(&in_flight);
                let doubtful = Arc::clone(&doubtful);
                tokio::spawn(async move {
                    let attempt = this.deliver(seq, &delivery, check).await;
                    if let Ok(mut d) = doubtful.lock() {
                        match attempt {
                            Attempt::Done => d.remove(&seq),
                            Attempt::Retry => d.insert(seq),
                        };
                    }
                    if let Ok(mut s) = in_flight.lock() {
                        s.remove(&seq);
                    }
                    drop(permit);
                    if matches!(attempt, Attempt::Retry) {
                        this.metrics.delivery("retried");
                        tokio::time::sleep(this.retry_delay).await;
                        this.notify.notify_one();
                    }
                });
            }
            let tick = async {
                match poll {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.notify.notified() => {}
                () = tick => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn deliver(&self, seq: u64, delivery: &Delivery, check: bool) -> Attempt {
        if delivery.session {
            return self.close_session(seq, delivery.tx_id, check).await;
        }
        let id = delivery.tx_id;
        if let Err(attempt) = self.started(seq, id, false, delivery.started, check).await {
            return attempt;
        }
        match self.kernel.deliver(id, 0, Some(delivery.proof_hash)).await {
            Ok(sent) => {
                tracing::info!(tx_id = %id, proof_hash = %delivery.proof_hash, tx = %sent.tx_hash, "delivered");
                self.close(seq, id, false, Ok(Some(sent.tx_hash))).await
            }
            Err(e) => match e.rejection() {
                Some(r) => self.refused(seq, id, false, r).await,
                None => self.transient(id, &e),
            },
        }
    }

    /// Closes session `id` with what its calls were charged, once its calls in flight have ended.
    async fn close_session(&self, seq: u64, id: B256, check: bool) -> Attempt {
        let state = match self.store.session(id).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                return self
                    .close(seq, id, true, Err("no account of the session".into()))
                    .await;
            }
            Err(e) => {
                tracing::error!(tx_id = %id, error = %e, "cannot read the session");
                return Attempt::Retry;
            }
        };
        if state.in_flight > 0 {
            // Calls still running will add their charges: close after them.
            return Attempt::Retry;
        }
        if let Err(attempt) = self.started(seq, id, true, state.started, check).await {
            return attempt;
        }
        let sent = match (&state.best, state.charged.is_zero()) {
            (Some(best), false) => {
                // The paywall checked the voucher by `r` and `s`; the kernel recovers with `v` too.
                let Some(voucher) =
                    VoucherHeader::from_parts(best.cumulative, best.expires_at, &best.signature)
                        .ok()
                        .and_then(|v| {
                            v.for_chain(&best.voucher(id), &self.kernel.domain(), state.requester)
                        })
                else {
                    return self
                        .close(seq, id, true, Err("the stored voucher is corrupt".into()))
                        .await;
                };
                // Every hold was covered by the best voucher, so the charges never exceed it.
                self.kernel
                    .close_session(id, state.charged, &voucher, best.request_hash, state.head)
                    .await
            }
            _ => self.kernel.close_session_empty(id, state.head).await,
        };
        match sent {
            Ok(sent) => {
                tracing::info!(tx_id = %id, charged = %state.charged, proof_hash = %state.head, tx = %sent.tx_hash, "session closed");
                self.close(seq, id, true, Ok(Some(sent.tx_hash))).await
            }
            Err(e) => match e.rejection() {
                Some(r) => self.refused(seq, id, true, r).await,
                None => self.transient(id, &e),
            },
        }
    }

    /// Makes sure `id` is IN_PROGRESS before its delivery or close: after any doubt (`check`) the chain says
    /// whether this provider's start landed (or the transaction moved on without us, which ends the entry);
    /// otherwise `started` does. `Err` is what this attempt came to instead.
    async fn started(
        &self,
        seq: u64,
        id: B256,
        session: bool,
        mut started: bool,
        check: bool,
    ) -> Result<(), Attempt> {
        if check {
            match self.kernel.get(id).await {
                Ok(record) => match record.state {
                    State::Committed => started = false,
                    State::InProgress => started = true,
                    State::Delivered | State::Settled | State::Disputed => {
                        return Err(self.close(seq, id, session, Ok(None)).await);
                    }
                    other => {
                        return Err(self
                            .close(seq, id, session, Err(format!("transaction is {other}")))
                            .await);
                    }
                },
                Err(e) => return Err(self.transient(id, &e)),
            }
        }
        if started {
            return Ok(());
        }
        match self.kernel.start(id).await {
            Ok(_) => {
                let recorded = if session {
                    self.store.mark_session_started(id).await
                } else {
                    self.store.mark_started(id).await
                };
                if let Err(e) = recorded {
                    tracing::warn!(tx_id = %id, error = %e, "could not record IN_PROGRESS");
                }
                Ok(())
            }
            Err(e) => Err(match e.rejection() {
                Some(r) => self.refused(seq, id, session, r).await,
                None => self.transient(id, &e),
            }),
        }
    }

    /// The kernel refused a send: if the transaction moved on without us (delivered already), close it as
    /// delivered; if it can no longer be delivered, close it as failed; otherwise look again later.
    async fn refused(&self, seq: u64, id: B256, session: bool, rejection: &Rejection) -> Attempt {
        match self.kernel.get(id).await {
            Ok(record) => match record.state {
                State::Delivered | State::Settled | State::Disputed => {
                    self.close(seq, id, session, Ok(None)).await
                }
                State::Committed | State::InProgress
                    if matches!(rejection, Rejection::InvalidTransition { .. }) =>
                {
                    tracing::warn!(tx_id = %id, %rejection, "delivery refused; will look again");
                    Attempt::Retry
                }
                _ => {
                    self.close(seq, id, session, Err(rejection.to_string()))
                        .await
                }
            },
            Err(e) => self.transient(id, &e),
        }
    }

    fn transient(&self, id: B256, error: &ClientError) -> Attempt {
        tracing::warn!(tx_id = %id, error = %error, "delivery interrupted; will retry");
        Attempt::Retry
    }

    async fn close(
        &self,
        seq: u64,
        id: B256,
        session: bool,
        outcome: Result<Option<B256>, String>,
    ) -> Attempt {
        let refused = outcome.as_ref().err().cloned();
        let finished = if session {
            self.store.finish_session_close(seq, id, outcome).await
        } else {
            self.store.finish(seq, id, outcome).await
        };
        match finished {
            Ok(false) => Attempt::Done,
            Ok(true) => {
                match refused {
                    None => self.metrics.delivery("delivered"),
                    Some(reason) => {
                        tracing::error!(tx_id = %id, reason, "the kernel refused the delivery; it is dropped from the outbox");
                        self.metrics.delivery("refused");
                    }
                }
                Attempt::Done
            }
            Err(e) => {
                tracing::error!(tx_id = %id, error = %e, "could not close the delivery");
                Attempt::Retry
            }
        }
    }
}
