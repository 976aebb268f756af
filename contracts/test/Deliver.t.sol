// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// IN_PROGRESS -> DELIVERED, and the three proof forms.
contract DeliverTest is KernelTestBase {
    function test_deliver_emptyProofUsesRequesterWindow() public {
        bytes32 id = inProgress();
        vm.warp(T0 + 100);
        deliver(id);
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertEq(uint256(v.state), uint256(DELIVERED), "state");
        assertEq(v.disputeWindow, T0 + 100 + WINDOW, "window end is absolute after delivery (v3 convention)");
    }

    function test_deliver_32ByteWindowAtLeastRequesters() public {
        bytes32 id = inProgress();
        transition(provider, id, DELIVERED, abi.encode(WINDOW + 1 hours));
        assertEq(kernel.getTransaction(id).disputeWindow, T0 + WINDOW + 1 hours, "longer window accepted");
    }

    function test_deliver_32ByteZeroMeansRequesterWindow() public {
        bytes32 id = inProgress();
        transition(provider, id, DELIVERED, abi.encode(uint256(0)));
        assertEq(kernel.getTransaction(id).disputeWindow, T0 + WINDOW, "0 = requester's window");
    }

    function test_deliver_providerCannotShortenRequesterWindow() public {
        bytes32 id = inProgress();
        expectRevertTransition(
            provider,
            id,
            DELIVERED,
            abi.encode(WINDOW - 1),
            abi.encodeWithSelector(IEscrowKernel.DisputeWindowOutOfRange.selector, WINDOW - 1, WINDOW, 30 days)
        );
        expectRevertTransition(
            provider,
            id,
            DELIVERED,
            abi.encode(1 hours),
            abi.encodeWithSelector(IEscrowKernel.DisputeWindowOutOfRange.selector, 1 hours, WINDOW, 30 days)
        );
        expectRevertTransition(
            provider,
            id,
            DELIVERED,
            abi.encode(30 days + 1),
            abi.encodeWithSelector(IEscrowKernel.DisputeWindowOutOfRange.selector, 30 days + 1, WINDOW, 30 days)
        );
    }

    function test_deliver_64ByteProofEmitsProofHash() public {
        bytes32 id = inProgress();
        bytes32 proofHash = keccak256("the delivered bytes");
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(id, IN_PROGRESS, DELIVERED, provider, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.DeliveryProofRecorded(id, proofHash, T0 + WINDOW);
        transition(provider, id, DELIVERED, abi.encode(uint256(0), proofHash));
        assertState(id, DELIVERED);
    }

    function test_deliver_64ByteProofWindowRulesApply() public {
        bytes32 id = inProgress();
        expectRevertTransition(
            provider,
            id,
            DELIVERED,
            abi.encode(uint256(1 hours), bytes32(uint256(1))),
            abi.encodeWithSelector(IEscrowKernel.DisputeWindowOutOfRange.selector, 1 hours, WINDOW, 30 days)
        );
        transition(provider, id, DELIVERED, abi.encode(uint256(3 days), bytes32(uint256(1))));
        assertEq(kernel.getTransaction(id).disputeWindow, T0 + 3 days, "chosen window");
    }

    function test_deliver_otherProofLengthsRejected() public {
        bytes32 id = inProgress();
        uint256[4] memory lengths = [uint256(1), 31, 96, 128];
        for (uint256 i; i < lengths.length; ++i) {
            expectRevertTransition(
                provider,
                id,
                DELIVERED,
                new bytes(lengths[i]),
                abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, lengths[i])
            );
        }
    }

    function test_deliver_onlyProvider() public {
        bytes32 id = inProgress();
        address[3] memory others = [requester, stranger, admin];
        for (uint256 i; i < others.length; ++i) {
            expectRevertTransition(
                others[i],
                id,
                DELIVERED,
                "",
                abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, others[i], provider)
            );
        }
    }

    function test_deliver_byDeadlineOnly() public {
        bytes32 id = inProgress();
        vm.warp(DEADLINE + 1);
        expectRevertTransition(
            provider, id, DELIVERED, "", abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE)
        );
        vm.warp(DEADLINE);
        deliver(id);
    }

    function test_deliver_requiresInProgress() public {
        bytes32 id = committed();
        expectRevertTransition(
            provider,
            id,
            DELIVERED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, COMMITTED, DELIVERED)
        );
    }

    function test_deliver_allowedWhilePaused() public {
        bytes32 id = inProgress();
        vm.prank(admin);
        kernel.pause();
        deliver(id);
        assertState(id, DELIVERED);
    }
}
