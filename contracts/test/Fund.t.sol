// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// linkEscrow (the v3 funding call) and createAndFund (the one-call extension).
contract FundTest is KernelTestBase {
    function test_link_pullsAmountAndCommits() public {
        bytes32 id = create();
        uint256 before = bal(requester);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowLinked(id, address(kernel), id, AMOUNT, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(id, INITIATED, COMMITTED, requester, T0);
        fund(id);
        assertState(id, COMMITTED);
        assertEq(bal(requester), before - AMOUNT, "requester paid");
        assertEq(bal(address(kernel)), AMOUNT, "kernel holds escrow");
        assertEq(kernel.remaining(id), AMOUNT, "remaining");
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertEq(v.escrowContract, address(kernel), "kernel is the vault");
        assertEq(v.escrowId, id, "escrowId = txId");
    }

    function test_link_exactApprovalLikeV3Client() public {
        bytes32 id = create();
        vm.startPrank(requester);
        usdc.approve(address(kernel), AMOUNT);
        kernel.linkEscrow(id, address(kernel), id);
        vm.stopPrank();
        assertEq(usdc.allowance(requester, address(kernel)), 0, "allowance consumed exactly");
    }

    function test_link_fromQuoted() public {
        bytes32 id = create();
        transition(provider, id, QUOTED, abi.encode(keccak256("quote")));
        fund(id);
        assertState(id, COMMITTED);
    }

    function test_link_withOlderClientEscrowId() public {
        bytes32 id = create();
        bytes32 escrowId = keccak256("escrow-legacy-1");
        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), escrowId);
        assertEq(kernel.getTransaction(id).escrowId, escrowId, "alias reported");
        assertEq(kernel.remaining(escrowId), AMOUNT, "remaining by alias");
        assertEq(kernel.remaining(id), AMOUNT, "remaining by txId");
        (bool active, uint256 held) = kernel.verifyEscrow(escrowId, requester, provider, AMOUNT);
        assertTrue(active, "alias verifies");
        assertEq(held, AMOUNT, "held");

        bytes32 other = create();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, escrowId));
        vm.prank(requester);
        kernel.linkEscrow(other, address(kernel), escrowId);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, id));
        vm.prank(requester);
        kernel.linkEscrow(other, address(kernel), id);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, bytes32(0)));
        vm.prank(requester);
        kernel.linkEscrow(other, address(kernel), bytes32(0));
    }

    function test_link_rejectsOtherEscrowContract() public {
        bytes32 id = create();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.UnsupportedEscrowContract.selector, stranger));
        vm.prank(requester);
        kernel.linkEscrow(id, stranger, id);
    }

    function test_link_rejectsUnknownTransaction() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.TransactionNotFound.selector, bytes32("x")));
        vm.prank(requester);
        kernel.linkEscrow(bytes32("x"), address(kernel), bytes32("x"));
    }

    function test_link_onlyRequester() public {
        bytes32 id = create();
        address[2] memory others = [provider, stranger];
        for (uint256 i; i < others.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, others[i], requester));
            vm.prank(others[i]);
            kernel.linkEscrow(id, address(kernel), id);
        }
    }

    function test_link_rejectsTwiceAndAfterCancel() public {
        bytes32 id = committed();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, COMMITTED, COMMITTED));
        fund(id);
        bytes32 gone = create();
        transition(requester, gone, CANCELLED, "");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, gone, CANCELLED, COMMITTED));
        fund(gone);
    }

    function test_link_rejectsAfterDeadline() public {
        bytes32 id = create();
        vm.warp(DEADLINE + 1);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE));
        fund(id);
        vm.warp(DEADLINE);
        fund(id); // the deadline second itself is still in time
    }

    function test_link_rejectedWhilePaused() public {
        bytes32 id = create();
        vm.prank(admin);
        kernel.pause();
        vm.expectRevert(IEscrowKernel.KernelIsPaused.selector);
        fund(id);
    }

    function test_link_insufficientAllowanceRevertsAndLeavesStateAlone() public {
        bytes32 id = create();
        vm.prank(requester);
        usdc.approve(address(kernel), AMOUNT - 1);
        vm.expectRevert();
        fund(id);
        assertState(id, INITIATED);
    }

    function test_createAndFund_oneCall() public {
        uint256 nonce = kernel.requesterNonces(requester);
        bytes32 expected = keccak256(abi.encodePacked(requester, provider, AMOUNT, SERVICE, nonce));
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.TransactionCreated(expected, requester, provider, AMOUNT, SERVICE, DEADLINE, T0, 3);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(expected, INITIATED, COMMITTED, requester, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowLinked(expected, address(kernel), expected, AMOUNT, T0);
        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, AMOUNT, DEADLINE, WINDOW, SERVICE, 3, 4);
        assertEq(id, expected, "same txId formula");
        assertState(id, COMMITTED);
        assertEq(bal(address(kernel)), AMOUNT, "funded");
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertEq(v.escrowContract, address(kernel), "escrowed");
        assertEq(v.agentId, 3, "agent id");
        assertEq(v.requesterAgentId, 4, "requester agent id");
    }

    function test_createAndFund_validatesLikeCreate() public {
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.SelfDealing.selector, requester));
        kernel.createAndFund(requester, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.AmountOutOfRange.selector, 1, 50_000, 1e15));
        kernel.createAndFund(provider, 1, DEADLINE, WINDOW, SERVICE, 0, 0);
        vm.stopPrank();
        vm.prank(admin);
        kernel.pause();
        vm.expectRevert(IEscrowKernel.KernelIsPaused.selector);
        vm.prank(requester);
        kernel.createAndFund(provider, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_createAndFund_withoutAllowanceRevertsWholly() public {
        vm.prank(stranger);
        vm.expectRevert();
        kernel.createAndFund(provider, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
        assertEq(kernel.requesterNonces(stranger), 0, "nothing created");
    }
}
