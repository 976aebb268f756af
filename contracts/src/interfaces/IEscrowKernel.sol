// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "./IACTPKernel.sol";
import {IEscrowVault} from "./IEscrowVault.sol";
import {IKernelSessions} from "./IKernelSessions.sol";

/// @title IEscrowKernel
/// @notice The full interface of this project's escrow kernel: the ACTP v3 surface, the escrow-vault views
/// (the kernel is its own vault), sessions, this project's extensions, governance, and every custom error.
interface IEscrowKernel is IACTPKernel, IEscrowVault, IKernelSessions {
    // ------------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------------

    /// @notice No transaction has this id.
    /// @param transactionId The id that was looked up.
    error TransactionNotFound(bytes32 transactionId);

    /// @notice A transaction with this id already exists.
    /// @param transactionId The colliding id.
    error TransactionExists(bytes32 transactionId);

    /// @notice The lifecycle has no such move from the transaction's current state.
    /// @param transactionId The transaction.
    /// @param from Its current state.
    /// @param to The state that was asked for.
    error InvalidTransition(bytes32 transactionId, State from, State to);

    /// @notice The operation is not allowed in the transaction's current state.
    /// @param transactionId The transaction.
    /// @param state Its current state.
    error InvalidState(bytes32 transactionId, State state);

    /// @notice The caller is not the one the rule names for this operation.
    /// @param caller The caller.
    /// @param expected The address allowed to act (the requester or the provider).
    error Unauthorized(address caller, address expected);

    /// @notice The caller is neither the requester nor the provider of the transaction.
    /// @param caller The caller.
    error NotParty(address caller);

    /// @notice The caller may not resolve this dispute: it is neither the admin nor a mediator whose delay has
    /// passed (a new admin waits the mediator delay too), or it is the requester or the provider.
    /// @param caller The caller.
    error NotResolver(address caller);

    /// @notice The caller is not the admin.
    /// @param caller The caller.
    error NotAdmin(address caller);

    /// @notice The caller is not the pending admin.
    /// @param caller The caller.
    error NotPendingAdmin(address caller);

    /// @notice The caller is neither the pauser nor the admin.
    /// @param caller The caller.
    error NotPauser(address caller);

    /// @notice `createTransaction` names a requester other than the caller.
    /// @param requester The requester argument.
    /// @param caller The caller.
    error RequesterMismatch(address requester, address caller);

    /// @notice The requester and the provider are the same address.
    /// @param account The address on both sides.
    error SelfDealing(address account);

    /// @notice An address argument is zero.
    error ZeroAddress();

    /// @notice The kernel is paused: no new transactions and no new funding.
    error KernelIsPaused();

    /// @notice The amount is outside the allowed range.
    /// @param amount The amount given.
    /// @param min The smallest allowed.
    /// @param max The largest allowed.
    error AmountOutOfRange(uint256 amount, uint256 min, uint256 max);

    /// @notice The deadline is outside the allowed range.
    /// @param deadline The deadline given.
    /// @param min The earliest allowed (exclusive: the current time).
    /// @param max The latest allowed.
    error DeadlineOutOfRange(uint256 deadline, uint256 min, uint256 max);

    /// @notice The dispute window is outside the allowed range.
    /// @param disputeWindow The window given, in seconds.
    /// @param min The shortest allowed (at delivery: the requester's window).
    /// @param max The longest allowed.
    error DisputeWindowOutOfRange(uint256 disputeWindow, uint256 min, uint256 max);

    /// @notice The transaction's deadline has passed.
    /// @param deadline The deadline.
    error DeadlinePassed(uint256 deadline);

    /// @notice The requester may do this only after the deadline.
    /// @param deadline The deadline.
    error DeadlineNotPassed(uint256 deadline);

    /// @notice Only the requester may settle before the dispute window ends.
    /// @param windowEnd The last second of the dispute window.
    error DisputeWindowOpen(uint256 windowEnd);

    /// @notice The dispute window has ended.
    /// @param windowEnd The last second of the dispute window.
    error DisputeWindowClosed(uint256 windowEnd);

    /// @notice The proof bytes have a length this transition does not accept.
    /// @param length The length given.
    error InvalidProofLength(uint256 length);

    /// @notice A quote hash must be non-zero.
    error ZeroQuoteHash();

    /// @notice A dispute resolution must split exactly what the escrow still holds.
    /// @param toRequester The amount given to the requester.
    /// @param toProvider The amount given to the provider.
    /// @param remaining What the escrow holds.
    error ResolutionMismatch(uint256 toRequester, uint256 toProvider, uint256 remaining);

