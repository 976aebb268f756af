// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm, VM_ADDRESS} from "../../script/Vm.sol";

/// @title Test
/// @notice A minimal test base (forge-std is not available from npm): the cheatcode handle, assertions that
/// revert with the values that differed, and `bound` for clamping fuzz inputs.
abstract contract Test {
    Vm internal constant vm = Vm(VM_ADDRESS);

    /// @dev forge runs functions named test* / invariant* in contracts that set IS_TEST.
    bool public IS_TEST = true;

    error AssertionFailed(string what, uint256 left, uint256 right);
    error AssertionFailedBytes32(string what, bytes32 left, bytes32 right);
    error AssertionFailedAddress(string what, address left, address right);
    error AssertionFailedBool(string what);

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) revert AssertionFailed(what, a, b);
    }

    function assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        if (a != b) revert AssertionFailedBytes32(what, a, b);
    }

    function assertEq(address a, address b, string memory what) internal pure {
        if (a != b) revert AssertionFailedAddress(what, a, b);
    }

    function assertTrue(bool c, string memory what) internal pure {
        if (!c) revert AssertionFailedBool(what);
    }

    function assertLe(uint256 a, uint256 b, string memory what) internal pure {
        if (a > b) revert AssertionFailed(what, a, b);
    }

    function assertGe(uint256 a, uint256 b, string memory what) internal pure {
        if (a < b) revert AssertionFailed(what, a, b);
    }

    /// @dev Maps any `x` into [min, max] without discarding inputs (uniform enough for fuzzing).
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min;
        if (size == type(uint256).max) return x;
        return min + (x % (size + 1));
    }

    function makeAddr(string memory name) internal returns (address a) {
        a = address(uint160(uint256(keccak256(bytes(name)))));
        vm.label(a, name);
    }
}
