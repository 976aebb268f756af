// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {BlocklistToken} from "../mocks/Tokens.sol";
import {Vm, VM_ADDRESS} from "../../script/Vm.sol";

/// @title HandlerBase
/// @notice The invariant handler's account of the rules and its plumbing: the ghost state (what each
/// transaction and session is, governance, fees, deferred payouts), the booking of every kernel call against it
/// (`_act`, `_book`, `_checkMoves`). The pickers are in `HandlerPicks`. The actions live in `KernelHandler` (lifecycles,
/// governance) and `SessionActions` (sessions).
///
/// Ghost state is the handler's own account of what the rules say must have happened, computed from the
/// inputs it sent (amounts, splits, milestone sizes, top-ups, claims, the vouchers it signed), its own fee
/// schedule, blocklist and governance history, and never from the kernel's events or stored rates. After every
/// accepted call the handler checks each party's token balance and deferred payout, the kernel's balance and its
/// accrued fees against that account; after a refused call, that nothing moved. A broken rule reverts with
/// `RuleBroken` (the campaign fails with the call sequence).
abstract contract HandlerBase {
    Vm internal constant vm = Vm(VM_ADDRESS);

    error RuleBroken(string rule, uint256 expected, uint256 actual);

    uint256 internal constant BPS = 10_000;
    uint256 internal constant DELAY = 2 days; // the mediator delay and the fee change delay
    uint8 internal constant INITIATED = 0;
    uint8 internal constant QUOTED = 1;
    uint8 internal constant COMMITTED = 2;
    uint8 internal constant IN_PROGRESS = 3;
    uint8 internal constant DELIVERED = 4;
    uint8 internal constant SETTLED = 5;
    uint8 internal constant DISPUTED = 6;
    uint8 internal constant CANCELLED = 7;
    uint8 internal constant NONE = 255; // no transaction yet

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
    uint256 internal constant SESSIONS_OPENED = 16;
    uint256 internal constant SESSION_TOP_UPS = 17;
    uint256 internal constant SESSIONS_CLOSED = 18;
    uint256 internal constant SESSIONS_SETTLED = 19; // settled with a refund of the unclaimed rest
    uint256 internal constant SESSIONS_RECLAIMED = 20; // ended by the requester, then cancelled by it
    uint256 internal constant SESSIONS_RESOLVED = 21;
    uint256 internal constant COUNTERS = 22;

    // ---- what a call carries beyond its target state (`Input.kind`) ----
    uint256 internal constant MILESTONE = 1;
    uint256 internal constant QUOTE = 2;
    uint256 internal constant SPLIT = 3;
    uint256 internal constant OPEN = 4;
    uint256 internal constant TOP_UP = 5;
    uint256 internal constant END = 6;
    uint256 internal constant CLOSE_VOUCHED = 7; // the signature is the requester's voucher for these fields
    uint256 internal constant CLOSE_UNVOUCHED = 8; // it is not (another key, another session, tampered, none)

    uint256 internal constant MAX_AMOUNT = 1e15;

    // ---- which session `_pickSession` prefers ----
    uint256 internal constant PICK_LIVE = 0;
    uint256 internal constant PICK_NOT_ENDING = 1; // open, no end asked
    uint256 internal constant PICK_GRACE_OVER = 2; // open, the grace period after its end request over
    uint256 internal constant PICK_STARTED = 3; // in progress
    uint256 internal constant PICK_CLOSED = 4; // delivered

    /// @dev What a transaction is, by the handler's account.
    struct Ghost {
        address requester;
        address provider;
        uint256 amount; // a session's deposit, top-ups included
        uint256 feeBps; // the handler's own fee rate at creation
        uint256 paidGross; // to the provider, fee included (milestones, settlement, resolution)
        uint256 fees;
        uint256 refunded;
        uint256 deadline;
        uint8 state;
        bool funded;
    }

    /// @dev What a session is beyond its transaction, by the handler's account.
    struct Session {
        bool isSession;
        uint256 grace;
        uint256 closeBy; // zero until the requester asks to end
        uint256 claim; // the provider's claim once closed
        uint256 signed; // the highest cumulative amount the requester ever signed a voucher for
        uint256 opened; // the deposit pulled at opening
        uint256 toppedUp; // the top-ups pulled since
    }

    /// @dev The input a call carries beyond its target state (see the kinds above).
    struct Input {
        uint256 kind; // 0 none, or one of the kinds above
        uint256 a; // milestone amount, new amount, to the requester, deposit, top-up, or claim
        uint256 b; // to the provider, grace, or the voucher's cumulative amount
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
    address[3] public requesters; // vm.addr of `requesterKeys`: they sign session vouchers
    uint256[3] internal requesterKeys;
    address[3] public providers;
    address[3] public adminCandidates; // [0] is the admin at deployment
    address[3] public mediatorCandidates; // [2] is providers[0]: approved, it must still never resolve its own
    address[2] public wallets; // where deferred payouts are claimed to
    bytes32[3] public sharedEscrowIds; // aliases older clients might all pick

    bytes32[] public ids;
    mapping(bytes32 id => Ghost) internal _ghosts;
    bytes32[] public sessionIds;
    mapping(bytes32 id => Session) internal _sessions;
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
            requesterKeys[i] = 0xA11CE0 + i;
            requesters[i] = vm.addr(requesterKeys[i]);
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

    function sessionCount() external view returns (uint256) {
        return sessionIds.length;
    }

    function session(bytes32 id) external view returns (Session memory) {
        return _sessions[id];
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
    // Booking: every accepted call checked against the rules, every refused one against nothing moving
    // ================================================================================================

    /// @dev Calls the kernel as `who` on behalf of the transactions `touched`, then checks the money.
    function _act(address who, bytes memory data, bytes32[] memory touched, Input memory input)
        internal
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
    function _book(bytes32 id, address caller, Input memory input, Snapshot memory before, Expected memory e) internal {
        Ghost storage g = _ghosts[id];
        Session storage s = _sessions[id];
        uint8 from = g.state;
        uint8 to = uint8(kernel.getTransaction(id).state);
        if (_terminal(from)) {
            if (to != from) _broken("a terminal state changed", from, to);
            return;
        }
        uint256 left = g.amount - g.paidGross;
        if (to == COMMITTED && from != COMMITTED) {
            // Funding: linkEscrow or, for a session, its opening pulls the deposit.
            if (ghostPaused) _broken("funded while paused", 0, 1);
            if (s.isSession != (input.kind == OPEN)) _broken("a session is funded by its opening alone", 1, 0);
            g.funded = true;
            _add(e.pull, before.who, g.requester, g.amount);
            ++_count[FUNDED];
        } else if (input.kind == MILESTONE && to == IN_PROGRESS) {
            if (s.isSession) _broken("a session pays no milestones", 0, input.a);
            _payProvider(g, input.a, before, e);
            ++_count[MILESTONES];
        } else if (input.kind == QUOTE && to == QUOTED) {
            g.amount = input.a;
            ++_count[QUOTES_ACCEPTED];
        } else if (input.kind == TOP_UP) {
            _bookTopUp(g, s, caller, input.a, to);
            _add(e.pull, before.who, g.requester, input.a);
        } else if (input.kind == END) {
            bool open = to == from && _isOpen(from);
            if (!s.isSession || !open || caller != g.requester || s.closeBy != 0) {
                _broken("endSession by the rules", 0, 1);
            }
            s.closeBy = block.timestamp + s.grace; // the provider may close until then, the requester cancel after
        } else if (from == DISPUTED && to != DISPUTED) {
            if (input.kind != SPLIT || input.a + input.b != left) _broken("resolution splits what remains", left, 0);
            if (!ghostIsResolver(caller, block.timestamp) || caller == g.requester || caller == g.provider) {
                _broken("resolved by someone who may not", 0, 1);
            }
            if (s.isSession && input.b > s.claim) {
                _broken("a session's provider gets at most its claim", s.claim, input.b);
            }
            if (input.b != 0) _payProvider(g, input.b, before, e);
            _refund(g, input.a, before, e);
            ++_count[RESOLVED];
            if (s.isSession) ++_count[SESSIONS_RESOLVED];
        } else if (to == SETTLED && from == DELIVERED) {
            // A session pays its claim and refunds the rest of the deposit; anything else pays what remains.
            uint256 gross = s.isSession ? s.claim : left;
            _payProvider(g, gross, before, e);
            if (s.isSession) _refund(g, left - gross, before, e);
            ++_count[SETTLED_];
            if (s.isSession && left != gross) ++_count[SESSIONS_SETTLED];
        } else if (to == CANCELLED) {
            if (s.isSession) _bookSessionCancel(g, s, caller);
            if (g.funded) {
                _refund(g, left, before, e);
                ++_count[REFUNDED];
            } else {
                ++_count[ABANDONED];
            }
        } else if (to == DELIVERED && from != DELIVERED) {
            bool close = input.kind == CLOSE_VOUCHED || input.kind == CLOSE_UNVOUCHED;
            if (s.isSession != close) _broken("a session, and only a session, is delivered by closeSession", 1, 0);
            if (close) _bookClose(g, s, caller, input);
            ++_count[DELIVERED_];
        } else if (to == DISPUTED && from != DISPUTED) {
            ++_count[DISPUTED_];
        }
        g.state = to;
        if (s.isSession) _checkSession(id, s);
    }

    /// @dev The kernel's view of a session agrees with the handler's account of it.
    function _checkSession(bytes32 id, Session storage s) internal view {
        (bool isSession, uint256 grace, uint256 closeBy, uint256 claimed) = kernel.sessionOf(id);
        if (!isSession) _broken("a session stays a session", 1, 0);
        _eq("session: grace", s.grace, grace);
        _eq("session: end of the grace period", s.closeBy, closeBy);
        _eq("session: claim", s.claim, claimed);
    }

    /// @dev A top-up: the requester's, of an open session, not paused, before the deadline, not ending, non-zero
    /// and within the largest deposit. The deposit grows by it.
    function _bookTopUp(Ghost storage g, Session storage s, address caller, uint256 amount, uint8 to) internal {
        bool open = to == g.state && _isOpen(to);
        if (!s.isSession || !open || caller != g.requester || ghostPaused || block.timestamp > g.deadline) {
            _broken("topUpSession by the rules", 0, 1);
        }
        if (s.closeBy != 0) _broken("topped up while ending", 0, s.closeBy);
        if (amount == 0 || g.amount + amount > MAX_AMOUNT) _broken("top-up within the deposit range", 0, amount);
        g.amount += amount;
        s.toppedUp += amount;
        ++_count[SESSION_TOP_UPS];
    }

    /// @dev A close: the provider's, before the deadline and the end of the grace period, claiming at most the
    /// voucher's cumulative amount and the deposit, under the requester's voucher unless the claim is zero.
    function _bookClose(Ghost storage g, Session storage s, address caller, Input memory input) internal {
        if (caller != g.provider) _broken("closeSession by the provider", 0, 1);
        if (block.timestamp > g.deadline) _broken("closed after the deadline", g.deadline, block.timestamp);
        if (s.closeBy != 0 && block.timestamp > s.closeBy) {
            _broken("closed after the grace", s.closeBy, block.timestamp);
        }
        if (input.a > input.b) _broken("claim above the voucher", input.b, input.a);
        if (input.a > g.amount) _broken("claim above the deposit", g.amount, input.a);
        if (input.a != 0 && input.kind != CLOSE_VOUCHED) _broken("a claim needs the requester's voucher", 0, input.a);
        s.claim = input.a;
        ++_count[SESSIONS_CLOSED];
    }

    /// @dev A session is cancelled by its provider at any time, by its requester once the deadline passed or
    /// the grace period after its end request is over.
    function _bookSessionCancel(Ghost storage g, Session storage s, address caller) internal {
        bool ended = s.closeBy != 0 && block.timestamp > s.closeBy;
        if (caller == g.requester && ended) ++_count[SESSIONS_RECLAIMED];
        if (caller == g.provider || (caller == g.requester && (ended || block.timestamp > g.deadline))) return;
        _broken("a session cancelled by someone who may not", 0, 1);
    }

    function _payProvider(Ghost storage g, uint256 gross, Snapshot memory before, Expected memory e) internal {
        // The fee is charged on the provider's running total at the rate locked at creation.
        uint256 fee = ((g.paidGross + gross) * g.feeBps) / BPS - (g.paidGross * g.feeBps) / BPS;
        g.paidGross += gross;
        g.fees += fee;
        e.fees += fee;
        ghostAccrued += fee;
        _add(e.pay, before.who, g.provider, gross - fee);
    }

    function _refund(Ghost storage g, uint256 amount, Snapshot memory before, Expected memory e) internal {
        g.refunded += amount;
        _add(e.pay, before.who, g.requester, amount);
    }

    /// @dev Each party received what the rules say (or has it deferred when the token refuses it), the
    /// kernel's balance moved by what came in and went out, and fees accrued by the rule.
    function _checkMoves(Snapshot memory before, Expected memory e) internal {
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

    /// @dev A refused call moved no token, accrued no fee and changed no state (nor a session's deposit).
    function _expectNothingMoved(Snapshot memory before, bytes32[] memory touched) internal view {
        _eq("refused: kernel balance unchanged", before.kernelBalance, token.balanceOf(address(kernel)));
        _eq("refused: fees unchanged", before.accrued, kernel.accruedFees());
        for (uint256 i; i < touched.length; ++i) {
            Ghost storage g = _ghosts[touched[i]];
            if (touched[i] == 0 || g.state == NONE) continue; // NONE: a session that was never opened
            IACTPKernel.TransactionView memory v = kernel.getTransaction(touched[i]);
            _eq("refused: state unchanged", g.state, uint8(v.state));
            _eq("refused: amount unchanged", g.amount, v.amount);
        }
    }

    function _snapshot(bytes32[] memory touched) internal view returns (Snapshot memory s) {
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
    function _add(uint256[] memory column, address[] memory who, address a, uint256 amount) internal pure {
        for (uint256 i; i < who.length; ++i) {
            if (who[i] == a) {
                column[i] += amount;
                return;
            }
        }
    }

    /// @dev The terms of a new transaction or session, bounded to what the kernel accepts.
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
    ) internal view returns (Terms memory) {
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

    /// @dev Registers a created transaction: the ACTP id formula with the requester's nonce, never an id the
    /// requester uses as an alias, never while paused.
    function _registerId(address requester, address provider, uint256 amount, bytes32 service, bytes32 id) internal {
        bytes32 expectedId = keccak256(abi.encodePacked(requester, provider, amount, service, ghostNonce[requester]));
        _eq("created id: the ACTP formula with the requester's nonce", uint256(expectedId), uint256(id));
        if (ghostAlias[requester][id] != 0) _broken("created an id its requester uses as an alias", 0, 1);
        if (ghostPaused) _broken("created while paused", 0, 1);
        ++ghostNonce[requester];
        ids.push(id);
        ++_count[CREATED];
    }

    // ================================================================================================
    // Plumbing
    // ================================================================================================

    function _call(address who, bytes memory data) internal returns (bool ok, bytes memory ret) {
        vm.prank(who);
        (ok, ret) = address(kernel).call(data);
    }

    function _one(bytes32 id) internal pure returns (bytes32[] memory one) {
        one = new bytes32[](1);
        one[0] = id;
    }

    function _seenBefore(bytes32[] memory list, uint256 i) internal pure returns (bool) {
        if (list[i] == 0) return true;
        for (uint256 j; j < i; ++j) {
            if (list[j] == list[i]) return true;
        }
        return false;
    }

    function _seenAddress(address[] memory list, uint256 i) internal pure returns (bool) {
        for (uint256 j; j < i; ++j) {
            if (list[j] == list[i]) return true;
        }
        return false;
    }

    function _terminal(uint8 s) internal pure returns (bool) {
        return s == SETTLED || s == CANCELLED;
    }

    function _isOpen(uint8 s) internal pure returns (bool) {
        return s == COMMITTED || s == IN_PROGRESS;
    }

    function _eq(string memory rule, uint256 expected, uint256 actual) internal pure {
        if (expected != actual) revert RuleBroken(rule, expected, actual);
    }

    function _broken(string memory rule, uint256 expected, uint256 actual) internal pure {
        revert RuleBroken(rule, expected, actual);
    }

    /// @dev Refused iff `may` is false, accepted iff true: the handler's prediction of the kernel's answer.
    function _expectAnswer(string memory rule, bool may, bool ok) internal pure {
        if (ok != may) revert RuleBroken(rule, may ? 1 : 0, ok ? 1 : 0);
    }

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }
}