    /// @notice A milestone must be non-zero and at most what the escrow still holds.
    /// @param amount The milestone amount.
    /// @param remaining What the escrow holds.
    error InvalidMilestone(uint256 amount, uint256 remaining);

    /// @notice `linkEscrow` names an escrow contract other than this kernel.
    /// @param escrowContract The address given.
    error UnsupportedEscrowContract(address escrowContract);

    /// @notice The escrow id is zero, the id of a transaction, or already linked by this requester; or, at
    /// creation, the new transaction's id is one of the requester's aliases.
    /// @param escrowId The escrow id.
    error EscrowIdUnavailable(bytes32 escrowId);

    /// @notice The token moved a different amount than asked (fee-on-transfer or rebasing tokens are unsupported).
    /// @param expected The amount asked for.
    /// @param received The amount that arrived.
    error TransferAmountMismatch(uint256 expected, uint256 received);

    /// @notice An attestation uid must be non-zero.
    error ZeroAttestation();

    /// @notice The fee rate is above the cap.
    /// @param feeBps The rate given.
    /// @param cap The cap.
    error FeeAboveCap(uint256 feeBps, uint256 cap);

    /// @notice No fee change is scheduled.
    error NoPendingFeeChange();

    /// @notice The scheduled fee change cannot execute before `executeAfter`.
    /// @param executeAfter The earliest execution time.
    error FeeChangeNotReady(uint256 executeAfter);

    /// @notice There are no accrued fees to collect.
    error NoFeesAccrued();

    /// @notice The caller has no deferred payment to claim.
    error NothingToClaim();

    // ------------------------------------------------------------------------------------------------
    // Events (beyond the ACTP v3 surface)
    // ------------------------------------------------------------------------------------------------

    /// @notice The provider delivered with a proof hash (64-byte DELIVERED proof).
    event DeliveryProofRecorded(bytes32 indexed transactionId, bytes32 indexed proofHash, uint256 disputeWindowEnd);

    /// @notice A resolver split a disputed escrow.
    event DisputeResolved(
        bytes32 indexed transactionId, address indexed resolver, uint256 toRequester, uint256 toProvider
    );

    /// @notice A payout to `recipient` could not be transferred (the token refused it, e.g. a blocklisted
    /// address) and is held for `recipient` to claim to another address.
    event PaymentDeferred(address indexed recipient, uint256 amount);

    /// @notice `recipient` claimed its deferred payments to `to`.
    event DeferredPaymentClaimed(address indexed recipient, address indexed to, uint256 amount);

    /// @notice Accrued platform fees were paid to the fee recipient.
    event FeesCollected(address indexed recipient, uint256 amount);

    /// @notice The fee recipient changed; fees accrued so far go to the new recipient when collected.
    event FeeRecipientUpdated(address indexed oldRecipient, address indexed newRecipient);

    /// @notice A platform fee change was scheduled.
    event PlatformFeeChangeScheduled(uint16 feeBps, uint256 executeAfter);

    /// @notice The scheduled platform fee change was cancelled.
    event PlatformFeeChangeCancelled(uint16 feeBps);

    /// @notice The platform fee for new transactions changed.
    event PlatformFeeUpdated(uint16 oldFeeBps, uint16 newFeeBps);

    /// @notice A mediator was approved (resolves disputes from `activeFrom`) or revoked (`activeFrom` = 0).
    event MediatorUpdated(address indexed mediator, uint256 activeFrom);

    /// @notice The pauser changed (by `setPauser`, or to the new admin by an admin transfer).
    event PauserUpdated(address indexed oldPauser, address indexed newPauser);

    /// @notice The admin started a transfer of the admin role; `pendingAdmin` must accept it.
    event AdminTransferStarted(address indexed admin, address indexed pendingAdmin);

    /// @notice The admin role moved.
    event AdminTransferred(address indexed oldAdmin, address indexed newAdmin);

    // ------------------------------------------------------------------------------------------------
    // Extensions for this project's clients
    // ------------------------------------------------------------------------------------------------

    /// @notice Creates a transaction with the caller as requester and funds it in the same call: pulls `amount`
    /// once (approve the kernel first) and leaves the transaction COMMITTED.
    /// @param provider The provider.
    /// @param amount Escrow amount in token base units (50,000 ..= 1e15).
    /// @param deadline Unix time by which the provider must start and deliver.
    /// @param disputeWindow The requester's dispute window in seconds (1 hour ..= 30 days).
    /// @param serviceHash A hash naming the service.
    /// @param agentId The provider's agent id, stored as given.
    /// @param requesterAgentId The requester's agent id, stored as given.
    /// @return transactionId The ACTP transaction id (same formula as `createTransaction`).
    function createAndFund(
        address provider,
        uint256 amount,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        uint256 agentId,
        uint256 requesterAgentId
    ) external returns (bytes32 transactionId);

