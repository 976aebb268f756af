// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {HandlerBase} from "./HandlerBase.sol";

/// @title HandlerPicks
/// @notice How the handler chooses what to act on and who acts: a transaction (preferring live ones), a session
/// in the wanted condition, an ordinary transaction, the party the rules name (sometimes anyone else), an escrow
/// id, a resolver, a payee with a deferred payout.
abstract contract HandlerPicks is HandlerBase {
    /// @dev A transaction, preferring live ones: from a random start, the first that is not terminal (one
    /// pick in eight takes whatever is there, terminal included).
    function _pick(uint256 pick) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        if ((pick >> 128) % 8 == 0) return ids[start];
        bytes32 live = _pickLive(pick);
        return live == 0 ? ids[start] : live;
    }

    function _pickLive(uint256 pick) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        for (uint256 i; i < n; ++i) {
            bytes32 id = ids[(start + i) % n];
            if (!_terminal(_ghosts[id].state)) return id;
        }
        return 0;
    }

    /// @dev A session, preferring one that is `want` (a `PICK_*`; for PICK_GRACE_OVER then one still in its
    /// grace period), then any live one, then whatever is there.
    function _pickSession(uint256 pick, uint256 want) internal view returns (bytes32) {
        uint256 n = sessionIds.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        bytes32 ending;
        bytes32 live;
        for (uint256 i; i < n; ++i) {
            bytes32 id = sessionIds[(start + i) % n];
            uint8 st = _ghosts[id].state;
            if (_terminal(st)) continue;
            uint256 closeBy = _sessions[id].closeBy;
            if (want == PICK_LIVE || (want == PICK_NOT_ENDING && _isOpen(st) && closeBy == 0)) return id;
            if (want == PICK_GRACE_OVER && _isOpen(st) && closeBy != 0 && block.timestamp > closeBy) return id;
            if ((want == PICK_STARTED && st == IN_PROGRESS) || (want == PICK_CLOSED && st == DELIVERED)) return id;
            if (ending == 0 && closeBy != 0 && _isOpen(st)) ending = id;
            if (live == 0) live = id;
        }
        if (want == PICK_GRACE_OVER && ending != 0) return ending;
        return live == 0 ? sessionIds[start] : live;
    }

    /// @dev A live ordinary transaction (not a session), if there is one.
    function _pickOrdinary(uint256 pick) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        for (uint256 i; i < n; ++i) {
            bytes32 id = ids[(start + i) % n];
            if (!_sessions[id].isSession && !_terminal(_ghosts[id].state)) return id;
        }
        return 0;
    }

    /// @dev Mostly the party the rules name, sometimes anyone else.
    function _actor(bytes32 id, uint256 actor) internal view returns (address) {
        uint256 r = actor % 10;
        if (r < 4) return _ghosts[id].requester;
        if (r < 8) return _ghosts[id].provider;
        if (r < 9) return ghostAdmin;
        return STRANGER;
    }

    function _anyone(uint256 r) internal view returns (address) {
        address[6] memory all =
            [adminCandidates[0], adminCandidates[1], adminCandidates[2], providers[r % 3], requesters[r % 3], STRANGER];
        return all[(r >> 4) % 6];
    }

    /// @dev The transaction id (usually), a shared older-client escrow id, or an unusable one.
    function _escrowIdFor(bytes32 id, uint256 r) internal view returns (bytes32) {
        uint256 c = r % 10;
        if (c < 5) return id;
        if (c < 9) return sharedEscrowIds[(r >> 4) % 3];
        return (r >> 4) % 2 == 0 ? bytes32(0) : ids[(r >> 8) % ids.length];
    }

    /// @dev A resolver for `id`'s dispute: usually one that may resolve it now (the admin or an active
    /// mediator who is not a party), sometimes any candidate.
    function _someResolver(bytes32 id, uint256 r) internal view returns (address) {
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
    function _payeeWithDeferred(uint256 r) internal view returns (address) {
        for (uint256 i; i < 6; ++i) {
            address a = i < 3 ? providers[(r % 3 + i) % 3] : requesters[(r % 3 + i) % 3];
            if (ghostDeferred[a] != 0 && (r >> 8) % 4 != 0) return a;
        }
        return providers[r % 3];
    }
}
