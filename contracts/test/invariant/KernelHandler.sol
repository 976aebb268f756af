// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {BlocklistToken} from "../mocks/Tokens.sol";
import {HandlerBase} from "./HandlerBase.sol";
import {SessionActions} from "./SessionActions.sol";

/// @title KernelHandler
/// @notice Drives random lifecycles of many transactions by several actors: funding (also under escrow-id
/// aliases shared among requesters), quotes, milestones, settlement (one by one and in batches), disputes and
/// their resolution by the admin or mediators, refunds, payouts to addresses the token refuses (a blocklist)
/// and their later claims, fee changes, pause, mediator approval and admin transfers, with time jumps; and
/// sessions (`SessionActions`), which the lifecycle steps drive too. Every kernel call is a low-level call: a
/// refused move is part of the game, never a failure. The ghost state and the booking of every call against
/// the rules are in `HandlerBase`.
contract KernelHandler is SessionActions {
    constructor(IEscrowKernel kernel_, BlocklistToken token_, address admin_, uint256 feeBps_)
        HandlerBase(kernel_, token_, admin_, feeBps_)
    {}

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
        _registerId(t.requester, t.provider, t.amount, t.service, id);
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
        _act(caller, abi.encodeCall(IACTPKernel.releaseMilestone, (id, amount)), _one(id), Input(MILESTONE, amount, 0));
    }

    function _acceptQuote(bytes32 id, address caller, uint256 newAmount) private {
        _act(caller, abi.encodeCall(IACTPKernel.acceptQuote, (id, newAmount)), _one(id), Input(QUOTE, newAmount, 0));
    }

    /// @dev A split of what remains (mostly exact, sometimes off by one) to SETTLED or CANCELLED; a session's
    /// split has its own rule (`_resolveSession`).
    function _resolve(bytes32 id, address caller, uint256 r) private {
        if (_sessions[id].isSession) return _resolveSession(id, caller, r);
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
            Input(SPLIT, toRequester, toProvider)
        );
    }

    function _transitionTo(bytes32 id, address caller, uint8 to, uint256 extra) internal override {
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

    /// @dev The step that usually comes next in `id`'s lifecycle, by the party that takes it (an open or closed
    /// session's steps are `_sessionStep`).
    function _step(bytes32 id, uint256 r) private {
        Ghost storage g = _ghosts[id];
        uint8 s = g.state;
        uint256 roll = (r >> 8) % 100;
        bool either = (r >> 16) % 2 == 0;
        if (block.timestamp > g.deadline && s <= IN_PROGRESS && roll < 80) {
            // Past the deadline only an exit is left: the requester abandons or reclaims, the provider refunds.
            return _transitionTo(id, s <= QUOTED || either ? g.requester : g.provider, CANCELLED, r);
        }
        if ((_isOpen(s) || s == DELIVERED) && _sessions[id].isSession) return _sessionStep(id, r);
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
}
