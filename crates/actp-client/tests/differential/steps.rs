//! The steps a run is made of, generated from a seed, and how an action is sent to the kernel.

use actp_client::{ClientError, Kernel};
use actp_core::{Address, B256, State, U256, model::Action};
use rand08::{Rng, SeedableRng, rngs::StdRng};

use super::ACTORS;

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Create {
        who: usize,
        provider: usize,
        amount: u64,
        ahead: u64,
        window: u64,
        fund: bool,
        requester_ok: bool,
    },
    Act {
        pick: usize,
        who: usize,
        kind: u8,
        arg: u64,
    },
    /// The next lifecycle step of a live transaction, by the party that takes it (decided from the model).
    Guided {
        pick: usize,
        r: u64,
    },
    Batch {
        start: usize,
        len: usize,
        who: usize,
    },
    Warp(u64),
    /// `pause()` / `unpause()`, usually by the current admin, sometimes by anyone.
    Pause {
        on: bool,
        who: usize,
    },
    /// A governance call: transferAdmin, acceptAdmin, setPauser, setMediator (approve or revoke).
    Govern {
        kind: u8,
        who: usize,
        target: usize,
    },
    /// Funds a live unfunded transaction under an alias equal to the id its requester would get next with
    /// the same terms, then tries to create exactly that transaction (refused on both sides).
    AliasNextId {
        pick: usize,
    },
    /// `openSession`, sometimes with a grace period out of range.
    OpenSession {
        who: usize,
        provider: usize,
        amount: u64,
        ahead: u64,
        window: u64,
        grace: u64,
    },
    /// A session operation (or a per-call one a session refuses) by anyone, on any transaction.
    SessionAct {
        pick: usize,
        who: usize,
        kind: u8,
        arg: u64,
    },
}

/// Escrow ids older clients link in place of the transaction id; shared by all requesters on purpose.
pub(crate) const ALIASES: [B256; 3] = [
    B256::repeat_byte(0xa1),
    B256::repeat_byte(0xa2),
    B256::repeat_byte(0xa3),
];
pub(crate) const SERVICE: B256 = B256::repeat_byte(7);

pub(crate) fn generate(seed: u64, n: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.gen_range(0..112) {
            0..=17 => Step::Create {
                who: rng.gen_range(1..=ACTORS),
                provider: rng.gen_range(0..=ACTORS),
                amount: if rng.gen_bool(0.05) {
                    rng.gen_range(0..60_000)
                } else {
                    rng.gen_range(50_000..5_000_000)
                },
                ahead: if rng.gen_bool(0.05) {
                    rng.gen_range(0..400 * 86_400)
                } else {
                    rng.gen_range(600..3 * 86_400)
                },
                window: if rng.gen_bool(0.05) {
                    rng.gen_range(0..40 * 86_400)
                } else {
                    rng.gen_range(3_600..2 * 86_400)
                },
                fund: rng.gen_bool(0.5),
                requester_ok: rng.gen_bool(0.97),
            },
            18..=34 => Step::Act {
                pick: rng.r#gen(),
                who: rng.gen_range(0..=ACTORS + 1),
                kind: rng.gen_range(0..11),
                arg: rng.r#gen(),
            },
            35..=84 => Step::Guided {
                pick: rng.r#gen(),
                r: rng.r#gen(),
            },
            85..=89 => Step::Batch {
                start: rng.r#gen(),
                len: rng.gen_range(1..6),
                who: rng.gen_range(0..=ACTORS + 1),
            },
            90..=95 => Step::Warp(if rng.gen_bool(0.1) {
                rng.gen_range(86_400..20 * 86_400)
            } else {
                rng.gen_range(1..7_200)
            }),
            96 => Step::Pause {
                on: rng.gen_bool(0.4),
                who: rng.r#gen(),
            },
            97..=98 => Step::Govern {
                kind: rng.gen_range(0..5),
                who: rng.r#gen(),
                target: rng.gen_range(0..=ACTORS + 1),
            },
            99 => Step::AliasNextId { pick: rng.r#gen() },
            100..=105 => Step::OpenSession {
                who: rng.gen_range(1..=ACTORS),
                provider: rng.gen_range(0..=ACTORS),
                amount: rng.gen_range(50_000..5_000_000),
                ahead: rng.gen_range(600..3 * 86_400),
                window: rng.gen_range(3_600..2 * 86_400),
                grace: if rng.gen_bool(0.1) {
                    rng.gen_range(0..700)
                } else {
                    rng.gen_range(600..7_200)
                },
            },
            _ => Step::SessionAct {
                pick: rng.r#gen(),
                who: rng.gen_range(0..=ACTORS + 1),
                kind: rng.gen_range(0..6),
                arg: rng.r#gen(),
            },
        })
        .collect()
}

