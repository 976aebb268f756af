// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IKernelSessions} from "../interfaces/IKernelSessions.sol";
import {Packed} from "../libraries/Packed.sol";
import {KernelState} from "./KernelState.sol";

/// @title KernelSessions
/// @notice Opening, topping up, ending and closing sessions (see `IKernelSessions`). Settlement, disputes and
/// cancellation of a session are the transaction's own, in `EscrowKernel`, which read the session's side word.
abstract contract KernelSessions is KernelState {
    using Packed for uint256;

    /// @dev Shortest grace period (time enough for a provider to get its close mined) and the longest.
    uint256 private constant MIN_GRACE = 10 minutes;
    uint256 private constant MAX_GRACE = 7 days;

    /// @dev keccak256("SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)")
    bytes32 private constant VOUCHER_TYPEHASH =
        keccak256("SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant DOMAIN_NAME_HASH = keccak256("AGIRAILS");
    bytes32 private constant DOMAIN_VERSION_HASH = keccak256("1");

    uint256 private immutable _CACHED_CHAIN_ID;
    bytes32 private immutable _CACHED_DOMAIN_SEPARATOR;

    constructor() {
        _CACHED_CHAIN_ID = block.chainid;
        _CACHED_DOMAIN_SEPARATOR = _buildDomainSeparator();
    }

    /// @inheritdoc IKernelSessions
    function openSession(
        address provider,
        uint256 deposit,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        uint256 grace
    ) external nonReentrant returns (bytes32 transactionId) {
        if (grace < MIN_GRACE || grace > MAX_GRACE) revert GraceOutOfRange(grace, MIN_GRACE, MAX_GRACE);
        transactionId = _create(
            provider, deposit, deadline, disputeWindow, serviceHash, State.COMMITTED, Packed.ESCROWED | Packed.SIDE
        );
        _extras[transactionId].side = Packed.session(grace);
        _emitCreated(transactionId, provider, deposit, serviceHash, deadline, 0);
        _emitTransitioned(transactionId, State.INITIATED, State.COMMITTED);
        _emitLinked(transactionId, transactionId, deposit);
        emit SessionOpened(transactionId, grace);
        _pull(msg.sender, deposit);
    }

    /// @inheritdoc IKernelSessions
    function topUpSession(bytes32 transactionId, uint256 amount) external nonReentrant {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        uint256 side = _session(transactionId, s);
        _requireOpen(transactionId, s);
        uint256 t = record.terms;
        if (msg.sender != t.requester()) revert Unauthorized(msg.sender, t.requester());
        if (_config & PAUSED != 0) revert KernelIsPaused();
        _requireBeforeDeadline(s);
        if (side.closeBy() != 0) revert SessionEnding(transactionId, side.closeBy());
        uint256 deposit = t.amount();
        if (amount == 0 || amount > MAX_AMOUNT - deposit) revert InvalidTopUp(amount, deposit, MAX_AMOUNT);

        unchecked {
            deposit += amount; // at most MAX_AMOUNT
        }
        record.terms = t.withAmount(deposit);
        emit SessionToppedUp(transactionId, amount, deposit);
        _pull(msg.sender, amount);
    }

    /// @inheritdoc IKernelSessions
    function endSession(bytes32 transactionId) external {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        uint256 side = _session(transactionId, s);
        _requireOpen(transactionId, s);
        address requester = record.terms.requester();
        if (msg.sender != requester) revert Unauthorized(msg.sender, requester);
        if (side.closeBy() != 0) revert SessionEnding(transactionId, side.closeBy());

        uint256 closeBy;
        unchecked {
            closeBy = block.timestamp + side.grace(); // a 64-bit time plus a 32-bit period
        }
        side = side.withCloseBy(closeBy);
        _extras[transactionId].side = side;
        emit SessionEndRequested(transactionId, side.closeBy());
    }

    /// @inheritdoc IKernelSessions
    function closeSession(
        bytes32 transactionId,
        uint256 claim,
        uint256 cumulative,
        bytes32 requestHash,
        uint256 expiresAt,
        bytes calldata signature,
        bytes32 proofHash
    ) external {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        uint256 side = _session(transactionId, s);
        if (s.state() != State.IN_PROGRESS) revert InvalidTransition(transactionId, s.state(), State.DELIVERED);
        _requireProvider(s);
        _requireBeforeDeadline(s);
        uint256 closeBy = side.closeBy();
        if (closeBy != 0 && block.timestamp > closeBy) revert GracePeriodOver(closeBy);
        uint256 t = record.terms;
        uint256 deposit = t.amount();
        if (claim > cumulative || claim > deposit) revert ClaimTooHigh(claim, cumulative, deposit);
        if (claim != 0) {
            address requester = t.requester();
            bytes32 digest = _voucherDigest(transactionId, cumulative, requestHash, expiresAt);
            // ECDSA for accounts without code; ERC-1271 (a staticcall) for smart-contract wallets.
            if (!SignatureChecker.isValidSignatureNowCalldata(requester, digest, signature)) {
                revert InvalidVoucherSignature(requester);
            }
            _extras[transactionId].side = side.withClaimed(claim);
        }

        uint256 window = s.window();
        record.status = s.moved(State.DELIVERED, block.timestamp, window, Packed.DELIVERED);
        _emitTransitioned(transactionId, State.IN_PROGRESS, State.DELIVERED);
        emit SessionClosed(transactionId, claim, cumulative);
        if (proofHash != bytes32(0)) emit DeliveryProofRecorded(transactionId, proofHash, block.timestamp + window);
    }

    /// @inheritdoc IKernelSessions
    function sessionOf(bytes32 transactionId)
        external
        view
        returns (bool isSession, uint256 grace, uint256 closeBy, uint256 claimed)
    {
        uint256 side = _side(transactionId, _records[transactionId].status);
        if (side.isSession()) return (true, side.grace(), side.closeBy(), side.claimed());
    }

    // ================================================================================================
    // Internals
    // ================================================================================================

    /// @dev The session's side word; reverts for an ordinary transaction.
    function _session(bytes32 transactionId, uint256 s) private view returns (uint256 side) {
        side = _side(transactionId, s);
        if (!side.isSession()) revert NotSession(transactionId);
    }

    /// @dev Funded and not yet closed: COMMITTED or IN_PROGRESS.
    function _requireOpen(bytes32 transactionId, uint256 s) private pure {
        State st = s.state();
        if (st != State.COMMITTED && st != State.IN_PROGRESS) revert InvalidState(transactionId, st);
    }

    /// @dev EIP-712: keccak256("\x19\x01" ‖ domainSeparator ‖ hashStruct(voucher)), hashed in scratch and free
    /// memory (the free memory pointer is not moved: nothing is allocated).
    function _voucherDigest(bytes32 transactionId, uint256 cumulative, bytes32 requestHash, uint256 expiresAt)
        private
        view
        returns (bytes32 digest)
    {
        bytes32 separator = block.chainid == _CACHED_CHAIN_ID ? _CACHED_DOMAIN_SEPARATOR : _buildDomainSeparator();
        bytes32 typeHash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 0x20), transactionId)
            mstore(add(m, 0x40), cumulative)
            mstore(add(m, 0x60), requestHash)
            mstore(add(m, 0x80), expiresAt)
            let structHash := keccak256(m, 0xa0)
            mstore(m, 0x1901)
            mstore(add(m, 0x20), separator)
            mstore(add(m, 0x40), structHash)
            digest := keccak256(add(m, 0x1e), 0x42)
        }
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return
            keccak256(abi.encode(DOMAIN_TYPEHASH, DOMAIN_NAME_HASH, DOMAIN_VERSION_HASH, block.chainid, address(this)));
    }
}
