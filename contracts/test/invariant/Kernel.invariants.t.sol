// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {BlocklistToken} from "../mocks/Tokens.sol";
import {KernelHandler} from "./KernelHandler.sol";

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
/// runs), per 100 handler calls (share of runs with at least one): 7.2 created, 5.1 funded, 3.1 delivered, 1.6
/// settled (94%), 1.3 disputed (91%), 1.2 resolved (87%), 1.5 refunded (91%), 1.4 abandoned unfunded (89%), 1.3
/// payouts deferred (73%), 0.7 deferred payouts claimed (68%), 1.1 milestones (77%), 1.4 quotes accepted (65%),
/// 0.35 aliases linked (48%), 0.37 admin transfers (60%), 0.16 fee changes (29%).
contract KernelInvariants is KernelInvariantBase {
    string internal constant DEPTH_DIR = "target/invariant";
    string internal constant DEPTH_FILE = "target/invariant/depth.json";
    string internal constant DEPTH_TEXT = "target/invariant/depth.txt";
    uint256 internal constant COUNTERS = 16;

    function setUp() public override {
        super.setUp();
        vm.createDir(DEPTH_DIR, true);
        vm.writeFile(DEPTH_FILE, _json(new uint256[](2 + 2 * COUNTERS)));
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @dev Weighted toward progressing existing transactions (`advance` is listed 14 times in 41).
    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[41] memory weighted = [
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
            KernelHandler.transition.selector,
            KernelHandler.transition.selector,
            KernelHandler.link.selector,
            KernelHandler.milestone.selector,
            KernelHandler.acceptQuote.selector,
            KernelHandler.releaseEscrow.selector,
            KernelHandler.resolve.selector,
            KernelHandler.settleBatch.selector,
            KernelHandler.claimDeferred.selector,
            KernelHandler.claimDeferred.selector,
            KernelHandler.setBlocked.selector,
            KernelHandler.setBlocked.selector,
            KernelHandler.setMediator.selector,
            KernelHandler.changeAdmin.selector,
            KernelHandler.setPauser.selector,
            KernelHandler.togglePause.selector,
            KernelHandler.changeFee.selector,
            KernelHandler.changeFee.selector,
            KernelHandler.collectFees.selector,
            KernelHandler.aliasNextId.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector,
            KernelHandler.warp.selector
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
            KernelHandler.Ghost memory g = handler.ghost(id);
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
        }
    }

    /// The kernel holds exactly the live escrows, the accrued fees and the deferred payouts (all by the
    /// handler's account), and no token is created or lost anywhere.
    function _conservation() internal view {
        uint256 held;
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            held += handler.ghostRemaining(handler.ids(i));
        }
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
            KernelHandler.AliasRecord memory a = handler.aliasAt(i);
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
    /// COMMITTED and IN_PROGRESS by the provider now and by the requester alone once the deadline passed,
    /// DISPUTED by the admin (never a party) once its resolver delay is over (at most two days after an admin
    /// transfer). One exit does not hinder another, so each phase tries them all on one snapshot.
    function _noStrandedFunds() internal {
        uint256 n = handler.idCount();
        uint256 snap = vm.snapshotState();
        uint256 latest = block.timestamp;
        bool anyDisputed;
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            KernelHandler.Ghost memory g = handler.ghost(id);
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
            KernelHandler.Ghost memory g = handler.ghost(id);
            if (g.state == uint8(IACTPKernel.State.COMMITTED) || g.state == uint8(IACTPKernel.State.IN_PROGRESS)) {
                _exit(g.requester, id, IACTPKernel.State.CANCELLED, "");
            }
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
            "fee changes"
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
        uint256[16] memory c = handler.counts();
        string[16] memory names = [
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
            "fee changes"
        ];
        for (uint256 i; i < 16; ++i) {
            assertGe(c[i], 1, names[i]);
        }
        assertEq(c[13], 2, "two aliases: the shared id and the next id");
        assertEq(handler.idCount(), 6, "the aliased next id was never created");
    }
}
