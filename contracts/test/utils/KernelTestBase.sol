// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {MockUSDC} from "../../src/MockUSDC.sol";
import {Test} from "./Test.sol";

/// @title KernelTestBase
/// @notice Shared fixture: a MockUSDC, a kernel at 1% fee, funded actors, and helpers that drive a
/// transaction to any state.
abstract contract KernelTestBase is Test {
    MockUSDC internal usdc;
    IEscrowKernel internal kernel;

    address internal admin = makeAddr("admin");
    address internal feeSink = makeAddr("feeRecipient");
    address internal requester = makeAddr("requester");
    address internal provider = makeAddr("provider");
    address internal stranger = makeAddr("stranger");
    address internal mediator = makeAddr("mediator");

    uint256 internal constant AMOUNT = 1_000_000; // 1.00
    uint256 internal constant WINDOW = 2 hours;
    uint256 internal constant FEE_BPS = 100;
    bytes32 internal constant SERVICE = keccak256("service:test");
    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant DEADLINE = T0 + 1 days;

    IACTPKernel.State internal constant INITIATED = IACTPKernel.State.INITIATED;
    IACTPKernel.State internal constant QUOTED = IACTPKernel.State.QUOTED;
    IACTPKernel.State internal constant COMMITTED = IACTPKernel.State.COMMITTED;
    IACTPKernel.State internal constant IN_PROGRESS = IACTPKernel.State.IN_PROGRESS;
    IACTPKernel.State internal constant DELIVERED = IACTPKernel.State.DELIVERED;
    IACTPKernel.State internal constant SETTLED = IACTPKernel.State.SETTLED;
    IACTPKernel.State internal constant DISPUTED = IACTPKernel.State.DISPUTED;
    IACTPKernel.State internal constant CANCELLED = IACTPKernel.State.CANCELLED;

    function setUp() public virtual {
        vm.warp(T0);
        usdc = new MockUSDC();
        kernel = deployKernel(address(usdc), admin, feeSink, FEE_BPS);
        usdc.mint(requester, 1_000_000e6);
        vm.prank(requester);
        usdc.approve(address(kernel), type(uint256).max);
    }

    /// @dev Deploys the kernel from its artifact (built with via-IR), so test files never compile it.
    function deployKernel(address token, address admin_, address feeRecipient_, uint256 feeBps)
        internal
        returns (IEscrowKernel)
    {
        return IEscrowKernel(
            vm.deployCode("EscrowKernel.sol:EscrowKernel", abi.encode(token, admin_, feeRecipient_, uint16(feeBps)))
        );
    }

    // ---- drive a transaction ----

    function create() internal returns (bytes32 id) {
        return createWith(AMOUNT, DEADLINE, WINDOW);
    }

    function createWith(uint256 amount, uint256 deadline, uint256 window) internal returns (bytes32 id) {
        vm.prank(requester);
        id = kernel.createTransaction(provider, requester, amount, deadline, window, SERVICE, 0, 0);
    }

    function fund(bytes32 id) internal {
        vm.prank(requester);
        kernel.linkEscrow(id, address(kernel), id);
    }

    function committed() internal returns (bytes32 id) {
        id = create();
        fund(id);
    }

    function start(bytes32 id) internal {
        vm.prank(provider);
        kernel.transitionState(id, IN_PROGRESS, "");
    }

    function inProgress() internal returns (bytes32 id) {
        id = committed();
        start(id);
    }

    function deliver(bytes32 id) internal {
        vm.prank(provider);
        kernel.transitionState(id, DELIVERED, "");
    }

    function delivered() internal returns (bytes32 id) {
        id = inProgress();
        deliver(id);
    }

    function disputed() internal returns (bytes32 id) {
        id = delivered();
        vm.prank(requester);
        kernel.transitionState(id, DISPUTED, "");
    }

    function transition(address who, bytes32 id, IACTPKernel.State to, bytes memory proof) internal {
        vm.prank(who);
        kernel.transitionState(id, to, proof);
    }

    function expectRevertTransition(address who, bytes32 id, IACTPKernel.State to, bytes memory proof, bytes memory err)
        internal
    {
        vm.expectRevert(err);
        vm.prank(who);
        kernel.transitionState(id, to, proof);
    }

    function stateOf(bytes32 id) internal view returns (IACTPKernel.State) {
        return kernel.getTransaction(id).state;
    }

    function assertState(bytes32 id, IACTPKernel.State expected) internal view {
        assertEq(uint256(stateOf(id)), uint256(expected), "state");
    }

    function fee(uint256 gross) internal pure returns (uint256) {
        return gross * FEE_BPS / 10_000;
    }

    function bal(address who) internal view returns (uint256) {
        return usdc.balanceOf(who);
    }
}
