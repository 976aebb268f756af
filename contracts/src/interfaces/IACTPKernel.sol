// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IACTPKernel
/// @notice The ACTP v3 client surface: the functions, views and events an unmodified ACTP v3
/// client calls or reads. Selectors, return layouts, state codes and event signatures here are
/// wire format; they must not change.
interface IACTPKernel {
    /// @notice Lifecycle states. The numeric codes are part of the wire format.
    enum State {
        INITIATED, // 0: created, not funded
        QUOTED, // 1: provider proposed a price
        COMMITTED, // 2: funds locked in escrow
        IN_PROGRESS, // 3: provider has started
        DELIVERED, // 4: provider delivered; dispute window running
        SETTLED, // 5: paid out (terminal)
        DISPUTED, // 6: contested; awaits a resolver
        CANCELLED // 7: refunded or abandoned (terminal)
    }

    /// @notice The 21-field view returned by `getTransaction`, in wire order.
    struct TransactionView {
        bytes32 transactionId;
        address requester;
        address provider;
        State state;
        uint256 amount;
        uint256 createdAt;
        uint256 updatedAt;
        uint256 deadline;
        bytes32 serviceHash;
        address escrowContract;
        bytes32 escrowId;
        bytes32 attestationUID;
        uint256 disputeWindow;
        bytes32 metadata;
        uint16 platformFeeBpsLocked;
        uint16 requesterPenaltyBpsLocked;
        uint16 disputeBondBpsLocked;
        uint256 agentId;
        uint256 requesterAgentId;
        address disputeInitiator;
        uint256 disputeBond;
    }

    /// @notice A transaction was created (state INITIATED).
    event TransactionCreated(
        bytes32 indexed transactionId,
        address indexed requester,
        address indexed provider,
        uint256 amount,
        bytes32 serviceHash,
        uint256 deadline,
        uint256 timestamp,
        uint256 agentId
    );

    /// @notice A transaction moved from `oldState` to `newState`.
    event StateTransitioned(
        bytes32 indexed transactionId,
        State indexed oldState,
        State indexed newState,
        address triggeredBy,
        uint256 timestamp
    );

    /// @notice The escrow of a transaction was funded.
    event EscrowLinked(
        bytes32 indexed transactionId, address escrowContract, bytes32 escrowId, uint256 amount, uint256 timestamp
    );

    /// @notice `amount` of escrow was paid to `recipient` (the provider), net of the platform fee.
    event EscrowReleased(bytes32 indexed transactionId, address recipient, uint256 amount, uint256 timestamp);

    /// @notice `amount` of escrow was returned to `recipient` (the requester).
    event EscrowRefunded(bytes32 indexed transactionId, address recipient, uint256 amount, uint256 timestamp);

    /// @notice The requester released `amount` (gross) of an IN_PROGRESS escrow to the provider.
    event EscrowMilestoneReleased(bytes32 indexed transactionId, uint256 amount, uint256 timestamp);

    /// @notice A platform fee of `amount` was accrued for `recipient`.
    event PlatformFeeAccrued(
        bytes32 indexed transactionId, address indexed recipient, uint256 amount, uint256 timestamp
    );

    /// @notice The requester accepted the provider's quote, changing the amount.
    event QuoteAccepted(bytes32 indexed transactionId, uint256 oldAmount, uint256 newAmount, uint256 timestamp);

    /// @notice A delivered transaction was disputed by `initiator`.
    event DisputeOpened(
        bytes32 indexed transactionId, address indexed initiator, uint256 bondAmount, uint256 timestamp
    );

    /// @notice An EAS attestation uid was anchored to a settled transaction.
    event AttestationAnchored(
        bytes32 indexed transactionId, bytes32 indexed attestationUID, address attester, uint256 timestamp
    );

    /// @notice The kernel was paused: no new transactions and no new funding.
    event KernelPaused(address indexed by, uint256 timestamp);

    /// @notice The kernel was unpaused.
    event KernelUnpaused(address indexed by, uint256 timestamp);

