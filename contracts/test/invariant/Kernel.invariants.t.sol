// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {IKernelSessions} from "../../src/interfaces/IKernelSessions.sol";
import {BlocklistToken} from "../mocks/Tokens.sol";
import {HandlerBase} from "./HandlerBase.sol";
import {KernelHandler} from "./KernelHandler.sol";
import {SessionActions} from "./SessionActions.sol";

/// @dev forge's invariant runner reads the weighted selector list from `targetSelectors`.
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

/// @dev A kernel on a token with a blocklist (payouts to a blocked payee are deferred), driven by the handler.
abstract contract KernelInvariantBase is Test {
    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant FEE_BPS = 100;

    IEscrowKernel internal kernel;
    BlocklistToken internal token;
    KernelHandler internal handler;
    address internal admin = makeAddr("admin");
    address internal feeSink = makeAddr("feeRecipient");

    function setUp() public virtual {
        vm.warp(T0);
        token = new BlocklistToken();
        kernel = IEscrowKernel(
            vm.deployCode("EscrowKernel.sol:EscrowKernel", abi.encode(address(token), admin, feeSink, uint16(FEE_BPS)))
        );
        handler = new KernelHandler(kernel, token, admin, FEE_BPS);
    }
}

/// Invariants over random lifecycles (profile default: 256 runs x depth 200, checked every 4 calls and at the end
/// of each run; `deep`: 1000 x 400, every call), in one campaign. The handler checks each call's money against
/// its own account of the rules as it goes; these invariants check the kernel's whole state against that
/// account. Depth is printed by `afterInvariant` (`forge test --mc KernelInvariants -vv`; also written to
/// target/invariant/depth.txt). Measured with the default profile and seed (the hook runs 257 times for 256
/// runs), per 100 handler calls (share of runs with at least one): 11.3 created (sessions included), 8.5 funded,
/// 3.8 delivered, 2.1 settled (94%), 1.6 disputed (93%), 1.4 resolved (85%), 3.2 refunded (98%), 1.6 abandoned
/// unfunded (90%), 1.1 payouts deferred (70%), 0.6 deferred payouts claimed (61%), 0.8 milestones (68%), 1.0
/// quotes accepted (49%), 0.43 aliases linked (60%), 0.43 admin transfers (67%), 0.12 fee changes (23%); sessions:
/// 3.0 opened (98%), 0.57 topped up (61%), 1.0 closed with a voucher (84%), 0.51 settled with a refund (61%),
/// 0.61 ended and reclaimed (70%), 0.39 disputes resolved (53%).
contract KernelInvariants is KernelInvariantBase {
    string internal constant DEPTH_DIR = "target/invariant";
    string internal constant DEPTH_FILE = "target/invariant/depth.json";
    string internal constant DEPTH_TEXT = "target/invariant/depth.txt";
    uint256 internal constant COUNTERS = 22;

    function setUp() public override {
        super.setUp();
        vm.createDir(DEPTH_DIR, true);
        vm.writeFile(DEPTH_FILE, _json(new uint256[](2 + 2 * COUNTERS)));
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @dev Weighted toward progressing existing transactions (`advance` is listed 22 times in 67; it drives
    /// sessions too).
    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[67] memory weighted = [
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.advance.selector,
            KernelHandler.create.selector,
            KernelHandler.create.selector,
            KernelHandler.create.selector,
            KernelHandler.create.selector,
            KernelHandler.create.selector,
            KernelHandler.transition.selector,
            KernelHandler.transition.selector,
            KernelHandler.link.selector,
            KernelHandler.milestone.selector,
            KernelHandler.acceptQuote.selector,
            KernelHandler.acceptQuote.selector,
            KernelHandler.releaseEscrow.selector,
            KernelHandler.resolve.selector,
            KernelHandler.settleBatch.selector,
            KernelHandler.claimDeferred.selector,
            KernelHandler.claimDeferred.selector,
            KernelHandler.claimDeferred.selector,
            KernelHandler.setBlocked.selector,
            KernelHandler.setBlocked.selector,
            KernelHandler.setMediator.selector,
            KernelHandler.changeAdmin.selector,
            KernelHandler.changeAdmin.selector,
            KernelHandler.setPauser.selector,
            KernelHandler.togglePause.selector,
            KernelHandler.changeFee.selector,
            KernelHandler.changeFee.selector,
            KernelHandler.changeFee.selector,
            KernelHandler.collectFees.selector,
            KernelHandler.aliasNextId.selector,
            KernelHandler.aliasNextId.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            SessionActions.openSession.selector,
            SessionActions.openSession.selector,
            SessionActions.openSession.selector,
            SessionActions.topUpSession.selector,
            SessionActions.closeSession.selector,
            SessionActions.endSession.selector,
            SessionActions.reclaimSession.selector,
            SessionActions.settleSessions.selector,
            SessionActions.misuseSession.selector
        ];
        bytes4[] memory selectors = new bytes4[](weighted.length);
        for (uint256 i; i < weighted.length; ++i) {
            selectors[i] = weighted[i];
        }
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    function invariant_kernelKeepsItsPromises() public {
        _transactions();
        _sessions();
        _conservation();
        _aliasesAnswerForTheirRequester();
        _governanceMatchesTheGhost();
        _noStrandedFunds();
    }

    /// Per transaction: every kernel view of its money and state agrees with the handler's account (terminal
    /// states never change); it never pays out more than it took in, a terminal funded one has paid out exactly
    /// that, and its fees are the locked rate applied once to what the provider got (payouts were checked
    /// against real balances by the handler call by call).
    function _transactions() internal view {
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            HandlerBase.Ghost memory g = handler.ghost(id);
            IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
            assertEq(uint256(v.state), g.state, "state (terminal states never change)");
            assertEq(v.amount, g.amount, "amount");
            assertEq(v.platformFeeBpsLocked, g.feeBps, "fee rate locked at creation, by the handler's schedule");
            uint256 paidIn = g.funded ? g.amount : 0;
            uint256 paidOut = g.paidGross + g.refunded;
            assertLe(paidOut, paidIn, "out <= in");
            bool terminal = g.state == uint8(IACTPKernel.State.SETTLED) || g.state == uint8(IACTPKernel.State.CANCELLED);
            if (terminal) assertEq(paidOut, paidIn, "terminal: all paid out");
            assertEq(kernel.remaining(id), terminal ? 0 : paidIn - paidOut, "remaining = in - out");
            assertEq(g.fees, g.paidGross * g.feeBps / 10_000, "one fee on the provider's total");
            (bool isSession,,,) = kernel.sessionOf(id);
            assertTrue(isSession == handler.session(id).isSession, "a session iff opened as one");
        }
    }

    /// Per session (conservation and no overdraw, refunds included): its terms agree with the handler's account;
    /// the deposit is what the opening and the top-ups pulled; the claim is at most the deposit and at most the
    /// highest cumulative amount the requester ever signed a voucher for; the provider got at most the claim;
    /// what was paid out of it never exceeds the deposit, and a terminal session paid out exactly the deposit
    /// (the provider's gross plus the refunds).
    function _sessions() internal view {
        uint256 n = handler.sessionCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.sessionIds(i);
            HandlerBase.Ghost memory g = handler.ghost(id);
            HandlerBase.Session memory s = handler.session(id);
            (bool isSession, uint256 grace, uint256 closeBy, uint256 claimed) = kernel.sessionOf(id);
            assertTrue(isSession && s.isSession && g.funded, "a funded session");
            assertEq(grace, s.grace, "grace");
            assertEq(closeBy, s.closeBy, "end of the grace period");
            assertEq(claimed, s.claim, "claim");
            uint256 paidIn = s.opened + s.toppedUp;
            assertEq(g.amount, paidIn, "deposit = opening + top-ups");
            assertLe(s.claim, g.amount, "no overdraw: claim <= deposit");
            assertLe(s.claim, s.signed, "no overdraw: claim <= the highest voucher the requester signed");
            assertLe(g.paidGross, s.claim, "no overdraw: the provider got at most its claim");
            assertLe(g.paidGross + g.refunded, paidIn, "no overdraw: out <= deposit");
            if (g.state == uint8(IACTPKernel.State.SETTLED) || g.state == uint8(IACTPKernel.State.CANCELLED)) {
                assertEq(g.paidGross + g.refunded, paidIn, "terminal: provider gross + refunds = deposit + top-ups");
            }
        }
    }

    /// The kernel holds exactly the live escrows (sessions' deposits with their top-ups included), the accrued
    /// fees and the deferred payouts (all by the handler's account); everything escrows took in was paid out
    /// (to providers, refunds included) or is still held; and no token is created or lost anywhere.
    function _conservation() internal view {
        uint256 held;
        uint256 tookIn;
        uint256 paidOut;
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            held += handler.ghostRemaining(id);
            HandlerBase.Ghost memory g = handler.ghost(id);
            if (!g.funded) continue;
            HandlerBase.Session memory s = handler.session(id);
            tookIn += s.isSession ? s.opened + s.toppedUp : g.amount;
            paidOut += g.paidGross + g.refunded;
        }
        assertEq(tookIn, paidOut + held, "taken in = paid out (refunds included) + held");
        uint256 deferred;
        for (uint256 i; i < 3; ++i) {
            (address r, address p) = (handler.requesters(i), handler.providers(i));
            assertEq(kernel.deferredOf(r), handler.ghostDeferred(r), "requester's deferred payout");
            assertEq(kernel.deferredOf(p), handler.ghostDeferred(p), "provider's deferred payout");
            assertEq(kernel.requesterNonces(r), handler.ghostNonce(r), "nonce");
            deferred += handler.ghostDeferred(r) + handler.ghostDeferred(p);
        }
        assertEq(kernel.accruedFees(), handler.ghostAccrued(), "accrued fees");
        assertEq(
            token.balanceOf(address(kernel)),
            held + handler.ghostAccrued() + deferred,
            "kernel balance = escrows + fees + deferred payouts"
        );
        address[] memory holders = handler.holders();
        uint256 supply;
        for (uint256 i; i < holders.length; ++i) {
            supply += token.balanceOf(holders[i]);
        }
        assertEq(supply, handler.ghostMinted(), "no token created or lost");
    }

    /// An alias answers for the requester that linked it, whoever else linked the same id before or after.
    function _aliasesAnswerForTheirRequester() internal {
        uint256 n = handler.aliasCount();
        for (uint256 i; i < n; ++i) {
            HandlerBase.AliasRecord memory a = handler.aliasAt(i);
            uint256 left = handler.ghostRemaining(a.id);
            (bool active, uint256 held) = kernel.verifyEscrow(a.escrowId, a.requester, handler.ghost(a.id).provider, 0);
            assertEq(held, left, "verifyEscrow by alias: the requester's escrow");
            assertTrue(active == (left != 0), "verifyEscrow by alias: live iff it holds something");
            vm.prank(a.requester);
            assertEq(kernel.remaining(a.escrowId), left, "remaining by alias, asked by its requester");
            assertEq(kernel.getTransaction(a.id).escrowId, a.escrowId, "escrow id reported");
        }
    }

    function _governanceMatchesTheGhost() internal view {
        address ghostAdmin = handler.ghostAdmin();
        address ghostPauser = handler.ghostPauser();
        assertEq(kernel.admin(), ghostAdmin, "admin");
        assertEq(kernel.pendingAdmin(), handler.ghostPendingAdmin(), "pending admin");
        assertEq(kernel.pauser(), ghostPauser == address(0) ? ghostAdmin : ghostPauser, "pauser follows the admin");
        assertTrue(kernel.paused() == handler.ghostPaused(), "paused");
        assertEq(kernel.platformFeeBps(), handler.ghostFeeBps(), "fee rate");
        for (uint256 i; i < 3; ++i) {
            address a = handler.adminCandidates(i);
            address m = handler.mediatorCandidates(i);
            assertTrue(kernel.isResolver(a) == handler.ghostIsResolver(a, block.timestamp), "admin may resolve");
            assertTrue(kernel.isResolver(m) == handler.ghostIsResolver(m, block.timestamp), "mediator may resolve");
        }
    }

    /// Every funded, non-terminal transaction can be moved to a terminal state: DELIVERED by the requester now,
    /// COMMITTED and IN_PROGRESS by the provider now and by the requester alone once the deadline passed (an
    /// open session also before it: see `_sessionsEndByWaiting`), DISPUTED by the admin (never a party) once its
    /// resolver delay is over (at most two days after an admin transfer). One exit does not hinder another, so
    /// each phase tries them all on one snapshot.
    function _noStrandedFunds() internal {
        _sessionsEndByWaiting();
        uint256 n = handler.idCount();
        uint256 snap = vm.snapshotState();
        uint256 latest = block.timestamp;
        bool anyDisputed;
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            HandlerBase.Ghost memory g = handler.ghost(id);
            if (!g.funded) continue;
            if (g.state == uint8(IACTPKernel.State.DELIVERED)) {
                _exit(g.requester, id, IACTPKernel.State.SETTLED, "");
            } else if (g.state == uint8(IACTPKernel.State.COMMITTED) || g.state == uint8(IACTPKernel.State.IN_PROGRESS))
            {
                _exit(g.provider, id, IACTPKernel.State.CANCELLED, "");
                uint256 deadline = kernel.getTransaction(id).deadline;
                if (deadline > latest) latest = deadline;
            } else if (g.state == uint8(IACTPKernel.State.DISPUTED)) {
                anyDisputed = true;
            }
        }
        vm.revertToState(snap);
        if (anyDisputed) {
            uint256 from = handler.ghostAdminResolvesFrom();
            if (from > block.timestamp) vm.warp(from);
            for (uint256 i; i < n; ++i) {
                bytes32 id = handler.ids(i);
                if (handler.ghost(id).state != uint8(IACTPKernel.State.DISPUTED)) continue;
                _exit(handler.ghostAdmin(), id, IACTPKernel.State.CANCELLED, abi.encode(kernel.remaining(id), 0));
            }
            vm.revertToState(snap);
        }
        if (latest == block.timestamp) return;
        vm.warp(latest + 1);
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            HandlerBase.Ghost memory g = handler.ghost(id);
            if (g.state == uint8(IACTPKernel.State.COMMITTED) || g.state == uint8(IACTPKernel.State.IN_PROGRESS)) {
                _exit(g.requester, id, IACTPKernel.State.CANCELLED, "");
            }
        }
        vm.revertToState(snap);
    }

    /// Every open session ends by its requester alone, by waiting, whatever the provider does: it asks to end
    /// (unless it already did; at any time, paused or not), and as soon as the grace period is over it cancels
    /// and gets the whole deposit back (paid, or deferred if the token refuses it). The sessions are cancelled
    /// in the order their grace periods end, each one second after its own.
    function _sessionsEndByWaiting() internal {
        uint256 n = handler.sessionCount();
        bytes32[] memory open = new bytes32[](n);
        uint256[] memory closeBy = new uint256[](n);
        uint256 m;
        uint256 snap = vm.snapshotState();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.sessionIds(i);
            HandlerBase.Ghost memory g = handler.ghost(id);
            if (g.state != uint8(IACTPKernel.State.COMMITTED) && g.state != uint8(IACTPKernel.State.IN_PROGRESS)) {
                continue;
            }
            (,, uint256 end,) = kernel.sessionOf(id);
            if (end == 0) {
                vm.prank(g.requester);
                (bool ok,) = address(kernel).call(abi.encodeCall(IKernelSessions.endSession, (id)));
                assertTrue(ok, "a requester can always ask to end its open session");
                (,, end,) = kernel.sessionOf(id);
                assertEq(end, block.timestamp + handler.session(id).grace, "the grace period starts now");
            }
            uint256 j = m++;
            for (; j > 0 && closeBy[j - 1] > end; --j) {
                (open[j], closeBy[j]) = (open[j - 1], closeBy[j - 1]);
            }
            (open[j], closeBy[j]) = (id, end);
        }
        for (uint256 j; j < m; ++j) {
            if (closeBy[j] + 1 > block.timestamp) vm.warp(closeBy[j] + 1);
            HandlerBase.Ghost memory g = handler.ghost(open[j]);
            uint256 before = token.balanceOf(g.requester) + kernel.deferredOf(g.requester);
            _exit(g.requester, open[j], IACTPKernel.State.CANCELLED, "");
            uint256 got = token.balanceOf(g.requester) + kernel.deferredOf(g.requester) - before;
            assertEq(got, g.amount, "reclaimed: the whole deposit back");
        }
        vm.revertToState(snap);
    }

    function _exit(address who, bytes32 id, IACTPKernel.State to, bytes memory proof) internal {
        vm.prank(who);
        (bool ok,) = address(kernel).call(abi.encodeCall(IACTPKernel.transitionState, (id, to, proof)));
        assertTrue(ok, "a way out exists");
    }

    // ---- depth ----

    /// @dev After each run: adds the run's counters to the totals in target/invariant/depth.json and logs the
    /// totals so far (forge shows the last run's log: the figures over all runs).
    function afterInvariant() public {
        uint256[] memory t = vm.parseJsonUintArray(vm.readFile(DEPTH_FILE), ".t");
        uint256[COUNTERS] memory c = handler.counts();
        t[0] += 1;
        t[1] += c[0];
        for (uint256 i = 1; i < COUNTERS; ++i) {
            t[1 + i] += c[i];
            if (c[i] != 0) t[1 + COUNTERS + i] += 1;
        }
        vm.writeFile(DEPTH_FILE, _json(t));
        string memory text = string.concat(
            "invariant depth over ",
            vm.toString(t[0]),
            " runs, ",
            vm.toString(t[1]),
            " handler calls (per 100 calls | share of runs with at least one):\n"
        );
        string[COUNTERS] memory names = [
            "calls",
            "created",
            "funded",
            "delivered",
            "settled",
            "disputed",
            "resolved",
            "refunded",
            "abandoned",
            "deferred payouts",
            "deferred claimed",
            "milestones",
            "quotes accepted",
            "aliases linked",
            "admin transfers",
            "fee changes",
            "sessions opened",
            "session top-ups",
            "sessions closed",
            "sessions settled with refund",
            "sessions ended and reclaimed",
            "session disputes resolved"
        ];
        for (uint256 i = 1; i < COUNTERS; ++i) {
            text = string.concat(
                text,
                "  ",
                names[i],
                ": ",
                _fixed2(t[1 + i] * 10_000 / (t[1] == 0 ? 1 : t[1])),
                " | ",
                vm.toString(t[1 + COUNTERS + i] * 100 / t[0]),
                "%\n"
            );
        }
        vm.writeFile(DEPTH_TEXT, text);
        _log(text);
    }

    function _json(uint256[] memory t) internal pure returns (string memory s) {
        s = '{"t":[';
        for (uint256 i; i < t.length; ++i) {
            s = string.concat(s, i == 0 ? "" : ",", vm.toString(t[i]));
        }
        s = string.concat(s, "]}");
    }

    /// @dev `x` hundredths as "a.bc".
    function _fixed2(uint256 x) internal pure returns (string memory) {
        uint256 frac = x % 100;
        return string.concat(vm.toString(x / 100), frac < 10 ? ".0" : ".", vm.toString(frac));
    }

    function _log(string memory text) internal view {
        // forge's console address; a plain staticcall, as forge-std's console does
        (bool ok,) =
            address(0x000000000000000000636F6e736F6c652e6c6f67).staticcall(abi.encodeWithSignature("log(string)", text));
        ok;
    }
}

