// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {Packed} from "../src/libraries/Packed.sol";

/// Timestamps past 2^32 (2106-02-07): creation refuses them as deadlines, but a funded transaction can still
/// move after that date (settle, dispute, resolve, cancel, milestones), and those moves must not spill the time
/// into the neighbouring packed fields.
contract TimeTest is KernelTestBase {
    uint256 internal constant U32_MAX = type(uint32).max;
    uint256 internal constant LATE = U32_MAX - 10 days;
    uint256 internal constant LATE_DEADLINE = U32_MAX - 1; // even: a spill into its lowest bit would show

    function test_packed_movedKeepsNeighboursForAnyTime(uint256 now_) public pure {
        now_ = bound(now_, 0, type(uint64).max);
        uint256 s = Packed.status(address(0xBEEF), IACTPKernel.State.IN_PROGRESS, Packed.ESCROWED, 1, LATE_DEADLINE, 7);
        uint256 m = Packed.moved(s, IACTPKernel.State.DELIVERED, now_, 30 days, Packed.DELIVERED);
        assertEq(Packed.deadline(m), LATE_DEADLINE, "deadline kept");
        assertEq(Packed.window(m), 30 days, "window kept");
        assertEq(Packed.provider(m), address(0xBEEF), "provider kept");
        assertEq(uint256(Packed.state(m)), uint256(IACTPKernel.State.DELIVERED), "state");
        assertTrue(Packed.has(m, Packed.ESCROWED) && Packed.has(m, Packed.DELIVERED), "flags");
        assertTrue(!Packed.has(m, Packed.SIDE), "no stray flag");
        // Times that fit are stored as they are; later ones saturate at the last representable second.
        assertEq(Packed.updated(m), now_ > U32_MAX ? U32_MAX : now_, "updated saturates");
    }

    function test_disputeAfter2106KeepsDeadlineAndWindow() public {
        vm.warp(LATE);
        bytes32 id = _deliveredLate(30 days);
        uint256 windowEnd = LATE + 30 days; // beyond 2^32
        vm.warp(U32_MAX + 1 days);
        transition(requester, id, DISPUTED, "");
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertEq(v.deadline, LATE_DEADLINE, "deadline intact");
        assertEq(v.disputeWindow, windowEnd, "window end intact");
        assertEq(v.updatedAt, U32_MAX, "updatedAt saturates at 2^32 - 1");
        assertEq(uint256(v.state), uint256(DISPUTED), "disputed");
        transition(admin, id, SETTLED, abi.encode(uint256(0), AMOUNT));
        assertEq(kernel.getTransaction(id).deadline, LATE_DEADLINE, "deadline intact after resolution");
    }

    /// A milestone far past 2106 must not push the deadline later: the requester reclaims the rest at once.
    function test_milestoneFarPast2106LeavesRequesterExit() public {
        vm.warp(LATE);
        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, AMOUNT, LATE_DEADLINE, WINDOW, SERVICE, 0, 0);
        start(id);
        vm.warp(U32_MAX * 4); // sets bits 33 and 34 of the time
        vm.prank(requester);
        kernel.releaseMilestone(id, 100_000);
        assertEq(kernel.getTransaction(id).deadline, LATE_DEADLINE, "deadline intact");
        transition(requester, id, CANCELLED, "");
        assertEq(kernel.remaining(id), 0, "refunded");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "nothing stranded");
    }

    function _deliveredLate(uint256 window) private returns (bytes32 id) {
        vm.prank(requester);
        id = kernel.createAndFund(provider, AMOUNT, LATE_DEADLINE, WINDOW, SERVICE, 0, 0);
        start(id);
        transition(provider, id, DELIVERED, abi.encode(window));
    }
}
