// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {BlocklistToken} from "../mocks/Tokens.sol";
import {Vm, VM_ADDRESS} from "../../script/Vm.sol";

/// @title KernelHandler
/// @notice Drives random lifecycles of many transactions by several actors: funding (also under escrow-id
/// aliases shared among requesters), quotes, milestones, settlement (one by one and in batches), disputes and
/// their resolution by the admin or mediators, refunds, payouts to addresses the token refuses (a blocklist)
/// and their later claims, fee changes, pause, mediator approval and admin transfers, with time jumps. Every
/// kernel call is a low-level call: a refused move is part of the game, never a failure.
///
/// Ghost state is the handler's own account of what the rules say must have happened, computed from the
/// inputs it sent (amounts, splits, milestone sizes), its own fee schedule, blocklist and governance history,
/// and never from the kernel's events or stored rates. After every accepted call the handler checks each
/// party's token balance and deferred payout, the kernel's balance and its accrued fees against that account;
/// after a refused call, that nothing moved. A broken rule reverts with `RuleBroken` (the campaign fails with
/// the call sequence).
contract KernelHandler {
    Vm private constant vm = Vm(VM_ADDRESS);

    error RuleBroken(string rule, uint256 expected, uint256 actual);

    uint256 private constant BPS = 10_000;
    uint256 private constant DELAY = 2 days; // the mediator delay and the fee change delay
    uint8 private constant INITIATED = 0;
    uint8 private constant QUOTED = 1;
    uint8 private constant COMMITTED = 2;
    uint8 private constant IN_PROGRESS = 3;
    uint8 private constant DELIVERED = 4;
    uint8 private constant SETTLED = 5;
    uint8 private constant DISPUTED = 6;
    uint8 private constant CANCELLED = 7;
    uint8 private constant NONE = 255; // no transaction yet

    // ---- depth counters, per run (see `COUNTER_NAMES`) ----
    uint256 internal constant CALLS = 0;
    uint256 internal constant CREATED = 1;
    uint256 internal constant FUNDED = 2;
    uint256 internal constant DELIVERED_ = 3;
    uint256 internal constant SETTLED_ = 4;
    uint256 internal constant DISPUTED_ = 5;
    uint256 internal constant RESOLVED = 6;
    uint256 internal constant REFUNDED = 7;
    uint256 internal constant ABANDONED = 8;
    uint256 internal constant DEFERRED = 9;
    uint256 internal constant CLAIMED = 10;
    uint256 internal constant MILESTONES = 11;
    uint256 internal constant QUOTES_ACCEPTED = 12;
    uint256 internal constant ALIASES_LINKED = 13;
    uint256 internal constant ADMIN_TRANSFERS = 14;
    uint256 internal constant FEE_CHANGES = 15;
    uint256 internal constant COUNTERS = 16;

    /// @dev What a transaction is, by the handler's account.
    struct Ghost {
        address requester;
        address provider;
        uint256 amount;
        uint256 feeBps; // the handler's own fee rate at creation
        uint256 paidGross; // to the provider, fee included (milestones, settlement, resolution)
        uint256 fees;
        uint256 refunded;
        uint256 deadline;
        uint8 state;
        bool funded;
    }

    /// @dev The input a call carries beyond its target state: a milestone, a new quote, a resolution split.
    struct Input {
        uint256 kind; // 0 none, 1 milestone, 2 accepted quote, 3 resolution split
        uint256 a; // milestone amount, new amount, or to the requester
        uint256 b; // to the provider
    }

    /// @dev Balances and deferred payouts of the parties a call may pay, before it.
    struct Snapshot {
        address[] who;
        uint256[] balance;
        uint256[] deferred;
        uint256 kernelBalance;
        uint256 accrued;
    }

    /// @dev What a call must move by the rules: payouts and pulls per party, and fees.
    struct Expected {
        uint256[] pay;
        uint256[] pull;
        uint256 fees;
    }

    struct AliasRecord {
        address requester;
        bytes32 escrowId;
        bytes32 id;
    }

    IEscrowKernel public immutable kernel;
    BlocklistToken public immutable token;
    address public immutable feeRecipient;
    address public constant STRANGER = address(0x5757);
    address[3] public requesters;
    address[3] public providers;
    address[3] public adminCandidates; // [0] is the admin at deployment
    address[3] public mediatorCandidates; // [2] is providers[0]: approved, it must still never resolve its own
    address[2] public wallets; // where deferred payouts are claimed to
    bytes32[3] public sharedEscrowIds; // aliases older clients might all pick

    bytes32[] public ids;
    mapping(bytes32 id => Ghost) internal _ghosts;
    AliasRecord[] internal _aliases;
    mapping(address requester => mapping(bytes32 escrowId => bytes32 id)) public ghostAlias;
    mapping(address requester => uint256) public ghostNonce;

    uint256 public ghostFeeBps;
    uint256 public ghostPendingFeeBps;
    uint256 public ghostFeeExecuteAfter; // 0: nothing scheduled
    uint256 public ghostAccrued;
    mapping(address payee => uint256) public ghostDeferred;
    mapping(address => bool) public ghostBlocked;
    uint256 public ghostMinted;
    address public ghostAdmin;
    address public ghostPendingAdmin;
    uint256 public ghostAdminResolvesFrom;
    address public ghostPauser; // zero: the admin alone
    bool public ghostPaused;
    mapping(address => uint256) public ghostMediatorFrom;

    uint256[COUNTERS] internal _count;

    /// @dev Counts handler calls (the invariant runner's depth unit) for the depth figures.
    modifier counted() {
        ++_count[CALLS];
        _;
    }

    constructor(IEscrowKernel kernel_, BlocklistToken token_, address admin_, uint256 feeBps_) {
        (kernel, token, feeRecipient) = (kernel_, token_, kernel_.feeRecipient());
        (ghostAdmin, ghostFeeBps) = (admin_, feeBps_);
        adminCandidates = [admin_, address(0xAD02), address(0xAD03)];
        wallets = [address(0x4000), address(0x4001)];
        sharedEscrowIds = [keccak256("escrow-1"), keccak256("escrow-2"), keccak256("escrow-3")];
        for (uint256 i; i < 3; ++i) {
            requesters[i] = address(uint160(0x1000 + i));
            providers[i] = address(uint160(0x2000 + i));
            token.mint(requesters[i], 1e18);
            ghostMinted += 1e18;
            vm.prank(requesters[i]);
            token.approve(address(kernel), type(uint256).max);
        }
        mediatorCandidates = [address(0x3000), address(0x3001), providers[0]];
    }

    // ================================================================================================
    // Views for the invariants
    // ================================================================================================

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    function ghost(bytes32 id) external view returns (Ghost memory) {
        return _ghosts[id];
    }

    /// @notice What the escrow of `id` holds by the handler's account.
    function ghostRemaining(bytes32 id) public view returns (uint256) {
        Ghost storage g = _ghosts[id];
        return g.funded && !_terminal(g.state) ? g.amount - g.paidGross : 0;
    }

    function aliasCount() external view returns (uint256) {
        return _aliases.length;
    }

    function aliasAt(uint256 i) external view returns (AliasRecord memory) {
        return _aliases[i];
    }

    function counts() external view returns (uint256[COUNTERS] memory) {
        return _count;
    }

    /// @notice Every address the handler ever pays or mints to (for conservation of the token supply).
    function holders() external view returns (address[] memory h) {
        h = new address[](16);
        for (uint256 i; i < 3; ++i) {
            (h[i], h[3 + i], h[6 + i]) = (requesters[i], providers[i], adminCandidates[i]);
        }
        (h[9], h[10], h[11], h[12]) = (mediatorCandidates[0], mediatorCandidates[1], wallets[0], wallets[1]);
        (h[13], h[14], h[15]) = (feeRecipient, STRANGER, address(kernel));
    }

    /// @notice Whether `who` may resolve disputes at `at` by the handler's account of governance.
    function ghostIsResolver(address who, uint256 at) public view returns (bool) {
        if (who == ghostAdmin && at >= ghostAdminResolvesFrom) return true;
        uint256 from = ghostMediatorFrom[who];
        return from != 0 && at >= from;
    }

    // ================================================================================================
    // Actions
    // ================================================================================================

    function create(uint256 seed, uint256 amount, uint256 ahead, uint256 window, bool andFund) external counted {
        _create(_terms(requesters[seed % 3], providers[(seed >> 8) % 3], amount, ahead, window, bytes32(seed), andFund));
    }

    /// @notice linkEscrow, usually with the transaction id, sometimes with an older client's escrow id that
    /// other requesters may have linked too, sometimes with an unusable one.
    function link(uint256 pick, uint256 actor, uint256 escrowChoice) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        _fund(id, _actor(id, actor), _escrowIdFor(id, escrowChoice));
    }

    /// @notice Usually the next step of the transaction's lifecycle by the party that takes it; one time in
    /// five any target state by anyone (`chaos`).
    function transition(uint256 pick, uint256 actor, uint8 to, uint256 extra) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        if (extra % 5 != 0) return _step(id, extra);
        _transitionTo(id, _actor(id, actor), to % 8, extra);
    }

    /// @notice One to three next lifecycle steps of one live transaction (weights the runs toward deep
    /// lifecycles; registered several times in the target selectors).
    function advance(uint256 pick, uint256 extra) external counted {
        uint256 steps = 1 + (extra >> 200) % 3;
        for (uint256 i; i < steps; ++i) {
            bytes32 id = _pickLive(pick);
            if (id == 0) break;
            _step(id, uint256(keccak256(abi.encode(extra, i))));
        }
    }

    function milestone(uint256 pick, uint256 actor, uint256 amount) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        _milestone(id, _actor(id, actor), _bound(amount, 0, ghostRemaining(id) + 1));
    }

    function acceptQuote(uint256 pick, uint256 actor, uint256 newAmount) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        _acceptQuote(id, _actor(id, actor), _bound(newAmount, 40_000, 2e12));
    }

    function releaseEscrow(uint256 pick, uint256 actor) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        _act(_actor(id, actor), abi.encodeCall(IACTPKernel.releaseEscrow, (id)), _one(id), Input(0, 0, 0));
    }

    /// @notice A resolution of a dispute by the admin, a mediator (possibly a party) or anyone.
    function resolve(uint256 pick, uint256 who, uint256 split) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        address[6] memory candidates = [
            ghostAdmin,
            mediatorCandidates[0],
            mediatorCandidates[1],
            mediatorCandidates[2],
            _ghosts[id].requester,
            STRANGER
        ];
        _resolve(id, candidates[who % 6], split);
    }

    function settleBatch(uint256 pick, uint256 count, uint256 actor) external counted {
        count = _bound(count, 1, 8);
        bytes32[] memory batch = new bytes32[](count);
        for (uint256 i; i < count; ++i) {
            unchecked {
                batch[i] = _pick(pick + i * 7919); // wrapping is fine: any index will do
            }
        }
        if (batch[0] == 0) return;
        address caller = actor % 2 == 0 ? STRANGER : requesters[actor % 3];
        _act(caller, abi.encodeCall(IEscrowKernel.settleBatch, (batch)), batch, Input(0, 0, 0));
    }

    /// @notice A payee with a deferred payout claims it to one of its other wallets (sometimes someone with
    /// nothing to claim tries).
    function claimDeferred(uint256 who, uint256 wallet) external counted {
        address payee = _payeeWithDeferred(who);
        address to = wallets[wallet % 2];
        uint256 owed = ghostDeferred[payee];
        uint256 before = token.balanceOf(to);
        uint256 kernelBefore = token.balanceOf(address(kernel));
        (bool ok,) = _call(payee, abi.encodeCall(IEscrowKernel.claimDeferred, (to)));
        if (ok != (owed != 0 && !ghostBlocked[to])) _broken("claim succeeds iff something is owed", owed, ok ? 1 : 0);
        if (!ok) return;
        delete ghostDeferred[payee];
        _eq("claim: paid to the wallet", owed, token.balanceOf(to) - before);
        _eq("claim: left the kernel", owed, kernelBefore - token.balanceOf(address(kernel)));
        ++_count[CLAIMED];
    }

    /// @notice Blocks or unblocks a provider (often) or a requester (rarely) at the token, as USDC can.
    function setBlocked(uint256 who, bool on) external counted {
        address a = who % 5 == 0 ? requesters[(who >> 8) % 3] : providers[(who >> 8) % 3];
        token.setBlocked(a, on);
        ghostBlocked[a] = on;
    }

    function setMediator(uint256 who, bool approve) external counted {
        address m = mediatorCandidates[who % 3];
        address caller = who % 7 == 0 ? STRANGER : ghostAdmin;
        (bool ok,) = _call(caller, abi.encodeCall(IEscrowKernel.setMediator, (m, approve)));
        if (ok != (caller == ghostAdmin)) _broken("setMediator: admin only", 1, ok ? 1 : 0);
        if (!ok) return;
        if (!approve) ghostMediatorFrom[m] = 0;
        else if (ghostMediatorFrom[m] == 0) ghostMediatorFrom[m] = block.timestamp + DELAY;
    }

    /// @notice Starts an admin transfer, or completes the pending one (usually by the rightful caller).
    function changeAdmin(uint256 who, bool accept) external counted {
        if (accept) {
            address caller = ghostPendingAdmin != address(0) && who % 4 != 0 ? ghostPendingAdmin : _anyone(who);
            (bool ok,) = _call(caller, abi.encodeCall(IEscrowKernel.acceptAdmin, ()));
            bool rightful = caller == ghostPendingAdmin && caller != address(0);
            if (ok != rightful) _broken("acceptAdmin: pending admin only", rightful ? 1 : 0, ok ? 1 : 0);
            if (!ok) return;
            (ghostAdmin, ghostPendingAdmin, ghostPauser) = (caller, address(0), address(0));
            ghostAdminResolvesFrom = block.timestamp + DELAY;
            ++_count[ADMIN_TRANSFERS];
        } else {
            address next = adminCandidates[who % 3];
            address caller = who % 5 == 0 ? _anyone(who >> 8) : ghostAdmin;
            (bool ok,) = _call(caller, abi.encodeCall(IEscrowKernel.transferAdmin, (next)));
            if (ok != (caller == ghostAdmin)) _broken("transferAdmin: admin only", 1, ok ? 1 : 0);
            if (ok) ghostPendingAdmin = next;
        }
    }

    function setPauser(uint256 who) external counted {
        address pauser_ = _anyone(who);
        (bool ok,) = _call(ghostAdmin, abi.encodeCall(IEscrowKernel.setPauser, (pauser_)));
        if (!ok) _broken("setPauser by the admin", 1, 0);
        ghostPauser = pauser_;
    }

    /// @notice Pause or unpause, usually by the admin, sometimes by anyone (an old admin, the pauser).
    function togglePause(uint256 r) external counted {
        bool on = r % 6 == 0; // paused about a sixth of the time
        address caller = (r >> 8) % 3 == 0 ? _anyone(r >> 16) : ghostAdmin;
        (bool ok,) =
            _call(caller, on ? abi.encodeCall(IEscrowKernel.pause, ()) : abi.encodeCall(IEscrowKernel.unpause, ()));
        bool may = caller == ghostAdmin || (ghostPauser != address(0) && caller == ghostPauser);
        if (ok != may) _broken("pause: the admin or its pauser only", may ? 1 : 0, ok ? 1 : 0);
        if (ok) ghostPaused = on;
    }

    function changeFee(uint16 bps, uint256 mode) external counted {
        mode %= 5; // schedule, cancel, or (three times in five) execute
        if (mode == 0) {
            bps = uint16(_bound(bps, 0, 500));
            (bool ok,) = _call(ghostAdmin, abi.encodeCall(IEscrowKernel.scheduleFeeChange, (bps)));
            if (!ok) _broken("scheduleFeeChange by the admin", 1, 0);
            (ghostPendingFeeBps, ghostFeeExecuteAfter) = (bps, block.timestamp + DELAY);
        } else if (mode == 1) {
            (bool ok,) = _call(ghostAdmin, abi.encodeCall(IEscrowKernel.cancelFeeChange, ()));
            if (ok != (ghostFeeExecuteAfter != 0)) _broken("cancelFeeChange iff scheduled", 1, ok ? 1 : 0);
            ghostFeeExecuteAfter = 0;
        } else {
            (bool ok,) = _call(STRANGER, abi.encodeCall(IEscrowKernel.executeFeeChange, ()));
            bool due = ghostFeeExecuteAfter != 0 && block.timestamp >= ghostFeeExecuteAfter;
            if (ok != due) _broken("executeFeeChange iff due", due ? 1 : 0, ok ? 1 : 0);
            if (!ok) return;
            (ghostFeeBps, ghostFeeExecuteAfter) = (ghostPendingFeeBps, 0);
            ++_count[FEE_CHANGES];
        }
    }

    function collectFees() external counted {
        uint256 owed = ghostAccrued;
        uint256 before = token.balanceOf(feeRecipient);
        (bool ok,) = _call(STRANGER, abi.encodeCall(IEscrowKernel.collectFees, ()));
        if (ok != (owed != 0)) _broken("collectFees iff fees accrued", owed, ok ? 1 : 0);
        if (!ok) return;
        ghostAccrued = 0;
        _eq("collected fees", owed, token.balanceOf(feeRecipient) - before);
    }

    /// @notice Links an alias equal to the id the requester would get next with the same terms, then tries to
    /// create exactly that transaction: the creation must be refused once the alias is linked.
    function aliasNextId(uint256 pick) external counted {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        Ghost storage g = _ghosts[id];
        bytes32 service = keccak256("next");
        bytes32 next = keccak256(abi.encodePacked(g.requester, g.provider, g.amount, service, ghostNonce[g.requester]));
        _fund(id, g.requester, next);
        _create(_terms(g.requester, g.provider, g.amount, 1 days, 1 hours, service, false));
    }

    function warp(uint256 secs) external counted {
        // mostly short steps; one in eight jumps far past deadlines, windows and delays
        vm.warp(block.timestamp + (secs % 8 == 0 ? _bound(secs, 0, 40 days) : _bound(secs, 0, 6 hours)));
    }

    // ================================================================================================
    // Moves
    // ================================================================================================

    struct Terms {
        address requester;
        address provider;
        uint256 amount;
        uint256 deadline;
        uint256 window;
        bytes32 service;
        bool andFund;
    }

    function _terms(
        address requester,
        address provider,
        uint256 amount,
        uint256 ahead,
        uint256 window,
        bytes32 service,
        bool andFund
    ) private view returns (Terms memory) {
        return Terms(
            requester,
            provider,
            _bound(amount, 50_000, 1e13),
            block.timestamp + _bound(ahead, 1, 60 days),
            _bound(window, 1 hours, 30 days),
            service,
            andFund
        );
    }

    function _create(Terms memory t) private {
        bytes memory data = t.andFund
            ? abi.encodeCall(IEscrowKernel.createAndFund, (t.provider, t.amount, t.deadline, t.window, t.service, 0, 0))
            : abi.encodeCall(
                IACTPKernel.createTransaction,
                (t.provider, t.requester, t.amount, t.deadline, t.window, t.service, 0, 0)
            );
        uint256 requesterBefore = token.balanceOf(t.requester);
        uint256 kernelBefore = token.balanceOf(address(kernel));
        (bool ok, bytes memory ret) = _call(t.requester, data);
        if (!ok) return;
        _bookCreation(t, abi.decode(ret, (bytes32)));
        uint256 pulled = t.andFund ? t.amount : 0;
        _eq("creation pulls the amount from the requester", pulled, requesterBefore - token.balanceOf(t.requester));
        _eq("creation: kernel receives it", pulled, token.balanceOf(address(kernel)) - kernelBefore);
    }

    function _bookCreation(Terms memory t, bytes32 id) private {
        bytes32 expectedId =
            keccak256(abi.encodePacked(t.requester, t.provider, t.amount, t.service, ghostNonce[t.requester]));
        _eq("created id: the ACTP formula with the requester's nonce", uint256(expectedId), uint256(id));
        if (ghostAlias[t.requester][id] != 0) _broken("created an id its requester uses as an alias", 0, 1);
        if (ghostPaused) _broken("created while paused", 0, 1);
        ++ghostNonce[t.requester];
        ids.push(id);
        _ghosts[id] = Ghost(
            t.requester,
            t.provider,
            t.amount,
            ghostFeeBps,
            0,
            0,
            0,
            t.deadline,
            t.andFund ? COMMITTED : INITIATED,
            t.andFund
        );
        _eq("fee rate locked at creation", ghostFeeBps, kernel.getTransaction(id).platformFeeBpsLocked);
        ++_count[CREATED];
        if (t.andFund) ++_count[FUNDED];
    }

    function _fund(bytes32 id, address caller, bytes32 escrowId) private {
        (bool ok,) = _act(
            caller, abi.encodeCall(IACTPKernel.linkEscrow, (id, address(kernel), escrowId)), _one(id), Input(0, 0, 0)
        );
        if (!ok || escrowId == id) return;
        Ghost storage g = _ghosts[id];
        if (escrowId == 0 || _ghosts[escrowId].requester != address(0) || ghostAlias[g.requester][escrowId] != 0) {
            _broken("linked an unusable escrow id", 0, 1);
        }
        ghostAlias[g.requester][escrowId] = id;
        _aliases.push(AliasRecord(g.requester, escrowId, id));
        ++_count[ALIASES_LINKED];
    }

    function _milestone(bytes32 id, address caller, uint256 amount) private {
        _act(caller, abi.encodeCall(IACTPKernel.releaseMilestone, (id, amount)), _one(id), Input(1, amount, 0));
    }

    function _acceptQuote(bytes32 id, address caller, uint256 newAmount) private {
        _act(caller, abi.encodeCall(IACTPKernel.acceptQuote, (id, newAmount)), _one(id), Input(2, newAmount, 0));
    }

    /// @dev A split of what remains (mostly exact, sometimes off by one) to SETTLED or CANCELLED.
    function _resolve(bytes32 id, address caller, uint256 r) private {
        uint256 left = ghostRemaining(id);
        uint256 toRequester = _bound(r, 0, left);
        uint256 toProvider = r % 7 == 0 ? left - toRequester + 1 : left - toRequester;
        uint8 to = (r >> 16) % 2 == 0 ? SETTLED : CANCELLED;
        _act(
            caller,
            abi.encodeCall(
                IACTPKernel.transitionState, (id, IACTPKernel.State(to), abi.encode(toRequester, toProvider))
            ),
            _one(id),
            Input(3, toRequester, toProvider)
        );
    }

    function _transitionTo(bytes32 id, address caller, uint8 to, uint256 extra) private {
        if (to == COMMITTED) return _fund(id, caller, id);
        Ghost storage g = _ghosts[id];
        if (g.state == DISPUTED && (to == SETTLED || to == CANCELLED)) {
            return _resolve(id, caller, extra ^ (uint256(to == SETTLED ? 0 : 1) << 16));
        }
        bytes memory proof;
        if (to == DELIVERED && extra % 3 != 0) {
            uint256 window = (extra >> 4) % 8 == 0 ? _bound(extra, 0, 31 days) : _bound(extra >> 12, 1 hours, 30 days);
            proof = extra % 3 == 1 ? abi.encode(window) : abi.encode(window, bytes32(extra));
        }
        _act(
            caller,
            abi.encodeCall(IACTPKernel.transitionState, (id, IACTPKernel.State(to), proof)),
            _one(id),
            Input(0, 0, 0)
        );
    }

    /// @dev The step that usually comes next in `id`'s lifecycle, by the party that takes it.
    function _step(bytes32 id, uint256 r) private {
        Ghost storage g = _ghosts[id];
        uint8 s = g.state;
        uint256 roll = (r >> 8) % 100;
        bool either = (r >> 16) % 2 == 0;
        if (block.timestamp > g.deadline && s <= IN_PROGRESS && roll < 80) {
            // Past the deadline only an exit is left: the requester abandons or reclaims, the provider refunds.
            return _transitionTo(id, s <= QUOTED || either ? g.requester : g.provider, CANCELLED, r);
        }
        if (s == INITIATED) {
            if (roll < 20) return _transitionTo(id, g.provider, QUOTED, r);
            if (roll < 27) return _transitionTo(id, g.requester, CANCELLED, r);
            return _fund(id, g.requester, roll < 40 ? _escrowIdFor(id, r >> 24) : id);
        }
        if (s == QUOTED) {
            if (roll < 40) return _acceptQuote(id, g.requester, _bound(r >> 24, 50_000, 2e12));
            if (roll < 50) return _transitionTo(id, g.requester, CANCELLED, r);
            return _fund(id, g.requester, id);
        }
        if (s == COMMITTED) {
            if (roll < 12) return _transitionTo(id, either ? g.provider : g.requester, CANCELLED, r);
            return _transitionTo(id, g.provider, IN_PROGRESS, r);
        }
        if (s == IN_PROGRESS) {
            uint256 left = ghostRemaining(id);
            if (roll < 15 && left > 1) return _milestone(id, g.requester, _bound(r >> 24, 1, left - 1));
            if (roll < 25) return _transitionTo(id, either ? g.provider : g.requester, CANCELLED, r);
            return _transitionTo(id, g.provider, DELIVERED, r);
        }
        if (s == DELIVERED) {
            if (roll < 30) return _transitionTo(id, either ? g.provider : g.requester, DISPUTED, r);
            if (roll < 40) {
                _act(
                    either ? STRANGER : g.requester,
                    abi.encodeCall(IACTPKernel.releaseEscrow, (id)),
                    _one(id),
                    Input(0, 0, 0)
                );
                return;
            }
            return _transitionTo(id, either ? STRANGER : g.requester, SETTLED, r);
        }
        if (s == DISPUTED) return _resolve(id, _someResolver(id, r), r);
        _transitionTo(id, g.requester, SETTLED, r); // terminal: must be refused
    }

    // ================================================================================================
    // Booking: every accepted call checked against the rules, every refused one against nothing moving
    // ================================================================================================

    /// @dev Calls the kernel as `who` on behalf of the transactions `touched`, then checks the money.
    function _act(address who, bytes memory data, bytes32[] memory touched, Input memory input)
        private
        returns (bool ok, bytes memory ret)
    {
        Snapshot memory before = _snapshot(touched);
        (ok, ret) = _call(who, data);
        if (!ok) {
            _expectNothingMoved(before, touched);
            return (ok, ret);
        }
        Expected memory e = Expected(new uint256[](before.who.length), new uint256[](before.who.length), 0);
        for (uint256 i; i < touched.length; ++i) {
            if (_seenBefore(touched, i)) continue;
            _book(touched[i], who, input, before, e);
        }
        _checkMoves(before, e);
    }

    /// @dev The rules for what a move of `id` pays, from the handler's account of it; updates that account.
    function _book(bytes32 id, address caller, Input memory input, Snapshot memory before, Expected memory e) private {
        Ghost storage g = _ghosts[id];
        uint8 from = g.state;
        uint8 to = uint8(kernel.getTransaction(id).state);
        if (_terminal(from)) {
            if (to != from) _broken("a terminal state changed", from, to);
            return;
        }
        uint256 left = g.amount - g.paidGross;
        if (to == COMMITTED && from != COMMITTED) {
            if (ghostPaused) _broken("funded while paused", 0, 1);
            g.funded = true;
            _add(e.pull, before.who, g.requester, g.amount);
            ++_count[FUNDED];
        } else if (input.kind == 1 && to == IN_PROGRESS) {
            _payProvider(g, input.a, before, e);
            ++_count[MILESTONES];
        } else if (input.kind == 2 && to == QUOTED) {
            g.amount = input.a;
            ++_count[QUOTES_ACCEPTED];
        } else if (from == DISPUTED && to != DISPUTED) {
            if (input.kind != 3 || input.a + input.b != left) _broken("resolution splits what remains", left, 0);
            if (!ghostIsResolver(caller, block.timestamp) || caller == g.requester || caller == g.provider) {
                _broken("resolved by someone who may not", 0, 1);
            }
            if (input.b != 0) _payProvider(g, input.b, before, e);
            _refund(g, input.a, before, e);
            ++_count[RESOLVED];
        } else if (to == SETTLED && from == DELIVERED) {
            _payProvider(g, left, before, e);
            ++_count[SETTLED_];
        } else if (to == CANCELLED) {
            if (g.funded) {
                _refund(g, left, before, e);
                ++_count[REFUNDED];
            } else {
                ++_count[ABANDONED];
            }
        } else if (to == DELIVERED && from != DELIVERED) {
            ++_count[DELIVERED_];
        } else if (to == DISPUTED && from != DISPUTED) {
            ++_count[DISPUTED_];
        }
        g.state = to;
    }

    function _payProvider(Ghost storage g, uint256 gross, Snapshot memory before, Expected memory e) private {
        // The fee is charged on the provider's running total at the rate locked at creation.
        uint256 fee = ((g.paidGross + gross) * g.feeBps) / BPS - (g.paidGross * g.feeBps) / BPS;
        g.paidGross += gross;
        g.fees += fee;
        e.fees += fee;
        ghostAccrued += fee;
        _add(e.pay, before.who, g.provider, gross - fee);
    }

    function _refund(Ghost storage g, uint256 amount, Snapshot memory before, Expected memory e) private {
        g.refunded += amount;
        _add(e.pay, before.who, g.requester, amount);
    }

    /// @dev Each party received what the rules say (or has it deferred when the token refuses it), the
    /// kernel's balance moved by what came in and went out, and fees accrued by the rule.
    function _checkMoves(Snapshot memory before, Expected memory e) private {
        uint256 pulled;
        uint256 paid;
        for (uint256 i; i < before.who.length; ++i) {
            address a = before.who[i];
            if (a == address(0) || _seenAddress(before.who, i)) continue;
            uint256 balance = token.balanceOf(a);
            uint256 deferredNow = kernel.deferredOf(a);
            pulled += e.pull[i];
            if (ghostBlocked[a] && e.pay[i] != 0) {
                _eq("a refused payout is deferred", before.deferred[i] + e.pay[i], deferredNow);
                _eq("a refused payout moves no token", before.balance[i], balance + e.pull[i]);
                ghostDeferred[a] += e.pay[i];
                ++_count[DEFERRED];
            } else {
                _eq("payout and pull of a party", before.balance[i] + e.pay[i], balance + e.pull[i]);
                _eq("nothing deferred", before.deferred[i], deferredNow);
                paid += e.pay[i];
            }
        }
        _eq("kernel balance: in minus out", before.kernelBalance + pulled, token.balanceOf(address(kernel)) + paid);
        _eq("fees accrued by the rule", before.accrued + e.fees, kernel.accruedFees());
    }

    /// @dev A refused call moved no token, accrued no fee and changed no state.
    function _expectNothingMoved(Snapshot memory before, bytes32[] memory touched) private view {
        _eq("refused: kernel balance unchanged", before.kernelBalance, token.balanceOf(address(kernel)));
        _eq("refused: fees unchanged", before.accrued, kernel.accruedFees());
        for (uint256 i; i < touched.length; ++i) {
            if (touched[i] == 0) continue;
            _eq("refused: state unchanged", _ghosts[touched[i]].state, uint8(kernel.getTransaction(touched[i]).state));
        }
    }

    function _snapshot(bytes32[] memory touched) private view returns (Snapshot memory s) {
        uint256 n = touched.length * 2;
        s.who = new address[](n);
        s.balance = new uint256[](n);
        s.deferred = new uint256[](n);
        for (uint256 i; i < touched.length; ++i) {
            Ghost storage g = _ghosts[touched[i]];
            (s.who[2 * i], s.who[2 * i + 1]) = (g.requester, g.provider);
        }
        for (uint256 i; i < n; ++i) {
            if (s.who[i] == address(0)) continue;
            s.balance[i] = token.balanceOf(s.who[i]);
            s.deferred[i] = kernel.deferredOf(s.who[i]);
        }
        s.kernelBalance = token.balanceOf(address(kernel));
        s.accrued = kernel.accruedFees();
    }

    /// @dev Books `amount` for `a` at its first slot in `who` (a party may appear in several slots).
    function _add(uint256[] memory column, address[] memory who, address a, uint256 amount) private pure {
        for (uint256 i; i < who.length; ++i) {
            if (who[i] == a) {
                column[i] += amount;
                return;
            }
        }
    }

    // ================================================================================================
    // Plumbing
    // ================================================================================================

    function _call(address who, bytes memory data) private returns (bool ok, bytes memory ret) {
        vm.prank(who);
        (ok, ret) = address(kernel).call(data);
    }

    /// @dev A transaction, preferring live ones: from a random start, the first that is not terminal (one
    /// pick in eight takes whatever is there, terminal included).
    function _pick(uint256 pick) private view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        if ((pick >> 128) % 8 == 0) return ids[start];
        bytes32 live = _pickLive(pick);
        return live == 0 ? ids[start] : live;
    }

    function _pickLive(uint256 pick) private view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        for (uint256 i; i < n; ++i) {
            bytes32 id = ids[(start + i) % n];
            if (!_terminal(_ghosts[id].state)) return id;
        }
        return 0;
    }

    /// @dev Mostly the party the rules name, sometimes anyone else.
    function _actor(bytes32 id, uint256 actor) private view returns (address) {
        uint256 r = actor % 10;
        if (r < 4) return _ghosts[id].requester;
        if (r < 8) return _ghosts[id].provider;
        if (r < 9) return ghostAdmin;
        return STRANGER;
    }

    function _anyone(uint256 r) private view returns (address) {
        address[6] memory all =
            [adminCandidates[0], adminCandidates[1], adminCandidates[2], providers[r % 3], requesters[r % 3], STRANGER];
        return all[(r >> 4) % 6];
    }

    /// @dev The transaction id (usually), a shared older-client escrow id, or an unusable one.
    function _escrowIdFor(bytes32 id, uint256 r) private view returns (bytes32) {
        uint256 c = r % 10;
        if (c < 5) return id;
        if (c < 9) return sharedEscrowIds[(r >> 4) % 3];
        return (r >> 4) % 2 == 0 ? bytes32(0) : ids[(r >> 8) % ids.length];
    }

    /// @dev A resolver for `id`'s dispute: usually one that may resolve it now (the admin or an active
    /// mediator who is not a party), sometimes any candidate.
    function _someResolver(bytes32 id, uint256 r) private view returns (address) {
        Ghost storage g = _ghosts[id];
        if ((r >> 40) % 5 != 0) {
            if (ghostIsResolver(ghostAdmin, block.timestamp)) return ghostAdmin;
            for (uint256 i; i < 3; ++i) {
                address m = mediatorCandidates[i];
                if (ghostIsResolver(m, block.timestamp) && m != g.provider && m != g.requester) return m;
            }
        }
        address[4] memory any = [ghostAdmin, mediatorCandidates[0], mediatorCandidates[2], g.provider];
        return any[(r >> 48) % 4];
    }

    /// @dev A payee with a deferred payout, if there is one (else some provider).
    function _payeeWithDeferred(uint256 r) private view returns (address) {
        for (uint256 i; i < 6; ++i) {
            address a = i < 3 ? providers[(r % 3 + i) % 3] : requesters[(r % 3 + i) % 3];
            if (ghostDeferred[a] != 0 && (r >> 8) % 4 != 0) return a;
        }
        return providers[r % 3];
    }

    function _one(bytes32 id) private pure returns (bytes32[] memory one) {
        one = new bytes32[](1);
        one[0] = id;
    }

    function _seenBefore(bytes32[] memory list, uint256 i) private pure returns (bool) {
        if (list[i] == 0) return true;
        for (uint256 j; j < i; ++j) {
            if (list[j] == list[i]) return true;
        }
        return false;
    }

    function _seenAddress(address[] memory list, uint256 i) private pure returns (bool) {
        for (uint256 j; j < i; ++j) {
            if (list[j] == list[i]) return true;
        }
        return false;
    }

    function _terminal(uint8 s) private pure returns (bool) {
        return s == SETTLED || s == CANCELLED;
    }

    function _eq(string memory rule, uint256 expected, uint256 actual) private pure {
        if (expected != actual) revert RuleBroken(rule, expected, actual);
    }

    function _broken(string memory rule, uint256 expected, uint256 actual) private pure {
        revert RuleBroken(rule, expected, actual);
    }

    function _bound(uint256 x, uint256 min, uint256 max) private pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }
}
