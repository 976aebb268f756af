// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// releaseMilestone while IN_PROGRESS.
contract MilestoneTest is KernelTestBase {
    function test_milestone_paysPartNowRestAtSettlement() public {
        bytes32 id = inProgress();
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowMilestoneReleased(id, 400_000, T0);
        vm.prank(requester);
        kernel.releaseMilestone(id, 400_000);
        assertEq(bal(provider), 400_000 - fee(400_000), "milestone net");
        assertEq(kernel.remaining(id), 600_000, "remaining");
        (,,, uint256 released, bool active) = kernel.escrows(id);
        assertEq(released, 400_000, "released");
        assertTrue(active, "still active");
        deliver(id);
        transition(requester, id, SETTLED, "");
        assertEq(bal(provider), AMOUNT - fee(AMOUNT), "total equals a single settlement");
        assertEq(kernel.accruedFees(), fee(AMOUNT), "total fee unchanged by splitting");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "only fees left");
    }

    function test_milestone_splittingNeverLowersTheFee() public {
        bytes32 id = inProgress();
        vm.startPrank(requester);
        for (uint256 i; i < 10; ++i) {
            kernel.releaseMilestone(id, 99); // 1% of 99 rounds to 0 each time on its own
        }
        vm.stopPrank();
        assertEq(kernel.accruedFees(), 990 * FEE_BPS / 10_000, "fee on the running total");
    }

    function test_milestone_allOfItThenSettleForZero() public {
        bytes32 id = inProgress();
        vm.prank(requester);
        kernel.releaseMilestone(id, AMOUNT);
        assertEq(kernel.remaining(id), 0, "drained");
        deliver(id);
        transition(requester, id, SETTLED, "");
        assertEq(bal(provider), AMOUNT - fee(AMOUNT), "paid once");
    }

    function test_milestone_bounds() public {
        bytes32 id = inProgress();
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidMilestone.selector, 0, AMOUNT));
        kernel.releaseMilestone(id, 0);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidMilestone.selector, AMOUNT + 1, AMOUNT));
        kernel.releaseMilestone(id, AMOUNT + 1);
        vm.stopPrank();
    }

    function test_milestone_onlyRequesterInProgress() public {
        bytes32 id = committed();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidState.selector, id, COMMITTED));
        vm.prank(requester);
        kernel.releaseMilestone(id, 1);
        start(id);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, provider, requester));
        vm.prank(provider);
        kernel.releaseMilestone(id, 1);
    }

    function test_milestone_allowedWhilePaused() public {
        bytes32 id = inProgress();
        vm.prank(admin);
        kernel.pause();
        vm.prank(requester);
        kernel.releaseMilestone(id, 100_000);
        assertEq(kernel.remaining(id), 900_000, "paid while paused");
    }
}
