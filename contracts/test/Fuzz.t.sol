// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// Fuzzed amounts, deadlines, windows, fee rates and splits. Inputs are clamped with bound(), never filtered.
contract FuzzTest is KernelTestBase {
    function testFuzz_happyPathPaysExactly(uint256 amount, uint256 feeBps, uint256 window, uint256 extra, uint256 wait)
        public
    {
        amount = bound(amount, 50_000, 1e15);
        feeBps = bound(feeBps, 0, 500);
        window = bound(window, 1 hours, 30 days);
        uint256 chosen = bound(extra, window, 30 days);
        kernel = deployKernel(address(usdc), admin, feeSink, feeBps);
        usdc.mint(requester, amount);
        vm.prank(requester);
        usdc.approve(address(kernel), amount);
        uint256 before = bal(requester);

        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, amount, T0 + 10 days, window, SERVICE, 0, 0);
        start(id);
        transition(provider, id, DELIVERED, abi.encode(chosen, keccak256("proof")));
        wait = bound(wait, chosen + 1, 1000 days);
        vm.warp(T0 + wait);
        transition(stranger, id, SETTLED, "");

        uint256 expectedFee = amount * feeBps / 10_000;
        assertEq(bal(provider), amount - expectedFee, "provider net");
        assertEq(kernel.accruedFees(), expectedFee, "fee at the locked rate");
        assertEq(bal(requester), before - amount, "requester paid exactly the amount");
        assertEq(bal(address(kernel)), expectedFee, "only the fee stays");
    }

    function testFuzz_createAcceptsExactlyTheDocumentedRanges(uint256 amount, uint256 deadline, uint256 window) public {
        amount = bound(amount, 0, 2e15);
        deadline = bound(deadline, T0 - 1 days, T0 + 400 days);
        window = bound(window, 0, 40 days);
        bool ok = amount >= 50_000 && amount <= 1e15 && deadline > T0 && deadline <= T0 + 365 days && window >= 1 hours
            && window <= 30 days;
        vm.prank(requester);
        (bool success,) = address(kernel)
            .call(
                abi.encodeCall(
                    IACTPKernel.createTransaction, (provider, requester, amount, deadline, window, SERVICE, 0, 0)
                )
            );
        assertTrue(success == ok, "accepted iff within range");
    }

    function testFuzz_resolutionSplitsExactly(uint256 amount, uint256 toRequester, uint256 milestone) public {
        amount = bound(amount, 50_000, 1e12);
        milestone = bound(milestone, 0, amount);
        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, amount, DEADLINE, WINDOW, SERVICE, 0, 0);
        start(id);
        if (milestone != 0) {
            vm.prank(requester);
            kernel.releaseMilestone(id, milestone);
        }
        deliver(id);
        transition(requester, id, DISPUTED, "");
        uint256 left = amount - milestone;
        toRequester = bound(toRequester, 0, left);
        uint256 requesterBefore = bal(requester);
        transition(admin, id, SETTLED, abi.encode(toRequester, left - toRequester));

        uint256 providerGross = milestone + left - toRequester;
        uint256 totalFee = providerGross * FEE_BPS / 10_000;
        assertEq(bal(requester) - requesterBefore, toRequester, "refund without fee");
        assertEq(bal(provider), providerGross - totalFee, "provider net of one fee on its total");
        assertEq(kernel.accruedFees(), totalFee, "fee on provider share only");
        assertEq(bal(address(kernel)), totalFee, "nothing stranded");
    }

    function testFuzz_resolutionRejectsAnyOtherSum(uint256 toRequester, uint256 toProvider) public {
        bytes32 id = disputed();
        // The one exact split is shifted by a unit, never discarded.
        if (toRequester <= AMOUNT && toProvider == AMOUNT - toRequester) ++toProvider;
        expectRevertTransition(
            admin,
            id,
            SETTLED,
            abi.encode(toRequester, toProvider),
            abi.encodeWithSelector(IEscrowKernel.ResolutionMismatch.selector, toRequester, toProvider, AMOUNT)
        );
    }

    function testFuzz_milestonesNeverChangeTheTotalFee(uint256 amount, uint256[4] memory parts) public {
        amount = bound(amount, 50_000, 1e12);
        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, amount, DEADLINE, WINDOW, SERVICE, 0, 0);
        start(id);
        uint256 left = amount;
        for (uint256 i; i < parts.length; ++i) {
            uint256 part = bound(parts[i], 0, left);
            if (part == 0) continue;
            vm.prank(requester);
            kernel.releaseMilestone(id, part);
            left -= part;
        }
        deliver(id);
        transition(requester, id, SETTLED, "");
        assertEq(kernel.accruedFees(), amount * FEE_BPS / 10_000, "same fee as one payout");
        assertEq(bal(provider) + kernel.accruedFees(), amount, "all paid out");
    }

    function testFuzz_deliveryWindowNeverBelowRequesters(uint256 window, uint256 chosen) public {
        window = bound(window, 1 hours, 30 days);
        chosen = bound(chosen, 1, 40 days);
        vm.prank(requester);
        bytes32 id = kernel.createAndFund(provider, AMOUNT, DEADLINE, window, SERVICE, 0, 0);
        start(id);
        vm.prank(provider);
        (bool ok,) =
            address(kernel).call(abi.encodeCall(IACTPKernel.transitionState, (id, DELIVERED, abi.encode(chosen))));
        assertTrue(ok == (chosen >= window && chosen <= 30 days), "window >= requester's, <= max");
        if (ok) assertEq(kernel.getTransaction(id).disputeWindow, T0 + chosen, "window end");
    }
}