    /// @notice Settles every DELIVERED transaction in `transactionIds` that the caller may settle now (anyone
    /// after the dispute window, the requester at any time) and skips the rest without reverting.
    /// @dev Consecutive ids with the same provider are paid in one token transfer: sort by provider.
    /// @param transactionIds The transactions to try.
    /// @return settled How many were settled.
    function settleBatch(bytes32[] calldata transactionIds) external returns (uint256 settled);

    /// @notice Sends the caller's deferred payments (payouts the token refused to deliver) to `to`.
    /// @param to Where to send them.
    /// @return amount The amount sent.
    function claimDeferred(address to) external returns (uint256 amount);

    // ------------------------------------------------------------------------------------------------
    // Fees and governance
    // ------------------------------------------------------------------------------------------------

    /// @notice Pays all accrued platform fees to the fee recipient. Anyone may call.
    function collectFees() external;

    /// @notice Schedules a new platform fee rate for new transactions, effective after the parameter delay.
    /// @param feeBps The new rate in basis points (at most the cap).
    function scheduleFeeChange(uint16 feeBps) external;

    /// @notice Cancels the scheduled platform fee change.
    function cancelFeeChange() external;

    /// @notice Applies the scheduled platform fee change once its delay has passed. Anyone may call.
    function executeFeeChange() external;

    /// @notice Sets the fee recipient (admin).
    /// @param recipient The new recipient.
    function setFeeRecipient(address recipient) external;

    /// @notice Approves or revokes a dispute mediator (admin). Approval takes effect after the mediator delay.
    /// @param mediator The mediator.
    /// @param approved True to approve, false to revoke.
    function setMediator(address mediator, bool approved) external;

    /// @notice Names a pauser besides the admin (admin). Every admin transfer resets it to the new admin.
    /// @param newPauser The new pauser.
    function setPauser(address newPauser) external;

    /// @notice Stops new transactions and new funding (pauser or admin).
    function pause() external;

    /// @notice Lifts the pause (pauser or admin).
    function unpause() external;

    /// @notice Starts a two-step transfer of the admin role (admin).
    /// @param newAdmin The proposed admin, who must call `acceptAdmin`.
    function transferAdmin(address newAdmin) external;

    /// @notice Completes the admin transfer (pending admin). The pause power moves too: the pauser becomes the
    /// new admin. The new admin resolves disputes only after the mediator delay, as a new mediator does.
    function acceptAdmin() external;

    // ------------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------------

    /// @notice The escrow record in the layout of the ACTP v3 escrow vault. `escrowId` resolves as in
    /// `remaining`.
    /// @param escrowId The escrow id.
    /// @return requester The requester.
    /// @return provider The provider.
    /// @return amount The funded amount.
    /// @return releasedAmount What milestones have paid so far.
    /// @return active True while funded and not terminal.
    function escrows(bytes32 escrowId)
        external
        view
        returns (address requester, address provider, uint256 amount, uint256 releasedAmount, bool active);

    /// @notice Whether `account` may resolve disputes now (on transactions it is not a party to).
    /// @param account The account.
    /// @return True for the admin (a new admin once the mediator delay after `acceptAdmin` has passed) and for
    /// mediators whose approval has taken effect.
    function isResolver(address account) external view returns (bool);

    /// @notice When a mediator's approval takes effect (0 when not approved).
    /// @param mediator The mediator.
    /// @return The unix time from which it may resolve disputes.
    function mediatorActiveFrom(address mediator) external view returns (uint256);

    /// @notice Payouts held for `account` because the token refused to deliver them.
    /// @param account The payee.
    /// @return The amount it can claim.
    function deferredOf(address account) external view returns (uint256);

    /// @notice Platform fees accrued and not yet collected.
    /// @return The amount in token base units.
    function accruedFees() external view returns (uint256);

    /// @notice The address that receives collected fees.
    /// @return The fee recipient.
    function feeRecipient() external view returns (address);

    /// @notice The scheduled platform fee change, if any.
    /// @return feeBps The scheduled rate.
    /// @return executeAfter The earliest execution time (0 when none is scheduled).
    function pendingFeeChange() external view returns (uint16 feeBps, uint256 executeAfter);

    /// @notice The admin.
    /// @return The admin address.
    function admin() external view returns (address);

    /// @notice The pending admin of a two-step transfer.
    /// @return The pending admin (0 when none).
    function pendingAdmin() external view returns (address);

    /// @notice Who may pause besides the admin: the pauser the admin named, or the admin itself when it named
    /// none (as after deployment and after every admin transfer).
    /// @return The pauser address.
    function pauser() external view returns (address);
}
