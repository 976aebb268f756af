//! The lifecycle rules: what each action does to a transaction, checked in the kernel's order.

use alloy_primitives::{Address, B256, U256};

use super::{Action, KernelView, Moves, Outcome, Transaction, session, u};
use crate::{Rejection, State, fee, limits::*};

/// Applies `action` by `caller` at `now` to `tx` (None: no such transaction), as the kernel would.
pub fn apply(
    tx: Option<&Transaction>,
    id: B256,
    action: &Action,
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Outcome, Rejection> {
    // Arguments validated before the transaction is looked up.
    match action {
        Action::Fund {
            escrow_contract, ..
        } if *escrow_contract != kernel.kernel_address() => {
            return Err(Rejection::UnsupportedEscrowContract(*escrow_contract));
        }
        Action::AcceptQuote { new_amount }
            if *new_amount < u(MIN_AMOUNT) || *new_amount > u(MAX_AMOUNT) =>
        {
            return Err(Rejection::AmountOutOfRange {
                amount: *new_amount,
                min: u(MIN_AMOUNT),
                max: u(MAX_AMOUNT),
            });
        }
        Action::AnchorAttestation { uid } if uid.is_zero() => {
            return Err(Rejection::ZeroAttestation);
        }
        _ => {}
    }
    let tx = tx.ok_or(Rejection::TransactionNotFound(id))?;
    let mut next = tx.clone();
    let mut moves = Moves::default();
    match action {
        Action::Fund { escrow_id, .. } => {
            if !matches!(tx.state, State::Initiated | State::Quoted) {
                return Err(invalid(tx, State::Committed));
            }
            require_caller(caller, tx.requester)?;
            if kernel.paused() {
                return Err(Rejection::KernelIsPaused);
            }
            require_before_deadline(tx, now)?;
            if *escrow_id != tx.id {
                if !kernel.escrow_id_available(tx.requester, *escrow_id) {
                    return Err(Rejection::EscrowIdUnavailable(*escrow_id));
                }
                next.escrow_alias = Some(*escrow_id);
            }
            next.state = State::Committed;
            next.updated_at = stamp(now);
            next.escrowed = true;
            moves.pulled = tx.amount;
        }
        Action::AcceptQuote { new_amount } => {
            if tx.state != State::Quoted {
                return Err(Rejection::InvalidState {
                    id: tx.id,
                    state: tx.state,
                });
            }
            require_caller(caller, tx.requester)?;
            require_before_deadline(tx, now)?;
            next.amount = *new_amount;
            next.updated_at = stamp(now);
        }
        Action::ReleaseEscrow => {
            if tx.state != State::Delivered {
                return Err(invalid(tx, State::Settled));
            }
            moves = settle(tx, &mut next, caller, now, 0)?;
        }
        Action::ReleaseMilestone { amount } => {
            if tx.state != State::InProgress {
                return Err(Rejection::InvalidState {
                    id: tx.id,
                    state: tx.state,
                });
            }
            require_caller(caller, tx.requester)?;
            if tx.session.is_some() {
                return Err(Rejection::SessionOperationRefused(tx.id));
            }
            let left = tx.amount - tx.released;
            if amount.is_zero() || *amount > left {
                return Err(Rejection::InvalidMilestone {
                    amount: *amount,
                    remaining: left,
                });
            }
            next.released = tx.released + *amount;
            next.updated_at = stamp(now);
            let (net, fee) = fee::split(tx.released, *amount, tx.fee_bps);
            moves.to_provider = net;
            moves.fee = fee;
        }
        Action::AnchorAttestation { uid } => {
            if tx.state != State::Settled {
                return Err(Rejection::InvalidState {
                    id: tx.id,
                    state: tx.state,
                });
            }
            if caller != tx.provider && caller != tx.requester {
                return Err(Rejection::NotParty(caller));
            }
            next.attestation_uid = *uid;
        }
        Action::Transition { to, proof } => {
            moves = transition(tx, &mut next, *to, proof, caller, now, kernel)?;
        }
        Action::TopUpSession { .. } | Action::EndSession | Action::CloseSession { .. } => {
            moves = session::apply(tx, &mut next, action, caller, now, kernel)?;
        }
    }
    Ok(Outcome {
        transaction: next,
        moves,
    })
}

pub(super) fn transition(
    tx: &Transaction,
    next: &mut Transaction,
    to: State,
    proof: &[u8],
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Moves, Rejection> {
    let from = tx.state;
    let proof_len = u(proof.len() as u64);
    let mut moves = Moves::default();
    match to {
        State::InProgress => {
            if from != State::Committed {
                return Err(invalid(tx, to));
            }
            require_caller(caller, tx.provider)?;
            require_before_deadline(tx, now)?;
            if !proof.is_empty() {
                return Err(Rejection::InvalidProofLength(proof_len));
            }
            next.state = State::InProgress;
            next.updated_at = stamp(now);
        }
        State::Delivered => {
            if from != State::InProgress {
                return Err(invalid(tx, to));
            }
            // A session is delivered only by closing it with a voucher.
            if tx.session.is_some() {
                return Err(Rejection::SessionOperationRefused(tx.id));
            }
            require_caller(caller, tx.provider)?;
            require_before_deadline(tx, now)?;
            let chosen = match proof.len() {
                0 => U256::ZERO,
                32 | 64 => U256::from_be_slice(&proof[..32]),
                _ => return Err(Rejection::InvalidProofLength(proof_len)),
            };
            let mut window = tx.dispute_window;
            if !chosen.is_zero() {
                if chosen < u(window) || chosen > u(MAX_DISPUTE_WINDOW) {
                    return Err(Rejection::DisputeWindowOutOfRange {
                        window: chosen,
                        min: u(window),
                        max: u(MAX_DISPUTE_WINDOW),
                    });
                }
                window = chosen.to::<u64>();
            }
            next.state = State::Delivered;
            next.updated_at = stamp(now);
            next.dispute_window = window;
            next.window_end = Some(now + window);
        }
        State::Settled if from == State::Delivered => {
            moves = settle(tx, next, caller, now, proof.len())?;
        }
        State::Settled | State::Cancelled if from == State::Disputed => {
            moves = resolve(tx, next, to, proof, caller, now, kernel)?;
        }
        State::Cancelled => {
            match from {
                State::Initiated | State::Quoted => {
                    require_caller(caller, tx.requester)?;
                    if !proof.is_empty() {
                        return Err(Rejection::InvalidProofLength(proof_len));
                    }
                }
                State::Committed | State::InProgress => {
                    if caller != tx.provider {
                        if caller != tx.requester {
                            return Err(Rejection::NotParty(caller));
                        }
                        if now <= tx.deadline {
                            session::require_ended(tx, now)?;
                        }
                    }
                    if !proof.is_empty() {
                        return Err(Rejection::InvalidProofLength(proof_len));
                    }
                    moves.to_requester = tx.amount - tx.released;
                }
                _ => return Err(invalid(tx, to)),
            }
            next.state = State::Cancelled;
            next.updated_at = stamp(now);
        }
        State::Disputed => {
            if from != State::Delivered {
                return Err(invalid(tx, to));
            }
            if caller != tx.provider && caller != tx.requester {
                return Err(Rejection::NotParty(caller));
            }
            let end = window_end(tx);
            if now > end {
                return Err(Rejection::DisputeWindowClosed(u(end)));
            }
            next.state = State::Disputed;
            next.updated_at = stamp(now);
            next.dispute_initiator = Some(caller);
        }
        State::Quoted => {
            if from != State::Initiated {
                return Err(invalid(tx, to));
            }
            require_caller(caller, tx.provider)?;
            require_before_deadline(tx, now)?;
            match proof.len() {
                0 => {}
                32 => {
                    let hash = B256::from_slice(proof);
                    if hash.is_zero() {
                        return Err(Rejection::ZeroQuoteHash);
                    }
                    next.metadata = hash;
                }
                _ => return Err(Rejection::InvalidProofLength(proof_len)),
            }
            next.state = State::Quoted;
            next.updated_at = stamp(now);
        }
        State::Initiated | State::Committed | State::Settled => return Err(invalid(tx, to)),
    }
    Ok(moves)
}

pub(super) fn settle(
    tx: &Transaction,
    next: &mut Transaction,
    caller: Address,
    now: u64,
    proof_len: usize,
) -> Result<Moves, Rejection> {
    let end = window_end(tx);
    if caller != tx.requester && now <= end {
        return Err(Rejection::DisputeWindowOpen(u(end)));
    }
    if proof_len != 0 {
        return Err(Rejection::InvalidProofLength(u(proof_len as u64)));
    }
    // A session pays its provider the claim and gives the requester the rest back.
    let (gross, refund) = match &tx.session {
        Some(s) => (s.claimed, tx.amount - s.claimed),
        None => (tx.amount - tx.released, U256::ZERO),
    };
    let (net, fee) = fee::split(tx.released, gross, tx.fee_bps);
    next.state = State::Settled;
    next.updated_at = stamp(now);
    Ok(Moves {
        to_provider: net,
        fee,
        to_requester: refund,
        ..Moves::default()
    })
}

pub(super) fn resolve(
    tx: &Transaction,
    next: &mut Transaction,
    to: State,
    proof: &[u8],
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Moves, Rejection> {
    // A resolver never decides a dispute it is a party to.
    if !kernel.is_resolver(caller, now) || caller == tx.requester || caller == tx.provider {
        return Err(Rejection::NotResolver(caller));
    }
    if proof.len() != 64 && proof.len() != 96 {
        return Err(Rejection::InvalidProofLength(u(proof.len() as u64)));
    }
    let to_requester = U256::from_be_slice(&proof[..32]);
    let to_provider = U256::from_be_slice(&proof[32..64]);
    let left = tx.amount - tx.released;
    if to_requester > left || to_provider != left - to_requester {
        return Err(Rejection::ResolutionMismatch {
            to_requester,
            to_provider,
            remaining: left,
        });
    }
    // What a session's provider did not claim is the requester's whatever the dispute is about.
    if let Some(s) = &tx.session
        && to_provider > s.claimed
    {
        return Err(Rejection::ResolutionAboveClaim {
            to_provider,
            claimed: s.claimed,
        });
    }
    let (net, fee) = fee::split(tx.released, to_provider, tx.fee_bps);
    next.state = to;
    next.updated_at = stamp(now);
    Ok(Moves {
        to_provider: net,
        fee,
        to_requester,
        ..Moves::default()
    })
}

/// The time a transition records: the kernel stores 32-bit seconds and saturates later times (after
/// 2106-02-07 a funded transaction can still be settled, refunded or resolved).
pub(super) fn stamp(now: u64) -> u64 {
    now.min(MAX_TIMESTAMP)
}

pub(super) fn window_end(tx: &Transaction) -> u64 {
    tx.window_end.unwrap_or(tx.updated_at + tx.dispute_window)
}

pub(super) fn invalid(tx: &Transaction, to: State) -> Rejection {
    Rejection::InvalidTransition {
        id: tx.id,
        from: tx.state,
        to,
    }
}

pub(super) fn require_caller(caller: Address, expected: Address) -> Result<(), Rejection> {
    if caller == expected {
        Ok(())
    } else {
        Err(Rejection::Unauthorized { caller, expected })
    }
}

pub(super) fn require_before_deadline(tx: &Transaction, now: u64) -> Result<(), Rejection> {
    if now > tx.deadline {
        Err(Rejection::DeadlinePassed(u(tx.deadline)))
    } else {
        Ok(())
    }
}
