// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// -> CANCELLED outside disputes: unfunded by the requester; funded by the provider any time or by the
/// requester after the deadline, always a full refund without penalty.
contract CancelTest is KernelTestBase {
    function test_cancel_unfundedByRequesterOnly() public {
        bytes32 id = create();
        expectRevertTransition(
            provider,
            id,
            CANCELLED,
            "",
            abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, provider, requester)
        );
        transition(requester, id, CANCELLED, "");
        assertState(id, CANCELLED);
        assertEq(kernel.getTransaction(id).escrowContract, address(0), "never escrowed");
    }

    function test_cancel_quotedByRequester() public {
        bytes32 id = create();
        transition(provider, id, QUOTED, "");
        transition(requester, id, CANCELLED, "");
        assertState(id, CANCELLED);
    }

    function test_cancel_committedByProviderAnyTimeFullRefund() public {
        bytes32 id = committed();
        uint256 before = bal(requester);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowRefunded(id, requester, AMOUNT, T0);
        transition(provider, id, CANCELLED, "");
        assertEq(bal(requester), before + AMOUNT, "full refund");
        assertEq(kernel.getTransaction(id).escrowContract, address(kernel), "was escrowed");
        assertEq(kernel.remaining(id), 0, "empty");
    }

    function test_cancel_committedByRequesterOnlyAfterDeadlineNoPenalty() public {
        bytes32 id = committed();
        vm.warp(DEADLINE);
        expectRevertTransition(
            requester, id, CANCELLED, "", abi.encodeWithSelector(IEscrowKernel.DeadlineNotPassed.selector, DEADLINE)
        );
        vm.warp(DEADLINE + 1);
        uint256 before = bal(requester);
        transition(requester, id, CANCELLED, "");
        assertEq(bal(requester), before + AMOUNT, "no penalty");
        assertEq(bal(provider), 0, "provider who never started gets nothing");
        assertEq(kernel.accruedFees(), 0, "refunds carry no fee");
    }

    function test_cancel_inProgressReclaimedByRequesterAfterDeadline() public {
        bytes32 id = inProgress();
        vm.warp(DEADLINE);
        expectRevertTransition(
            requester, id, CANCELLED, "", abi.encodeWithSelector(IEscrowKernel.DeadlineNotPassed.selector, DEADLINE)
        );
        vm.warp(DEADLINE + 1);
        uint256 before = bal(requester);
        transition(requester, id, CANCELLED, "");
        assertEq(bal(requester), before + AMOUNT, "silent provider: requester reclaims");
        assertEq(bal(address(kernel)), 0, "nothing stranded");
    }

    function test_cancel_inProgressReclaimAfterMilestoneReturnsOnlyTheRest() public {
        bytes32 id = inProgress();
        vm.prank(requester);
        kernel.releaseMilestone(id, 250_000);
        vm.warp(DEADLINE + 30 days);
        uint256 before = bal(requester);
        transition(requester, id, CANCELLED, "");
        assertEq(bal(requester), before + 750_000, "the unreleased rest");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "only fees");
    }

    function test_cancel_inProgressByProviderAnyTime() public {
        bytes32 id = inProgress();
        transition(provider, id, CANCELLED, "");
        assertState(id, CANCELLED);
        assertEq(bal(requester), 1_000_000e6, "requester whole");
    }

    function test_cancel_strangersNever() public {
        bytes32 id = committed();
        vm.warp(DEADLINE + 1);
        expectRevertTransition(
            stranger, id, CANCELLED, "", abi.encodeWithSelector(IEscrowKernel.NotParty.selector, stranger)
        );
        expectRevertTransition(admin, id, CANCELLED, "", abi.encodeWithSelector(IEscrowKernel.NotParty.selector, admin));
    }

    function test_cancel_notAfterDelivery() public {
        bytes32 id = delivered();
        vm.warp(DEADLINE + 1);
        expectRevertTransition(
            provider,
            id,
            CANCELLED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, DELIVERED, CANCELLED)
        );
    }

    function test_cancel_allowedWhilePaused() public {
        bytes32 id = committed();
        vm.prank(admin);
        kernel.pause();
        vm.warp(DEADLINE + 1);
        transition(requester, id, CANCELLED, "");
        assertState(id, CANCELLED);
    }

    function test_cancel_checksStateAndCallerBeforeProof() public {
        bytes32 done = committed();
        transition(provider, done, CANCELLED, "");
        expectRevertTransition(
            provider,
            done,
            CANCELLED,
            hex"01",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, done, CANCELLED, CANCELLED)
        );
        bytes32 id = committed();
        expectRevertTransition(
            stranger, id, CANCELLED, hex"01", abi.encodeWithSelector(IEscrowKernel.NotParty.selector, stranger)
        );
    }

    function test_cancel_rejectsProofBytes() public {
        bytes32 id = committed();
        expectRevertTransition(
            provider, id, CANCELLED, hex"0102", abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, 2)
        );
    }
}
