//! Revert data decoded into the kernel's typed [`Rejection`] (same names, same data as the model) or the
//! token's errors. Data that matches no known error, or names a state this client does not know, stays raw.

use actp_core::Rejection;
use alloy::{primitives::Bytes, sol_types::SolInterface};

use crate::{
    ClientError, TokenError,
    bindings::{EscrowKernel::EscrowKernelErrors as K, MockUSDC::MockUSDCErrors as T},
};

/// Decodes revert data into the kernel's or the token's typed error.
pub fn decode_revert(data: &[u8]) -> ClientError {
    if let Ok(err) = K::abi_decode(data) {
        return match err {
            K::SafeERC20FailedOperation(e) => ClientError::Token(TokenError::Other(format!(
                "token {} refused the operation",
                e.token
            ))),
            K::ReentrancyGuardReentrantCall(_) => ClientError::Token(TokenError::Other(
                "re-entrant call refused by the kernel".into(),
            )),
            other => match kernel_rejection(other) {
                Some(rejection) => ClientError::Rejected(rejection),
                // A state code this client does not know: report the raw data rather than guess.
                None => ClientError::UnknownRevert {
                    data: Bytes::copy_from_slice(data),
                },
            },
        };
    }
    if let Ok(err) = T::abi_decode(data) {
        return ClientError::Token(match err {
            T::ERC20InsufficientAllowance(e) => TokenError::InsufficientAllowance {
                allowance: e.allowance,
                needed: e.needed,
            },
            T::ERC20InsufficientBalance(e) => TokenError::InsufficientBalance {
                balance: e.balance,
                needed: e.needed,
            },
            other => TokenError::Other(format!("{other:?}")),
        });
    }
    ClientError::UnknownRevert {
        data: Bytes::copy_from_slice(data),
    }
}

/// Maps the kernel's generated error enum to the model's [`Rejection`] (same names, same data). The two
/// errors inherited from OpenZeppelin are not lifecycle rules; [`decode_revert`] reports them as token errors.
fn kernel_rejection(err: K) -> Option<Rejection> {
    use Rejection as R;
    let state = |code: u8| actp_core::State::try_from(code).ok();
    Some(match err {
        K::TransactionNotFound(e) => R::TransactionNotFound(e.transactionId),
        K::TransactionExists(e) => R::TransactionExists(e.transactionId),
        K::InvalidTransition(e) => R::InvalidTransition {
            id: e.transactionId,
            from: state(e.from)?,
            to: state(e.to)?,
        },
        K::InvalidState(e) => R::InvalidState {
            id: e.transactionId,
            state: state(e.state)?,
        },
        K::Unauthorized(e) => R::Unauthorized {
            caller: e.caller,
            expected: e.expected,
        },
        K::NotParty(e) => R::NotParty(e.caller),
        K::NotResolver(e) => R::NotResolver(e.caller),
        K::NotAdmin(e) => R::NotAdmin(e.caller),
        K::NotPendingAdmin(e) => R::NotPendingAdmin(e.caller),
        K::NotPauser(e) => R::NotPauser(e.caller),
        K::RequesterMismatch(e) => R::RequesterMismatch {
            requester: e.requester,
            caller: e.caller,
        },
        K::SelfDealing(e) => R::SelfDealing(e.account),
        K::ZeroAddress(_) => R::ZeroAddress,
        K::KernelIsPaused(_) => R::KernelIsPaused,
        K::AmountOutOfRange(e) => R::AmountOutOfRange {
            amount: e.amount,
            min: e.min,
            max: e.max,
        },
        K::DeadlineOutOfRange(e) => R::DeadlineOutOfRange {
            deadline: e.deadline,
            min: e.min,
            max: e.max,
        },
        K::DisputeWindowOutOfRange(e) => R::DisputeWindowOutOfRange {
            window: e.disputeWindow,
            min: e.min,
            max: e.max,
        },
        K::DeadlinePassed(e) => R::DeadlinePassed(e.deadline),
        K::DeadlineNotPassed(e) => R::DeadlineNotPassed(e.deadline),
        K::DisputeWindowOpen(e) => R::DisputeWindowOpen(e.windowEnd),
        K::DisputeWindowClosed(e) => R::DisputeWindowClosed(e.windowEnd),
        K::InvalidProofLength(e) => R::InvalidProofLength(e.length),
        K::ZeroQuoteHash(_) => R::ZeroQuoteHash,
        K::ResolutionMismatch(e) => R::ResolutionMismatch {
            to_requester: e.toRequester,
            to_provider: e.toProvider,
            remaining: e.remaining,
        },
        K::InvalidMilestone(e) => R::InvalidMilestone {
            amount: e.amount,
            remaining: e.remaining,
        },
        K::UnsupportedEscrowContract(e) => R::UnsupportedEscrowContract(e.escrowContract),
        K::EscrowIdUnavailable(e) => R::EscrowIdUnavailable(e.escrowId),
        K::TransferAmountMismatch(e) => R::TransferAmountMismatch {
            expected: e.expected,
            received: e.received,
        },
        K::ZeroAttestation(_) => R::ZeroAttestation,
        K::FeeAboveCap(e) => R::FeeAboveCap {
            fee_bps: e.feeBps,
            cap: e.cap,
        },
        K::NoPendingFeeChange(_) => R::NoPendingFeeChange,
        K::FeeChangeNotReady(e) => R::FeeChangeNotReady(e.executeAfter),
        K::NoFeesAccrued(_) => R::NoFeesAccrued,
        K::NothingToClaim(_) => R::NothingToClaim,
        K::NotSession(e) => R::NotSession(e.transactionId),
        K::SessionOperationRefused(e) => R::SessionOperationRefused(e.transactionId),
        K::GraceOutOfRange(e) => R::GraceOutOfRange {
            grace: e.grace,
            min: e.min,
            max: e.max,
        },
        K::SessionEnding(e) => R::SessionEnding {
            id: e.transactionId,
            close_by: e.closeBy,
        },
        K::GracePeriodOver(e) => R::GracePeriodOver(e.closeBy),
        K::GracePeriodNotOver(e) => R::GracePeriodNotOver(e.closeBy),
        K::ClaimTooHigh(e) => R::ClaimTooHigh {
            claim: e.claim,
            cumulative: e.cumulative,
            deposit: e.deposit,
        },
        K::InvalidVoucherSignature(e) => R::InvalidVoucherSignature(e.requester),
        K::ResolutionAboveClaim(e) => R::ResolutionAboveClaim {
            to_provider: e.toProvider,
            claimed: e.claimed,
        },
        K::InvalidTopUp(e) => R::InvalidTopUp {
            amount: e.amount,
            deposit: e.deposit,
            max: e.max,
        },
        K::ReentrancyGuardReentrantCall(_) | K::SafeERC20FailedOperation(_) => return None,
    })
}
