// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// Escrow ids older clients link in place of the transaction id (aliases): nobody else can take one first or
/// shadow it later; the views keep answering for the requester that linked it.
contract AliasTest is KernelTestBase {
    bytes32 internal constant LEGACY = keccak256("escrow-1700000000000"); // as older clients name escrows

    address internal attacker = makeAddr("attacker");
    address internal attackerProvider = makeAddr("attacker's provider");

    function setUp() public override {
        super.setUp();
        usdc.mint(attacker, 1_000e6);
        vm.prank(attacker);
        usdc.approve(address(kernel), type(uint256).max);
    }

    /// Someone watching the mempool links the same id first under a cheap throwaway transaction: the honest
    /// link still succeeds, and every view that knows the requester answers for the honest escrow.
    function test_alias_frontRunnerCannotTakeIt() public {
        bytes32 id = create();
        vm.startPrank(attacker);
        bytes32 throwaway =
            kernel.createTransaction(attackerProvider, attacker, 50_000, DEADLINE, WINDOW, bytes32(0), 0, 0);
        kernel.linkEscrow(throwaway, address(kernel), LEGACY);
        vm.stopPrank();

        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), LEGACY);
        assertEq(kernel.getTransaction(id).escrowId, LEGACY, "alias reported");
        (bool active, uint256 held) = kernel.verifyEscrow(LEGACY, requester, provider, AMOUNT);
        assertTrue(active, "verifies for the honest requester");
        assertEq(held, AMOUNT, "the honest escrow's amount");
        (active, held) = kernel.verifyEscrow(LEGACY, attacker, attackerProvider, 50_000);
        assertTrue(active, "and for the other requester, its own");
        assertEq(held, 50_000, "its own amount");
        vm.prank(requester);
        assertEq(kernel.remaining(LEGACY), AMOUNT, "remaining, asked by the requester");
        vm.prank(attacker);
        assertEq(kernel.remaining(LEGACY), 50_000, "remaining, asked by the other requester");
        vm.prank(stranger);
        assertEq(kernel.remaining(LEGACY), 0, "a contested id names no escrow for anyone else");
        vm.prank(requester);
        (address r, address p, uint256 amount,, bool live) = kernel.escrows(LEGACY);
        assertTrue(r == requester && p == provider && amount == AMOUNT && live, "escrows(), asked by the requester");
    }

    /// An uncontested alias answers for everyone, as the v3 vault's views do.
    function test_alias_uncontestedAnswersEveryone() public {
        bytes32 id = create();
        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), LEGACY);
        vm.prank(stranger);
        assertEq(kernel.remaining(LEGACY), AMOUNT, "remaining by alias");
        vm.prank(stranger);
        (, address p,,, bool live) = kernel.escrows(LEGACY);
        assertTrue(p == provider && live, "escrows by alias");
    }

    /// The requester's own later transaction cannot get an id it already uses as an alias.
    function test_alias_ownLaterTransactionIdRefused() public {
        bytes32 next = _nextId(requester, provider, AMOUNT, SERVICE, 1);
        bytes32 id = create(); // nonce 0
        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), next);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, next));
        create(); // would be `next`
        assertEq(kernel.requesterNonces(requester), 1, "nothing created");
        vm.prank(requester);
        assertEq(kernel.remaining(next), AMOUNT, "the alias still names the first escrow");
        createWith(AMOUNT + 1, DEADLINE, WINDOW); // other terms: another id
        assertEq(kernel.requesterNonces(requester), 2, "created");
    }

    /// Another requester's later transaction whose id equals an alias does not shadow it for its requester.
    function test_alias_otherRequestersLaterTransactionDoesNotShadowIt() public {
        bytes32 victimNext = _nextId(attacker, attackerProvider, AMOUNT, SERVICE, 0);
        bytes32 id = create();
        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), victimNext);
        vm.prank(attacker);
        bytes32 later = kernel.createAndFund(attackerProvider, AMOUNT, DEADLINE, WINDOW, SERVICE, 0, 0);
        assertEq(later, victimNext, "same id");
        (bool active, uint256 held) = kernel.verifyEscrow(victimNext, requester, provider, AMOUNT);
        assertTrue(active && held == AMOUNT, "the alias still verifies for its requester");
        (active,) = kernel.verifyEscrow(victimNext, attacker, attackerProvider, AMOUNT);
        assertTrue(active, "the transaction id verifies for its own requester");
        vm.prank(requester);
        assertEq(kernel.remaining(victimNext), AMOUNT, "remaining, asked by the alias's requester");
        transition(attackerProvider, later, CANCELLED, "");
        vm.prank(requester);
        assertEq(kernel.remaining(victimNext), AMOUNT, "unaffected by the other transaction's refund");
    }

    function test_alias_rules() public {
        bytes32 id = create();
        bytes32 other = create();
        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), LEGACY);
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, LEGACY));
        vm.prank(requester);
        kernel.linkEscrow(other, address(kernel), LEGACY); // the same requester twice
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, id));
        vm.prank(requester);
        kernel.linkEscrow(other, address(kernel), id); // a transaction id
        vm.expectRevert(abi.encodeWithSelector(IEscrowKernel.EscrowIdUnavailable.selector, bytes32(0)));
        vm.prank(requester);
        kernel.linkEscrow(other, address(kernel), bytes32(0));
        assertEq(kernel.requesterNonces(requester), 2, "nonce view unaffected by aliases");
    }

    function _nextId(address r, address p, uint256 amount, bytes32 service, uint256 nonce)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(r, p, amount, service, nonce));
    }
}
