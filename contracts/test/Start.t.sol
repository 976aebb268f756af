// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// COMMITTED -> IN_PROGRESS.
contract StartTest is KernelTestBase {
    function test_start_byProviderBeforeDeadline() public {
        bytes32 id = committed();
        vm.warp(DEADLINE);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(id, COMMITTED, IN_PROGRESS, provider, DEADLINE);
        start(id);
        assertState(id, IN_PROGRESS);
        assertEq(kernel.getTransaction(id).updatedAt, DEADLINE, "updatedAt");
    }

    function test_start_onlyProvider() public {
        bytes32 id = committed();
        address[3] memory others = [requester, stranger, admin];
        for (uint256 i; i < others.length; ++i) {
            expectRevertTransition(
                others[i],
                id,
                IN_PROGRESS,
                "",
                abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, others[i], provider)
            );
        }
    }

    function test_start_afterDeadlineRejected() public {
        bytes32 id = committed();
        vm.warp(DEADLINE + 1);
        expectRevertTransition(
            provider, id, IN_PROGRESS, "", abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE)
        );
    }

    function test_start_requiresFunding() public {
        bytes32 id = create();
        expectRevertTransition(
            provider,
            id,
            IN_PROGRESS,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, INITIATED, IN_PROGRESS)
        );
    }

    function test_start_rejectsProofBytes() public {
        bytes32 id = committed();
        expectRevertTransition(
            provider, id, IN_PROGRESS, hex"01", abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, 1)
        );
    }

    function test_start_allowedWhilePaused() public {
        bytes32 id = committed();
        vm.prank(admin);
        kernel.pause();
        start(id);
        assertState(id, IN_PROGRESS);
    }

    function test_transition_intoInitiatedOrCommittedIsNeverAllowed() public {
        bytes32 id = committed();
        expectRevertTransition(
            requester,
            id,
            COMMITTED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, COMMITTED, COMMITTED)
        );
        expectRevertTransition(
            requester,
            id,
            INITIATED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, COMMITTED, INITIATED)
        );
    }

    function test_transition_unknownTransaction() public {
        expectRevertTransition(
            provider,
            bytes32("missing"),
            IN_PROGRESS,
            "",
            abi.encodeWithSelector(IEscrowKernel.TransactionNotFound.selector, bytes32("missing"))
        );
    }
}