pub(crate) fn action(
    kind: u8,
    arg: u64,
    tx: &actp_core::model::Transaction,
    kernel: Address,
) -> Action {
    let left = tx.amount - tx.released;
    match kind {
        0 => match arg % 6 {
            0 => Action::Fund {
                escrow_contract: kernel,
                escrow_id: ALIASES[(arg >> 8) as usize % ALIASES.len()],
            },
            1 => Action::Fund {
                escrow_contract: kernel,
                escrow_id: if arg.is_multiple_of(4) {
                    B256::ZERO
                } else {
                    B256::repeat_byte(0x77) // an id some transaction may have, or nobody
                },
            },
            _ => Action::fund(kernel, tx.id),
        },
        1 => Action::start(),
        2 => {
            let window = match arg % 4 {
                0 => 0,
                1 => tx.dispute_window + arg % 3_600,
                2 => arg % (31 * 86_400),
                _ => tx.dispute_window,
            };
            Action::deliver(
                window,
                arg.is_multiple_of(3).then_some(B256::repeat_byte(5)),
            )
        }
        3 => {
            if arg.is_multiple_of(5) {
                Action::ReleaseEscrow
            } else {
                Action::settle()
            }
        }
        4 => Action::dispute(),
        5 => {
            let to_requester = if left.is_zero() {
                U256::ZERO
            } else {
                U256::from(arg) % (left + U256::from(1))
            };
            let to_provider = if arg.is_multiple_of(9) {
                left - to_requester + U256::from(1)
            } else {
                left - to_requester
            };
            Action::resolve(
                if arg.is_multiple_of(2) {
                    State::Settled
                } else {
                    State::Cancelled
                },
                to_requester,
                to_provider,
            )
        }
        6 => Action::cancel(),
        7 => Action::ReleaseMilestone {
            amount: U256::from(arg % 3_000_000),
        },
        8 => Action::quote(if arg.is_multiple_of(4) {
            None
        } else {
            Some(B256::repeat_byte((arg % 7) as u8))
        }),
        9 => Action::AcceptQuote {
            new_amount: U256::from(40_000 + arg % 3_000_000),
        },
        _ => Action::Transition {
            to: State::try_from((arg % 8) as u8).unwrap(),
            proof: vec![1u8; (arg % 3) as usize * 16],
        },
    }
}

pub(crate) async fn send_action(k: &Kernel, id: B256, action: &Action) -> Result<(), ClientError> {
    use actp_client::bindings::EscrowKernel as K;
    use alloy::sol_types::SolCall;
    let input = match action {
        Action::Fund {
            escrow_contract,
            escrow_id,
        } => K::linkEscrowCall {
            transactionId: id,
            escrowContract: *escrow_contract,
            escrowId: *escrow_id,
        }
        .abi_encode(),
        Action::Transition { to, proof } => K::transitionStateCall {
            transactionId: id,
            newState: to.code(),
            proof: proof.clone().into(),
        }
        .abi_encode(),
        Action::ReleaseEscrow => K::releaseEscrowCall { transactionId: id }.abi_encode(),
        Action::ReleaseMilestone { amount } => K::releaseMilestoneCall {
            transactionId: id,
            amount: *amount,
        }
        .abi_encode(),
        Action::AcceptQuote { new_amount } => K::acceptQuoteCall {
            transactionId: id,
            newAmount: *new_amount,
        }
        .abi_encode(),
        Action::AnchorAttestation { uid } => K::anchorAttestationCall {
            transactionId: id,
            attestationUID: *uid,
        }
        .abi_encode(),
        Action::TopUpSession { amount } => K::topUpSessionCall {
            transactionId: id,
            amount: *amount,
        }
        .abi_encode(),
        Action::EndSession => K::endSessionCall { transactionId: id }.abi_encode(),
        // Without a signature (`World::send` signs the ones that need it).
        Action::CloseSession {
            claim, cumulative, ..
        } => K::closeSessionCall {
            transactionId: id,
            claim: *claim,
            cumulative: *cumulative,
            requestHash: B256::ZERO,
            expiresAt: U256::ZERO,
            signature: Default::default(),
            proofHash: B256::ZERO,
        }
        .abi_encode(),
    };
    k.send(Some(k.address()), input.into()).await.map(|_| ())
}
