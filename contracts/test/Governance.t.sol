// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// Fees, pause, mediators and the two-step admin transfer.
contract GovernanceTest is KernelTestBase {
    function test_constructor_validates() public {
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        deployKernel(address(0), admin, feeSink, 100);
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        deployKernel(address(usdc), address(0), feeSink, 100);
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        deployKernel(address(usdc), admin, address(0), 100);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.FeeAboveCap.selector, 501, 500));
        deployKernel(address(usdc), admin, feeSink, 501);
        assertEq(kernel.admin(), admin, "admin");
        assertEq(kernel.pauser(), admin, "admin pauses by default");
        assertEq(kernel.platformFeeBps(), FEE_BPS, "fee");
        assertEq(kernel.feeRecipient(), feeSink, "fee recipient");
        assertEq(kernel.token(), address(usdc), "token");
        assertEq(kernel.kernel(), address(kernel), "own vault");
    }

    function test_feeChange_onlyAfterDelay() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotAdmin.selector, stranger));
        vm.prank(stranger);
        kernel.scheduleFeeChange(200);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.FeeAboveCap.selector, 501, 500));
        vm.prank(admin);
        kernel.scheduleFeeChange(501);
        vm.expectRevert(IEscrowKernel.NoPendingFeeChange.selector);
        kernel.executeFeeChange();

        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.PlatformFeeChangeScheduled(200, T0 + 2 days);
        vm.prank(admin);
        kernel.scheduleFeeChange(200);
        (uint16 bps, uint256 after_) = kernel.pendingFeeChange();
        assertEq(bps, 200, "pending bps");
        assertEq(after_, T0 + 2 days, "pending time");
        vm.warp(T0 + 2 days - 1);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.FeeChangeNotReady.selector, T0 + 2 days));
        kernel.executeFeeChange();
        vm.warp(T0 + 2 days);
        vm.prank(stranger);
        kernel.executeFeeChange();
        assertEq(kernel.platformFeeBps(), 200, "applied");
        (, after_) = kernel.pendingFeeChange();
        assertEq(after_, 0, "cleared");
    }

    function test_feeChange_cancel() public {
        vm.prank(admin);
        kernel.scheduleFeeChange(0);
        vm.prank(admin);
        kernel.cancelFeeChange();
        vm.warp(T0 + 3 days);
        vm.expectRevert(IEscrowKernel.NoPendingFeeChange.selector);
        kernel.executeFeeChange();
        vm.expectRevert(IEscrowKernel.NoPendingFeeChange.selector);
        vm.prank(admin);
        kernel.cancelFeeChange();
    }

    function test_feeRecipient_adminChangesIt() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotAdmin.selector, stranger));
        vm.prank(stranger);
        kernel.setFeeRecipient(stranger);
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        vm.prank(admin);
        kernel.setFeeRecipient(address(0));
        bytes32 id = delivered();
        transition(requester, id, SETTLED, "");
        address next = makeAddr("next recipient");
        vm.prank(admin);
        kernel.setFeeRecipient(next);
        assertEq(kernel.accruedFees(), fee(AMOUNT), "accrued fees survive the change");
        kernel.collectFees();
        assertEq(bal(next), fee(AMOUNT), "paid to the current recipient");
    }

    function test_pause_rolesAndScope() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotPauser.selector, stranger));
        vm.prank(stranger);
        kernel.pause();
        address pauserKey = makeAddr("pauser");
        vm.prank(admin);
        kernel.setPauser(pauserKey);
        vm.prank(pauserKey);
        kernel.pause();
        assertTrue(kernel.paused(), "paused");
        vm.prank(admin);
        kernel.unpause();
        assertTrue(!kernel.paused(), "admin can unpause too");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotAdmin.selector, pauserKey));
        vm.prank(pauserKey);
        kernel.setPauser(stranger);
    }

    function test_pause_keepsEveryExitOpen() public {
        bytes32 toSettle = delivered();
        bytes32 toRefund = committed();
        bytes32 toResolve = disputed();
        bytes32 toReclaim = inProgress();
        vm.prank(admin);
        kernel.pause();
        vm.warp(DEADLINE + 1);
        transition(stranger, toSettle, SETTLED, "");
        transition(requester, toRefund, CANCELLED, "");
        transition(admin, toResolve, CANCELLED, abi.encode(AMOUNT, uint256(0)));
        transition(requester, toReclaim, CANCELLED, "");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "all funds left the kernel while paused");
    }

    function test_mediator_delayAndRevocation() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotAdmin.selector, stranger));
        vm.prank(stranger);
        kernel.setMediator(mediator, true);
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        vm.prank(admin);
        kernel.setMediator(address(0), true);
        vm.prank(admin);
        kernel.setMediator(mediator, true);
        assertEq(kernel.mediatorActiveFrom(mediator), T0 + 2 days, "active after delay");
        assertTrue(!kernel.isResolver(mediator), "not yet");
        vm.warp(T0 + 1 days);
        vm.prank(admin);
        kernel.setMediator(mediator, true);
        assertEq(kernel.mediatorActiveFrom(mediator), T0 + 2 days, "re-approval cannot reset the clock");
        vm.warp(T0 + 2 days);
        assertTrue(kernel.isResolver(mediator), "active");
        vm.prank(admin);
        kernel.setMediator(mediator, false);
        assertTrue(!kernel.isResolver(mediator), "revoked at once");
        assertTrue(kernel.isResolver(admin), "admin always resolves");
    }

    function test_adminTransfer_twoStep() public {
        address next = makeAddr("next admin");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotAdmin.selector, stranger));
        vm.prank(stranger);
        kernel.transferAdmin(next);
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        vm.prank(admin);
        kernel.transferAdmin(address(0));
        vm.prank(admin);
        kernel.transferAdmin(next);
        assertEq(kernel.pendingAdmin(), next, "pending");
        assertEq(kernel.admin(), admin, "unchanged until accepted");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotPendingAdmin.selector, stranger));
        vm.prank(stranger);
        kernel.acceptAdmin();
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.AdminTransferred(admin, next);
        vm.prank(next);
        kernel.acceptAdmin();
        assertEq(kernel.admin(), next, "moved");
        assertEq(kernel.pendingAdmin(), address(0), "cleared");
        assertTrue(!kernel.isResolver(admin), "old admin lost its powers");
    }

    /// The pause power follows the admin role: a retired (or stolen) admin key cannot pause once replaced.
    function test_adminTransfer_pauserMovesWithAdmin() public {
        address next = makeAddr("next admin");
        vm.prank(admin);
        kernel.transferAdmin(next);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.PauserUpdated(admin, next);
        vm.prank(next);
        kernel.acceptAdmin();
        assertEq(kernel.pauser(), next, "the new admin pauses");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotPauser.selector, admin));
        vm.prank(admin);
        kernel.pause();
        vm.prank(next);
        kernel.pause();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotPauser.selector, admin));
        vm.prank(admin);
        kernel.unpause();
        assertTrue(kernel.paused(), "still paused");
    }

    /// A pauser the old admin named is reset too: the new admin names its own.
    function test_adminTransfer_resetsThePauserTheOldAdminNamed() public {
        address pauserKey = makeAddr("pauser");
        address next = makeAddr("next admin");
        vm.prank(admin);
        kernel.setPauser(pauserKey);
        vm.prank(admin);
        kernel.transferAdmin(next);
        vm.prank(pauserKey);
        kernel.pause(); // still the pauser until the transfer completes
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.PauserUpdated(pauserKey, next);
        vm.prank(next);
        kernel.acceptAdmin();
        assertEq(kernel.pauser(), next, "reset to the new admin");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotPauser.selector, pauserKey));
        vm.prank(pauserKey);
        kernel.unpause();
        address nextKey = makeAddr("next pauser");
        vm.prank(next);
        kernel.setPauser(nextKey);
        vm.prank(nextKey);
        kernel.unpause();
        assertTrue(!kernel.paused(), "unpaused by the new admin's pauser");
    }
}
