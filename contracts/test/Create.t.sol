// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

contract CreateTest is KernelTestBase {
    function test_create_storesEveryFieldAndUsesActpTxIdFormula() public {
        uint256 nonce = kernel.requesterNonces(requester);
        bytes32 expected = keccak256(abi.encodePacked(requester, provider, AMOUNT, SERVICE, nonce));
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.TransactionCreated(expected, requester, provider, AMOUNT, SERVICE, DEADLINE, T0, 7);
        vm.prank(requester);
        bytes32 id = kernel.createTransaction(provider, requester, AMOUNT, DEADLINE, WINDOW, SERVICE, 7, 9);
        assertEq(id, expected, "txId formula");
        assertEq(kernel.requesterNonces(requester), nonce + 1, "nonce incremented");

        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertEq(v.transactionId, id, "id");
        assertEq(v.requester, requester, "requester");
        assertEq(v.provider, provider, "provider");
        assertEq(uint256(v.state), uint256(INITIATED), "state");
        assertEq(v.amount, AMOUNT, "amount");
        assertEq(v.createdAt, T0, "createdAt");
        assertEq(v.updatedAt, T0, "updatedAt");
        assertEq(v.deadline, DEADLINE, "deadline");
        assertEq(v.serviceHash, SERVICE, "serviceHash");
        assertEq(v.escrowContract, address(0), "not escrowed yet");
        assertEq(v.escrowId, bytes32(0), "no escrow id yet");
        assertEq(v.disputeWindow, WINDOW, "window");
        assertEq(v.platformFeeBpsLocked, FEE_BPS, "fee locked");
        assertEq(v.requesterPenaltyBpsLocked, 0, "no penalty");
        assertEq(v.agentId, 7, "agentId");
        assertEq(v.requesterAgentId, 9, "requesterAgentId");
        assertEq(bal(address(kernel)), 0, "nothing pulled");
    }

    function test_create_sameTermsTwiceGiveDistinctIds() public {
        bytes32 a = create();
        bytes32 b = create();
        assertTrue(a != b, "nonce makes ids distinct");
    }

    function test_create_rejectsRequesterOtherThanCaller() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.RequesterMismatch.selector, requester, stranger));
        vm.prank(stranger);
        kernel.createTransaction(provider, requester, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_create_rejectsZeroProvider() public {
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        vm.prank(requester);
        kernel.createTransaction(address(0), requester, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_create_rejectsSelfDealing() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.SelfDealing.selector, requester));
        vm.prank(requester);
        kernel.createTransaction(requester, requester, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_create_amountBounds() public {
        uint256 min = 50_000;
        uint256 max = 1e15;
        createWith(min, DEADLINE, WINDOW);
        createWith(max, DEADLINE, WINDOW);
        _expectAmountRejected(min - 1);
        _expectAmountRejected(max + 1);
        _expectAmountRejected(0);
    }

    function _expectAmountRejected(uint256 amount) private {
        uint256 min = 50_000;
        uint256 max = 1e15;
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.AmountOutOfRange.selector, amount, min, max));
        vm.prank(requester);
        kernel.createTransaction(provider, requester, amount, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_create_deadlineBounds() public {
        uint256 latest = T0 + 365 days;
        createWith(AMOUNT, T0 + 1, WINDOW);
        createWith(AMOUNT, latest, WINDOW);
        _expectDeadlineRejected(T0, latest);
        _expectDeadlineRejected(T0 - 1, latest);
        _expectDeadlineRejected(latest + 1, latest);
    }

    function _expectDeadlineRejected(uint256 deadline, uint256 latest) private {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DeadlineOutOfRange.selector, deadline, T0, latest));
        vm.prank(requester);
        kernel.createTransaction(provider, requester, AMOUNT, deadline, WINDOW, SERVICE, 0, 0);
    }

    function test_create_deadlineBeyond2106IsRefused() public {
        uint256 lateNow = uint256(type(uint32).max) - 10 days;
        vm.warp(lateNow);
        uint256 latest = type(uint32).max;
        createWith(AMOUNT, latest, WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DeadlineOutOfRange.selector, latest + 1, lateNow, latest));
        vm.prank(requester);
        kernel.createTransaction(provider, requester, AMOUNT, latest + 1, WINDOW, SERVICE, 0, 0);
    }

    function test_create_disputeWindowBounds() public {
        createWith(AMOUNT, DEADLINE, 1 hours);
        createWith(AMOUNT, DEADLINE, 30 days);
        uint256[3] memory bad = [uint256(0), 1 hours - 1, 30 days + 1];
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IEscrowKernel.DisputeWindowOutOfRange.selector, bad[i], 1 hours, 30 days)
            );
            vm.prank(requester);
            kernel.createTransaction(provider, requester, AMOUNT, DEADLINE, bad[i], SERVICE, 0, 0);
        }
    }

    function test_create_rejectedWhilePaused() public {
        vm.prank(admin);
        kernel.pause();
        vm.expectRevert(IEscrowKernel.KernelIsPaused.selector);
        vm.prank(requester);
        kernel.createTransaction(provider, requester, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_create_locksFeeRateOfTheMoment() public {
        bytes32 before = create();
        vm.prank(admin);
        kernel.scheduleFeeChange(250);
        vm.warp(T0 + 2 days);
        kernel.executeFeeChange();
        bytes32 afterwards = createWith(AMOUNT, T0 + 3 days, WINDOW);
        assertEq(kernel.getTransaction(before).platformFeeBpsLocked, FEE_BPS, "old rate stays locked");
        assertEq(kernel.getTransaction(afterwards).platformFeeBpsLocked, 250, "new rate for new tx");
    }

    function test_getTransaction_unknownIdReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.TransactionNotFound.selector, bytes32("nope")));
        kernel.getTransaction(bytes32("nope"));
    }
}
