// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IEscrowKernel} from "../interfaces/IEscrowKernel.sol";
import {Packed} from "../libraries/Packed.sol";

/// @title KernelState
/// @notice The kernel's storage, limits, and the internals every part of it shares: creating a record, logging,
/// moving money, and reading records. Abstract; `EscrowKernel` is the deployable contract.
abstract contract KernelState is IEscrowKernel, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using Packed for uint256;

    /// @notice Smallest transaction amount in token base units (0.05 of a 6-decimal token).
    uint256 public constant MIN_AMOUNT = 50_000;
    /// @notice Largest transaction amount in token base units (1e9 of a 6-decimal token).
    uint256 public constant MAX_AMOUNT = 1e15;
    /// @notice How far ahead of creation a deadline may lie.
    uint256 public constant MAX_DEADLINE_AHEAD = 365 days;
    /// @notice Shortest dispute window.
    uint256 public constant MIN_DISPUTE_WINDOW = 1 hours;
    /// @notice Longest dispute window.
    uint256 public constant MAX_DISPUTE_WINDOW = 30 days;
    /// @notice Highest platform fee rate, in basis points.
    uint16 public constant MAX_PLATFORM_FEE_BPS = 500;
    /// @notice Delay between scheduling and applying a fee change.
    uint256 public constant FEE_CHANGE_DELAY = 2 days;
    /// @notice Delay between approving a mediator and its first resolution.
    uint256 public constant MEDIATOR_DELAY = 2 days;

    uint256 internal constant BPS = 10_000;
    uint256 internal constant FEE_SHIFT = 160;
    uint256 internal constant PAUSED = 1 << 176;
    uint256 internal constant RESOLVES_FROM_SHIFT = 160;
    uint256 internal constant LINKED_ALIAS = 1 << 255;
    bytes32 internal constant CONTESTED = bytes32(type(uint256).max);

    /// @dev One transaction: three slots, see `Packed` for the two packed words.
    struct Record {
        uint256 status;
        uint256 terms;
        bytes32 serviceHash;
    }

    /// @dev Rarely used fields, each written only when its feature is used.
    struct Extras {
        bytes32 metadata;
        bytes32 attestationUID;
        bytes32 escrowId;
        address disputeInitiator;
        uint256 agentId;
        uint256 requesterAgentId;
        /// @dev Read only when the status word's S flag is set: see `Packed` (milestones' released total, or a
        /// session's terms).
        uint256 side;
    }

    IERC20 internal immutable _TOKEN;

    mapping(bytes32 transactionId => Record) internal _records;
    mapping(bytes32 transactionId => Extras) internal _extras;
    /// @dev Escrow ids linked in place of a transaction id (older clients), in the linking requester's name:
    /// nobody else can take or shadow a requester's alias.
    mapping(address requester => mapping(bytes32 escrowId => bytes32 transactionId)) internal _escrowAliases;
    /// @dev For views that get no requester: the one transaction linked under an alias, or CONTESTED once more
    /// than one requester linked it.
    mapping(bytes32 escrowId => bytes32 transactionId) internal _aliasIndex;
    /// @dev nonce (bits 0..254) | LINKED_ALIAS (255): set once the requester linked an alias, so creation
    /// checks the requester's aliases only then.
    mapping(address requester => uint256) internal _nonces;
    mapping(address mediator => uint256 activeFrom) internal _mediators;
    mapping(address payee => uint256) internal _deferred;

    /// @dev fee recipient (bits 0..159) | accrued fees (bits 160..255). Settlement reads and writes it once.
    uint256 internal _feeAccount;
    /// @dev pauser (bits 0..159; zero: the admin) | platform fee bps (160..175) | paused (176). Creation reads
    /// it once.
    uint256 internal _config;
    /// @dev scheduled fee bps (0..15) | executeAfter (16..).
    uint256 internal _pendingFee;
    /// @dev admin (bits 0..159) | the time from which it may resolve disputes (160..): a new admin waits the
    /// mediator delay, as a newly approved mediator does.
    uint256 internal _adminAccount;
    address internal _pendingAdmin;

    modifier onlyAdmin() {
        if (msg.sender != _currentAdmin()) revert NotAdmin(msg.sender);
        _;
    }

    /// @param token_ The escrow token (a standard ERC-20 without transfer fees; USDC).
    /// @param admin_ The admin: governance and dispute resolution.
    /// @param feeRecipient_ Receives collected platform fees.
    /// @param feeBps_ The initial platform fee rate in basis points (at most 500).
    constructor(IERC20 token_, address admin_, address feeRecipient_, uint16 feeBps_) {
        if (address(token_) == address(0) || admin_ == address(0) || feeRecipient_ == address(0)) {
            revert ZeroAddress();
        }
        if (feeBps_ > MAX_PLATFORM_FEE_BPS) revert FeeAboveCap(feeBps_, MAX_PLATFORM_FEE_BPS);
        _TOKEN = token_;
        _adminAccount = uint256(uint160(admin_)); // the deployer's admin resolves from the start
        _feeAccount = uint256(uint160(feeRecipient_));
        _config = uint256(feeBps_) << FEE_SHIFT; // no pauser named: the admin pauses
        emit AdminTransferred(address(0), admin_);
    }

    // ================================================================================================
    // Internals: creation
    // ================================================================================================

    /// @dev Validates and stores a new transaction whose requester is the caller; returns its id.
    function _create(
        address provider,
        uint256 amount,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        State initial,
        uint256 flags
    ) internal returns (bytes32 transactionId) {
        if (provider == address(0)) revert ZeroAddress();
        if (provider == msg.sender) revert SelfDealing(provider);
        if (amount < MIN_AMOUNT || amount > MAX_AMOUNT) revert AmountOutOfRange(amount, MIN_AMOUNT, MAX_AMOUNT);
        uint256 latest;
        unchecked {
            latest = block.timestamp + MAX_DEADLINE_AHEAD; // block times are 64-bit numbers
        }
        if (latest > type(uint32).max) latest = type(uint32).max;
        if (deadline <= block.timestamp || deadline > latest) {
            revert DeadlineOutOfRange(deadline, block.timestamp, latest);
        }
        if (disputeWindow < MIN_DISPUTE_WINDOW || disputeWindow > MAX_DISPUTE_WINDOW) {
            revert DisputeWindowOutOfRange(disputeWindow, MIN_DISPUTE_WINDOW, MAX_DISPUTE_WINDOW);
        }
        uint256 config = _config;
        if (config & PAUSED != 0) revert KernelIsPaused();

        uint256 nonceWord = _nonces[msg.sender];
        transactionId = _transactionId(provider, amount, serviceHash, nonceWord & ~LINKED_ALIAS);
        unchecked {
            // One per transaction: 2^255 transactions cannot be created, so the flag bit is never reached.
            _nonces[msg.sender] = nonceWord + 1;
        }
        Record storage record = _records[transactionId];
        if (record.status != 0) revert TransactionExists(transactionId);
        // An id the requester already uses as an alias would name two escrows: refused.
        if (nonceWord & LINKED_ALIAS != 0 && _escrowAliases[msg.sender][transactionId] != bytes32(0)) {
            revert EscrowIdUnavailable(transactionId);
        }
        record.status = Packed.status(provider, initial, flags, block.timestamp, deadline, disputeWindow);
        record.terms = Packed.terms(msg.sender, amount, uint16(config >> FEE_SHIFT), block.timestamp);
        if (serviceHash != bytes32(0)) record.serviceHash = serviceHash;
    }

    /// @dev keccak256(abi.encodePacked(msg.sender, provider, amount, serviceHash, nonce)), the ACTP id, hashed in
    /// memory past the free memory pointer (not moved: nothing is allocated).
    function _transactionId(address provider, uint256 amount, bytes32 serviceHash, uint256 nonce)
        internal
        view
        returns (bytes32 id)
    {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, shl(96, caller()))
            mstore(add(m, 0x14), shl(96, provider))
            mstore(add(m, 0x28), amount)
            mstore(add(m, 0x48), serviceHash)
            mstore(add(m, 0x68), nonce)
            id := keccak256(m, 0x88)
        }
    }

    // ================================================================================================
    // Internals: events (hot ones encoded by hand in scratch space: no memory expansion, no encoder)
    // ================================================================================================

    /// @dev `emit StateTransitioned(transactionId, from, to, msg.sender, block.timestamp)`.
    function _emitTransitioned(bytes32 transactionId, State from, State to) internal {
        bytes32 topic = StateTransitioned.selector;
        assembly ("memory-safe") {
            mstore(0x00, caller())
            mstore(0x20, timestamp())
            log4(0x00, 0x40, topic, transactionId, from, to)
        }
    }

    /// @dev `emit TransactionCreated(transactionId, msg.sender, provider, amount, serviceHash, deadline,
    /// block.timestamp, agentId)`; the data words go just past the free memory pointer, which is not moved.
    function _emitCreated(
        bytes32 transactionId,
        address provider,
        uint256 amount,
        bytes32 serviceHash,
        uint256 deadline,
        uint256 agentId
    ) internal {
        bytes32 topic = TransactionCreated.selector;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, amount)
            mstore(add(m, 0x20), serviceHash)
            mstore(add(m, 0x40), deadline)
            mstore(add(m, 0x60), timestamp())
            mstore(add(m, 0x80), agentId)
            log4(m, 0xa0, topic, transactionId, caller(), provider)
        }
    }

    /// @dev `emit EscrowLinked(transactionId, address(this), escrowId, amount, block.timestamp)`.
    function _emitLinked(bytes32 transactionId, bytes32 escrowId, uint256 amount) internal {
        bytes32 topic = EscrowLinked.selector;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, address())
            mstore(add(m, 0x20), escrowId)
            mstore(add(m, 0x40), amount)
            mstore(add(m, 0x60), timestamp())
            log2(m, 0x80, topic, transactionId)
        }
    }

    /// @dev The payout events: `EscrowReleased` / `EscrowRefunded(transactionId, recipient, amount, timestamp)`
    /// and `PlatformFeeAccrued(transactionId, indexed recipient, amount, timestamp)`.
    function _emitPayout(bytes32 topic, bytes32 transactionId, address recipient, uint256 amount) internal {
        if (topic == PlatformFeeAccrued.selector) {
            assembly ("memory-safe") {
                mstore(0x00, amount)
                mstore(0x20, timestamp())
                log3(0x00, 0x40, topic, transactionId, recipient)
            }
        } else {
            assembly ("memory-safe") {
                let m := mload(0x40)
                mstore(m, recipient)
                mstore(add(m, 0x20), amount)
                mstore(add(m, 0x40), timestamp())
                log2(m, 0x60, topic, transactionId)
            }
        }
    }

    // ================================================================================================
    // Internals: money
    // ================================================================================================

    /// @dev Pays `gross` to the provider less the platform fee. The fee is charged on the provider's running
    /// total, so splitting a payout into milestones never changes the total fee.
    function _payProvider(bytes32 transactionId, address provider, uint256 gross, uint256 paidBefore, uint256 feeBps)
        internal
    {
        uint256 fee = _feeOn(paidBefore, gross, feeBps);
        uint256 net;
        unchecked {
            net = gross - fee; // the fee is a fraction (at most 5%) of `gross`
        }
        if (fee != 0) {
            uint256 account = _feeAccount;
            unchecked {
                // Accrued fees fit in 96 bits: at most 5% of what was pulled (at most 1e15 per transaction)
                // and never more than the kernel holds; the sum stays below 2^256.
                _feeAccount = account + (fee << FEE_SHIFT);
            }
            _emitPayout(PlatformFeeAccrued.selector, transactionId, address(uint160(account)), fee);
        }
        if (net != 0) {
            _emitPayout(EscrowReleased.selector, transactionId, provider, net);
            _send(provider, net);
        }
    }

    function _refund(bytes32 transactionId, address requester, uint256 amount) internal {
        _emitPayout(EscrowRefunded.selector, transactionId, requester, amount);
        _send(requester, amount);
    }

    /// @dev Pays `to`, or holds the amount for `to` to claim elsewhere when the token refuses the transfer
    /// (a blocklisted address): a payee the token rejects can never block settlement, refund or resolution.
    function _send(address to, uint256 amount) internal {
        if (!_TOKEN.trySafeTransfer(to, amount)) {
            _deferred[to] += amount;
            emit PaymentDeferred(to, amount);
        }
    }

    /// @dev Pulls exactly `amount` from `from`; a token that delivers a different amount is refused.
    function _pull(address from, uint256 amount) internal {
        uint256 before = _ownBalance();
        _TOKEN.safeTransferFrom(from, address(this), amount);
        uint256 afterwards = _ownBalance();
        if (afterwards != before + amount) {
            revert TransferAmountMismatch(amount, afterwards > before ? afterwards - before : 0);
        }
    }

    /// @dev `_TOKEN.balanceOf(address(this))` as a plain staticcall in scratch space: bubbles a revert, and
    /// reverts on short return data, as the high-level call does.
    function _ownBalance() internal view returns (uint256 held) {
        address token = address(_TOKEN);
        assembly ("memory-safe") {
            mstore(0x00, 0x70a08231) // balanceOf(address), in the low 4 bytes of the word
            mstore(0x20, address())
            if iszero(staticcall(gas(), token, 0x1c, 0x24, 0x00, 0x20)) {
                let m := mload(0x40)
                returndatacopy(m, 0x00, returndatasize())
                revert(m, returndatasize())
            }
            if lt(returndatasize(), 0x20) { revert(0x00, 0x00) }
            held := mload(0x00)
        }
    }

    // ================================================================================================
    // Internals: reads and checks
    // ================================================================================================

    function _load(Record storage record, bytes32 transactionId) internal view returns (uint256 s) {
        s = record.status;
        if (s == 0) revert TransactionNotFound(transactionId);
    }

    /// @dev The side word (zero unless the S flag is set): see `Packed`.
    function _side(bytes32 transactionId, uint256 s) internal view returns (uint256 side) {
        if (s.has(Packed.SIDE)) side = _extras[transactionId].side;
    }

    /// @dev What a transaction's escrow still holds, what milestones have paid before, and the side word.
    function _remaining(bytes32 transactionId, uint256 s, uint256 t)
        internal
        view
        returns (uint256 left, uint256 paidBefore, uint256 side)
    {
        side = _side(transactionId, s);
        if (!side.isSession()) paidBefore = side;
        unchecked {
            left = t.amount() - paidBefore; // milestones never release more than the escrow holds
        }
    }

    /// @dev Resolves an escrow id to a record for `requester` (the caller, for views that name no requester):
    /// its own alias first, then a transaction id, then (only when `anyAlias`) an alias a single requester
    /// linked. A missing record reads as zeros.
    function _escrow(bytes32 escrowId, address requester, bool anyAlias)
        internal
        view
        returns (bytes32 id, uint256 s, uint256 t)
    {
        id = _escrowAliases[requester][escrowId];
        if (id == bytes32(0)) {
            id = escrowId;
            if (anyAlias && _records[id].status == 0) {
                id = _aliasIndex[escrowId];
                if (id == CONTESTED) return (bytes32(0), 0, 0);
            }
        }
        Record storage record = _records[id];
        (s, t) = (record.status, record.terms);
    }

    /// @dev Funded and not terminal.
    function _isLive(uint256 s) internal pure returns (bool) {
        State st = s.state();
        return s.has(Packed.ESCROWED) && st != State.SETTLED && st != State.CANCELLED;
    }

    function _windowEnd(uint256 s, uint256 t) internal pure returns (uint256) {
        return s.state() == State.DELIVERED ? s.updated() + s.window() : t.createdAt() + s.window();
    }

    function _feeOn(uint256 paidBefore, uint256 gross, uint256 feeBps) internal pure returns (uint256 fee) {
        unchecked {
            // paidBefore + gross <= 1e15 and feeBps < 2^10: every product is below 2^60; the fee on a larger
            // running total is never smaller.
            fee = ((paidBefore + gross) * feeBps) / BPS - (paidBefore * feeBps) / BPS;
        }
    }

    /// @dev A window end as stored after DELIVERED: its distance from creation (below 2^26, see `Packed`).
    function _sinceCreation(uint256 windowEnd, uint256 t) internal pure returns (uint256 distance) {
        unchecked {
            distance = windowEnd - t.createdAt(); // the window ends after delivery, which is after creation
        }
    }

    function _requireProvider(uint256 s) internal view {
        if (msg.sender != s.provider()) revert Unauthorized(msg.sender, s.provider());
    }

    function _requireBeforeDeadline(uint256 s) internal view {
        if (block.timestamp > s.deadline()) revert DeadlinePassed(s.deadline());
    }

    function _currentAdmin() internal view returns (address) {
        return address(uint160(_adminAccount));
    }

    /// @dev The pauser named in `config`, or `admin_` when none is.
    function _pauserOf(uint256 config, address admin_) internal pure returns (address pauser_) {
        pauser_ = address(uint160(config));
        if (pauser_ == address(0)) pauser_ = admin_;
    }

    function _requirePauser() internal view returns (uint256 config) {
        config = _config;
        if (msg.sender != address(uint160(config)) && msg.sender != _currentAdmin()) revert NotPauser(msg.sender);
    }
}
