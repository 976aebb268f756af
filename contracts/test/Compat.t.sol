// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowVault} from "../src/interfaces/IEscrowVault.sol";

/// Wire compatibility with ACTP v3 clients: selectors, event topics and the getTransaction layout are checked
/// against the v3 signature strings, and a v3 client's exact call sequence runs end to end.
contract CompatTest is KernelTestBase {
    function test_selectorsMatchV3() public pure {
        _sel(
            IACTPKernel.createTransaction.selector,
            "createTransaction(address,address,uint256,uint256,uint256,bytes32,uint256,uint256)"
        );
        _sel(IACTPKernel.linkEscrow.selector, "linkEscrow(bytes32,address,bytes32)");
        _sel(IACTPKernel.transitionState.selector, "transitionState(bytes32,uint8,bytes)");
        _sel(IACTPKernel.getTransaction.selector, "getTransaction(bytes32)");
        _sel(IACTPKernel.releaseEscrow.selector, "releaseEscrow(bytes32)");
        _sel(IACTPKernel.releaseMilestone.selector, "releaseMilestone(bytes32,uint256)");
        _sel(IACTPKernel.acceptQuote.selector, "acceptQuote(bytes32,uint256)");
        _sel(IACTPKernel.anchorAttestation.selector, "anchorAttestation(bytes32,bytes32)");
        _sel(IACTPKernel.requesterNonces.selector, "requesterNonces(address)");
        _sel(IACTPKernel.platformFeeBps.selector, "platformFeeBps()");
        _sel(IACTPKernel.requesterPenaltyBps.selector, "requesterPenaltyBps()");
        _sel(IACTPKernel.paused.selector, "paused()");
        _sel(IEscrowVault.remaining.selector, "remaining(bytes32)");
        _sel(IEscrowVault.token.selector, "token()");
        _sel(IEscrowVault.kernel.selector, "kernel()");
        _sel(IEscrowVault.verifyEscrow.selector, "verifyEscrow(bytes32,address,address,uint256)");
    }

    function test_eventTopicsMatchV3() public pure {
        _topic(
            IACTPKernel.TransactionCreated.selector,
            "TransactionCreated(bytes32,address,address,uint256,bytes32,uint256,uint256,uint256)"
        );
        _topic(IACTPKernel.StateTransitioned.selector, "StateTransitioned(bytes32,uint8,uint8,address,uint256)");
        _topic(IACTPKernel.EscrowLinked.selector, "EscrowLinked(bytes32,address,bytes32,uint256,uint256)");
        _topic(IACTPKernel.EscrowReleased.selector, "EscrowReleased(bytes32,address,uint256,uint256)");
        _topic(IACTPKernel.EscrowRefunded.selector, "EscrowRefunded(bytes32,address,uint256,uint256)");
        _topic(IACTPKernel.EscrowMilestoneReleased.selector, "EscrowMilestoneReleased(bytes32,uint256,uint256)");
        _topic(IACTPKernel.PlatformFeeAccrued.selector, "PlatformFeeAccrued(bytes32,address,uint256,uint256)");
        _topic(IACTPKernel.QuoteAccepted.selector, "QuoteAccepted(bytes32,uint256,uint256,uint256)");
        _topic(IACTPKernel.DisputeOpened.selector, "DisputeOpened(bytes32,address,uint256,uint256)");
    }

    function test_stateCodesMatchV3() public pure {
        assertEq(uint256(IACTPKernel.State.INITIATED), 0, "INITIATED");
        assertEq(uint256(IACTPKernel.State.QUOTED), 1, "QUOTED");
        assertEq(uint256(IACTPKernel.State.COMMITTED), 2, "COMMITTED");
        assertEq(uint256(IACTPKernel.State.IN_PROGRESS), 3, "IN_PROGRESS");
        assertEq(uint256(IACTPKernel.State.DELIVERED), 4, "DELIVERED");
        assertEq(uint256(IACTPKernel.State.SETTLED), 5, "SETTLED");
        assertEq(uint256(IACTPKernel.State.DISPUTED), 6, "DISPUTED");
        assertEq(uint256(IACTPKernel.State.CANCELLED), 7, "CANCELLED");
    }

    /// The calls an unmodified v3 client makes for pay -> start -> deliver -> release, encoded from the v3
    /// signature strings (not from this project's interfaces), with the kernel configured as the escrow vault.
    function test_v3ClientFlowEndToEnd() public {
        uint256 deadline = T0 + 1 hours;
        vm.startPrank(requester);
        usdc.approve(address(kernel), 0);
        usdc.approve(address(kernel), AMOUNT); // v3: approve(escrowVault, tx.amount)
        vm.recordLogs();
        bytes memory ret = _call(
            abi.encodeWithSignature(
                "createTransaction(address,address,uint256,uint256,uint256,bytes32,uint256,uint256)",
                provider,
                requester,
                AMOUNT,
                deadline,
                uint256(172800),
                SERVICE,
                uint256(0),
                uint256(0)
            )
        );
        bytes32 txId = abi.decode(ret, (bytes32));
        assertEq(vm.getRecordedLogs()[0].topics[1], txId, "txId read from TransactionCreated.args.transactionId");
        _call(abi.encodeWithSignature("linkEscrow(bytes32,address,bytes32)", txId, address(kernel), txId));
        vm.stopPrank();

        // The v3 provider agent reads the 21-field tuple and the duration window while COMMITTED.
        ret = _call(abi.encodeWithSignature("getTransaction(bytes32)", txId));
        assertEq(ret.length, 21 * 32, "21 static words");
        uint256 state = _word(ret, 3);
        uint256 amount = _word(ret, 4);
        uint256 window = _word(ret, 12);
        assertEq(state, 2, "COMMITTED");
        assertEq(amount, AMOUNT, "amount");
        assertEq(window, 172800, "duration before delivery");

        vm.startPrank(provider);
        _call(abi.encodeWithSignature("transitionState(bytes32,uint8,bytes)", txId, uint8(3), ""));
        _call(abi.encodeWithSignature("transitionState(bytes32,uint8,bytes)", txId, uint8(4), abi.encode(window)));
        vm.stopPrank();

        ret = _call(abi.encodeWithSignature("getTransaction(bytes32)", txId));
        state = _word(ret, 3);
        window = _word(ret, 12);
        assertEq(state, 4, "DELIVERED");
        assertEq(window, T0 + 172800, "absolute end after delivery, as v3 reads it");

        vm.prank(requester);
        _call(abi.encodeWithSignature("transitionState(bytes32,uint8,bytes)", txId, uint8(5), ""));
        assertState(txId, SETTLED);
        assertEq(bal(provider), AMOUNT - fee(AMOUNT), "provider paid on release");
        ret = _call(abi.encodeWithSignature("remaining(bytes32)", txId));
        assertEq(abi.decode(ret, (uint256)), 0, "vault view: empty");
    }

    /// @dev Word `i` of an ABI-encoded static tuple.
    function _word(bytes memory data, uint256 i) private pure returns (uint256 w) {
        assembly {
            w := mload(add(data, add(32, mul(i, 32))))
        }
    }

    function _call(bytes memory data) private returns (bytes memory ret) {
        bool ok;
        (ok, ret) = address(kernel).call(data);
        assertTrue(ok, "v3 call succeeded");
    }

    function _sel(bytes4 actual, string memory signature) private pure {
        assertEq(bytes32(actual), bytes32(bytes4(keccak256(bytes(signature)))), signature);
    }

    function _topic(bytes32 actual, string memory signature) private pure {
        assertEq(actual, keccak256(bytes(signature)), signature);
    }
}
