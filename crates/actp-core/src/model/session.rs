//! Sessions: one funded transaction paying one provider for many calls (see `IKernelSessions`). Opening is
//! creation with a grace period ([`KernelModel::open_session`](super::KernelModel::open_session)); here are the
//! three session operations and the one rule sessions add to cancellation. Settlement and resolution of a
//! session (the claim to the provider, the rest refunded; a resolution never above the claim) are in the
//! lifecycle rules.

use alloy_primitives::{Address, U256};

use super::{Action, KernelView, Moves, Transaction, lifecycle, u};
use crate::{
    Rejection, State,
    limits::MAX_AMOUNT,
    session::{MAX_GRACE, MIN_GRACE},
};

/// What a session is beyond its transaction (the kernel's side word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// How long the provider may still close after the requester asks to end, in seconds.
    pub grace: u64,
    /// Zero until the requester asks to end; then the last second the provider may close.
    pub close_by: u64,
    /// What the provider claimed when it closed.
    pub claimed: U256,
}

/// `openSession`'s own check, before creation's: the grace period's range.
pub(super) fn check_grace(grace: u64) -> Result<(), Rejection> {
    if (MIN_GRACE..=MAX_GRACE).contains(&grace) {
        Ok(())
    } else {
        Err(Rejection::GraceOutOfRange {
            grace: u(grace),
            min: u(MIN_GRACE),
            max: u(MAX_GRACE),
        })
    }
}

