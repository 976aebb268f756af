//! What the paywall learns from the kernel's events, read in the background (one `eth_getLogs` per poll,
//! however many transactions it covers):
//! - transactions funded for this provider, so that a request paying with one is checked without a chain
//!   read on the request path;
//! - a requester asking to end a session, which queues the session's close at once.
//!
//! Why a funded transaction learned from events may be served without reading it again: a per-call
//! transaction leaves COMMITTED only by this provider's own call (start, cancel, made through the claim this
//! paywall records first) or by its requester's cancel once the deadline has passed, and the paywall serves
//! only a transaction whose deadline is at least `min_time_to_deadline` away. The other facts it checks
//! (requester, provider, amount, serviceHash, deadline) are fixed from funding on. Any transition out of
//! COMMITTED seen in the events forgets the transaction, and so does its first use. A transaction not
//! learned (funded before the paywall started, or in a block the follower has not read yet) is read from
//! chain as before: learning is only ever a shortcut.

use std::{
    collections::HashMap,
    sync::{Mutex, Weak},
    time::Duration,
};

use actp_client::{KernelEvent, Watcher, bindings::EscrowKernel::EscrowKernelEvents};
use actp_core::{Address, B256, State, U256};
use tokio::sync::watch;

use super::Inner;
use crate::store::{CloseReason, SessionStatus};

/// The most transactions remembered in each phase (created, funded); beyond it a transaction is simply read
/// when it is used.
const MAX_REMEMBERED: usize = 100_000;

/// What the paywall checks of a transaction, as funding fixed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Funded {
    pub(super) requester: Address,
    pub(super) amount: U256,
    pub(super) service_hash: B256,
    pub(super) deadline: u64,
}

/// Transactions for this provider seen in the events: created (waiting for funding) and funded.
#[derive(Debug, Default)]
struct Book {
    created: HashMap<B256, Funded>,
    funded: HashMap<B256, Funded>,
}

/// Transactions learned from events, shared by the request path and the follower task.
#[derive(Debug, Default)]
pub(super) struct Follower {
    book: Mutex<Book>,
}

/// What the events ask of the paywall beyond its book.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Learned {
    /// Sessions whose requester asked to end them.
    pub(super) end_requested: Vec<B256>,
}

impl Follower {
    /// The funded transaction `tx_id`, if the events showed it funded for this provider and nothing since.
    pub(super) fn funded(&self, tx_id: B256) -> Option<Funded> {
        self.book.lock().ok()?.funded.get(&tx_id).copied()
    }

    /// Forgets `tx_id` (it has been used).
    pub(super) fn forget(&self, tx_id: B256) {
        if let Ok(mut book) = self.book.lock() {
            book.funded.remove(&tx_id);
        }
    }

    /// How many funded transactions are remembered.
    pub(super) fn funded_len(&self) -> usize {
        self.book.lock().map_or(0, |b| b.funded.len())
    }

    /// Applies one batch of events, in order, for `provider`.
    pub(super) fn apply(&self, provider: Address, events: &[KernelEvent]) -> Learned {
        let mut learned = Learned::default();
        let Ok(mut book) = self.book.lock() else {
            return learned;
        };
        for event in events {
            match &event.event {
                EscrowKernelEvents::TransactionCreated(e)
                    if e.provider == provider && book.created.len() < MAX_REMEMBERED =>
                {
                    book.created.insert(
                        e.transactionId,
                        Funded {
                            requester: e.requester,
                            amount: e.amount,
                            service_hash: e.serviceHash,
                            deadline: e.deadline.saturating_to(),
                        },
                    );
                }
                EscrowKernelEvents::QuoteAccepted(e) => {
                    if let Some(created) = book.created.get_mut(&e.transactionId) {
                        created.amount = e.newAmount;
                    }
                }
                EscrowKernelEvents::StateTransitioned(e) => {
                    let id = e.transactionId;
                    if e.newState == State::Committed.code() {
                        if let Some(created) = book.created.remove(&id)
                            && book.funded.len() < MAX_REMEMBERED
                        {
                            book.funded.insert(id, created);
                        }
                    } else if e.newState != State::Quoted.code() {
                        book.created.remove(&id);
                        book.funded.remove(&id);
                    }
                }
                // A session is never paid per call; its account is kept apart.
                EscrowKernelEvents::SessionOpened(e) => {
                    book.funded.remove(&e.transactionId);
                    book.created.remove(&e.transactionId);
                }
                EscrowKernelEvents::SessionEndRequested(e) => {
                    learned.end_requested.push(e.transactionId);
                }
                _ => {}
            }
        }
        learned
    }

    /// Forgets every transaction whose deadline is before `min_deadline`: the paywall would refuse it anyway.
    fn prune(&self, min_deadline: u64) {
        if let Ok(mut book) = self.book.lock() {
            book.created.retain(|_, t| t.deadline >= min_deadline);
            book.funded.retain(|_, t| t.deadline >= min_deadline);
        }
    }
}

