// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";
import {BlocklistToken, FalseReturningToken, FeeOnTransferToken, ReentrantToken, TestToken} from "./mocks/Tokens.sol";

/// The kernel against tokens that refuse, lie, skim or re-enter.
contract TokensTest is KernelTestBase {
    function _useToken(TestToken token) private {
        kernel = deployKernel(address(token), admin, feeSink, FEE_BPS);
        token.mint(requester, 100 * AMOUNT);
        vm.prank(requester);
        token.approve(address(kernel), type(uint256).max);
    }

    function test_blocklistedProvider_settlementStillCompletesAndPayoutIsClaimable() public {
        BlocklistToken token = new BlocklistToken();
        _useToken(token);
        bytes32 id = delivered();
        token.setBlocked(provider, true);
        vm.warp(T0 + WINDOW + 1);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.PaymentDeferred(provider, AMOUNT - fee(AMOUNT));
        transition(stranger, id, SETTLED, "");
        assertState(id, SETTLED);
        assertEq(kernel.deferredOf(provider), AMOUNT - fee(AMOUNT), "held for the provider");

        address fresh = makeAddr("provider's other wallet");
        vm.prank(provider);
        uint256 claimed = kernel.claimDeferred(fresh);
        assertEq(claimed, AMOUNT - fee(AMOUNT), "claimed");
        assertEq(token.balanceOf(fresh), claimed, "arrived elsewhere");
        assertEq(kernel.deferredOf(provider), 0, "cleared");
        vm.expectRevert(IEscrowKernel.NothingToClaim.selector);
        vm.prank(provider);
        kernel.claimDeferred(fresh);
        vm.expectRevert(IEscrowKernel.ZeroAddress.selector);
        vm.prank(provider);
        kernel.claimDeferred(address(0));
    }

    function test_blocklistedRequester_refundIsDeferredNotStuck() public {
        BlocklistToken token = new BlocklistToken();
        _useToken(token);
        bytes32 id = committed();
        token.setBlocked(requester, true);
        transition(provider, id, CANCELLED, "");
        assertState(id, CANCELLED);
        assertEq(kernel.deferredOf(requester), AMOUNT, "refund held");
    }

    function test_falseReturningToken_deferredInsteadOfLost() public {
        FalseReturningToken token = new FalseReturningToken();
        _useToken(token);
        bytes32 a = delivered();
        bytes32 b = delivered();
        token.setFailing(true);
        bytes32[] memory ids = new bytes32[](2);
        (ids[0], ids[1]) = (a, b);
        vm.prank(requester);
        kernel.settleBatch(ids);
        assertEq(kernel.deferredOf(provider), 2 * (AMOUNT - fee(AMOUNT)), "both payouts held");
        token.setFailing(false);
        vm.prank(provider);
        kernel.claimDeferred(provider);
        assertEq(token.balanceOf(provider), 2 * (AMOUNT - fee(AMOUNT)), "paid in the end");
        assertEq(token.balanceOf(address(kernel)), kernel.accruedFees(), "only fees left");
    }

    function test_feeOnTransferToken_fundingRefused() public {
        FeeOnTransferToken token = new FeeOnTransferToken();
        _useToken(token);
        bytes32 id = create();
        vm.expectRevert(
            abi.encodeWithSelector(IEscrowKernel.TransferAmountMismatch.selector, AMOUNT, AMOUNT - AMOUNT / 100)
        );
        fund(id);
        assertState(id, INITIATED);
        vm.expectRevert(
            abi.encodeWithSelector(IEscrowKernel.TransferAmountMismatch.selector, AMOUNT, AMOUNT - AMOUNT / 100)
        );
        vm.prank(requester);
        kernel.createAndFund(provider, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
    }

    function test_reentrantToken_cannotSettleTwice() public {
        ReentrantToken token = new ReentrantToken();
        _useToken(token);
        bytes32 a = delivered();
        bytes32 b = delivered();
        bytes32[] memory ids = new bytes32[](1);
        ids[0] = b;
        // During a's payout the token tries to settle b through the batch entry point.
        token.arm(address(kernel), abi.encodeCall(IEscrowKernel.settleBatch, (ids)));
        transition(requester, a, SETTLED, "");
        assertTrue(token.attempted(), "re-entry attempted");
        assertTrue(!token.reentered(), "re-entry blocked");
        assertEq(
            keccak256(token.lastError()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "by the guard"
        );
        assertState(b, DELIVERED);
        assertEq(token.balanceOf(provider), AMOUNT - fee(AMOUNT), "paid once");
    }

    function test_reentrantToken_duringFundingCannotDoubleLink() public {
        ReentrantToken token = new ReentrantToken();
        _useToken(token);
        bytes32 id = create();
        token.arm(address(kernel), abi.encodeCall(IACTPKernel.linkEscrow, (id, address(kernel), id)));
        fund(id);
        assertTrue(!token.reentered(), "blocked");
        assertEq(token.balanceOf(address(kernel)), AMOUNT, "pulled once");
    }
}
