//! Sessions in the differential run: opening (sometimes with a grace period out of range), top-ups, end
//! requests, closes with the requester's voucher or someone else's signature, and the usual next step of a
//! session, all compared with the model like any other step (and `sessionOf` beside the transaction view).

use actp_client::{ClientError, OpenSession};
use actp_core::{
    B256, State, U256,
    model::{Action, Transaction},
    session::SessionVoucher,
};

use super::{ACTORS, World, steps::SERVICE};

/// The request hash the differential run's vouchers carry (the kernel only checks the signature over it).
const REQUEST: B256 = B256::repeat_byte(9);

impl World {
    /// `openSession` by `who` on both sides.
    pub(crate) async fn open_session(
        &mut self,
        who: usize,
        provider: usize,
        amount: u64,
        ahead: u64,
        window: u64,
        grace: u64,
    ) -> Result<super::Sides, String> {
        let terms = OpenSession {
            provider: self.addr(provider),
            deposit: U256::from(amount),
            deadline: self.now + ahead,
            dispute_window: window,
            service_hash: SERVICE,
            grace,
        };
        let params = actp_core::model::CreateParams::new(
            terms.provider,
            terms.deposit,
            terms.deadline,
            window,
            SERVICE,
        );
        let m = self
            .model
            .open_session(self.addr(who), &params, grace, self.now);
        let c = self.clients[who].open_session(&terms).await;
        if let (Ok((a, _)), Ok(b)) = (&m, &c) {
            if a != b {
                return Err(format!("session ids differ: model {a}, chain {b}"));
            }
            self.ids.push(*a);
        }
        let touched = m.as_ref().map(|(id, _)| vec![*id]).unwrap_or_default();
        Ok((m.map(|x| x.1), c.map(|_| ()), touched))
    }

    /// A session operation (or a per-call one a session refuses) chosen by `kind`, on session `id`.
    pub(crate) fn session_action(kind: u8, arg: u64, tx: &Transaction) -> Action {
        match kind % 6 {
            0 => Action::TopUpSession {
                amount: match arg % 5 {
                    0 => U256::ZERO,
                    1 => U256::from(10u64).pow(U256::from(16)),
                    _ => U256::from(1 + arg % 2_000_000),
                },
            },
            1 => Action::EndSession,
            2 | 3 => {
                let cumulative = U256::from(arg % 3_000_000);
                let claim = if arg.is_multiple_of(7) {
                    cumulative + U256::from(1)
                } else {
                    cumulative.min(tx.amount) * U256::from(arg % 100) / U256::from(100)
                };
                Action::CloseSession {
                    claim,
                    cumulative,
                    signed: kind % 6 == 2,
                }
            }
            4 => Action::deliver(0, None),
            _ => Action::ReleaseMilestone {
                amount: U256::from(1 + arg % 100_000),
            },
        }
    }

    /// The party and step that usually come next for session `tx`.
    pub(crate) fn next_session_step(&self, tx: &Transaction, r: u64) -> (usize, Action) {
        let (req, prov) = (self.index(tx.requester), self.index(tx.provider));
        let roll = r % 100;
        let top_up = Action::TopUpSession {
            amount: U256::from(1 + (r >> 8) % 2_000_000),
        };
        match tx.state {
            State::Committed => match roll {
                0..=59 => (prov, Action::start()),
                60..=74 => (req, top_up),
                75..=84 => (req, Action::EndSession),
                85..=92 => (req, Action::cancel()),
                _ => (prov, Action::cancel()),
            },
            State::InProgress => match roll {
                0..=49 => {
                    // A close with the requester's voucher: usually a claim within it and the deposit.
                    let cumulative = U256::from((r >> 8) % (tx.amount.to::<u64>() + 200_000));
                    let claim = if (r >> 40).is_multiple_of(10) {
                        cumulative + U256::from(1)
                    } else {
                        cumulative.min(tx.amount) * U256::from((r >> 16) % 101) / U256::from(100)
                    };
                    (
                        prov,
                        Action::CloseSession {
                            claim,
                            cumulative,
                            signed: true,
                        },
                    )
                }
                50..=54 => (
                    prov,
                    Action::CloseSession {
                        claim: U256::from(1 + (r >> 8) % 1_000),
                        cumulative: tx.amount,
                        signed: false,
                    },
                ),
                55..=64 => (req, top_up),
                65..=74 => (req, Action::EndSession),
                75..=84 => (req, Action::cancel()),
                85..=89 => (prov, Action::cancel()),
                _ => (prov, Action::deliver(0, None)),
            },
            State::Disputed => {
                // Usually within the claim, sometimes above it (refused).
                let claimed = tx.session.map_or(U256::ZERO, |s| s.claimed);
                let left = tx.amount;
                let to_provider = if roll < 80 {
                    claimed * U256::from((r >> 8) % 101) / U256::from(100)
                } else {
                    claimed + U256::from(1).min(left - claimed)
                };
                let admin = self.index(self.model.admin());
                (
                    admin,
                    Action::resolve(
                        if r.is_multiple_of(2) {
                            State::Settled
                        } else {
                            State::Cancelled
                        },
                        left - to_provider,
                        to_provider,
                    ),
                )
            }
            _ => self.next_step(tx, r),
        }
    }

    /// Sends `action` as `who`. A close marked `signed` carries the requester's signature over its voucher; an
    /// unsigned one with a claim carries another account's.
    pub(crate) async fn send(
        &self,
        who: usize,
        id: B256,
        action: &Action,
    ) -> Result<(), ClientError> {
        let Action::CloseSession {
            claim,
            cumulative,
            signed,
        } = action
        else {
            return super::send_action(&self.clients[who], id, action).await;
        };
        let requester = self
            .model
            .transaction(id)
            .map_or(self.addr(1), |tx| tx.requester);
        let r = self.index(requester);
        let signer = if *signed { r } else { (r % ACTORS) + 1 };
        let voucher = SessionVoucher::new(id, *cumulative, REQUEST, self.now + 600);
        let k = &self.clients[who];
        let signature = if claim.is_zero() && !signed {
            Vec::new()
        } else {
            self.devnet
                .signer(signer)
                .sign_hash(&voucher.signing_hash(&k.domain()))
                .await
                .unwrap()
                .as_bytes()
                .to_vec()
        };
        use actp_client::bindings::EscrowKernel as K;
        use alloy::sol_types::SolCall;
        let input = K::closeSessionCall {
            transactionId: id,
            claim: *claim,
            cumulative: *cumulative,
            requestHash: REQUEST,
            expiresAt: U256::from(self.now + 600),
            signature: signature.into(),
            proofHash: B256::repeat_byte(4),
        }
        .abi_encode();
        k.send(Some(k.address()), input.into()).await.map(|_| ())
    }

    /// `sessionOf` of `id` against the model.
    pub(crate) async fn compare_session(&self, id: B256) -> Result<(), String> {
        let Some(m) = self.model.transaction(id) else {
            return Ok(());
        };
        let c = self.clients[0].session_of(id).await.unwrap();
        let expect = m.session.map(|s| (s.grace, s.close_by, s.claimed));
        let got = c.map(|s| (s.grace, s.close_by, s.claimed));
        if expect != got {
            return Err(format!(
                "sessionOf {id} differs: model {expect:?}, chain {got:?}"
            ));
        }
        Ok(())
    }
}
