// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {KernelTestBase} from "./KernelTestBase.sol";

/// @title SessionTestBase
/// @notice Sessions need a requester with a private key (vouchers are its signatures): `payer` signs, and the
/// helpers open, start, close and sign vouchers in the ACTP EIP-712 domain.
abstract contract SessionTestBase is KernelTestBase {
    uint256 internal constant PAYER_KEY = 0xA11CE;
    address internal payer;

    uint256 internal constant DEPOSIT = 10_000_000; // 10.00
    uint256 internal constant GRACE = 1 hours;

    bytes32 internal constant VOUCHER_TYPEHASH =
        keccak256("SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)");
    bytes32 internal constant REQUEST = keccak256("POST /v1/chat/completions");
    uint256 internal constant EXPIRES = T0 + 5 minutes;
    bytes32 internal constant PROOF = keccak256("receipts");

    function setUp() public virtual override {
        super.setUp();
        payer = vm.addr(PAYER_KEY);
        vm.label(payer, "payer");
        usdc.mint(payer, 1_000_000e6);
        vm.prank(payer);
        usdc.approve(address(kernel), type(uint256).max);
    }

    function open() internal returns (bytes32 id) {
        return openWith(DEPOSIT, DEADLINE, GRACE);
    }

    function openWith(uint256 deposit, uint256 deadline, uint256 grace) internal returns (bytes32 id) {
        vm.prank(payer);
        id = kernel.openSession(provider, deposit, deadline, WINDOW, SERVICE, grace);
    }

    function started() internal returns (bytes32 id) {
        id = open();
        start(id);
    }

    /// @dev The session closed with a claim of `claim` under a voucher for `claim`.
    function closed(uint256 claim) internal returns (bytes32 id) {
        id = started();
        close(id, claim, claim);
    }

    function close(bytes32 id, uint256 claim, uint256 cumulative) internal {
        bytes memory sig = voucher(PAYER_KEY, kernel, id, cumulative);
        vm.prank(provider);
        kernel.closeSession(id, claim, cumulative, REQUEST, EXPIRES, sig, PROOF);
    }

    function digestOf(IEscrowKernel k, bytes32 id, uint256 cumulative) internal view returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("AGIRAILS"),
                keccak256("1"),
                block.chainid,
                address(k)
            )
        );
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, id, cumulative, REQUEST, EXPIRES));
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function voucher(uint256 key, IEscrowKernel k, bytes32 id, uint256 cumulative)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digestOf(k, id, cumulative));
        return abi.encodePacked(r, s, v);
    }
}