/// Applies a session operation, checked in the kernel's order.
pub(super) fn apply(
    tx: &Transaction,
    next: &mut Transaction,
    action: &Action,
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Moves, Rejection> {
    let session = tx.session.ok_or(Rejection::NotSession(tx.id))?;
    let mut moves = Moves::default();
    match action {
        Action::TopUpSession { amount } => {
            require_open(tx)?;
            lifecycle::require_caller(caller, tx.requester)?;
            if kernel.paused() {
                return Err(Rejection::KernelIsPaused);
            }
            lifecycle::require_before_deadline(tx, now)?;
            require_not_ending(tx, &session)?;
            let max = u(MAX_AMOUNT);
            if amount.is_zero() || *amount > max - tx.amount {
                return Err(Rejection::InvalidTopUp {
                    amount: *amount,
                    deposit: tx.amount,
                    max,
                });
            }
            next.amount = tx.amount + *amount;
            moves.pulled = *amount;
        }
        Action::EndSession => {
            require_open(tx)?;
            lifecycle::require_caller(caller, tx.requester)?;
            require_not_ending(tx, &session)?;
            next.session = Some(Session {
                close_by: now + session.grace,
                ..session
            });
        }
        Action::CloseSession {
            claim,
            cumulative,
            signed,
        } => {
            if tx.state != State::InProgress {
                return Err(lifecycle::invalid(tx, State::Delivered));
            }
            lifecycle::require_caller(caller, tx.provider)?;
            lifecycle::require_before_deadline(tx, now)?;
            if session.close_by != 0 && now > session.close_by {
                return Err(Rejection::GracePeriodOver(u(session.close_by)));
            }
            if claim > cumulative || *claim > tx.amount {
                return Err(Rejection::ClaimTooHigh {
                    claim: *claim,
                    cumulative: *cumulative,
                    deposit: tx.amount,
                });
            }
            if !claim.is_zero() {
                if !signed {
                    return Err(Rejection::InvalidVoucherSignature(tx.requester));
                }
                next.session = Some(Session {
                    claimed: *claim,
                    ..session
                });
            }
            next.state = State::Delivered;
            next.updated_at = lifecycle::stamp(now);
            next.window_end = Some(now + tx.dispute_window);
        }
        _ => {}
    }
    Ok(moves)
}

/// Before its deadline, the requester may cancel only a session whose end it asked for, once the grace period
/// is over.
pub(super) fn require_ended(tx: &Transaction, now: u64) -> Result<(), Rejection> {
    match tx.session {
        Some(s) if s.close_by != 0 => {
            if now <= s.close_by {
                Err(Rejection::GracePeriodNotOver(u(s.close_by)))
            } else {
                Ok(())
            }
        }
        _ => Err(Rejection::DeadlineNotPassed(u(tx.deadline))),
    }
}

/// Funded and not yet closed.
fn require_open(tx: &Transaction) -> Result<(), Rejection> {
    if matches!(tx.state, State::Committed | State::InProgress) {
        Ok(())
    } else {
        Err(Rejection::InvalidState {
            id: tx.id,
            state: tx.state,
        })
    }
}

fn require_not_ending(tx: &Transaction, session: &Session) -> Result<(), Rejection> {
    if session.close_by == 0 {
        Ok(())
    } else {
        Err(Rejection::SessionEnding {
            id: tx.id,
            close_by: u(session.close_by),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{CreateParams, KernelModel};
    use alloy_primitives::B256;

    const NOW: u64 = 1_700_000_000;

    fn world() -> (KernelModel, Address, Address, B256) {
        let (kernel, admin) = (Address::repeat_byte(0xee), Address::repeat_byte(0xad));
        let (requester, provider) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let mut m = KernelModel::new(kernel, admin, admin, 100);
        m.mint(requester, u(10_000_000));
        let terms = CreateParams::new(provider, u(1_000_000), NOW + 86_400, 3_600, B256::ZERO);
        assert!(matches!(
            m.open_session(requester, &terms, 599, NOW),
            Err(Rejection::GraceOutOfRange { .. })
        ));
        let (id, moves) = m.open_session(requester, &terms, 600, NOW).unwrap();
        assert_eq!(moves.pulled, u(1_000_000));
        (m, requester, provider, id)
    }

    #[test]
    fn close_pays_the_claim_and_refunds_the_rest() {
        let (mut m, requester, provider, id) = world();
        let top_up = Action::TopUpSession { amount: u(500_000) };
        assert_eq!(
            m.act(id, &top_up, requester, NOW).unwrap().pulled,
            u(500_000)
        );
        assert_eq!(
            m.act(id, &Action::deliver(0, None), provider, NOW),
            Err(Rejection::InvalidTransition {
                id,
                from: State::Committed,
                to: State::Delivered
            })
        );
        m.act(id, &Action::start(), provider, NOW).unwrap();
        assert_eq!(
            m.act(id, &Action::deliver(0, None), provider, NOW),
            Err(Rejection::SessionOperationRefused(id))
        );
        let close = |claim: u64, cumulative: u64, signed: bool| Action::CloseSession {
            claim: u(claim),
            cumulative: u(cumulative),
            signed,
        };
        assert!(matches!(
            m.act(id, &close(400_000, 300_000, true), provider, NOW),
            Err(Rejection::ClaimTooHigh { .. })
        ));
        assert_eq!(
            m.act(id, &close(300_000, 400_000, false), provider, NOW),
            Err(Rejection::InvalidVoucherSignature(requester))
        );
        m.act(id, &close(300_000, 400_000, true), provider, NOW)
            .unwrap();
        let moves = m.act(id, &Action::settle(), requester, NOW + 1).unwrap();
        assert_eq!(moves.to_provider, u(297_000));
        assert_eq!(moves.fee, u(3_000));
        assert_eq!(moves.to_requester, u(1_200_000));
    }

    #[test]
    fn an_ended_session_is_reclaimed_after_the_grace_period() {
        let (mut m, requester, provider, id) = world();
        assert_eq!(
            m.act(id, &Action::cancel(), requester, NOW),
            Err(Rejection::DeadlineNotPassed(u(NOW + 86_400)))
        );
        m.act(id, &Action::EndSession, requester, NOW).unwrap();
        assert_eq!(
            m.act(id, &Action::EndSession, requester, NOW),
            Err(Rejection::SessionEnding {
                id,
                close_by: u(NOW + 600)
            })
        );
        assert_eq!(
            m.act(id, &Action::cancel(), requester, NOW + 600),
            Err(Rejection::GracePeriodNotOver(u(NOW + 600)))
        );
        m.act(id, &Action::start(), provider, NOW + 1).unwrap();
        let moves = m.act(id, &Action::cancel(), requester, NOW + 601).unwrap();
        assert_eq!(moves.to_requester, u(1_000_000));
        let close = Action::CloseSession {
            claim: U256::ZERO,
            cumulative: U256::ZERO,
            signed: false,
        };
        assert!(matches!(
            m.act(id, &close, provider, NOW + 601),
            Err(Rejection::InvalidTransition { .. })
        ));
    }
}