/// Follows the kernel's events from the watcher's block until the paywall is dropped or `stop` fires: polls
/// at once while behind, every `every` once caught up. A failed read is logged and retried from the same block.
pub(super) async fn run(
    paywall: Weak<Inner>,
    mut watcher: Watcher,
    every: Duration,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let wait = match watcher.poll().await {
            Ok(polled) => {
                let Some(inner) = paywall.upgrade() else {
                    return;
                };
                inner.learn(&polled.events).await;
                if polled.read && polled.next_block <= polled.head {
                    Duration::ZERO
                } else {
                    every
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, block = watcher.next_block(), "could not read the kernel's events; retrying");
                every
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Inner {
    /// Takes in a batch of events: the book, and the closes of sessions whose requester asked to end them.
    async fn learn(&self, events: &[KernelEvent]) {
        let Some(follower) = &self.follower else {
            return;
        };
        follower.prune(self.clock.now() + self.min_time_to_deadline);
        let learned = follower.apply(self.terms.provider, events);
        let mut open = Vec::new();
        for id in learned.end_requested {
            match self.store.session(id).await {
                Ok(Some(session)) if session.status == SessionStatus::Open => {
                    open.push((id, CloseReason::EndRequested));
                }
                Ok(_) => {}
                Err(e) => tracing::error!(tx_id = %id, error = %e, "cannot read the session"),
            }
        }
        self.queue_closes(open).await;
    }
}

#[cfg(test)]
mod tests {
    use actp_client::bindings::EscrowKernel;

    use super::*;

    fn event(event: EscrowKernelEvents) -> KernelEvent {
        KernelEvent {
            block_number: 1,
            tx_hash: B256::ZERO,
            log_index: 0,
            event,
        }
    }

    fn created(id: B256, provider: Address, amount: u64) -> KernelEvent {
        event(EscrowKernelEvents::TransactionCreated(
            EscrowKernel::TransactionCreated {
                transactionId: id,
                requester: Address::repeat_byte(2),
                provider,
                amount: U256::from(amount),
                serviceHash: B256::repeat_byte(9),
                deadline: U256::from(10_000u64),
                timestamp: U256::from(1u64),
                agentId: U256::ZERO,
            },
        ))
    }

    fn moved(id: B256, from: State, to: State) -> KernelEvent {
        event(EscrowKernelEvents::StateTransitioned(
            EscrowKernel::StateTransitioned {
                transactionId: id,
                oldState: from.code(),
                newState: to.code(),
                triggeredBy: Address::ZERO,
                timestamp: U256::from(1u64),
            },
        ))
    }

    #[test]
    fn a_transaction_is_funded_from_commit_until_it_leaves_committed() {
        let us = Address::repeat_byte(1);
        let follower = Follower::default();
        let (a, b, c, d) = (
            B256::repeat_byte(0xa),
            B256::repeat_byte(0xb),
            B256::repeat_byte(0xc),
            B256::repeat_byte(0xd),
        );
        follower.apply(
            us,
            &[
                // createAndFund for us; created for another provider; created and quoted, then accepted.
                created(a, us, 100),
                moved(a, State::Initiated, State::Committed),
                created(b, Address::repeat_byte(7), 100),
                moved(b, State::Initiated, State::Committed),
                created(c, us, 100),
                moved(c, State::Initiated, State::Quoted),
            ],
        );
        assert_eq!(
            follower.funded(a),
            Some(Funded {
                requester: Address::repeat_byte(2),
                amount: U256::from(100u64),
                service_hash: B256::repeat_byte(9),
                deadline: 10_000,
            })
        );
        assert_eq!(follower.funded(b), None, "another provider's");
        assert_eq!(follower.funded(c), None, "not funded yet");
        follower.apply(
            us,
            &[
                event(EscrowKernelEvents::QuoteAccepted(
                    EscrowKernel::QuoteAccepted {
                        transactionId: c,
                        oldAmount: U256::from(100u64),
                        newAmount: U256::from(250u64),
                        timestamp: U256::from(2u64),
                    },
                )),
                moved(c, State::Quoted, State::Committed),
                moved(a, State::Committed, State::Cancelled),
                created(d, us, 100),
                moved(d, State::Initiated, State::Committed),
                event(EscrowKernelEvents::SessionOpened(
                    EscrowKernel::SessionOpened {
                        transactionId: d,
                        grace: U256::from(600u64),
                    },
                )),
            ],
        );
        assert_eq!(follower.funded(a), None, "cancelled");
        assert_eq!(
            follower.funded(c).map(|f| f.amount),
            Some(U256::from(250u64)),
            "the accepted quote's amount"
        );
        assert_eq!(follower.funded(d), None, "a session is never paid per call");
        assert_eq!(follower.funded_len(), 1);
        follower.forget(c);
        assert_eq!(follower.funded(c), None, "used");
    }

    #[test]
    fn end_requests_are_reported_and_past_deadlines_forgotten() {
        let us = Address::repeat_byte(1);
        let follower = Follower::default();
        let id = B256::repeat_byte(0xe);
        let learned = follower.apply(
            us,
            &[
                created(id, us, 100),
                moved(id, State::Initiated, State::Committed),
                event(EscrowKernelEvents::SessionEndRequested(
                    EscrowKernel::SessionEndRequested {
                        transactionId: B256::repeat_byte(0x5e),
                        closeBy: U256::from(900u64),
                    },
                )),
            ],
        );
        assert_eq!(learned.end_requested, vec![B256::repeat_byte(0x5e)]);
        follower.prune(10_000);
        assert!(follower.funded(id).is_some(), "deadline 10,000 is kept");
        follower.prune(10_001);
        assert_eq!(follower.funded(id), None);
    }
}
