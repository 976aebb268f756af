// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IACTPKernel} from "./interfaces/IACTPKernel.sol";
import {IEscrowVault} from "./interfaces/IEscrowVault.sol";
import {IEscrowKernel} from "./interfaces/IEscrowKernel.sol";
import {Packed} from "./libraries/Packed.sol";

/// @title EscrowKernel
/// @notice ACTP escrow kernel: holds a requester's payment in escrow until the provider's delivered work is
/// settled, refunded, or split by a resolver. Wire-compatible with ACTP v3 clients and its own escrow vault.
/// @dev It must never strand funds: every funded, non-terminal transaction always has a party who can move it
/// to a terminal state, whatever the clock says, and pause never blocks refunds, settlement or resolution.
///
/// Every external function checks in one order, so clients can predict which error wins: arguments, the
/// transaction's existence, its state, the caller, pause, time, then the proof bytes. Then it writes state,
/// emits, and moves tokens last.
contract EscrowKernel is IEscrowKernel, ReentrancyGuardTransient {
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

    uint256 private constant BPS = 10_000;
    uint256 private constant FEE_SHIFT = 160;
    uint256 private constant PAUSED = 1 << 176;
    uint256 private constant RESOLVES_FROM_SHIFT = 160;
    uint256 private constant LINKED_ALIAS = 1 << 255;
    bytes32 private constant CONTESTED = bytes32(type(uint256).max);

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
        uint256 released;
    }

    IERC20 private immutable _TOKEN;

    mapping(bytes32 transactionId => Record) private _records;
    mapping(bytes32 transactionId => Extras) private _extras;
    /// @dev Escrow ids linked in place of a transaction id (older clients), in the linking requester's name:
    /// nobody else can take or shadow a requester's alias.
    mapping(address requester => mapping(bytes32 escrowId => bytes32 transactionId)) private _escrowAliases;
    /// @dev For views that get no requester: the one transaction linked under an alias, or CONTESTED once more
    /// than one requester linked it.
    mapping(bytes32 escrowId => bytes32 transactionId) private _aliasIndex;
    /// @dev nonce (bits 0..254) | LINKED_ALIAS (255): set once the requester linked an alias, so creation
    /// checks the requester's aliases only then.
    mapping(address requester => uint256) private _nonces;
    mapping(address mediator => uint256 activeFrom) private _mediators;
    mapping(address payee => uint256) private _deferred;

    /// @dev fee recipient (bits 0..159) | accrued fees (bits 160..255). Settlement reads and writes it once.
    uint256 private _feeAccount;
    /// @dev pauser (bits 0..159; zero: the admin) | platform fee bps (160..175) | paused (176). Creation reads
    /// it once.
    uint256 private _config;
    /// @dev scheduled fee bps (0..15) | executeAfter (16..).
    uint256 private _pendingFee;
    /// @dev admin (bits 0..159) | the time from which it may resolve disputes (160..): a new admin waits the
    /// mediator delay, as a newly approved mediator does.
    uint256 private _adminAccount;
    address private _pendingAdmin;

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
        transactionId = _create(provider, amount, deadline, disputeWindow, serviceHash, State.INITIATED);
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
        transactionId = _create(provider, amount, deadline, disputeWindow, serviceHash, State.COMMITTED);
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

            (uint256 gross, uint256 paidBefore) = _remaining(id, s, t);
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
        (uint256 left, uint256 paidBefore) = _remaining(transactionId, s, t);
        if (amount == 0 || amount > left) revert InvalidMilestone(amount, left);

        _extras[transactionId].released = paidBefore + amount;
        record.status = s.moved(State.IN_PROGRESS, block.timestamp, s.window(), Packed.MILESTONES);
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
    // Fees and governance
    // ================================================================================================

    /// @inheritdoc IEscrowKernel
    function collectFees() external nonReentrant {
        uint256 account = _feeAccount;
        uint256 amount = account >> FEE_SHIFT;
        if (amount == 0) revert NoFeesAccrued();
        address recipient = address(uint160(account));
        _feeAccount = uint256(uint160(recipient));
        emit FeesCollected(recipient, amount);
        _TOKEN.safeTransfer(recipient, amount);
    }

    /// @inheritdoc IEscrowKernel
    function claimDeferred(address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert ZeroAddress();
        amount = _deferred[msg.sender];
        if (amount == 0) revert NothingToClaim();
        delete _deferred[msg.sender];
        emit DeferredPaymentClaimed(msg.sender, to, amount);
        _TOKEN.safeTransfer(to, amount);
    }

    /// @inheritdoc IEscrowKernel
    function setFeeRecipient(address recipient) external onlyAdmin {
        if (recipient == address(0)) revert ZeroAddress();
        uint256 account = _feeAccount;
        _feeAccount = (account & ~Packed.ADDRESS_MASK) | uint256(uint160(recipient));
        emit FeeRecipientUpdated(address(uint160(account)), recipient);
    }

    /// @inheritdoc IEscrowKernel
    function scheduleFeeChange(uint16 feeBps) external onlyAdmin {
        if (feeBps > MAX_PLATFORM_FEE_BPS) revert FeeAboveCap(feeBps, MAX_PLATFORM_FEE_BPS);
        uint256 executeAfter = block.timestamp + FEE_CHANGE_DELAY;
        _pendingFee = uint256(feeBps) | (executeAfter << 16);
        emit PlatformFeeChangeScheduled(feeBps, executeAfter);
    }

    /// @inheritdoc IEscrowKernel
    function cancelFeeChange() external onlyAdmin {
        uint256 pending = _pendingFee;
        if (pending == 0) revert NoPendingFeeChange();
        delete _pendingFee;
        emit PlatformFeeChangeCancelled(uint16(pending));
    }

    /// @inheritdoc IEscrowKernel
    function executeFeeChange() external {
        uint256 pending = _pendingFee;
        if (pending == 0) revert NoPendingFeeChange();
        uint256 executeAfter = pending >> 16;
        if (block.timestamp < executeAfter) revert FeeChangeNotReady(executeAfter);
        uint256 config = _config;
        uint16 oldFee = uint16(config >> FEE_SHIFT);
        uint16 newFee = uint16(pending);
        _config = (config & ~(uint256(0xffff) << FEE_SHIFT)) | (uint256(newFee) << FEE_SHIFT);
        delete _pendingFee;
        emit PlatformFeeUpdated(oldFee, newFee);
    }

    /// @inheritdoc IEscrowKernel
    function setMediator(address mediator, bool approved) external onlyAdmin {
        if (mediator == address(0)) revert ZeroAddress();
        uint256 activeFrom = _mediators[mediator];
        if (approved) {
            // Re-approving keeps the original start: the delay cannot be reset or skipped.
            if (activeFrom == 0) activeFrom = block.timestamp + MEDIATOR_DELAY;
        } else {
            activeFrom = 0;
        }
        _mediators[mediator] = activeFrom;
        emit MediatorUpdated(mediator, activeFrom);
    }

    /// @inheritdoc IEscrowKernel
    function setPauser(address newPauser) external onlyAdmin {
        if (newPauser == address(0)) revert ZeroAddress();
        uint256 config = _config;
        _config = (config & ~Packed.ADDRESS_MASK) | uint256(uint160(newPauser));
        emit PauserUpdated(_pauserOf(config, msg.sender), newPauser);
    }

    /// @inheritdoc IEscrowKernel
    function pause() external {
        uint256 config = _requirePauser();
        _config = config | PAUSED;
        emit KernelPaused(msg.sender, block.timestamp);
    }

    /// @inheritdoc IEscrowKernel
    function unpause() external {
        uint256 config = _requirePauser();
        _config = config & ~PAUSED;
        emit KernelUnpaused(msg.sender, block.timestamp);
    }

    /// @inheritdoc IEscrowKernel
    function transferAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroAddress();
        _pendingAdmin = newAdmin;
        emit AdminTransferStarted(msg.sender, newAdmin);
    }

    /// @inheritdoc IEscrowKernel
    function acceptAdmin() external {
        if (msg.sender != _pendingAdmin) revert NotPendingAdmin(msg.sender);
        address oldAdmin = _currentAdmin();
        uint256 config = _config;
        address oldPauser = _pauserOf(config, oldAdmin);
        _adminAccount = uint256(uint160(msg.sender)) | ((block.timestamp + MEDIATOR_DELAY) << RESOLVES_FROM_SHIFT);
        delete _pendingAdmin;
        // The pause power moves with the role: whoever the old admin named (or the old admin itself) loses it.
        _config = config & ~Packed.ADDRESS_MASK;
        emit AdminTransferred(oldAdmin, msg.sender);
        emit PauserUpdated(oldPauser, msg.sender);
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
        if (_isLive(s)) (left,) = _remaining(id, s, t);
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
        (escrowAmount,) = _remaining(id, s, t);
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
        (, releasedAmount) = _remaining(id, s, t);
        return (t.requester(), s.provider(), t.amount(), releasedAmount, _isLive(s));
    }

    /// @inheritdoc IEscrowKernel
    function isResolver(address account) public view returns (bool) {
        uint256 adminAccount = _adminAccount;
        if (account == address(uint160(adminAccount)) && block.timestamp >= adminAccount >> RESOLVES_FROM_SHIFT) {
            return true;
        }
        uint256 activeFrom = _mediators[account];
        return activeFrom != 0 && block.timestamp >= activeFrom;
    }

    /// @inheritdoc IEscrowKernel
    function mediatorActiveFrom(address mediator) external view returns (uint256) {
        return _mediators[mediator];
    }

    /// @inheritdoc IEscrowKernel
    function deferredOf(address account) external view returns (uint256) {
        return _deferred[account];
    }

    /// @inheritdoc IEscrowKernel
    function accruedFees() external view returns (uint256) {
        return _feeAccount >> FEE_SHIFT;
    }

    /// @inheritdoc IEscrowKernel
    function feeRecipient() external view returns (address) {
        return address(uint160(_feeAccount));
    }

    /// @inheritdoc IEscrowKernel
    function pendingFeeChange() external view returns (uint16 feeBps, uint256 executeAfter) {
        uint256 pending = _pendingFee;
        return (uint16(pending), pending >> 16);
    }

    /// @inheritdoc IEscrowKernel
    function admin() external view returns (address) {
        return _currentAdmin();
    }

    /// @inheritdoc IEscrowKernel
    function pendingAdmin() external view returns (address) {
        return _pendingAdmin;
    }

    /// @inheritdoc IEscrowKernel
    function pauser() external view returns (address) {
        return _pauserOf(_config, _currentAdmin());
    }

    // ================================================================================================
    // Internals: lifecycle
    // ================================================================================================

    /// @dev Validates and stores a new transaction whose requester is the caller; returns its id.
    function _create(
        address provider,
        uint256 amount,
        uint256 deadline,
        uint256 disputeWindow,
        bytes32 serviceHash,
        State initial
    ) private returns (bytes32 transactionId) {
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
        uint256 flags = initial == State.COMMITTED ? Packed.ESCROWED : 0;
        record.status = Packed.status(provider, initial, flags, block.timestamp, deadline, disputeWindow);
        record.terms = Packed.terms(msg.sender, amount, uint16(config >> FEE_SHIFT), block.timestamp);
        if (serviceHash != bytes32(0)) record.serviceHash = serviceHash;
    }

    /// @dev keccak256(abi.encodePacked(msg.sender, provider, amount, serviceHash, nonce)), the ACTP id, hashed in
    /// memory past the free memory pointer (not moved: nothing is allocated).
    function _transactionId(address provider, uint256 amount, bytes32 serviceHash, uint256 nonce)
        private
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
        (uint256 gross, uint256 paidBefore) = _remaining(transactionId, s, t);
        record.status = s.moved(State.SETTLED, block.timestamp, _sinceCreation(windowEnd, t), 0);
        _emitTransitioned(transactionId, State.DELIVERED, State.SETTLED);
        _payProvider(transactionId, s.provider(), gross, paidBefore, t.feeBps());
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
        (uint256 left, uint256 paidBefore) = _remaining(transactionId, s, t);
        if (toRequester > left || toProvider != left - toRequester) {
            revert ResolutionMismatch(toRequester, toProvider, left);
        }
        record.status = s.moved(to, block.timestamp, s.window(), 0);
        _emitTransitioned(transactionId, State.DISPUTED, to);
        emit DisputeResolved(transactionId, msg.sender, toRequester, toProvider);
        if (toProvider != 0) _payProvider(transactionId, s.provider(), toProvider, paidBefore, t.feeBps());
        if (toRequester != 0) _refund(transactionId, t.requester(), toRequester);
    }

    /// @dev -> CANCELLED outside a dispute. Unfunded: the requester. Funded (COMMITTED or IN_PROGRESS): the
    /// provider at any time, the requester once the deadline has passed; full refund, no penalty.
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
            if (block.timestamp <= s.deadline()) revert DeadlineNotPassed(s.deadline());
        }
        if (proofLength != 0) revert InvalidProofLength(proofLength);
        (uint256 left,) = _remaining(transactionId, s, t);
        record.status = s.moved(State.CANCELLED, block.timestamp, s.window(), 0);
        _emitTransitioned(transactionId, from, State.CANCELLED);
        if (left != 0) _refund(transactionId, requester, left);
    }

    // ================================================================================================
    // Internals: events (hot ones encoded by hand in scratch space: no memory expansion, no encoder)
    // ================================================================================================

    /// @dev `emit StateTransitioned(transactionId, from, to, msg.sender, block.timestamp)`.
    function _emitTransitioned(bytes32 transactionId, State from, State to) private {
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
    ) private {
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
    function _emitLinked(bytes32 transactionId, bytes32 escrowId, uint256 amount) private {
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
    function _emitPayout(bytes32 topic, bytes32 transactionId, address recipient, uint256 amount) private {
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
        private
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

    function _refund(bytes32 transactionId, address requester, uint256 amount) private {
        _emitPayout(EscrowRefunded.selector, transactionId, requester, amount);
        _send(requester, amount);
    }

    /// @dev Pays `to`, or holds the amount for `to` to claim elsewhere when the token refuses the transfer
    /// (a blocklisted address): a payee the token rejects can never block settlement, refund or resolution.
    function _send(address to, uint256 amount) private {
        if (!_TOKEN.trySafeTransfer(to, amount)) {
            _deferred[to] += amount;
            emit PaymentDeferred(to, amount);
        }
    }

    /// @dev Pulls exactly `amount` from `from`; a token that delivers a different amount is refused.
    function _pull(address from, uint256 amount) private {
        uint256 before = _ownBalance();
        _TOKEN.safeTransferFrom(from, address(this), amount);
        uint256 afterwards = _ownBalance();
        if (afterwards != before + amount) {
            revert TransferAmountMismatch(amount, afterwards > before ? afterwards - before : 0);
        }
    }

    /// @dev `_TOKEN.balanceOf(address(this))` as a plain staticcall in scratch space: bubbles a revert, and
    /// reverts on short return data, as the high-level call does.
    function _ownBalance() private view returns (uint256 held) {
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

    function _load(Record storage record, bytes32 transactionId) private view returns (uint256 s) {
        s = record.status;
        if (s == 0) revert TransactionNotFound(transactionId);
    }

    /// @dev What a transaction's escrow still holds, and what milestones have paid before.
    function _remaining(bytes32 transactionId, uint256 s, uint256 t)
        private
        view
        returns (uint256 left, uint256 paidBefore)
    {
        if (s.has(Packed.MILESTONES)) paidBefore = _extras[transactionId].released;
        unchecked {
            left = t.amount() - paidBefore; // milestones never release more than the escrow holds
        }
    }

    /// @dev Resolves an escrow id to a record for `requester` (the caller, for views that name no requester):
    /// its own alias first, then a transaction id, then (only when `anyAlias`) an alias a single requester
    /// linked. A missing record reads as zeros.
    function _escrow(bytes32 escrowId, address requester, bool anyAlias)
        private
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
    function _isLive(uint256 s) private pure returns (bool) {
        State st = s.state();
        return s.has(Packed.ESCROWED) && st != State.SETTLED && st != State.CANCELLED;
    }

    function _windowEnd(uint256 s, uint256 t) private pure returns (uint256) {
        return s.state() == State.DELIVERED ? s.updated() + s.window() : t.createdAt() + s.window();
    }

    function _feeOn(uint256 paidBefore, uint256 gross, uint256 feeBps) private pure returns (uint256 fee) {
        unchecked {
            // paidBefore + gross <= 1e15 and feeBps < 2^10: every product is below 2^60; the fee on a larger
            // running total is never smaller.
            fee = ((paidBefore + gross) * feeBps) / BPS - (paidBefore * feeBps) / BPS;
        }
    }

    /// @dev A window end as stored after DELIVERED: its distance from creation (below 2^26, see `Packed`).
    function _sinceCreation(uint256 windowEnd, uint256 t) private pure returns (uint256 distance) {
        unchecked {
            distance = windowEnd - t.createdAt(); // the window ends after delivery, which is after creation
        }
    }

    function _requireProvider(uint256 s) private view {
        if (msg.sender != s.provider()) revert Unauthorized(msg.sender, s.provider());
    }

    function _requireBeforeDeadline(uint256 s) private view {
        if (block.timestamp > s.deadline()) revert DeadlinePassed(s.deadline());
    }

    function _currentAdmin() private view returns (address) {
        return address(uint160(_adminAccount));
    }

    /// @dev The pauser named in `config`, or `admin_` when none is.
    function _pauserOf(uint256 config, address admin_) private pure returns (address pauser_) {
        pauser_ = address(uint160(config));
        if (pauser_ == address(0)) pauser_ = admin_;
    }

    function _requirePauser() private view returns (uint256 config) {
        config = _config;
        if (msg.sender != address(uint160(config)) && msg.sender != _currentAdmin()) revert NotPauser(msg.sender);
    }
}
