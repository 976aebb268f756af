// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IKernelSessions
/// @notice Sessions: one escrow pays one provider for many calls. A session is an ordinary ACTP transaction (same
/// id formula, same states, same v3 view, `amount` is the deposit) that the requester opens funded. It spends
/// through vouchers: the requester's EIP-712 signatures, in the ACTP domain (name "AGIRAILS", version "1", chain
/// id, this kernel), over
///
/// ```text
/// SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)
/// ```
///
/// each saying "the provider may take up to `cumulative` in total from this session". One signature per call
/// both authorizes that call (`requestHash` and `expiresAt` bind it to one HTTP request) and raises the
/// cumulative amount, so a provider keeps only the latest.
///
/// Lifecycle: `openSession` (COMMITTED) -> `transitionState(IN_PROGRESS)` by the provider -> `closeSession` by the
/// provider with its best voucher (DELIVERED; the dispute window runs as usual) -> settlement: the provider gets
/// the claim less the fee, the requester the rest of the deposit, in one transaction. A dispute is resolved by
/// splitting the deposit, with at most the claim to the provider.
///
/// The requester never needs the provider to get its money back: `endSession` starts the grace period fixed at
/// opening; the provider may close until it ends, and after that the requester cancels
/// (`transitionState(CANCELLED)`) and gets the whole deposit back. A provider may cancel at any time (full
/// refund), and past the deadline the requester may cancel as for any transaction.
interface IKernelSessions {
    // ------------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------------

    /// @notice The transaction is not a session.
    /// @param transactionId The transaction.
    error NotSession(bytes32 transactionId);

    /// @notice The operation does not apply to sessions: a session is delivered by `closeSession` with a voucher
    /// and pays no milestones.
    /// @param transactionId The session.
    error SessionOperationRefused(bytes32 transactionId);

    /// @notice The grace period is outside the allowed range.
    /// @param grace The grace period given, in seconds.
    /// @param min The shortest allowed.
    /// @param max The longest allowed.
    error GraceOutOfRange(uint256 grace, uint256 min, uint256 max);

    /// @notice The requester has asked to end the session: no more top-ups, and the end cannot be asked twice.
    /// @param transactionId The session.
    /// @param closeBy The last second at which the provider may still close it.
    error SessionEnding(bytes32 transactionId, uint256 closeBy);

    /// @notice The grace period after the requester's end request is over: the provider can no longer close.
    /// @param closeBy The last second at which it could.
    error GracePeriodOver(uint256 closeBy);

    /// @notice The requester asked to end the session, and the provider may still close it until `closeBy`.
    /// @param closeBy The last second at which the provider may close; the requester may cancel after it.
    error GracePeriodNotOver(uint256 closeBy);

    /// @notice A claim must be at most the voucher's cumulative amount and at most the deposit.
    /// @param claim The amount claimed.
    /// @param cumulative The voucher's cumulative amount.
    /// @param deposit The session's deposit.
    error ClaimTooHigh(uint256 claim, uint256 cumulative, uint256 deposit);

    /// @notice The voucher signature is not the requester's (EOA signature or ERC-1271) over these fields.
    /// @param requester The session's requester.
    error InvalidVoucherSignature(address requester);

    /// @notice A resolution may give the provider at most what it claimed when it closed the session.
    /// @param toProvider The amount given to the provider.
    /// @param claimed The provider's claim.
    error ResolutionAboveClaim(uint256 toProvider, uint256 claimed);

    /// @notice A top-up must be non-zero and keep the deposit within the amount range.
    /// @param amount The top-up.
    /// @param deposit The deposit before it.
    /// @param max The largest deposit allowed.
    error InvalidTopUp(uint256 amount, uint256 deposit, uint256 max);

    // ------------------------------------------------------------------------------------------------
    // Events (the v3 events are emitted too: TransactionCreated, StateTransitioned, EscrowLinked, payouts)
    // ------------------------------------------------------------------------------------------------

    /// @notice A session was opened and funded with its deposit (the transaction's `amount`).
    event SessionOpened(bytes32 indexed transactionId, uint256 grace);

    /// @notice The requester added `amount` to the deposit, which is now `deposit`.
    event SessionToppedUp(bytes32 indexed transactionId, uint256 amount, uint256 deposit);

    /// @notice The requester asked to end the session; the provider may close it until `closeBy`.
    event SessionEndRequested(bytes32 indexed transactionId, uint256 closeBy);

    /// @notice The provider closed the session claiming `claimed` (paid at settlement, less the fee; the rest of
    /// the deposit goes back to the requester).
    event SessionClosed(bytes32 indexed transactionId, uint256 claimed, uint256 cumulative);

    // ------------------------------------------------------------------------------------------------
    // Operations
    // ------------------------------------------------------------------------------------------------

    /// @notice Opens a session with the caller as requester and funds its deposit: pulls `deposit` once (approve
    /// the kernel first) and leaves the transaction COMMITTED.
    /// @param provider The provider.
    /// @param deposit The deposit in token base units (50,000 ..= 1e15).
    /// @param deadline Unix time by which the provider must close the session.
    /// @param disputeWindow The requester's dispute window after the close, in seconds (1 hour ..= 30 days).
    /// @param serviceHash A hash naming the service, or the set of services, the session pays for.
    /// @param grace How long the provider may still close after the requester asks to end (10 minutes ..= 7 days).
    /// @return transactionId The ACTP transaction id (same formula as `createTransaction`).
    function openSession(
        address provider,
        uint256 deposit,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        uint256 grace
    ) external returns (bytes32 transactionId);

    /// @notice Adds `amount` to an open session's deposit (requester; COMMITTED or IN_PROGRESS, before the
    /// deadline, not paused, not ending).
    /// @param transactionId The session.
    /// @param amount The amount to add.
    function topUpSession(bytes32 transactionId, uint256 amount) external;

    /// @notice Closes the session with the provider's claim (provider; IN_PROGRESS, before the deadline and
    /// before the grace period ends). The session becomes DELIVERED and the requester's dispute window starts.
    /// @param transactionId The session.
    /// @param claim What the provider takes: at most `cumulative` and at most the deposit. Zero needs no voucher.
    /// @param cumulative The voucher's cumulative amount.
    /// @param requestHash The voucher's request hash.
    /// @param expiresAt The voucher's expiry (of the request it authorized; the voucher itself never expires).
    /// @param signature The requester's signature of the voucher: 65 bytes (r, s, v) with low s, or whatever its
    /// ERC-1271 wallet accepts.
    /// @param proofHash Commits to the session's receipts (recorded in `DeliveryProofRecorded` when non-zero).
    function closeSession(
        bytes32 transactionId,
        uint256 claim,
        uint256 cumulative,
        bytes32 requestHash,
        uint256 expiresAt,
        bytes calldata signature,
        bytes32 proofHash
    ) external;

    /// @notice Asks to end the session (requester; COMMITTED or IN_PROGRESS). The provider may close until
    /// `block.timestamp + grace`; after that the requester may cancel and get the deposit back.
    /// @param transactionId The session.
    function endSession(bytes32 transactionId) external;

    /// @notice A session's terms beyond the v3 view.
    /// @param transactionId The transaction.
    /// @return isSession False for ordinary transactions (the other values are then zero).
    /// @return grace The grace period in seconds.
    /// @return closeBy Zero until the requester asks to end; then the last second at which the provider may close.
    /// @return claimed The provider's claim once closed.
    function sessionOf(bytes32 transactionId)
        external
        view
        returns (bool isSession, uint256 grace, uint256 closeBy, uint256 claimed);
}
