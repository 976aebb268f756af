// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {KernelTestBase} from "./utils/KernelTestBase.sol";
import {IACTPKernel} from "../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../src/interfaces/IEscrowKernel.sol";

/// Every (state, target state, caller, time) through transitionState, checked against an oracle that restates
/// the lifecycle rules independently: success lands in the target state and conserves money; every failure is
/// the exact custom error the rules name.
contract MatrixTest is KernelTestBase {
    uint256 internal constant WINDOW_END = T0 + WINDOW; // every DELIVERED fixture is delivered at T0
    bytes32[] internal fixtures;

    function test_matrix() public {
        address[4] memory actors = [requester, provider, stranger, admin];
        uint256[6] memory times = [T0, WINDOW_END, WINDOW_END + 1, DEADLINE, DEADLINE + 1, DEADLINE + 400 days];
        // Fixtures, one per reachable state (CANCELLED twice: unfunded and refunded).
        bytes32[9] memory ids =
            [create(), quoted(), committed(), inProgress(), delivered(), settled(), disputed(), create(), committed()];
        transition(requester, ids[7], CANCELLED, "");
        transition(provider, ids[8], CANCELLED, "");
        for (uint256 i; i < ids.length; ++i) {
            fixtures.push(ids[i]);
        }

        uint256 checked;
        for (uint256 f; f < ids.length; ++f) {
            IACTPKernel.State from = stateOf(ids[f]);
            for (uint256 to; to < 8; ++to) {
                for (uint256 a; a < actors.length; ++a) {
                    for (uint256 t; t < times.length; ++t) {
                        _check(ids[f], from, IACTPKernel.State(to), actors[a], times[t]);
                        ++checked;
                    }
                }
            }
        }
        assertEq(checked, 9 * 8 * 4 * 6, "cases");
    }

    function _check(bytes32 id, IACTPKernel.State from, IACTPKernel.State to, address who, uint256 time) private {
        uint256 snap = vm.snapshotState();
        vm.warp(time);
        bytes memory proof = from == DISPUTED ? abi.encode(AMOUNT / 4, AMOUNT - AMOUNT / 4) : bytes("");
        bytes memory expectedError = _oracle(id, from, to, who, time);
        uint256 heldBefore = kernel.remaining(id);
        uint256 totalBefore = bal(address(kernel)) + bal(requester) + bal(provider) + bal(feeSink);
        vm.prank(who);
        (bool ok, bytes memory err) = address(kernel).call(abi.encodeCall(IACTPKernel.transitionState, (id, to, proof)));
        if (expectedError.length == 0) {
            assertTrue(ok, "allowed transition reverted");
            assertEq(uint256(stateOf(id)), uint256(to), "landed in target");
            uint256 totalAfter = bal(address(kernel)) + bal(requester) + bal(provider) + bal(feeSink);
            assertEq(totalAfter, totalBefore, "money conserved");
            assertLe(kernel.remaining(id), heldBefore, "escrow never grows");
            assertEq(bal(address(kernel)), _sumHeld() + kernel.accruedFees(), "kernel holds escrow plus fees");
        } else {
            assertTrue(!ok, "forbidden transition succeeded");
            assertEq(keccak256(err), keccak256(expectedError), "exact custom error");
            assertEq(uint256(stateOf(id)), uint256(from), "state unchanged");
        }
        vm.revertToState(snap);
    }

    /// @dev What every fixture still holds in escrow.
    function _sumHeld() private view returns (uint256 held) {
        for (uint256 i; i < fixtures.length; ++i) {
            held += kernel.remaining(fixtures[i]);
        }
    }

    /// @dev The rules, restated. Returns empty bytes when the move is allowed, else the exact revert data.
    function _oracle(bytes32 id, IACTPKernel.State from, IACTPKernel.State to, address who, uint256 time)
        private
        view
        returns (bytes memory)
    {
        bytes memory invalid = abi.encodeWithSelector(IEscrowKernel.InvalidTransition.selector, id, from, to);
        bool party = who == requester || who == provider;
        if (to == IN_PROGRESS || to == DELIVERED || to == QUOTED) {
            IACTPKernel.State need = to == IN_PROGRESS ? COMMITTED : to == DELIVERED ? IN_PROGRESS : INITIATED;
            if (from != need) return invalid;
            if (who != provider) return abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, who, provider);
            if (time > DEADLINE) return abi.encodeWithSelector(IEscrowKernel.DeadlinePassed.selector, DEADLINE);
            return "";
        }
        if ((to == SETTLED || to == CANCELLED) && from == DISPUTED) {
            if (who != admin) return abi.encodeWithSelector(IEscrowKernel.NotResolver.selector, who);
            return "";
        }
        if (to == SETTLED) {
            if (from != DELIVERED) return invalid;
            if (who != requester && time <= WINDOW_END) {
                return abi.encodeWithSelector(IEscrowKernel.DisputeWindowOpen.selector, WINDOW_END);
            }
            return "";
        }
        if (to == CANCELLED) {
            if (from == INITIATED || from == QUOTED) {
                if (who != requester) {
                    return abi.encodeWithSelector(IEscrowKernel.Unauthorized.selector, who, requester);
                }
                return "";
            }
            if (from != COMMITTED && from != IN_PROGRESS) return invalid;
            if (who == provider) return "";
            if (who != requester) return abi.encodeWithSelector(IEscrowKernel.NotParty.selector, who);
            if (time <= DEADLINE) return abi.encodeWithSelector(IEscrowKernel.DeadlineNotPassed.selector, DEADLINE);
            return "";
        }
        if (to == DISPUTED) {
            if (from != DELIVERED) return invalid;
            if (!party) return abi.encodeWithSelector(IEscrowKernel.NotParty.selector, who);
            if (time > WINDOW_END) {
                return abi.encodeWithSelector(IEscrowKernel.DisputeWindowClosed.selector, WINDOW_END);
            }
            return "";
        }
        return invalid; // INITIATED and COMMITTED are never targets of transitionState
    }

    function quoted() private returns (bytes32 id) {
        id = create();
        transition(provider, id, QUOTED, "");
    }

    function settled() private returns (bytes32 id) {
        id = delivered();
        transition(requester, id, SETTLED, "");
    }
}