    /// @notice Creates a transaction in state INITIATED; `requester` must be the caller.
    /// @param provider The address that does the work and is paid at settlement.
    /// @param requester The caller; pays into escrow and may settle early or dispute.
    /// @param amount Escrow amount in token base units (50,000 ..= 1e15).
    /// @param deadline Unix time by which the provider must start and deliver (now < deadline <= now + 365 days).
    /// @param disputeWindow The requester's dispute window in seconds (1 hour ..= 30 days); the minimum the
    /// provider may choose at delivery.
    /// @param serviceHash A hash naming the service, chosen by the requester.
    /// @param agentId The provider's agent id, stored as given.
    /// @param requesterAgentId The requester's agent id, stored as given.
    /// @return transactionId keccak256(abi.encodePacked(requester, provider, amount, serviceHash, nonce)).
    function createTransaction(
        address provider,
        address requester,
        uint256 amount,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        uint256 agentId,
        uint256 requesterAgentId
    ) external returns (bytes32 transactionId);

    /// @notice Funds an INITIATED or QUOTED transaction: pulls `amount` from the requester into escrow
    /// (approve the kernel first) and moves it to COMMITTED.
    /// @param transactionId The transaction to fund.
    /// @param escrowContract Must be this kernel: it is its own escrow vault.
    /// @param escrowId The escrow id: the transaction id, or (older clients) another non-zero id that is no
    /// transaction's id and that this requester has not linked before. Such an alias is kept in the requester's
    /// name: another requester linking the same id neither blocks nor shadows it.
    function linkEscrow(bytes32 transactionId, address escrowContract, bytes32 escrowId) external;

    /// @notice Moves a transaction to `newState` under the lifecycle rules (see README, "Lifecycle").
    /// @param transactionId The transaction.
    /// @param newState The target state.
    /// @param proof QUOTED: empty or a 32-byte quote hash. DELIVERED: empty, abi.encode(uint256 window), or
    /// abi.encode(uint256 window, bytes32 proofHash). SETTLED/CANCELLED from DISPUTED:
    /// abi.encode(uint256 toRequester, uint256 toProvider[, bool providerAtFault]). Otherwise empty.
    function transitionState(bytes32 transactionId, State newState, bytes calldata proof) external;

    /// @notice The 21-field view of a transaction; reverts if it does not exist.
    /// @param transactionId The transaction.
    /// @return The transaction view, in wire order.
    function getTransaction(bytes32 transactionId) external view returns (TransactionView memory);

    /// @notice Settles a DELIVERED transaction (same rules as `transitionState(SETTLED)`).
    /// @param transactionId The transaction.
    function releaseEscrow(bytes32 transactionId) external;

    /// @notice The requester pays `amount` (gross) of an IN_PROGRESS escrow to the provider now.
    /// @param transactionId The transaction.
    /// @param amount Gross amount, at most what the escrow still holds; the platform fee is taken from it.
    function releaseMilestone(bytes32 transactionId, uint256 amount) external;

    /// @notice The requester accepts a QUOTED price before funding.
    /// @param transactionId The transaction.
    /// @param newAmount The new amount (50,000 ..= 1e15).
    function acceptQuote(bytes32 transactionId, uint256 newAmount) external;

    /// @notice The requester or provider anchors an EAS attestation uid to a SETTLED transaction.
    /// @param transactionId The transaction.
    /// @param attestationUID The non-zero attestation uid.
    function anchorAttestation(bytes32 transactionId, bytes32 attestationUID) external;

    /// @notice The next nonce of `requester`, used in the transaction id formula.
    /// @param requester The requester.
    /// @return The number of transactions `requester` has created.
    function requesterNonces(address requester) external view returns (uint256);

    /// @notice The platform fee in basis points locked into new transactions.
    /// @return The current fee rate.
    function platformFeeBps() external view returns (uint16);

    /// @notice Always 0: this kernel never charges a requester cancellation penalty.
    /// @return 0.
    function requesterPenaltyBps() external view returns (uint16);

    /// @notice True while new transactions and new funding are stopped.
    /// @return Whether the kernel is paused.
    function paused() external view returns (bool);
}
