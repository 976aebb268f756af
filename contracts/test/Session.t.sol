// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SessionTestBase} from "./utils/SessionTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";
import {IKernelSessions} from "../src/interfaces/IKernelSessions.sol";
import {Wallet} from "./mocks/Wallet.sol";
import {Vm} from "../script/Vm.sol";

/// Sessions: open, top up, close with a voucher, settle with the refund, end and reclaim, disputes; and every
/// refusal, each with its typed error.
contract SessionTest is SessionTestBase {
    // ---- open ----

    function test_open_fundsTheDepositAsACommittedTransaction() public {
        bytes32 expected = keccak256(abi.encodePacked(payer, provider, DEPOSIT, SERVICE, uint256(0)));
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.TransactionCreated(expected, payer, provider, DEPOSIT, SERVICE, DEADLINE, T0, 0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(expected, INITIATED, COMMITTED, payer, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowLinked(expected, address(kernel), expected, DEPOSIT, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IKernelSessions.SessionOpened(expected, GRACE);
        bytes32 id = open();

        assertEq(id, expected, "the ACTP id formula, nonce 0");
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertState(id, COMMITTED);
        assertEq(v.amount, DEPOSIT, "amount is the deposit");
        assertEq(v.escrowId, id, "escrowed under its own id");
        assertEq(kernel.requesterNonces(payer), 1, "one nonce used");
        assertEq(kernel.remaining(id), DEPOSIT, "the vault view holds the deposit");
        assertEq(bal(address(kernel)), DEPOSIT, "deposit pulled once");
        (bool isSession, uint256 grace, uint256 closeBy, uint256 claimed) = kernel.sessionOf(id);
        assertTrue(isSession, "a session");
        assertEq(grace, GRACE, "grace");
        assertEq(closeBy, 0, "no end asked");
        assertEq(claimed, 0, "nothing claimed");
    }

    function test_open_ordinaryTransactionsAreNotSessions() public {
        bytes32 id = committed();
        (bool isSession, uint256 grace,,) = kernel.sessionOf(id);
        assertTrue(!isSession, "not a session");
        assertEq(grace, 0, "no terms");
    }

    function test_open_refusesAGracePeriodOutOfRange() public {
        uint256[2] memory bad = [uint256(10 minutes - 1), 7 days + 1];
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IKernelSessions.GraceOutOfRange.selector, bad[i], 10 minutes, 7 days)
            );
            openWith(DEPOSIT, DEADLINE, bad[i]);
        }
        openWith(DEPOSIT, DEADLINE, 10 minutes);
        openWith(DEPOSIT, DEADLINE, 7 days);
    }

    function test_open_checksTheTermsAsCreationDoes() public {
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.AmountOutOfRange.selector, 49_999, 50_000, 1e15));
        openWith(49_999, DEADLINE, GRACE);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.SelfDealing.selector, payer));
        vm.prank(payer);
        kernel.openSession(payer, DEPOSIT, DEADLINE, WINDOW, SERVICE, GRACE);
        vm.prank(admin);
        kernel.pause();
        vm.expectRevert(IEscrowKernel.KernelIsPaused.selector);
        open();
    }

    // ---- top up ----

    function test_topUp_addsToTheDepositWhileOpen() public {
        bytes32 id = open();
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IKernelSessions.SessionToppedUp(id, 3_000_000, DEPOSIT + 3_000_000);
        vm.prank(payer);
        kernel.topUpSession(id, 3_000_000);
        start(id);
        vm.prank(payer);
        kernel.topUpSession(id, 1_000_000);
        assertEq(kernel.getTransaction(id).amount, DEPOSIT + 4_000_000, "deposit grew");
        assertEq(kernel.remaining(id), DEPOSIT + 4_000_000, "vault view");
        assertEq(bal(address(kernel)), DEPOSIT + 4_000_000, "pulled");
    }

    function test_topUp_refusals() public {
        bytes32 id = open();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, provider, payer));
        vm.prank(provider);
        kernel.topUpSession(id, 1);

        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidTopUp.selector, 0, DEPOSIT, 1e15));
        kernel.topUpSession(id, 0);
        vm.prank(payer);
        vm.expectRevert(
            abi.encodeWithSelector(IKernelSessions.InvalidTopUp.selector, 1e15 - DEPOSIT + 1, DEPOSIT, 1e15)
        );
        kernel.topUpSession(id, 1e15 - DEPOSIT + 1);

        bytes32 plain = committed();
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.NotSession.selector, plain));
        vm.prank(requester);
        kernel.topUpSession(plain, 1);

        vm.prank(admin);
        kernel.pause();
        vm.expectRevert(IEscrowKernel.KernelIsPaused.selector);
        vm.prank(payer);
        kernel.topUpSession(id, 1);
        vm.prank(admin);
        kernel.unpause();

        vm.prank(payer);
        kernel.endSession(id);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.SessionEnding.selector, id, T0 + GRACE));
        vm.prank(payer);
        kernel.topUpSession(id, 1);

        bytes32 late = open();
        vm.warp(DEADLINE + 1);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE));
        vm.prank(payer);
        kernel.topUpSession(late, 1);
    }

    function test_topUp_refusedOnceClosed() public {
        bytes32 id = closed(1_000_000);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidState.selector, id, DELIVERED));
        vm.prank(payer);
        kernel.topUpSession(id, 1);
    }

    // ---- close ----

    function test_close_recordsTheClaimAndDelivers() public {
        bytes32 id = started();
        bytes memory sig = voucher(PAYER_KEY, kernel, id, 2_500_000);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(id, IN_PROGRESS, DELIVERED, provider, T0);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IKernelSessions.SessionClosed(id, 2_000_000, 2_500_000);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IEscrowKernel.DeliveryProofRecorded(id, PROOF, T0 + WINDOW);
        vm.prank(provider);
        kernel.closeSession(id, 2_000_000, 2_500_000, REQUEST, EXPIRES, sig, PROOF);

        assertState(id, DELIVERED);
        (,,, uint256 claimed) = kernel.sessionOf(id);
        assertEq(claimed, 2_000_000, "claim recorded");
        assertEq(kernel.getTransaction(id).disputeWindow, T0 + WINDOW, "window end as for a delivery");
        assertEq(bal(address(kernel)), DEPOSIT, "nothing moves before settlement");
    }

    function test_close_theClaimIsBoundedByTheVoucherAndTheDeposit() public {
        bytes32 id = started();
        bytes memory sig = voucher(PAYER_KEY, kernel, id, 2_000_000);
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.ClaimTooHigh.selector, 2_000_001, 2_000_000, DEPOSIT));
        kernel.closeSession(id, 2_000_001, 2_000_000, REQUEST, EXPIRES, sig, PROOF);
        bytes memory big = voucher(PAYER_KEY, kernel, id, DEPOSIT * 2);
        vm.expectRevert(
            abi.encodeWithSelector(IKernelSessions.ClaimTooHigh.selector, DEPOSIT + 1, DEPOSIT * 2, DEPOSIT)
        );
        kernel.closeSession(id, DEPOSIT + 1, DEPOSIT * 2, REQUEST, EXPIRES, big, PROOF);
        // A voucher above the deposit still pays the whole deposit.
        kernel.closeSession(id, DEPOSIT, DEPOSIT * 2, REQUEST, EXPIRES, big, PROOF);
        vm.stopPrank();
        (,,, uint256 claimed) = kernel.sessionOf(id);
        assertEq(claimed, DEPOSIT, "the whole deposit");
    }

    function test_close_refusesAVoucherNotSignedByTheRequesterOverTheseFields() public {
        bytes32 id = started();
        bytes32 other = started();
        bytes[5] memory bad;
        bad[0] = voucher(0xB0B, kernel, id, 1_000_000); // someone else's key
        bad[1] = voucher(PAYER_KEY, kernel, other, 1_000_000); // another session
        bad[2] = voucher(PAYER_KEY, kernel, id, 999_999); // another amount
        bad[3] = voucher(PAYER_KEY, deployKernel(address(usdc), admin, feeSink, FEE_BPS), id, 1_000_000); // another kernel
        bad[4] = hex"1234"; // not a signature
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidVoucherSignature.selector, payer));
            vm.prank(provider);
            kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, bad[i], PROOF);
        }
        // the fields the signature covers: request hash and expiry too
        bytes memory good = voucher(PAYER_KEY, kernel, id, 1_000_000);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidVoucherSignature.selector, payer));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, bytes32(0), EXPIRES, good, PROOF);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidVoucherSignature.selector, payer));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES + 1, good, PROOF);
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, good, PROOF);
        assertState(id, DELIVERED);
    }

    function test_close_refusesHighSAndCompactSignatures() public {
        bytes32 id = started();
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, digestOf(kernel, id, 1_000_000));
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        bytes memory highS = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidVoucherSignature.selector, payer));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, highS, PROOF);
        // EIP-2098 (r ‖ yParity << 255 | s): one signature, one encoding, 65 bytes.
        bytes memory compact = abi.encodePacked(r, bytes32(uint256(v - 27) << 255 | uint256(s)));
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidVoucherSignature.selector, payer));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, compact, PROOF);
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, abi.encodePacked(r, s, v), PROOF);
        assertState(id, DELIVERED);
    }

    function test_close_aSmartContractWalletSignsThroughERC1271() public {
        Wallet wallet = new Wallet(payer);
        usdc.mint(address(wallet), DEPOSIT);
        vm.startPrank(payer);
        wallet.execute(address(usdc), abi.encodeCall(usdc.approve, (address(kernel), DEPOSIT)));
        bytes memory ret = wallet.execute(
            address(kernel), abi.encodeCall(kernel.openSession, (provider, DEPOSIT, DEADLINE, WINDOW, SERVICE, GRACE))
        );
        vm.stopPrank();
        bytes32 id = abi.decode(ret, (bytes32));
        start(id);
        // The wallet's owner signs; the kernel asks the wallet.
        bytes memory sig = voucher(PAYER_KEY, kernel, id, 4_000_000);
        bytes memory foreign = voucher(0xB0B, kernel, id, 4_000_000);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.InvalidVoucherSignature.selector, address(wallet)));
        vm.prank(provider);
        kernel.closeSession(id, 4_000_000, 4_000_000, REQUEST, EXPIRES, foreign, PROOF);
        vm.prank(provider);
        kernel.closeSession(id, 4_000_000, 4_000_000, REQUEST, EXPIRES, sig, PROOF);
        vm.prank(address(wallet));
        kernel.transitionState(id, SETTLED, "");
        assertEq(bal(address(wallet)), DEPOSIT - 4_000_000, "the wallet got the rest back");
        assertEq(bal(provider), 4_000_000 - fee(4_000_000), "provider paid the claim");
    }

    function test_close_aZeroClaimNeedsNoVoucher() public {
        bytes32 id = started();
        vm.prank(provider);
        kernel.closeSession(id, 0, 0, bytes32(0), 0, "", bytes32(0));
        assertState(id, DELIVERED);
        uint256 before = bal(payer);
        transition(payer, id, SETTLED, "");
        assertEq(bal(payer), before + DEPOSIT, "everything back");
        assertEq(bal(provider), 0, "nothing paid");
        assertEq(kernel.accruedFees(), 0, "no fee");
    }

    function test_close_refusals() public {
        bytes32 id = open();
        bytes memory sig = voucher(PAYER_KEY, kernel, id, 1_000_000);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, COMMITTED, DELIVERED));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, sig, PROOF);
        start(id);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, payer, provider));
        vm.prank(payer);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, sig, PROOF);

        bytes32 plain = inProgress();
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.NotSession.selector, plain));
        vm.prank(provider);
        kernel.closeSession(plain, 0, 0, REQUEST, EXPIRES, "", PROOF);

        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.TransactionNotFound.selector, bytes32(uint256(1))));
        vm.prank(provider);
        kernel.closeSession(bytes32(uint256(1)), 0, 0, REQUEST, EXPIRES, "", PROOF);

        vm.warp(DEADLINE + 1);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, sig, PROOF);
    }

    function test_v3Delivery_andMilestones_areRefusedOnSessions() public {
        bytes32 id = started();
        expectRevertTransition(
            provider, id, DELIVERED, "", abi.encodeWithSelector(IKernelSessions.SessionOperationRefused.selector, id)
        );
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.SessionOperationRefused.selector, id));
        vm.prank(payer);
        kernel.releaseMilestone(id, 1_000_000);
    }

    // ---- settle ----

    function test_settle_paysTheClaimLessFeeAndRefundsTheRestInOneTransaction() public {
        bytes32 id = closed(3_000_000);
        uint256 f = fee(3_000_000);
        uint256 before = bal(payer);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.StateTransitioned(id, DELIVERED, SETTLED, stranger, T0 + WINDOW + 1);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.PlatformFeeAccrued(id, feeSink, f, T0 + WINDOW + 1);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowReleased(id, provider, 3_000_000 - f, T0 + WINDOW + 1);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.EscrowRefunded(id, payer, DEPOSIT - 3_000_000, T0 + WINDOW + 1);
        vm.warp(T0 + WINDOW + 1);
        transition(stranger, id, SETTLED, "");
        assertState(id, SETTLED);
        assertEq(bal(provider), 3_000_000 - f, "provider: claim less fee");
        assertEq(bal(payer), before + DEPOSIT - 3_000_000, "requester: the unclaimed deposit");
        assertEq(bal(address(kernel)), f, "kernel keeps the fee only");
        assertEq(kernel.remaining(id), 0, "nothing remains");
    }

    function test_settle_theRequesterMaySettleAtOnceAndOthersWaitForTheWindow() public {
        bytes32 id = closed(1_000_000);
        expectRevertTransition(
            stranger, id, SETTLED, "", abi.encodeWithSelector(IEscrowKernel.DisputeWindowOpen.selector, T0 + WINDOW)
        );
        vm.prank(payer);
        kernel.releaseEscrow(id);
        assertState(id, SETTLED);
    }

    function test_settle_aFullClaimRefundsNothing() public {
        bytes32 id = closed(DEPOSIT);
        vm.recordLogs();
        transition(payer, id, SETTLED, "");
        assertEq(bal(provider), DEPOSIT - fee(DEPOSIT), "all to the provider");
        assertEq(countLogs(IACTPKernel.EscrowRefunded.selector), 0, "no refund event");
    }

    function test_settleBatch_settlesSessionsWithTheirRefunds() public {
        bytes32[] memory ids = new bytes32[](4);
        ids[0] = closed(1_000_000);
        ids[1] = delivered(); // an ordinary transaction, same provider
        ids[2] = closed(2_000_000);
        ids[3] = closed(0);
        uint256 before = bal(payer);
        vm.warp(T0 + WINDOW + 1);
        assertEq(kernel.settleBatch(ids), 4, "all settled");
        uint256 gross = 1_000_000 + AMOUNT + 2_000_000;
        assertEq(
            bal(provider),
            gross - fee(1_000_000) - fee(AMOUNT) - fee(2_000_000),
            "provider: claims and the ordinary amount, less fees"
        );
        assertEq(bal(payer), before + 3 * DEPOSIT - 3_000_000, "payer: what was not claimed");
        assertEq(bal(address(kernel)), kernel.accruedFees(), "only fees left");
    }

    // ---- end and reclaim ----

    function test_end_theProviderMayCloseWithinTheGracePeriod() public {
        bytes32 id = started();
        vm.warp(T0 + 100);
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IKernelSessions.SessionEndRequested(id, T0 + 100 + GRACE);
        vm.prank(payer);
        kernel.endSession(id);
        (,, uint256 closeBy,) = kernel.sessionOf(id);
        assertEq(closeBy, T0 + 100 + GRACE, "closeBy");
        vm.warp(T0 + 100 + GRACE);
        close(id, 1_000_000, 1_000_000);
        assertState(id, DELIVERED);
    }

    function test_end_afterTheGracePeriodTheRequesterReclaimsEverything() public {
        bytes32 id = started();
        vm.prank(payer);
        kernel.endSession(id);
        uint256 closeBy = T0 + GRACE;
        expectRevertTransition(
            payer, id, CANCELLED, "", abi.encodeWithSelector(IKernelSessions.GracePeriodNotOver.selector, closeBy)
        );
        vm.warp(closeBy + 1);
        bytes memory sig = voucher(PAYER_KEY, kernel, id, 1_000_000);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.GracePeriodOver.selector, closeBy));
        vm.prank(provider);
        kernel.closeSession(id, 1_000_000, 1_000_000, REQUEST, EXPIRES, sig, PROOF);

        uint256 before = bal(payer);
        transition(payer, id, CANCELLED, "");
        assertState(id, CANCELLED);
        assertEq(bal(payer), before + DEPOSIT, "whole deposit back, long before the deadline");
        assertTrue(closeBy + 1 < DEADLINE, "well before the deadline");
    }

    function test_end_worksFromCommittedAndWhilePaused() public {
        bytes32 id = open();
        vm.prank(admin);
        kernel.pause();
        vm.prank(payer);
        kernel.endSession(id);
        vm.warp(T0 + GRACE + 1);
        transition(payer, id, CANCELLED, "");
        assertState(id, CANCELLED);
    }

    function test_end_refusals() public {
        bytes32 id = open();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, provider, payer));
        vm.prank(provider);
        kernel.endSession(id);
        vm.prank(payer);
        kernel.endSession(id);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.SessionEnding.selector, id, T0 + GRACE));
        vm.prank(payer);
        kernel.endSession(id);

        bytes32 plain = committed();
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.NotSession.selector, plain));
        vm.prank(requester);
        kernel.endSession(plain);

        bytes32 done = closed(1);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidState.selector, done, DELIVERED));
        vm.prank(payer);
        kernel.endSession(done);
    }

    function test_cancel_theRequesterWaitsForTheDeadlineUnlessItEnded() public {
        bytes32 id = started();
        expectRevertTransition(
            payer, id, CANCELLED, "", abi.encodeWithSelector(IEscrowKernel.DeadlineNotPassed.selector, DEADLINE)
        );
        vm.warp(DEADLINE + 1);
        transition(payer, id, CANCELLED, "");
        assertEq(bal(address(kernel)), 0, "refunded");
    }

    function test_cancel_theProviderMayCancelAtAnyTime() public {
        bytes32 id = started();
        uint256 before = bal(payer);
        transition(provider, id, CANCELLED, "");
        assertEq(bal(payer), before + DEPOSIT, "full refund");
    }

    // ---- disputes ----

    function test_dispute_theProviderGetsAtMostItsClaim() public {
        bytes32 id = closed(4_000_000);
        transition(payer, id, DISPUTED, "");
        vm.warp(T0 + 3 days);
        vm.expectRevert(abi.encodeWithSelector(IKernelSessions.ResolutionAboveClaim.selector, 4_000_001, 4_000_000));
        vm.prank(admin);
        kernel.transitionState(id, SETTLED, abi.encode(DEPOSIT - 4_000_001, uint256(4_000_001)));

        uint256 before = bal(payer);
        vm.prank(admin);
        kernel.transitionState(id, SETTLED, abi.encode(DEPOSIT - 1_000_000, uint256(1_000_000)));
        assertEq(bal(payer), before + DEPOSIT - 1_000_000, "requester: the unclaimed part and what it won back");
        assertEq(bal(provider), 1_000_000 - fee(1_000_000), "provider: what the resolver allowed");
    }

    // ---- fuzz ----

    /// Whatever the deposit, top-ups, voucher and claim: provider + fees + refund = everything pulled.
    function testFuzz_settlementConservesTheDeposit(uint256 deposit, uint256 topUp, uint256 cumulative, uint256 claim)
        public
    {
        deposit = bound(deposit, 50_000, 5e11);
        topUp = bound(topUp, 0, 5e11);
        cumulative = bound(cumulative, 0, 3e12);
        claim = bound(claim, 0, cumulative < deposit + topUp ? cumulative : deposit + topUp);
        uint256 payerBefore = bal(payer);
        bytes32 id = openWith(deposit, DEADLINE, GRACE);
        if (topUp != 0) {
            vm.prank(payer);
            kernel.topUpSession(id, topUp);
        }
        start(id);
        close(id, claim, cumulative);
        transition(payer, id, SETTLED, "");
        uint256 f = fee(claim);
        assertEq(bal(provider), claim - f, "provider");
        assertEq(kernel.accruedFees(), f, "fee");
        assertEq(payerBefore - bal(payer), claim, "the payer paid exactly the claim");
        assertEq(bal(address(kernel)), f, "nothing stranded");
    }

    function countLogs(bytes32 topic) internal returns (uint256 n) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics.length != 0 && logs[i].topics[0] == topic) ++n;
        }
    }
}
