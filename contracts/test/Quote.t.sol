// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// INITIATED -> QUOTED, acceptQuote, and anchorAttestation.
contract QuoteTest is KernelTestBase {
    function test_quote_storesQuoteHash() public {
        bytes32 id = create();
        bytes32 quoteHash = keccak256("quote");
        transition(provider, id, QUOTED, abi.encode(quoteHash));
        assertState(id, QUOTED);
        assertEq(kernel.getTransaction(id).metadata, quoteHash, "metadata");
    }

    function test_quote_rules() public {
        bytes32 id = create();
        bytes32 funded = committed();
        expectRevertTransition(
            requester, id, QUOTED, "", abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, requester, provider)
        );
        expectRevertTransition(
            provider, id, QUOTED, abi.encode(bytes32(0)), abi.encodeWithSelector(IEscrowKernel.ZeroQuoteHash.selector)
        );
        expectRevertTransition(
            provider, id, QUOTED, new bytes(31), abi.encodeWithSelector(IEscrowKernel.InvalidProofLength.selector, 31)
        );
        vm.warp(DEADLINE + 1);
        expectRevertTransition(
            provider, id, QUOTED, "", abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE)
        );
        expectRevertTransition(
            provider,
            funded,
            QUOTED,
            "",
            abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, funded, COMMITTED, QUOTED)
        );
    }

    function test_acceptQuote_changesAmountKeepsLockedFee() public {
        bytes32 id = create();
        transition(provider, id, QUOTED, "");
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.QuoteAccepted(id, AMOUNT, 2 * AMOUNT, T0);
        vm.prank(requester);
        kernel.acceptQuote(id, 2 * AMOUNT);
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        assertEq(v.amount, 2 * AMOUNT, "new amount");
        assertEq(uint256(v.state), uint256(QUOTED), "still quoted");
        assertEq(v.platformFeeBpsLocked, FEE_BPS, "fee still locked from creation");
        fund(id);
        assertEq(bal(address(kernel)), 2 * AMOUNT, "funds the accepted amount");
    }

    function test_acceptQuote_rules() public {
        bytes32 id = create();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidState.selector, id, INITIATED));
        vm.prank(requester);
        kernel.acceptQuote(id, AMOUNT);
        transition(provider, id, QUOTED, "");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, provider, requester));
        vm.prank(provider);
        kernel.acceptQuote(id, AMOUNT);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.AmountOutOfRange.selector, 1, 50_000, 1e15));
        vm.prank(requester);
        kernel.acceptQuote(id, 1);
        vm.warp(DEADLINE + 1);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE));
        vm.prank(requester);
        kernel.acceptQuote(id, AMOUNT);
    }

    function test_anchorAttestation_partiesOnSettled() public {
        bytes32 id = delivered();
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.InvalidState.selector, id, DELIVERED));
        vm.prank(provider);
        kernel.anchorAttestation(id, bytes32("uid"));
        transition(requester, id, SETTLED, "");
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.NotParty.selector, stranger));
        vm.prank(stranger);
        kernel.anchorAttestation(id, bytes32("uid"));
        vm.expectRevert(IEscrowKernel.ZeroAttestation.selector);
        vm.prank(provider);
        kernel.anchorAttestation(id, bytes32(0));
        vm.expectEmit(true, true, true, true, address(kernel));
        emit IACTPKernel.AttestationAnchored(id, bytes32("uid"), provider, T0);
        vm.prank(provider);
        kernel.anchorAttestation(id, bytes32("uid"));
        assertEq(kernel.getTransaction(id).attestationUID, bytes32("uid"), "anchored");
    }
}
