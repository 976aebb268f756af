// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// DELIVERED -> SETTLED: transitionState, releaseEscrow, settleBatch, and fee accrual.
contract SettleTest is KernelTestBase {
    function test_settle_requesterAnyTimeAfterDelivery() public {
        bytes32 id = delivered();
        uint256 f = fee(AMOUNT);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(id, DELIVERED, SETTLED, requester, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.PlatformFeeAccrued(id, feeSink, f, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowReleased(id, provider, AMOUNT - f, T0);
        transition(requester, id, SETTLED, "");
        assertState(id, SETTLED);
        assertEq(bal(provider), AMOUNT - f, "provider paid net");
        assertEq(kernel.accruedFees(), f, "fee accrued");
        assertEq(bal(address(kernel)), f, "kernel holds only the fee");
        assertEq(kernel.remaining(id), 0, "nothing remains");
        assertEq(kernel.getTransaction(id).disputeWindow, T0 + WINDOW, "window end kept after settlement");
    }

    function test_settle_anyoneOnlyAfterWindow() public {
        bytes32 id = delivered();
        uint256 end = T0 + WINDOW;
        address[3] memory others = [provider, stranger, admin];
        vm.warp(end);
        for (uint256 i; i < others.length; ++i) {
            expectRevertTransition(
                others[i], id, SETTLED, "", abi.encodeWithSelector(IEscrowKernel.DisputeWindowOpen.selector, end)
            );
        }
        vm.warp(end + 1);
        transition(stranger, id, SETTLED, "");
        assertState(id, SETTLED);
        assertEq(bal(provider), AMOUNT - fee(AMOUNT), "provider paid");
    }

    function test_settle_afterDeadlineNeverStrands() public {
        bytes32 id = delivered();
        vm.warp(DEADLINE + 365 days);
        transition(provider, id, SETTLED, "");
        assertState(id, SETTLED);
    }

    function test_settle_allowedWhilePaused() public {
        bytes32 id = delivered();
        vm.prank(admin);
        kernel.pause();
        transition(requester, id, SETTLED, "");
        assertState(id, SETTLED);
    }

    function test_settle_rejectsProofBytes() public {
        bytes32 id = delivered();
        expectRevertTransition(
            requester, id, SETTLED, hex"00", abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, 1)
        );
    }

    function test_settle_windowRuleBeforeProofBytes() public {
        bytes32 id = delivered();
        expectRevertTransition(
            stranger,
            id,
            SETTLED,
            hex"00",
            abi.encodeWithSelector(IEscrowKernel.DisputeWindowOpen.selector, T0 + WINDOW)
        );
    }

    function test_settle_onlyFromDeliveredOrDisputed() public {
        bytes32 id = inProgress();
        expectRevertTransition(
            requester,
            id,
            SETTLED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, IN_PROGRESS, SETTLED)
        );
        bytes32 done = delivered();
        transition(requester, done, SETTLED, "");
        expectRevertTransition(
            requester,
            done,
            SETTLED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, done, SETTLED, SETTLED)
        );
    }

    function test_releaseEscrow_settlesUnderTheSameRules() public {
        bytes32 id = delivered();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DisputeWindowOpen.selector, T0 + WINDOW));
        vm.prank(stranger);
        kernel.releaseEscrow(id);
        vm.prank(requester);
        kernel.releaseEscrow(id);
        assertState(id, SETTLED);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, SETTLED, SETTLED));
        vm.prank(requester);
        kernel.releaseEscrow(id);
    }

    function test_fee_lockedRateRoundsDown() public {
        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, 50_099, DEADLINE, WINDOW, SERVICE, 0, 0);
        start(id);
        deliver(id);
        transition(requester, id, SETTLED, "");
        assertEq(kernel.accruedFees(), 500, "floor(50_099 * 1%)");
        assertEq(bal(provider), 50_099 - 500, "provider gets the rest");
    }

    function test_collectFees_paysCurrentRecipient() public {
        bytes32 id = delivered();
        transition(requester, id, SETTLED, "");
        uint256 f = fee(AMOUNT);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.FeesCollected(feeSink, f);
        vm.prank(stranger);
        kernel.collectFees();
        assertEq(bal(feeSink), f, "recipient paid");
        assertEq(kernel.accruedFees(), 0, "reset");
        assertEq(kernel.feeRecipient(), feeSink, "recipient kept");
        vm.expectRevert(IEscrowKernel.NoFeesAccrued.selector);
        kernel.collectFees();
    }

    // ---- settleBatch ----

    function test_settleBatch_settlesDueAndSkipsTheRest() public {
        bytes32 a = delivered();
        bytes32 b = delivered();
        bytes32 notDelivered = inProgress();
        bytes32 late = createDeliveredLater();
        vm.warp(T0 + WINDOW + 1);
        bytes32[] memory ids = new bytes32[](6);
        (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]) = (a, notDelivered, bytes32("missing"), b, late, a);
        vm.prank(stranger);
        uint256 settled = kernel.settleBatch(ids);
        assertEq(settled, 2, "a and b, each once");
        assertState(a, SETTLED);
        assertState(b, SETTLED);
        assertState(notDelivered, IN_PROGRESS);
        assertState(late, DELIVERED);
        assertEq(bal(provider), 2 * (AMOUNT - fee(AMOUNT)), "provider paid twice, in one transfer");
        assertEq(kernel.accruedFees(), 2 * fee(AMOUNT), "fees for both");
    }

    function createDeliveredLater() private returns (bytes32 id) {
        vm.warp(T0 + 1 hours);
        id = delivered();
        vm.warp(T0);
    }

    function test_settleBatch_requesterNeedsNoWait() public {
        bytes32 a = delivered();
        bytes32[] memory ids = new bytes32[](1);
        ids[0] = a;
        vm.prank(stranger);
        assertEq(kernel.settleBatch(ids), 0, "stranger must wait");
        vm.prank(requester);
        assertEq(kernel.settleBatch(ids), 1, "requester may settle early");
    }

    function test_settleBatch_manyProvidersEachPaid() public {
        address other = makeAddr("other provider");
        bytes32 a = delivered();
        vm.prank(requester);
        bytes32 b = kernel.createAndFund(other, 2 * AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
        vm.prank(other);
        kernel.transitionState(b, IN_PROGRESS, "");
        vm.prank(other);
        kernel.transitionState(b, DELIVERED, "");
        bytes32 c = delivered();
        vm.warp(T0 + WINDOW + 1);
        bytes32[] memory ids = new bytes32[](3);
        (ids[0], ids[1], ids[2]) = (a, b, c);
        kernel.settleBatch(ids);
        assertEq(bal(provider), 2 * (AMOUNT - fee(AMOUNT)), "first provider");
        assertEq(bal(other), 2 * AMOUNT - fee(2 * AMOUNT), "second provider");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "only fees left");
    }

    function test_settleBatch_emptyIsNoop() public {
        assertEq(kernel.settleBatch(new bytes32[](0)), 0, "nothing");
    }

    function test_settleBatch_allowedWhilePaused() public {
        bytes32 a = delivered();
        vm.prank(admin);
        kernel.pause();
        bytes32[] memory ids = new bytes32[](1);
        ids[0] = a;
        vm.prank(requester);
        assertEq(kernel.settleBatch(ids), 1, "pause does not block settlement");
    }
}
