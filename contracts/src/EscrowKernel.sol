// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IACTPKernel} from "./interfaces/IACTPKernel.sol";
import {IEscrowVault} from "./interfaces/IEscrowVault.sol";
import {IEscrowKernel} from "./interfaces/IEscrowKernel.sol";
import {Packed} from "./libraries/Packed.sol";
import {KernelState} from "./kernel/KernelState.sol";
import {KernelGovernance} from "./kernel/KernelGovernance.sol";
import {KernelSessions} from "./kernel/KernelSessions.sol";

/// @title EscrowKernel
/// @notice ACTP escrow kernel: holds a requester's payment in escrow until the provider's delivered work is
/// settled, refunded, or split by a resolver. Wire-compatible with ACTP v3 clients and its own escrow vault.
/// @dev It must never strand funds: every funded, non-terminal transaction always has a party who can move it
/// to a terminal state, whatever the clock says, and pause never blocks refunds, settlement or resolution.
///
/// Every external function checks in one order, so clients can predict which error wins: arguments, the
/// transaction's existence, its state, the caller, pause, time, then the proof bytes. Then it writes state,
/// emits, and moves tokens last.
contract EscrowKernel is KernelGovernance, KernelSessions {
    using Packed for uint256;

    /// @param token_ The escrow token (a standard ERC-20 without transfer fees; USDC).
    /// @param admin_ The admin: governance and dispute resolution.
    /// @param feeRecipient_ Receives collected platform fees.
    /// @param feeBps_ The initial platform fee rate in basis points (at most 500).
    constructor(IERC20 token_, address admin_, address feeRecipient_, uint16 feeBps_)
        KernelState(token_, admin_, feeRecipient_, feeBps_)
    {}

    // ================================================================================================
    // Creation and funding
    // ================================================================================================

    /// @inheritdoc IACTPKernel
    function createTransaction(
        address provider,
        address requester,
        uint256 amount,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        uint256 agentId,
        uint256 requesterAgentId
    ) external returns (bytes32 transactionId) {
        if (requester != msg.sender) revert RequesterMismatch(requester, msg.sender);
        transactionId = _create(provider, amount, deadline, disputeWindow, serviceHash, State.INITIATED, 0);
        _storeAgentIds(transactionId, agentId, requesterAgentId);
        _emitCreated(transactionId, provider, amount, serviceHash, deadline, agentId);
    }

    /// @inheritdoc IEscrowKernel
    function createAndFund(
        address provider,
        uint256 amount,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        uint256 agentId,
        uint256 requesterAgentId
    ) external nonReentrant returns (bytes32 transactionId) {
        transactionId = _create(
            provider, amount, deadline, disputeWindow, serviceHash, State.COMMITTED, Packed.ESCROWED
        );
        _storeAgentIds(transactionId, agentId, requesterAgentId);
        _emitCreated(transactionId, provider, amount, serviceHash, deadline, agentId);
        _emitTransitioned(transactionId, State.INITIATED, State.COMMITTED);
        _emitLinked(transactionId, transactionId, amount);
        _pull(msg.sender, amount);
    }

    /// @inheritdoc IACTPKernel
    function linkEscrow(bytes32 transactionId, address escrowContract, bytes32 escrowId) external nonReentrant {
        if (escrowContract != address(this)) revert UnsupportedEscrowContract(escrowContract);
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        State from = s.state();
        if (from != State.INITIATED && from != State.QUOTED) {
            revert InvalidTransition(transactionId, from, State.COMMITTED);
        }
        uint256 t = record.terms;
        if (msg.sender != t.requester()) revert Unauthorized(msg.sender, t.requester());
        if (_config & PAUSED != 0) revert KernelIsPaused();
        if (block.timestamp > s.deadline()) revert DeadlinePassed(s.deadline());
        if (escrowId != transactionId) _linkAlias(transactionId, escrowId);

        uint256 amount = t.amount();
        record.status = s.moved(State.COMMITTED, block.timestamp, s.window(), Packed.ESCROWED);
        _emitLinked(transactionId, escrowId, amount);
        _emitTransitioned(transactionId, from, State.COMMITTED);
        _pull(msg.sender, amount);
    }

    /// @inheritdoc IACTPKernel
    function acceptQuote(bytes32 transactionId, uint256 newAmount) external {
        if (newAmount < MIN_AMOUNT || newAmount > MAX_AMOUNT) {
            revert AmountOutOfRange(newAmount, MIN_AMOUNT, MAX_AMOUNT);
        }
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        if (s.state() != State.QUOTED) revert InvalidState(transactionId, s.state());
        uint256 t = record.terms;
        if (msg.sender != t.requester()) revert Unauthorized(msg.sender, t.requester());
        if (block.timestamp > s.deadline()) revert DeadlinePassed(s.deadline());

        record.terms = t.withAmount(newAmount);
        record.status = s.moved(State.QUOTED, block.timestamp, s.window(), 0);
        emit QuoteAccepted(transactionId, t.amount(), newAmount, block.timestamp);
    }

    // ================================================================================================
    // Transitions
    // ================================================================================================

    /// @inheritdoc IACTPKernel
    function transitionState(bytes32 transactionId, State newState, bytes calldata proof) external {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        State from = s.state();

        if (newState == State.IN_PROGRESS) {
            if (from != State.COMMITTED) revert InvalidTransition(transactionId, from, newState);
            _requireProvider(s);
            _requireBeforeDeadline(s);
            if (proof.length != 0) revert InvalidProofLength(proof.length);
            record.status = s.moved(State.IN_PROGRESS, block.timestamp, s.window(), 0);
            _emitTransitioned(transactionId, from, State.IN_PROGRESS);
        } else if (newState == State.DELIVERED) {
            if (from != State.IN_PROGRESS) revert InvalidTransition(transactionId, from, newState);
            _deliver(record, transactionId, s, proof);
        } else if (newState == State.SETTLED) {
            if (from == State.DELIVERED) {
                _settle(record, transactionId, s, proof.length);
            } else if (from == State.DISPUTED) {
                _resolve(record, transactionId, s, State.SETTLED, proof);
            } else {
                revert InvalidTransition(transactionId, from, newState);
            }
        } else if (newState == State.CANCELLED) {
            if (from == State.DISPUTED) {
                _resolve(record, transactionId, s, State.CANCELLED, proof);
            } else {
                _cancel(record, transactionId, s, from, proof.length);
            }
        } else if (newState == State.DISPUTED) {
            if (from != State.DELIVERED) revert InvalidTransition(transactionId, from, newState);
            _dispute(record, transactionId, s);
        } else if (newState == State.QUOTED) {
            if (from != State.INITIATED) revert InvalidTransition(transactionId, from, newState);
            _quote(record, transactionId, s, proof);
        } else {
            // INITIATED is only entered at creation, COMMITTED only through funding.
            revert InvalidTransition(transactionId, from, newState);
        }
    }

    /// @inheritdoc IACTPKernel
    function releaseEscrow(bytes32 transactionId) external {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        if (s.state() != State.DELIVERED) revert InvalidTransition(transactionId, s.state(), State.SETTLED);
        _settle(record, transactionId, s, 0);
    }

    /// @inheritdoc IEscrowKernel
    function settleBatch(bytes32[] calldata transactionIds) external nonReentrant returns (uint256 settled) {
        uint256 feeAccount = _feeAccount;
        address recipient = address(uint160(feeAccount));
        uint256 fees;
        address payee;
        uint256 owed;
        for (uint256 i; i < transactionIds.length; ++i) {
            bytes32 id = transactionIds[i];
            Record storage record = _records[id];
            uint256 s = record.status;
            // A missing id reads as zero, i.e. INITIATED, and is skipped with the rest.
            if (s.state() != State.DELIVERED) continue;
            uint256 t = record.terms;
            uint256 windowEnd = s.windowEnd();
            if (msg.sender != t.requester() && block.timestamp <= windowEnd) continue;

            (uint256 gross, uint256 paidBefore, uint256 refund) = _settlement(id, s, t);
            record.status = s.moved(State.SETTLED, block.timestamp, _sinceCreation(windowEnd, t), 0);
            _emitTransitioned(id, State.DELIVERED, State.SETTLED);
            uint256 fee = _feeOn(paidBefore, gross, t.feeBps());
            if (fee != 0) {
                fees += fee;
                _emitPayout(PlatformFeeAccrued.selector, id, recipient, fee);
            }
            address provider = s.provider();
            uint256 net;
            unchecked {
                net = gross - fee; // the fee is a fraction (at most 5%) of `gross`
            }
            if (net != 0) _emitPayout(EscrowReleased.selector, id, provider, net);
            if (provider != payee) {
                if (owed != 0) _send(payee, owed);
                (payee, owed) = (provider, net);
            } else {
                owed += net;
            }
            if (refund != 0) _refund(id, t.requester(), refund);
            unchecked {
                ++settled; // bounded by the array length
            }
        }
        if (fees != 0) _feeAccount = feeAccount + (fees << FEE_SHIFT);
        if (owed != 0) _send(payee, owed);
    }

    /// @inheritdoc IACTPKernel
    function releaseMilestone(bytes32 transactionId, uint256 amount) external nonReentrant {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        if (s.state() != State.IN_PROGRESS) revert InvalidState(transactionId, s.state());
        uint256 t = record.terms;
        if (msg.sender != t.requester()) revert Unauthorized(msg.sender, t.requester());
        (uint256 left, uint256 paidBefore, uint256 side) = _remaining(transactionId, s, t);
        if (side.isSession()) revert SessionOperationRefused(transactionId);
        if (amount == 0 || amount > left) revert InvalidMilestone(amount, left);

        _extras[transactionId].side = paidBefore + amount;
        record.status = s.moved(State.IN_PROGRESS, block.timestamp, s.window(), Packed.SIDE);
        emit EscrowMilestoneReleased(transactionId, amount, block.timestamp);
        _payProvider(transactionId, s.provider(), amount, paidBefore, t.feeBps());
    }

    /// @inheritdoc IACTPKernel
    function anchorAttestation(bytes32 transactionId, bytes32 attestationUID) external {
        if (attestationUID == bytes32(0)) revert ZeroAttestation();
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        if (s.state() != State.SETTLED) revert InvalidState(transactionId, s.state());
        if (msg.sender != s.provider() && msg.sender != record.terms.requester()) revert NotParty(msg.sender);
        _extras[transactionId].attestationUID = attestationUID;
        emit AttestationAnchored(transactionId, attestationUID, msg.sender, block.timestamp);
    }

    // ================================================================================================
    // Views
    // ================================================================================================

    /// @inheritdoc IACTPKernel
    function getTransaction(bytes32 transactionId) external view returns (TransactionView memory v) {
        Record storage record = _records[transactionId];
        uint256 s = _load(record, transactionId);
        uint256 t = record.terms;
        Extras storage extras = _extras[transactionId];
        v.transactionId = transactionId;
        v.requester = t.requester();
        v.provider = s.provider();
        v.state = s.state();
        v.amount = t.amount();
        v.createdAt = t.createdAt();
        v.updatedAt = s.updated();
        v.deadline = s.deadline();
        v.serviceHash = record.serviceHash;
        if (s.has(Packed.ESCROWED)) {
            v.escrowContract = address(this);
            bytes32 alias_ = extras.escrowId;
            v.escrowId = alias_ == bytes32(0) ? transactionId : alias_;
        }
        v.attestationUID = extras.attestationUID;
        // Before delivery: the window in seconds. From delivery on: the unix time the window ends.
        v.disputeWindow = s.has(Packed.DELIVERED) ? _windowEnd(s, t) : s.window();
        v.metadata = extras.metadata;
        v.platformFeeBpsLocked = uint16(t.feeBps());
        v.agentId = extras.agentId;
        v.requesterAgentId = extras.requesterAgentId;
        v.disputeInitiator = extras.disputeInitiator;
    }

    /// @inheritdoc IACTPKernel
    function requesterNonces(address requester) external view returns (uint256) {
        return _nonces[requester] & ~LINKED_ALIAS;
    }

    /// @inheritdoc IACTPKernel
    function platformFeeBps() external view returns (uint16) {
        return uint16(_config >> FEE_SHIFT);
    }

    /// @inheritdoc IACTPKernel
    function requesterPenaltyBps() external pure returns (uint16) {
        return 0;
    }

    /// @inheritdoc IACTPKernel
    function paused() external view returns (bool) {
        return _config & PAUSED != 0;
    }

    /// @inheritdoc IEscrowVault
    function remaining(bytes32 escrowId) external view returns (uint256 left) {
        (bytes32 id, uint256 s, uint256 t) = _escrow(escrowId, msg.sender, true);
        if (_isLive(s)) (left,,) = _remaining(id, s, t);
    }

    /// @inheritdoc IEscrowVault
    function token() external view returns (address) {
        return address(_TOKEN);
    }

    /// @inheritdoc IEscrowVault
    function kernel() external view returns (address) {
        return address(this);
    }

    /// @inheritdoc IEscrowVault
    function verifyEscrow(bytes32 escrowId, address requester, address provider, uint256 amount)
        external
        view
        returns (bool isActive, uint256 escrowAmount)
    {
        (bytes32 id, uint256 s, uint256 t) = _escrow(escrowId, requester, false);
        if (!_isLive(s)) return (false, 0);
        (escrowAmount,,) = _remaining(id, s, t);
        isActive = t.requester() == requester && s.provider() == provider && escrowAmount >= amount;
    }

    /// @inheritdoc IEscrowKernel
    function escrows(bytes32 escrowId)
        external
        view
        returns (address requester, address provider, uint256 amount, uint256 releasedAmount, bool active)
    {
        (bytes32 id, uint256 s, uint256 t) = _escrow(escrowId, msg.sender, true);
        if (!s.has(Packed.ESCROWED)) return (address(0), address(0), 0, 0, false);
        (, releasedAmount,) = _remaining(id, s, t);
        return (t.requester(), s.provider(), t.amount(), releasedAmount, _isLive(s));
    }

    // ================================================================================================
    // Internals: lifecycle
    // ================================================================================================

    function _storeAgentIds(bytes32 transactionId, uint256 agentId, uint256 requesterAgentId) private {
        if (agentId != 0) _extras[transactionId].agentId = agentId;
        if (requesterAgentId != 0) _extras[transactionId].requesterAgentId = requesterAgentId;
    }

    /// @dev Records `escrowId` as the caller's (the requester's) other name for `transactionId` (older clients
    /// link with their own id). Refused: zero, a transaction id, an alias the requester already linked. Another
    /// requester's use of the same id is no obstacle: it only makes the id contested in `_aliasIndex`.
    function _linkAlias(bytes32 transactionId, bytes32 escrowId) private {
        if (
            escrowId == bytes32(0) || _records[escrowId].status != 0
                || _escrowAliases[msg.sender][escrowId] != bytes32(0)
        ) {
            revert EscrowIdUnavailable(escrowId);
        }
        _escrowAliases[msg.sender][escrowId] = transactionId;
        bytes32 listed = _aliasIndex[escrowId];
        if (listed == bytes32(0)) _aliasIndex[escrowId] = transactionId;
        else if (listed != CONTESTED) _aliasIndex[escrowId] = CONTESTED;
        _extras[transactionId].escrowId = escrowId;
        uint256 nonceWord = _nonces[msg.sender];
        if (nonceWord & LINKED_ALIAS == 0) _nonces[msg.sender] = nonceWord | LINKED_ALIAS;
    }

    function _quote(Record storage record, bytes32 transactionId, uint256 s, bytes calldata proof) private {
        _requireProvider(s);
        _requireBeforeDeadline(s);
        if (proof.length != 0) {
            if (proof.length != 32) revert InvalidProofLength(proof.length);
            bytes32 quoteHash = bytes32(proof);
            if (quoteHash == bytes32(0)) revert ZeroQuoteHash();
            _extras[transactionId].metadata = quoteHash;
        }
        record.status = s.moved(State.QUOTED, block.timestamp, s.window(), 0);
        _emitTransitioned(transactionId, State.INITIATED, State.QUOTED);
    }

    /// @dev IN_PROGRESS -> DELIVERED. The provider may lengthen the requester's window, never shorten it.
    function _deliver(Record storage record, bytes32 transactionId, uint256 s, bytes calldata proof) private {
        // A session is delivered only by `closeSession`, with a voucher for what the provider takes.
        if (s.has(Packed.SIDE) && _extras[transactionId].side.isSession()) {
            revert SessionOperationRefused(transactionId);
        }
        _requireProvider(s);
        _requireBeforeDeadline(s);
        uint256 window = s.window();
        bytes32 proofHash;
        uint256 chosen;
        if (proof.length == 32) {
            chosen = uint256(bytes32(proof));
        } else if (proof.length == 64) {
            chosen = uint256(bytes32(proof[:32]));
            proofHash = bytes32(proof[32:]);
        } else if (proof.length != 0) {
            revert InvalidProofLength(proof.length);
        }
        if (chosen != 0) {
            if (chosen < window || chosen > MAX_DISPUTE_WINDOW) {
                revert DisputeWindowOutOfRange(chosen, window, MAX_DISPUTE_WINDOW);
            }
            window = chosen;
        }
        record.status = s.moved(State.DELIVERED, block.timestamp, window, Packed.DELIVERED);
        _emitTransitioned(transactionId, State.IN_PROGRESS, State.DELIVERED);
        if (proof.length == 64) emit DeliveryProofRecorded(transactionId, proofHash, block.timestamp + window);
    }

    /// @dev DELIVERED -> SETTLED: the requester at any time, anyone once the dispute window is over.
    /// Neither the deadline nor pause applies: delivered work can always be paid.
    function _settle(Record storage record, bytes32 transactionId, uint256 s, uint256 proofLength)
        private
        nonReentrant
    {
        uint256 t = record.terms;
        uint256 windowEnd = s.windowEnd();
        if (msg.sender != t.requester() && block.timestamp <= windowEnd) revert DisputeWindowOpen(windowEnd);
        if (proofLength != 0) revert InvalidProofLength(proofLength);
        (uint256 gross, uint256 paidBefore, uint256 refund) = _settlement(transactionId, s, t);
        record.status = s.moved(State.SETTLED, block.timestamp, _sinceCreation(windowEnd, t), 0);
        _emitTransitioned(transactionId, State.DELIVERED, State.SETTLED);
        _payProvider(transactionId, s.provider(), gross, paidBefore, t.feeBps());
        if (refund != 0) _refund(transactionId, t.requester(), refund);
    }

    /// @dev DELIVERED -> DISPUTED by either party while the window is open. Any proof bytes (a reason or
    /// evidence, as v3 clients send) are accepted and not stored.
    function _dispute(Record storage record, bytes32 transactionId, uint256 s) private {
        uint256 t = record.terms;
        if (msg.sender != s.provider() && msg.sender != t.requester()) revert NotParty(msg.sender);
        uint256 windowEnd = s.windowEnd();
        if (block.timestamp > windowEnd) revert DisputeWindowClosed(windowEnd);
        record.status = s.moved(State.DISPUTED, block.timestamp, _sinceCreation(windowEnd, t), 0);
        _extras[transactionId].disputeInitiator = msg.sender;
        _emitTransitioned(transactionId, State.DELIVERED, State.DISPUTED);
        emit DisputeOpened(transactionId, msg.sender, 0, block.timestamp);
    }

    /// @dev DISPUTED -> SETTLED or CANCELLED by a resolver who is neither party, splitting exactly what remains.
    /// No time limit.
    function _resolve(Record storage record, bytes32 transactionId, uint256 s, State to, bytes calldata proof)
        private
        nonReentrant
    {
        uint256 t = record.terms;
        // A resolver never decides a dispute it is a party to.
        if (!isResolver(msg.sender) || msg.sender == s.provider() || msg.sender == t.requester()) {
            revert NotResolver(msg.sender);
        }
        if (proof.length != 64 && proof.length != 96) revert InvalidProofLength(proof.length);
        uint256 toRequester = uint256(bytes32(proof[:32]));
        uint256 toProvider = uint256(bytes32(proof[32:64]));
        (uint256 left, uint256 paidBefore, uint256 side) = _remaining(transactionId, s, t);
        if (toRequester > left || toProvider != left - toRequester) {
            revert ResolutionMismatch(toRequester, toProvider, left);
        }
        // What a session's provider did not claim is the requester's whatever the dispute is about.
        if (side.isSession() && toProvider > side.claimed()) revert ResolutionAboveClaim(toProvider, side.claimed());
        record.status = s.moved(to, block.timestamp, s.window(), 0);
        _emitTransitioned(transactionId, State.DISPUTED, to);
        emit DisputeResolved(transactionId, msg.sender, toRequester, toProvider);
        if (toProvider != 0) _payProvider(transactionId, s.provider(), toProvider, paidBefore, t.feeBps());
        if (toRequester != 0) _refund(transactionId, t.requester(), toRequester);
    }

    /// @dev -> CANCELLED outside a dispute. Unfunded: the requester. Funded (COMMITTED or IN_PROGRESS): the
    /// provider at any time, the requester once the deadline has passed (or, for a session, once the grace period
    /// after its end request is over); full refund, no penalty.
    function _cancel(Record storage record, bytes32 transactionId, uint256 s, State from, uint256 proofLength)
        private
        nonReentrant
    {
        uint256 t = record.terms;
        address requester = t.requester();
        if (from == State.INITIATED || from == State.QUOTED) {
            if (msg.sender != requester) revert Unauthorized(msg.sender, requester);
            if (proofLength != 0) revert InvalidProofLength(proofLength);
            record.status = s.moved(State.CANCELLED, block.timestamp, s.window(), 0);
            _emitTransitioned(transactionId, from, State.CANCELLED);
            return;
        }
        if (from != State.COMMITTED && from != State.IN_PROGRESS) {
            revert InvalidTransition(transactionId, from, State.CANCELLED);
        }
        if (msg.sender != s.provider()) {
            if (msg.sender != requester) revert NotParty(msg.sender);
            if (block.timestamp <= s.deadline()) _requireSessionEnded(transactionId, s);
        }
        if (proofLength != 0) revert InvalidProofLength(proofLength);
        (uint256 left,,) = _remaining(transactionId, s, t);
        record.status = s.moved(State.CANCELLED, block.timestamp, s.window(), 0);
        _emitTransitioned(transactionId, from, State.CANCELLED);
        if (left != 0) _refund(transactionId, requester, left);
    }

    /// @dev Before the deadline the requester may cancel only a session whose end it asked for, once the
    /// provider's grace period is over.
    function _requireSessionEnded(bytes32 transactionId, uint256 s) private view {
        uint256 side = _side(transactionId, s);
        uint256 closeBy = side.closeBy();
        if (!side.isSession() || closeBy == 0) revert DeadlineNotPassed(s.deadline());
        if (block.timestamp <= closeBy) revert GracePeriodNotOver(closeBy);
    }

    /// @dev What settling a DELIVERED transaction pays: the provider's gross, what milestones paid before, and
    /// the requester's refund (what a session's provider did not claim).
    function _settlement(bytes32 transactionId, uint256 s, uint256 t)
        private
        view
        returns (uint256 gross, uint256 paidBefore, uint256 refund)
    {
        gross = t.amount();
        if (s.has(Packed.SIDE)) {
            uint256 side = _extras[transactionId].side;
            unchecked {
                // milestones release at most the amount; a claim is at most the deposit
                if (side.isSession()) (gross, refund) = (side.claimed(), gross - side.claimed());
                else (gross, paidBefore) = (gross - side, side);
            }
        }
    }
}
