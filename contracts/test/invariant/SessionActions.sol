// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {IKernelSessions} from "../../src/interfaces/IKernelSessions.sol";
import {HandlerPicks} from "./HandlerPicks.sol";

/// @title SessionActions
/// @notice The handler's session actions: opening (sometimes with a grace period out of range, or while paused),
/// top-ups (sometimes by the wrong party, of nothing, beyond the largest deposit, while ending, paused or late),
/// closes with vouchers the requesters sign here (sometimes claiming above the voucher or the deposit, signed by
/// another key, for another session, tampered with, or unsigned), end requests, reclaims before and after the
/// grace period, batches of sessions to settle, v3 delivery and milestones on sessions, and session operations on
/// ordinary transactions. Each predicts the kernel's answer from the handler's account (accepted iff the rules
/// allow) and books the money as `HandlerBase._book` does; `_sessionStep` drives a session through its lifecycle
/// for `KernelHandler`'s steps, and `_resolveSession` splits a disputed session's deposit.
abstract contract SessionActions is HandlerPicks {
    uint256 internal constant MIN_GRACE = 10 minutes;
    uint256 internal constant MAX_GRACE = 7 days;
    uint256 internal constant STRANGER_KEY = 0xBAD5; // signs vouchers for sessions it has nothing to do with
    uint256 private constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    bytes32 private constant VOUCHER_TYPEHASH =
        keccak256("SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)");

    /// @dev A voucher as the provider presents it when closing.
    struct Voucher {
        uint256 claim;
        uint256 cumulative;
        bytes32 requestHash;
        uint256 expiresAt;
        bytes signature;
        bool vouched; // the requester's valid signature over exactly these fields
    }

    /// @dev A lifecycle move (`KernelHandler`): to `to` as `caller`, resolving a dispute through `_resolve`.
    function _transitionTo(bytes32 id, address caller, uint8 to, uint256 extra) internal virtual;

    // ================================================================================================
    // Actions
    // ================================================================================================

    /// @notice A requester opens a session with a provider; three times in twenty with a grace period out of
    /// range or raw (refused, as is every opening while paused or by a blocked requester).
    function openSession(uint256 seed, uint256 deposit, uint256 ahead, uint256 window, uint256 grace) external counted {
        Terms memory t =
            _terms(requesters[seed % 3], providers[(seed >> 8) % 3], deposit, ahead, window, bytes32(seed), true);
        _open(t, _grace(uint256(keccak256(abi.encode(seed, grace))), grace));
    }

    /// @notice Mostly the requester tops up a live session (one time in eight anyone; one in ten an ordinary
    /// transaction instead; sometimes nothing, up to the largest deposit, or one unit beyond it).
    function topUpSession(uint256 pick, uint256 actor, uint256 amount) external counted {
        bytes32 id = (pick >> 160) % 10 == 9 ? _pickOrdinary(pick) : _pickSession(pick, PICK_LIVE);
        if (id == 0) return;
        _topUp(id, (actor >> 8) % 8 == 7 ? _actor(id, actor) : _ghosts[id].requester, _topUpAmount(id, amount));
    }

    /// @notice Mostly the provider closes a session in progress with a voucher (see `_voucherFor`); one time in
    /// eight anyone, one in ten an ordinary transaction instead.
    function closeSession(uint256 pick, uint256 actor, uint256 r) external counted {
        bytes32 id = (pick >> 160) % 10 == 9 ? _pickOrdinary(pick) : _pickSession(pick, PICK_STARTED);
        if (id == 0) return;
        _close(id, (actor >> 8) % 8 == 7 ? _actor(id, actor) : _ghosts[id].provider, r);
    }

    /// @notice Mostly the requester asks to end a live session (one time in eight anyone, one in ten an ordinary
    /// transaction instead); one time in three it then waits out the grace period and reclaims the deposit at
    /// once (the provider did not close in time).
    function endSession(uint256 pick, uint256 actor) external counted {
        bytes32 id = (pick >> 160) % 10 == 9 ? _pickOrdinary(pick) : _pickSession(pick, PICK_NOT_ENDING);
        if (id == 0) return;
        Ghost storage g = _ghosts[id];
        _end(id, (actor >> 8) % 8 == 7 ? _actor(id, actor) : g.requester);
        uint256 closeBy = _sessions[id].closeBy;
        if ((actor >> 16) % 3 != 0 || closeBy == 0 || !_isOpen(g.state)) return;
        if (closeBy >= block.timestamp) vm.warp(closeBy + 1); // at most the longest grace period ahead
        _reclaim(id, g.requester);
    }

    /// @notice Mostly the requester cancels a session whose end it asked for (preferably once the grace period
    /// is over); sometimes the provider, sometimes a stranger. Three times in four the caller first waits until
    /// the grace period is over (one time in four only until its last second: the cancellation is then refused).
    function reclaimSession(uint256 pick, uint256 actor) external counted {
        bytes32 id = _pickSession(pick, (actor >> 8) % 4 == 3 ? PICK_LIVE : PICK_GRACE_OVER);
        if (id == 0) return;
        uint256 closeBy = _sessions[id].closeBy;
        if ((actor >> 16) % 4 != 3 && closeBy >= block.timestamp && _isOpen(_ghosts[id].state)) {
            vm.warp((actor >> 18) % 4 == 3 ? closeBy : closeBy + 1); // at most the longest grace period ahead
        }
        uint256 a = actor % 8;
        _reclaim(id, a == 7 ? STRANGER : a == 6 ? _ghosts[id].provider : _ghosts[id].requester);
    }

    /// @notice settleBatch over delivered sessions, one more transaction of any kind, and the first again.
    function settleSessions(uint256 pick, uint256 count, uint256 actor) external counted {
        count = _bound(count, 1, 6);
        bytes32[] memory batch = new bytes32[](count + 2);
        for (uint256 i; i < count; ++i) {
            unchecked {
                batch[i] = _pickSession(pick + i * 7919, PICK_CLOSED); // wrapping is fine: any index will do
            }
        }
        if (batch[0] == 0) return;
        (batch[count], batch[count + 1]) = (_pick(pick >> 32), batch[0]);
        address caller = actor % 3 == 2 ? STRANGER : _ghosts[batch[0]].requester;
        _act(caller, abi.encodeCall(IEscrowKernel.settleBatch, (batch)), batch, Input(0, 0, 0));
    }

    /// @notice v3 delivery by the provider, or a milestone by the requester, of a session: both refused.
    function misuseSession(uint256 pick, uint256 r) external counted {
        bytes32 id = _pickSession(pick, PICK_STARTED);
        if (id == 0) return;
        Ghost storage g = _ghosts[id];
        bool ok;
        if (r % 2 == 0) {
            uint256 mode = (r >> 8) % 3;
            bytes memory proof = mode == 0 ? bytes("") : mode == 1 ? abi.encode(30 days) : abi.encode(30 days, r);
            (ok,) = _act(
                g.provider,
                abi.encodeCall(IACTPKernel.transitionState, (id, IACTPKernel.State.DELIVERED, proof)),
                _one(id),
                Input(0, 0, 0)
            );
        } else {
            uint256 amount = _bound(r >> 8, 1, g.amount);
            (ok,) = _act(
                g.requester,
                abi.encodeCall(IACTPKernel.releaseMilestone, (id, amount)),
                _one(id),
                Input(MILESTONE, amount, 0)
            );
        }
        if (ok) _broken("a session refuses v3 delivery and milestones", 0, 1);
    }

    // ================================================================================================
    // Moves
    // ================================================================================================

    /// @dev Opens under a provisional account (state NONE) kept only if the kernel opens the session: accepted
    /// iff the grace period is in range, the kernel is not paused and the deposit can be pulled.
    function _open(Terms memory t, uint256 grace) internal {
        bytes32 id = keccak256(abi.encodePacked(t.requester, t.provider, t.amount, t.service, ghostNonce[t.requester]));
        _ghosts[id] = Ghost(t.requester, t.provider, t.amount, ghostFeeBps, 0, 0, 0, t.deadline, NONE, false);
        _sessions[id] = Session(true, grace, 0, 0, 0, t.amount, 0);
        bool may = grace >= MIN_GRACE && grace <= MAX_GRACE && !ghostPaused && !ghostBlocked[t.requester]
            && ghostAlias[t.requester][id] == 0 && token.balanceOf(t.requester) >= t.amount;
        (bool ok, bytes memory ret) = _act(
            t.requester,
            abi.encodeCall(IKernelSessions.openSession, (t.provider, t.amount, t.deadline, t.window, t.service, grace)),
            _one(id),
            Input(OPEN, t.amount, grace)
        );
        _expectAnswer("openSession: the grace in range, not paused, the deposit pulled", may, ok);
        if (!ok) {
            delete _ghosts[id];
            delete _sessions[id];
            return;
        }
        _registerId(t.requester, t.provider, t.amount, t.service, abi.decode(ret, (bytes32)));
        _eq("fee rate locked at opening", ghostFeeBps, kernel.getTransaction(id).platformFeeBpsLocked);
        sessionIds.push(id);
        ++_count[SESSIONS_OPENED];
    }

    function _topUp(bytes32 id, address caller, uint256 amount) internal {
        Ghost storage g = _ghosts[id];
        Session storage s = _sessions[id];
        bool may = s.isSession && _isOpen(g.state) && caller == g.requester && !ghostPaused
            && block.timestamp <= g.deadline && s.closeBy == 0 && amount != 0 && amount <= MAX_AMOUNT - g.amount
            && !ghostBlocked[caller] && token.balanceOf(caller) >= amount;
        (bool ok,) =
            _act(caller, abi.encodeCall(IKernelSessions.topUpSession, (id, amount)), _one(id), Input(TOP_UP, amount, 0));
        _expectAnswer("topUpSession: the requester's, open, not ending, paused or late, within the range", may, ok);
    }

    function _end(bytes32 id, address caller) internal {
        Ghost storage g = _ghosts[id];
        Session storage s = _sessions[id];
        bool may = s.isSession && _isOpen(g.state) && caller == g.requester && s.closeBy == 0;
        (bool ok,) = _act(caller, abi.encodeCall(IKernelSessions.endSession, (id)), _one(id), Input(END, 0, 0));
        _expectAnswer("endSession: the requester's, open, once", may, ok);
    }

    function _close(bytes32 id, address caller, uint256 r) internal {
        Ghost storage g = _ghosts[id];
        Session storage s = _sessions[id];
        Voucher memory v = _voucherFor(id, r);
        bool may = s.isSession && g.state == IN_PROGRESS && caller == g.provider && block.timestamp <= g.deadline
            && (s.closeBy == 0 || block.timestamp <= s.closeBy) && v.claim <= v.cumulative && v.claim <= g.amount
            && (v.claim == 0 || v.vouched);
        (bool ok,) = _act(
            caller,
            abi.encodeCall(
                IKernelSessions.closeSession,
                (id, v.claim, v.cumulative, v.requestHash, v.expiresAt, v.signature, bytes32(r >> 128))
            ),
            _one(id),
            Input(v.vouched ? CLOSE_VOUCHED : CLOSE_UNVOUCHED, v.claim, v.cumulative)
        );
        _expectAnswer("closeSession: the provider's, in time, claim <= voucher and deposit, signed", may, ok);
    }

    /// @dev A session's cancellation: the provider at any time, the requester once the deadline passed or the
    /// grace period after its end request is over.
    function _reclaim(bytes32 id, address caller) internal {
        Ghost storage g = _ghosts[id];
        Session storage s = _sessions[id];
        bool late = block.timestamp > g.deadline || (s.closeBy != 0 && block.timestamp > s.closeBy);
        bool may = _isOpen(g.state) && (caller == g.provider || (caller == g.requester && late));
        (bool ok,) = _act(
            caller,
            abi.encodeCall(IACTPKernel.transitionState, (id, IACTPKernel.State.CANCELLED, bytes(""))),
            _one(id),
            Input(0, 0, 0)
        );
        _expectAnswer("a session is cancelled by its provider, by its requester once late or ended", may, ok);
    }

    /// @dev A split of a disputed session's deposit: mostly at most the claim to the provider, one in eight above
    /// it, one in nine a unit more than the deposit in all; accepted iff by a resolver who is not a party, whole
    /// and at most the claim to the provider.
    function _resolveSession(bytes32 id, address caller, uint256 r) internal {
        Ghost storage g = _ghosts[id];
        uint256 claim = _sessions[id].claim;
        uint256 left = ghostRemaining(id);
        uint256 toProvider = r % 8 == 0 && claim < left
            ? _bound(r >> 24, claim + 1, left)
            : _bound(r >> 24, 0, claim < left ? claim : left);
        uint256 toRequester = left - toProvider + (r % 9 == 0 ? 1 : 0);
        uint8 to = (r >> 16) % 2 == 0 ? SETTLED : CANCELLED;
        bool may = g.state == DISPUTED && ghostIsResolver(caller, block.timestamp) && caller != g.requester
            && caller != g.provider && toProvider <= claim && toRequester + toProvider == left;
        (bool ok,) = _act(
            caller,
            abi.encodeCall(
                IACTPKernel.transitionState, (id, IACTPKernel.State(to), abi.encode(toRequester, toProvider))
            ),
            _one(id),
            Input(SPLIT, toRequester, toProvider)
        );
        _expectAnswer("a session's dispute: a resolver's whole split, at most the claim to the provider", may, ok);
    }

    /// @dev The step that usually comes next for a session. Open: once the grace period after an end request
    /// is over the requester reclaims (or the provider tries a late close); during it the requester tries to
    /// reclaim too early 40% of the time (the provider does not always close in time); else top-ups, an end
    /// request, a cancellation, the provider's start and its close with a voucher. Closed: disputed more often
    /// than an ordinary delivery (its split has a rule of its own), else settled with the refund.
    function _sessionStep(bytes32 id, uint256 r) internal {
        Ghost storage g = _ghosts[id];
        uint256 closeBy = _sessions[id].closeBy;
        uint256 roll = (r >> 8) % 100;
        bool either = (r >> 16) % 2 == 0;
        if (g.state == DELIVERED) {
            if (roll < 35) return _transitionTo(id, either ? g.provider : g.requester, DISPUTED, r);
            if (roll < 45) {
                address caller = either ? STRANGER : g.requester;
                _act(caller, abi.encodeCall(IACTPKernel.releaseEscrow, (id)), _one(id), Input(0, 0, 0));
                return;
            }
            return _transitionTo(id, either ? STRANGER : g.requester, SETTLED, r);
        }
        if (closeBy != 0) {
            if (block.timestamp > closeBy) return roll < 80 ? _reclaim(id, g.requester) : _close(id, g.provider, r);
            if (roll < 40) return _reclaim(id, g.requester);
        }
        if (roll < 10) return _topUp(id, g.requester, _bound(r >> 24, 1, 5e12));
        if (roll < 20 && closeBy == 0) return _end(id, g.requester);
        if (roll < 26) return _reclaim(id, either ? g.provider : g.requester);
        if (g.state == COMMITTED) return _transitionTo(id, g.provider, IN_PROGRESS, r);
        _close(id, g.provider, r);
    }

    // ================================================================================================
    // Vouchers
    // ================================================================================================

    /// @dev What a provider presents: 26 times in 32 its requester's voucher for a random cumulative amount
    /// (up to a quarter above the deposit) with a claim up to what it allows; else a claim one unit above the
    /// voucher, one unit above the deposit, a voucher signed by another key, one for another session, no
    /// signature (with a zero claim half the time), or a tampered one.
    function _voucherFor(bytes32 id, uint256 r) internal returns (Voucher memory v) {
        uint256 deposit = _ghosts[id].amount;
        uint256 key = _keyOf(_ghosts[id].requester);
        v.requestHash = keccak256(abi.encode("request", r >> 128));
        v.expiresAt = uint64(r >> 192); // the request's expiry: a voucher itself never expires
        v.cumulative = _bound(r >> 8, 1, deposit + deposit / 4);
        uint256 cap = v.cumulative < deposit ? v.cumulative : deposit;
        v.claim = (r >> 4) % 3 == 0 ? cap : _bound(r >> 72, 0, cap);
        v.vouched = true;
        uint256 mode = r % 32; // 0..25 valid
        bytes32 signedFor = id;
        if (mode == 26) {
            v.cumulative = _bound(r >> 8, 1, deposit - 1);
            v.claim = v.cumulative + 1;
        } else if (mode == 27) {
            v.cumulative = deposit + 1 + _bound(r >> 8, 0, deposit);
            v.claim = deposit + 1;
        } else if (mode == 28) {
            key = (r >> 40) % 3 == 0 ? STRANGER_KEY : requesterKeys[(_indexOf(key) + 1 + (r >> 42) % 2) % 3];
            v.vouched = false;
        } else if (mode == 29) {
            signedFor = _pickSession(r >> 40, PICK_LIVE);
            if (signedFor == id || signedFor == 0) signedFor = keccak256(abi.encode(id, "another session"));
            v.vouched = false;
        } else if (mode == 30) {
            if ((r >> 40) % 2 == 0) v.claim = 0;
            v.vouched = false;
            return v; // no signature
        }
        v.signature = _sign(key, signedFor, v.cumulative, v.requestHash, v.expiresAt);
        if (mode == 31) {
            v.vouched = false;
            uint256 how = (r >> 40) % 3;
            if (how == 0) v.cumulative += 1; // presented for more than it was signed for
            else if (how == 1) v.requestHash = ~v.requestHash; // for another request
            else v.signature = _highS(v.signature); // the same signature with a high s
        }
    }

    /// @dev The requester's voucher signature: the handler's account of the highest cumulative amount each
    /// session's requester signed rises with it (whether the provider ever presents it or not).
    function _sign(uint256 key, bytes32 id, uint256 cumulative, bytes32 requestHash, uint256 expiresAt)
        internal
        returns (bytes memory)
    {
        Session storage s = _sessions[id];
        if (s.isSession && vm.addr(key) == _ghosts[id].requester && cumulative > s.signed) s.signed = cumulative;
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("AGIRAILS"),
                keccak256("1"),
                block.chainid,
                address(kernel)
            )
        );
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, id, cumulative, requestHash, expiresAt));
        (uint8 v, bytes32 r, bytes32 sig) = vm.sign(key, keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
        return abi.encodePacked(r, sig, v);
    }

    /// @dev The other valid-looking signature of the same digest (s -> n - s, v flipped), refused by the rules.
    function _highS(bytes memory signature) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }

    function _keyOf(address requester) internal view returns (uint256) {
        for (uint256 i; i < 3; ++i) {
            if (requesters[i] == requester) return requesterKeys[i];
        }
        return STRANGER_KEY;
    }

    function _indexOf(uint256 key) internal view returns (uint256) {
        for (uint256 i; i < 3; ++i) {
            if (requesterKeys[i] == key) return i;
        }
        return 0;
    }

    /// @dev Mostly a short grace period (so that ends and reclaims happen within a run), one time in five up to
    /// the longest, three in twenty out of range or raw. The mode is hashed: the fuzzer favours small numbers.
    function _grace(uint256 mode, uint256 grace) internal pure returns (uint256) {
        mode %= 20;
        if (mode == 0) return MIN_GRACE - 1;
        if (mode == 1) return MAX_GRACE + 1;
        if (mode == 2) return grace;
        if (mode < 7) return _bound(grace, MIN_GRACE, MAX_GRACE);
        return _bound(grace, MIN_GRACE, 3 hours);
    }

    function _topUpAmount(bytes32 id, uint256 r) internal view returns (uint256) {
        uint256 room = MAX_AMOUNT - _ghosts[id].amount;
        uint256 mode = uint256(keccak256(abi.encode(r))) % 16; // hashed: the fuzzer favours small numbers
        if (mode == 0) return 0;
        if (mode == 1) return room + 1; // beyond the largest deposit
        if (mode == 2) return room; // up to it exactly
        return _bound(r >> 8, 1, 5e12);
    }
}