/// The handler can drive a transaction down every path the depth figures count (so the random runs can too),
/// and its own per-call checks hold on each of them. Arguments are chosen for the handler's decoding (see each
/// comment); `transition(..., extra = 0)` is its "any target state" branch.
contract KernelHandlerTest is KernelInvariantBase {
    function test_handlerReachesEveryPath() public {
        // ids[0]: requester 0 -> provider 0, funded under a shared older-client escrow id, settled.
        handler.create(0, 1_000_000, 10 days, 1 hours, false);
        handler.link(0, 0, 5); // actor 0: the requester; escrow choice 5: sharedEscrowIds[0]
        handler.transition(0, 4, 3, 0); // actor 4: the provider starts
        handler.transition(0, 4, 4, 0); // and delivers
        handler.transition(0, 0, 5, 0); // the requester settles
        // ids[1]: requester 1 -> provider 0 (blocked), disputed, resolved by the admin, payout deferred, claimed.
        handler.create(1, 1_000_000, 10 days, 1 hours, true);
        handler.setBlocked(1, true); // providers[0]
        handler.transition(1, 4, 3, 0);
        handler.transition(1, 4, 4, 0);
        handler.transition(1, 0, 6, 0); // the requester disputes
        handler.resolve(1, 0, 400_000); // the admin: 400,000 back, 600,000 to the provider (deferred)
        handler.claimDeferred(256, 0); // providers[0] claims to wallets[0]
        // ids[2]: abandoned unfunded; ids[3]: refunded by the provider.
        handler.create(2, 1_000_000, 10 days, 1 hours, false);
        handler.transition(2, 0, 7, 0);
        handler.create(0, 2_000_000, 10 days, 1 hours, true);
        handler.transition(3, 4, 7, 0);
        // ids[4]: a milestone; ids[5]: a quote accepted, then its requester's next id linked as an alias.
        handler.create(0, 3_000_000, 10 days, 1 hours, true);
        handler.transition(4, 4, 3, 0);
        handler.milestone(4, 0, 100_000);
        handler.create(1, 4_000_000, 10 days, 1 hours, false);
        handler.transition(5, 4, 1, 0); // the provider quotes
        handler.acceptQuote(5, 0, 2_000_000);
        handler.aliasNextId(5); // funds ids[5] under that alias; the creation is refused
        // Governance: a mediator, an admin transfer, a fee change after its delay.
        handler.setMediator(1, true);
        handler.changeAdmin(1, false); // to adminCandidates[1]
        handler.changeAdmin(1, true); // accepted
        handler.changeFee(200, 0); // scheduled
        handler.warp(3 days); // a multiple of 8 seconds: the long-jump branch
        handler.changeFee(0, 2); // executed
        // Sessions (seeds: requester seed % 3, provider (seed >> 8) % 3; their hashed grace modes keep 1 hour).
        // ids[6]: requester 0 -> provider 1, topped up, closed with a voucher, settled in a batch with a refund.
        handler.openSession(458_754, 2_000_000, 10 days, 1 hours, 1 hours);
        handler.topUpSession(0, 0, (1_000_000 << 8) + 3); // its hashed mode: a plain amount, 1,000,000
        handler.transition(6, 4, 3, 0); // the provider starts
        handler.closeSession(0, 0, 600_000 << 8); // a voucher for 600,000, all of it claimed
        handler.settleSessions(0, 1, 0); // the requester: 600,000 to the provider, 2,400,000 back
        // ids[7]: requester 1 -> provider 2, ended; reclaimed too early (refused), then after the grace period.
        handler.openSession(459_010, 1_000_000, 10 days, 1 hours, 1 hours);
        handler.endSession(1, 1 << 16); // (actor >> 16) % 3 != 0: no reclaim in the same call
        handler.reclaimSession(1, 3 << 16); // (actor >> 16) % 4 == 3: no waiting; too early, refused
        handler.warp(3 hours + 1);
        handler.reclaimSession(1, 3 << 16);
        // ids[8]: requester 2 -> provider 0 (blocked), v3 delivery and a milestone refused, closed claiming
        // 400,000, disputed; a resolution above the claim refused, then 200,000 to the provider (deferred).
        handler.openSession(459_266, 1_000_000, 10 days, 1 hours, 1 hours);
        handler.transition(8, 4, 3, 0);
        handler.misuseSession(2, 0);
        handler.misuseSession(2, 1);
        handler.closeSession(2, 0, (400_000 << 8) + 32);
        handler.transition(8, 0, 6, 0);
        handler.resolve(8, 0, 500_000 << 24); // 500,000 to the provider: refused
        handler.resolve(8, 0, (200_000 << 24) + 1);
        uint256[22] memory c = handler.counts();
        string[22] memory names = [
            "calls",
            "created",
            "funded",
            "delivered",
            "settled",
            "disputed",
            "resolved",
            "refunded",
            "abandoned",
            "deferred",
            "claimed",
            "milestones",
            "quotes accepted",
            "aliases",
            "admin transfers",
            "fee changes",
            "sessions opened",
            "session top-ups",
            "sessions closed",
            "sessions settled with refund",
            "sessions reclaimed",
            "session disputes resolved"
        ];
        for (uint256 i; i < 22; ++i) {
            assertGe(c[i], 1, names[i]);
        }
        assertEq(c[13], 2, "two aliases: the shared id and the next id");
        assertEq(c[16], 3, "three sessions");
        assertEq(handler.idCount(), 9, "the aliased next id was never created");
        assertEq(handler.session(handler.ids(6)).claim, 600_000, "the first session's claim");
        assertEq(handler.ghost(handler.ids(6)).refunded, 2_400_000, "the unclaimed rest of the deposit refunded");
        assertEq(handler.ghost(handler.ids(7)).state, 7, "the ended session reclaimed (CANCELLED)");
        assertEq(handler.ghost(handler.ids(8)).paidGross, 200_000, "the disputed session: 200,000 of its claim");
    }
}
