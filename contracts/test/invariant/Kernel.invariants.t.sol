// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "../utils/KernelTestBase.sol";
import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {KernelHandler} from "./KernelHandler.sol";

/// Invariants over random lifecycles (profile default: 256 runs x depth 100; `deep`: 2000 x 300).
/// Measured depth of the default profile, per run on average: 7 transactions created, 5 funded, 2 started,
/// 1 delivered, 0.65 settled, 0.19 disputed, 1.7 cancelled (the handler weights next lifecycle steps; see
/// `KernelHandler.advance`). `test_handlerReachesEveryState` shows the handler reaches every state.
contract KernelInvariants is KernelTestBase {
    KernelHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new KernelHandler(kernel, usdc, admin);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The kernel's token balance is exactly what every transaction still holds plus uncollected fees.
    function invariant_balanceIsEscrowPlusFees() public view {
        uint256 held;
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            held += kernel.remaining(handler.ids(i));
        }
        assertEq(usdc.balanceOf(address(kernel)), held + kernel.accruedFees(), "balance = held + fees");
        assertEq(usdc.balanceOf(address(kernel)), handler.totalPulled() - handler.totalPaid(), "balance = in - out");
    }

    /// No transaction pays out more than it took in; a terminal funded one has paid out exactly that.
    function invariant_noTransactionPaysOutMoreThanIn() public view {
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            uint256 paidIn = handler.ghostIn(id);
            uint256 paidOut = handler.ghostOut(id);
            assertLe(paidOut, paidIn, "out <= in");
            assertEq(paidIn - paidOut, kernel.remaining(id), "in - out = remaining");
            if (handler.ghostTerminal(id) != 0) assertEq(paidOut, paidIn, "terminal: all paid out");
        }
    }

    /// Terminal states never change (the handler also refuses any transition out of one).
    function invariant_terminalStatesNeverChange() public view {
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            uint8 terminal = handler.ghostTerminal(id);
            if (terminal != 0) assertEq(uint256(kernel.getTransaction(id).state) + 1, terminal, "terminal kept");
        }
    }

    /// Fees never exceed the rate locked in the transaction, applied to what the provider was paid.
    function invariant_feesWithinLockedRate() public view {
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            uint256 bps = kernel.getTransaction(id).platformFeeBpsLocked;
            assertLe(bps, 500, "locked rate under cap");
            assertEq(handler.ghostFee(id), handler.ghostProviderGross(id) * bps / 10_000, "fee = locked rate");
        }
    }

    /// Every funded, non-terminal transaction can be moved to a terminal state by someone right now, and the
    /// requester alone can always get there by waiting (except from DISPUTED, which the admin resolves).
    function invariant_noStrandedFunds() public {
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.ids(i);
            IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
            if (v.escrowContract == address(0) || v.state == SETTLED || v.state == CANCELLED) continue;
            uint256 snap = vm.snapshotState();
            assertTrue(_exitNow(v), "someone can exit now");
            vm.revertToState(snap);
            if (v.state != DISPUTED) {
                uint256 later = v.deadline > v.disputeWindow ? v.deadline : v.disputeWindow;
                vm.warp((later > block.timestamp ? later : block.timestamp) + 1);
                IACTPKernel.State to = v.state == DELIVERED ? SETTLED : CANCELLED;
                vm.prank(v.requester);
                (bool ok,) = address(kernel).call(abi.encodeCall(IACTPKernel.transitionState, (id, to, bytes(""))));
                assertTrue(ok, "requester alone can exit by waiting");
                vm.revertToState(snap);
            }
        }
    }

    function _exitNow(IACTPKernel.TransactionView memory v) private returns (bool ok) {
        address who;
        IACTPKernel.State to;
        bytes memory proof;
        if (v.state == DELIVERED) {
            (who, to) = (v.requester, SETTLED);
        } else if (v.state == DISPUTED) {
            (who, to, proof) = (admin, CANCELLED, abi.encode(kernel.remaining(v.transactionId), 0));
        } else {
            (who, to) = (v.provider, CANCELLED);
        }
        vm.prank(who);
        (ok,) = address(kernel).call(abi.encodeCall(IACTPKernel.transitionState, (v.transactionId, to, proof)));
    }

    /// The handler can drive a transaction through every state (so the random runs can too).
    function test_handlerReachesEveryState() public {
        handler.create(0, AMOUNT, 10 days, 1 hours, false); // requester 0 -> provider 0
        handler.transition(0, 4, 1, 0); // chaos (extra % 5 == 0): provider quotes
        handler.link(0, 0); // requester funds
        handler.transition(0, 0, 0, 257); // next step: provider starts
        handler.transition(0, 0, 0, 258); // next step: provider delivers (empty proof)
        handler.transition(0, 0, 0, 1); // alternative step: the provider disputes
        handler.transition(0, 0, 0, 257); // next step: admin resolves to SETTLED
        handler.create(0, AMOUNT, 10 days, 1 hours, true);
        handler.transition(1, 4, 7, 0); // chaos: provider cancels COMMITTED
        for (uint256 s = 1; s < 8; ++s) {
            assertGe(handler.reached(s), 1, "state reached");
        }
    }
}
