// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../../src/interfaces/IACTPKernel.sol";
import {IEscrowKernel} from "../../src/interfaces/IEscrowKernel.sol";
import {MockUSDC} from "../../src/MockUSDC.sol";
import {Vm, VM_ADDRESS} from "../../script/Vm.sol";

/// @title KernelHandler
/// @notice Drives random lifecycles of many transactions by several actors, with time jumps, pauses and fee
/// changes. Every kernel call is a low-level call (a rejected move is part of the game, never a failure).
/// Ghost accounting is kept from the kernel's own events and checked against real token balances.
contract KernelHandler {
    Vm private constant vm = Vm(VM_ADDRESS);

    IEscrowKernel public immutable kernel;
    MockUSDC public immutable usdc;
    address public immutable admin;
    address[3] public requesters;
    address[3] public providers;
    address public constant STRANGER = address(0x5757);

    bytes32[] public ids;
    mapping(bytes32 => uint256) public ghostIn; // pulled into escrow
    mapping(bytes32 => uint256) public ghostOut; // paid to provider (net) + fees + refunds
    mapping(bytes32 => uint256) public ghostFee;
    mapping(bytes32 => uint256) public ghostProviderGross;
    mapping(bytes32 => uint8) public ghostTerminal; // 0 = not terminal yet, else state + 1
    uint256 public totalPulled;
    uint256 public totalPaid; // to parties, including fee collections
    uint256 public calls;
    uint256[8] public reached; // successful moves into each state, to show the runs go deep

    constructor(IEscrowKernel kernel_, MockUSDC usdc_, address admin_) {
        (kernel, usdc, admin) = (kernel_, usdc_, admin_);
        for (uint256 i; i < 3; ++i) {
            requesters[i] = address(uint160(0x1000 + i));
            providers[i] = address(uint160(0x2000 + i));
            usdc.mint(requesters[i], 1e18);
            vm.prank(requesters[i]);
            usdc.approve(address(kernel), type(uint256).max);
        }
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    // ---- actions ----

    function create(uint256 seed, uint256 amount, uint256 ahead, uint256 window, bool andFund) external {
        address requester = requesters[seed % 3];
        address provider = providers[(seed >> 8) % 3];
        amount = _bound(amount, 50_000, 1e13);
        ahead = _bound(ahead, 1, 60 days);
        window = _bound(window, 1 hours, 30 days);
        bytes memory data = andFund
            ? abi.encodeCall(
                IEscrowKernel.createAndFund, (provider, amount, block.timestamp + ahead, window, bytes32(seed), 0, 0)
            )
            : abi.encodeCall(
                IACTPKernel.createTransaction,
                (provider, requester, amount, block.timestamp + ahead, window, bytes32(seed), 0, 0)
            );
        (bool ok, bytes memory ret) = _call(requester, data);
        if (ok) ids.push(abi.decode(ret, (bytes32)));
    }

    function link(uint256 pick, uint256 actor) external {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        _call(
            _actor(kernel.getTransaction(id), actor), abi.encodeCall(IACTPKernel.linkEscrow, (id, address(kernel), id))
        );
    }

    /// @notice Usually the next step of the transaction's lifecycle by the party that takes it; one time in
    /// five any target state by anyone (`chaos`).
    function transition(uint256 pick, uint256 actor, uint8 to, uint256 extra) external {
        _transition(pick, actor, to, extra);
    }

    function _transition(uint256 pick, uint256 actor, uint8 to, uint256 extra) private {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        IACTPKernel.TransactionView memory v = kernel.getTransaction(id);
        IACTPKernel.State target = IACTPKernel.State(to % 8);
        address who = _actor(v, actor);
        if (extra % 5 != 0) (target, who) = _nextStep(v, extra);
        if (target == IACTPKernel.State.COMMITTED) {
            _call(who, abi.encodeCall(IACTPKernel.linkEscrow, (id, address(kernel), id)));
            return;
        }
        bytes memory proof;
        if (target == IACTPKernel.State.DELIVERED && extra % 3 != 0) {
            // usually a window the rules accept (at least the requester's), sometimes any window
            uint256 window = (extra >> 4) % 8 == 0
                ? _bound(extra, 0, 31 days)
                : _bound(v.disputeWindow + (extra >> 12) % 1 days, _min(v.disputeWindow, 30 days), 30 days);
            proof = extra % 3 == 1 ? abi.encode(window) : abi.encode(window, bytes32(extra));
        } else if (v.state == IACTPKernel.State.DISPUTED) {
            uint256 left = kernel.remaining(id);
            uint256 toRequester = _bound(extra, 0, left);
            // mostly exact splits, sometimes a wrong one
            proof = abi.encode(toRequester, extra % 7 == 0 ? left - toRequester + 1 : left - toRequester);
        }
        _call(who, abi.encodeCall(IACTPKernel.transitionState, (id, target, proof)));
    }

    function _nextStep(IACTPKernel.TransactionView memory v, uint256 r)
        private
        view
        returns (IACTPKernel.State to, address who)
    {
        IACTPKernel.State s = v.state;
        bool alt = (r >> 8) % 4 == 0;
        if (s == IACTPKernel.State.INITIATED) {
            return alt ? (IACTPKernel.State.QUOTED, v.provider) : (IACTPKernel.State.COMMITTED, v.requester);
        }
        if (s == IACTPKernel.State.QUOTED) {
            return alt ? (IACTPKernel.State.CANCELLED, v.requester) : (IACTPKernel.State.COMMITTED, v.requester);
        }
        if (s == IACTPKernel.State.COMMITTED) {
            return alt
                ? (IACTPKernel.State.CANCELLED, (r >> 16) % 2 == 0 ? v.provider : v.requester)
                : (IACTPKernel.State.IN_PROGRESS, v.provider);
        }
        if (s == IACTPKernel.State.IN_PROGRESS) {
            return alt
                ? (IACTPKernel.State.CANCELLED, (r >> 16) % 2 == 0 ? v.provider : v.requester)
                : (IACTPKernel.State.DELIVERED, v.provider);
        }
        if (s == IACTPKernel.State.DELIVERED) {
            if (alt) return (IACTPKernel.State.DISPUTED, (r >> 16) % 2 == 0 ? v.provider : v.requester);
            return (IACTPKernel.State.SETTLED, (r >> 16) % 2 == 0 ? STRANGER : v.requester);
        }
        if (s == IACTPKernel.State.DISPUTED) {
            return ((r >> 16) % 2 == 0 ? IACTPKernel.State.SETTLED : IACTPKernel.State.CANCELLED, admin);
        }
        return (IACTPKernel.State.SETTLED, v.requester); // terminal: must be refused
    }

    /// @notice One to three next lifecycle steps of one transaction (weights the random runs toward deep
    /// lifecycles).
    function advance(uint256 pick, uint256 extra) external {
        uint256 steps = 1 + (extra >> 200) % 3;
        for (uint256 i; i < steps; ++i) {
            uint256 e = uint256(keccak256(abi.encode(extra, i)));
            _transition(pick, 0, 0, e % 5 == 0 ? e ^ 1 : e); // never the chaos branch
        }
    }

    function milestone(uint256 pick, uint256 actor, uint256 amount) external {
        bytes32 id = _pick(pick);
        if (id == 0) return;
        amount = _bound(amount, 0, kernel.remaining(id) + 1);
        _call(_actor(kernel.getTransaction(id), actor), abi.encodeCall(IACTPKernel.releaseMilestone, (id, amount)));
    }

    function settleBatch(uint256 pick, uint256 count, uint256 actor) external {
        count = _bound(count, 1, 8);
        bytes32[] memory batch = new bytes32[](count);
        for (uint256 i; i < count; ++i) {
            unchecked {
                batch[i] = _pick(pick + i * 7919); // wrapping is fine: any index will do
            }
        }
        address caller = actor % 2 == 0 ? STRANGER : requesters[actor % 3];
        _call(caller, abi.encodeCall(IEscrowKernel.settleBatch, (batch)));
    }

    function warp(uint256 secs) external {
        // mostly short steps; one in eight jumps far past deadlines and windows
        vm.warp(block.timestamp + (secs % 8 == 0 ? _bound(secs, 0, 40 days) : _bound(secs, 0, 6 hours)));
    }

    function togglePause(uint256 r) external {
        bool on = r % 4 == 0; // paused about a quarter of the time
        _call(admin, on ? abi.encodeCall(IEscrowKernel.pause, ()) : abi.encodeCall(IEscrowKernel.unpause, ()));
    }

    function changeFee(uint16 bps, bool execute) external {
        if (execute) _call(STRANGER, abi.encodeCall(IEscrowKernel.executeFeeChange, ()));
        else _call(admin, abi.encodeCall(IEscrowKernel.scheduleFeeChange, (uint16(_bound(bps, 0, 500)))));
    }

    function collectFees() external {
        _call(STRANGER, abi.encodeCall(IEscrowKernel.collectFees, ()));
    }

    // ---- plumbing ----

    /// @dev Calls the kernel as `who` and books every token movement it reports, per transaction.
    function _call(address who, bytes memory data) private returns (bool ok, bytes memory ret) {
        ++calls;
        uint256 before = usdc.balanceOf(address(kernel));
        vm.recordLogs();
        vm.prank(who);
        (ok, ret) = address(kernel).call(data);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 afterwards = usdc.balanceOf(address(kernel));
        if (afterwards > before) totalPulled += afterwards - before;
        else totalPaid += before - afterwards;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(kernel)) continue;
            bytes32 topic = logs[i].topics[0];
            if (topic == IACTPKernel.EscrowLinked.selector) {
                (,, uint256 amount,) = abi.decode(logs[i].data, (address, bytes32, uint256, uint256));
                ghostIn[logs[i].topics[1]] += amount;
            } else if (topic == IACTPKernel.EscrowReleased.selector) {
                (, uint256 amount,) = abi.decode(logs[i].data, (address, uint256, uint256));
                ghostOut[logs[i].topics[1]] += amount;
                ghostProviderGross[logs[i].topics[1]] += amount;
            } else if (topic == IACTPKernel.PlatformFeeAccrued.selector) {
                (uint256 amount,) = abi.decode(logs[i].data, (uint256, uint256));
                ghostOut[logs[i].topics[1]] += amount;
                ghostFee[logs[i].topics[1]] += amount;
                ghostProviderGross[logs[i].topics[1]] += amount;
            } else if (topic == IACTPKernel.EscrowRefunded.selector) {
                (, uint256 amount,) = abi.decode(logs[i].data, (address, uint256, uint256));
                ghostOut[logs[i].topics[1]] += amount;
            } else if (topic == IACTPKernel.StateTransitioned.selector) {
                uint8 to = uint8(uint256(logs[i].topics[3]));
                bytes32 id = logs[i].topics[1];
                ++reached[to];
                if (to == uint8(IACTPKernel.State.SETTLED) || to == uint8(IACTPKernel.State.CANCELLED)) {
                    require(ghostTerminal[id] == 0, "terminal state left");
                    ghostTerminal[id] = to + 1;
                }
            }
        }
    }

    /// @dev A transaction, preferring live ones: from a random start, the first that is not terminal (one
    /// pick in eight takes whatever is there, terminal included).
    function _pick(uint256 pick) private view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0) return 0;
        uint256 start = pick % n;
        if ((pick >> 128) % 8 == 0) return ids[start];
        for (uint256 i; i < n; ++i) {
            bytes32 id = ids[(start + i) % n];
            if (ghostTerminal[id] == 0) return id;
        }
        return ids[start];
    }

    /// @dev Mostly the party the rules name, sometimes anyone else.
    function _actor(IACTPKernel.TransactionView memory v, uint256 actor) private view returns (address) {
        uint256 r = actor % 10;
        if (r < 4) return v.requester;
        if (r < 8) return v.provider;
        if (r < 9) return admin;
        return STRANGER;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    function _bound(uint256 x, uint256 min, uint256 max) private pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }
}
