//! The lifecycle's usual next step for a transaction, and governance calls.

use actp_client::ClientError;
use actp_core::{B256, State, U256, model::Action};

use super::{ACTORS, World, steps::ALIASES};

impl World {
    /// The party and action that usually come next for `tx` (index into `clients`).
    pub(crate) fn next_step(&self, tx: &actp_core::model::Transaction, r: u64) -> (usize, Action) {
        let (req, prov) = (self.index(tx.requester), self.index(tx.provider));
        let kernel = self.devnet.deployment().kernel;
        let roll = r % 100;
        let left = tx.amount - tx.released;
        // One funding in five links an older client's escrow id, shared among requesters.
        let fund = if (r >> 8).is_multiple_of(5) {
            Action::Fund {
                escrow_contract: kernel,
                escrow_id: ALIASES[(r >> 16) as usize % ALIASES.len()],
            }
        } else {
            Action::fund(kernel, tx.id)
        };
        match tx.state {
            State::Initiated => match roll {
                0..=69 => (req, fund),
                70..=84 => (prov, Action::quote(Some(B256::repeat_byte(3)))),
                _ => (req, Action::cancel()),
            },
            State::Quoted => match roll {
                0..=59 => (req, fund),
                60..=79 => (
                    req,
                    Action::AcceptQuote {
                        new_amount: U256::from(50_000 + r % 2_000_000),
                    },
                ),
                _ => (req, Action::cancel()),
            },
            State::Committed => match roll {
                0..=79 => (prov, Action::start()),
                80..=89 => (prov, Action::cancel()),
                _ => (req, Action::cancel()),
            },
            State::InProgress => match roll {
                0..=59 => (
                    prov,
                    Action::deliver(
                        if r.is_multiple_of(2) {
                            0
                        } else {
                            tx.dispute_window + r % 7_200
                        },
                        r.is_multiple_of(3).then_some(B256::repeat_byte(5)),
                    ),
                ),
                60..=79 => (
                    req,
                    Action::ReleaseMilestone {
                        amount: U256::from(1 + r % 400_000),
                    },
                ),
                80..=89 => (prov, Action::cancel()),
                _ => (req, Action::cancel()),
            },
            State::Delivered => match roll {
                0..=29 => (req, Action::settle()),
                30..=54 => (ACTORS + 1, Action::settle()),
                55..=64 => (prov, Action::ReleaseEscrow),
                65..=84 => (req, Action::dispute()),
                _ => (prov, Action::dispute()),
            },
            _ => {
                let to_requester = if left.is_zero() {
                    U256::ZERO
                } else {
                    U256::from(r) % (left + U256::from(1))
                };
                // Usually the admin, sometimes a mediator (maybe a party, maybe not yet active) or anyone.
                let resolver = match (r >> 24) % 8 {
                    0 => ((r >> 32) % (ACTORS as u64 + 2)) as usize,
                    1..=2 if !self.mediators.is_empty() => *self
                        .mediators
                        .iter()
                        .nth((r >> 32) as usize % self.mediators.len())
                        .unwrap(),
                    _ => self.index(self.model.admin()),
                };
                (
                    resolver,
                    Action::resolve(
                        if r.is_multiple_of(2) {
                            State::Settled
                        } else {
                            State::Cancelled
                        },
                        to_requester,
                        left - to_requester,
                    ),
                )
            }
        }
    }

    /// One governance call on both sides. The caller is usually the one the rule names (the admin, or the
    /// pending admin for acceptAdmin), one time in four anyone.
    pub(crate) async fn govern(
        &mut self,
        kind: u8,
        who: usize,
        target: usize,
        now: u64,
    ) -> (Result<(), actp_core::Rejection>, Result<(), ClientError>) {
        use actp_client::bindings::EscrowKernel as K;
        use alloy::sol_types::SolCall;
        let rightful = match (kind, self.pending_admin) {
            (1, Some(pending)) => pending,
            _ => self.index(self.model.admin()),
        };
        let who = if who.is_multiple_of(4) {
            who / 4 % (ACTORS + 2)
        } else {
            rightful
        };
        let (caller, to) = (self.addr(who), self.addr(target));
        let (m, input) = match kind {
            0 => (
                self.model.transfer_admin(caller, to),
                K::transferAdminCall { newAdmin: to }.abi_encode(),
            ),
            1 => (
                self.model.accept_admin(caller, now),
                K::acceptAdminCall {}.abi_encode(),
            ),
            2 => (
                self.model.set_pauser(caller, to),
                K::setPauserCall { newPauser: to }.abi_encode(),
            ),
            _ => {
                let approved = kind == 3;
                (
                    self.model.set_mediator(caller, to, approved, now),
                    K::setMediatorCall {
                        mediator: to,
                        approved,
                    }
                    .abi_encode(),
                )
            }
        };
        let k = &self.clients[who];
        let c = k.send(Some(k.address()), input.into()).await.map(|_| ());
        if m.is_ok() {
            match kind {
                0 => self.pending_admin = Some(target),
                1 => self.pending_admin = None,
                3 => {
                    self.mediators.insert(target);
                }
                4 => {
                    self.mediators.remove(&target);
                }
                _ => {}
            }
        }
        (m, c)
    }
}
