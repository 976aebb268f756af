//! Closing sessions by themselves: a session nobody calls for the idle time, one whose deadline is near, one
//! used up (what remains cannot pay for the cheapest call) and not topped up for a while, and one whose
//! requester asked on chain to end it (the grace period runs) are closed through the outbox, once. A session
//! whose consumer asks is closed where its request ends ([`super::session`]).

use std::sync::Weak;

use actp_core::B256;
use tokio::sync::watch;

use super::Inner;
use crate::store::{CloseReason, SessionStatus};

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
}
