// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// DELIVERED -> DISPUTED, and DISPUTED -> SETTLED / CANCELLED by a resolver.
contract DisputeTest is KernelTestBase {
    function test_dispute_byEitherPartyWithinWindow() public {
        bytes32 a = delivered();
        vm.warp(T0 + WINDOW); // last second of the window
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.DisputeOpened(a, requester, 0, T0 + WINDOW);
        transition(requester, a, DISPUTED, abi.encode("late", "evidence"));
        assertState(a, DISPUTED);
        assertEq(kernel.getTransaction(a).disputeInitiator, requester, "initiator");
        assertEq(kernel.getTransaction(a).disputeWindow, T0 + WINDOW, "window end kept");

        vm.warp(T0);
        bytes32 b = delivered();
        transition(provider, b, DISPUTED, "");
        assertEq(kernel.getTransaction(b).disputeInitiator, provider, "provider may dispute too");
    }

    function test_dispute_afterWindowRejected() public {
        bytes32 id = delivered();
        vm.warp(T0 + WINDOW + 1);
        expectRevertTransition(
            requester, id, DISPUTED, "", abi.encodeWithSelector(IEscrowKernel.DisputeWindowClosed.selector, T0 + WINDOW)
        );
    }

    function test_dispute_onlyParties() public {
        bytes32 id = delivered();
        expectRevertTransition(
            stranger, id, DISPUTED, "", abi.encodeWithSelector(IEscrowKernel.NotParty.selector, stranger)
        );
        expectRevertTransition(admin, id, DISPUTED, "", abi.encodeWithSelector(IEscrowKernel.NotParty.selector, admin));
    }

    function test_dispute_onlyFromDelivered() public {
        bytes32 id = inProgress();
        expectRevertTransition(
            requester,
            id,
            DISPUTED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, IN_PROGRESS, DISPUTED)
        );
    }

    function test_dispute_allowedWhilePaused() public {
        bytes32 id = delivered();
        vm.prank(admin);
        kernel.pause();
        transition(requester, id, DISPUTED, "");
        assertState(id, DISPUTED);
    }

    function test_resolve_splitsExactlyWithFeeOnProviderShare() public {
        bytes32 id = disputed();
        uint256 toRequester = 400_000;
        uint256 toProvider = AMOUNT - toRequester;
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.DisputeResolved(id, admin, toRequester, toProvider);
        transition(admin, id, SETTLED, abi.encode(toRequester, toProvider));
        assertState(id, SETTLED);
        assertEq(bal(provider), toProvider - fee(toProvider), "provider share net of fee");
        assertEq(bal(requester), 1_000_000e6 - AMOUNT + toRequester, "requester refund, no fee");
        assertEq(kernel.accruedFees(), fee(toProvider), "fee on provider share only");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "nothing stranded");
    }

    function test_resolve_toCancelledWithFullRefund() public {
        bytes32 id = disputed();
        transition(admin, id, CANCELLED, abi.encode(AMOUNT, uint256(0), true));
        assertState(id, CANCELLED);
        assertEq(bal(requester), 1_000_000e6, "requester whole");
        assertEq(bal(address(kernel)), 0, "empty");
    }

    function test_resolve_mustAddUpExactly() public {
        bytes32 id = disputed();
        expectRevertTransition(
            admin,
            id,
            SETTLED,
            abi.encode(uint256(1), AMOUNT),
            abi.encodeWithSelector(IEscrowKernel.ResolutionMismatch.selector, 1, AMOUNT, AMOUNT)
        );
        expectRevertTransition(
            admin,
            id,
            SETTLED,
            abi.encode(uint256(1), AMOUNT - 2),
            abi.encodeWithSelector(IEscrowKernel.ResolutionMismatch.selector, 1, AMOUNT - 2, AMOUNT)
        );
        expectRevertTransition(
            admin,
            id,
            SETTLED,
            abi.encode(type(uint256).max, uint256(2)),
            abi.encodeWithSelector(IEscrowKernel.ResolutionMismatch.selector, type(uint256).max, 2, AMOUNT)
        );
        expectRevertTransition(
            admin, id, SETTLED, "", abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, 0)
        );
        expectRevertTransition(
            admin, id, CANCELLED, new bytes(128), abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, 128)
        );
    }

    function test_resolve_onlyAdminOrActiveMediator() public {
        bytes32 id = disputed();
        bytes memory split = abi.encode(uint256(0), AMOUNT);
        address[3] memory others = [requester, provider, stranger];
        for (uint256 i; i < others.length; ++i) {
            expectRevertTransition(
                others[i], id, SETTLED, split, abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, others[i])
            );
        }
        vm.prank(admin);
        kernel.setMediator(mediator, true);
        expectRevertTransition(
            mediator, id, SETTLED, split, abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, mediator)
        );
        vm.warp(T0 + 2 days);
        transition(mediator, id, SETTLED, split);
        assertState(id, SETTLED);
    }

    function test_resolve_afterDeadlineAndWhilePaused() public {
        bytes32 id = disputed();
        vm.prank(admin);
        kernel.pause();
        vm.warp(DEADLINE + 400 days);
        transition(admin, id, SETTLED, abi.encode(AMOUNT / 2, AMOUNT / 2));
        assertState(id, SETTLED);
    }

    function test_resolve_afterMilestonesSplitsWhatRemains() public {
        bytes32 id = inProgress();
        vm.prank(requester);
        kernel.releaseMilestone(id, 300_000);
        deliver(id);
        transition(requester, id, DISPUTED, "");
        expectRevertTransition(
            admin,
            id,
            SETTLED,
            abi.encode(uint256(0), AMOUNT),
            abi.encodeWithSelector(IEscrowKernel.ResolutionMismatch.selector, 0, AMOUNT, 700_000)
        );
        transition(admin, id, SETTLED, abi.encode(uint256(200_000), uint256(500_000)));
        assertEq(bal(provider), 800_000 - fee(800_000), "fee on the provider's running total");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "nothing stranded");
    }

    /// A resolver never decides its own dispute: not as the provider (an approved mediator)...
    function test_resolve_notByTheProviderEvenWhenMediator() public {
        vm.prank(admin);
        kernel.setMediator(provider, true);
        vm.warp(T0 + 2 days);
        assertTrue(kernel.isResolver(provider), "an active mediator");
        bytes32 id = createWith(AMOUNT, T0 + 3 days, WINDOW);
        fund(id);
        start(id);
        deliver(id);
        transition(requester, id, DISPUTED, "");
        expectRevertTransition(
            provider,
            id,
            SETTLED,
            abi.encode(uint256(0), AMOUNT),
            abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, provider)
        );
        transition(admin, id, CANCELLED, abi.encode(AMOUNT, uint256(0)));
    }

    /// ... nor as the requester (the admin paying a provider).
    function test_resolve_notByTheRequesterEvenWhenAdmin() public {
        usdc.mint(admin, AMOUNT);
        vm.startPrank(admin);
        usdc.approve(address(kernel), AMOUNT);
        bytes32 id = kernel.createAndFund(provider, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
        vm.stopPrank();
        start(id);
        deliver(id);
        transition(provider, id, DISPUTED, "");
        expectRevertTransition(
            admin,
            id,
            CANCELLED,
            abi.encode(AMOUNT, uint256(0)),
            abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, admin)
        );
        vm.prank(admin);
        kernel.setMediator(mediator, true);
        vm.warp(T0 + 2 days);
        transition(mediator, id, CANCELLED, abi.encode(AMOUNT, uint256(0)));
        assertState(id, CANCELLED);
    }

    /// A new admin waits the mediator delay before it resolves, as an approved mediator does.
    function test_resolve_newAdminWaitsTheMediatorDelay() public {
        bytes32 id = disputed();
        address next = makeAddr("next admin");
        vm.prank(admin);
        kernel.transferAdmin(next);
        vm.warp(T0 + 1 hours);
        vm.prank(next);
        kernel.acceptAdmin();
        assertTrue(!kernel.isResolver(next), "not yet");
        bytes memory split = abi.encode(uint256(0), AMOUNT);
        expectRevertTransition(
            next, id, SETTLED, split, abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, next)
        );
        expectRevertTransition(
            admin, id, SETTLED, split, abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, admin)
        );
        vm.warp(T0 + 1 hours + 2 days - 1);
        expectRevertTransition(
            next, id, SETTLED, split, abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, next)
        );
        vm.warp(T0 + 1 hours + 2 days);
        assertTrue(kernel.isResolver(next), "after the delay");
        transition(next, id, SETTLED, split);
        assertState(id, SETTLED);
    }
}
