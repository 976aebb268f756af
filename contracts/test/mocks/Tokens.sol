// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @dev Base for misbehaving test tokens: 6 decimals and an open mint.
abstract contract TestToken is ERC20 {
    constructor(string memory name) ERC20(name, name) {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}

/// @dev Reverts every transfer to or from a blocklisted address (as USDC does).
contract BlocklistToken is TestToken {
    mapping(address => bool) public blocked;

    constructor() TestToken("BLOCK") {}

    function setBlocked(address who, bool value) external {
        blocked[who] = value;
    }

    function _update(address from, address to, uint256 value) internal override {
        require(!blocked[from] && !blocked[to], "blocklisted");
        super._update(from, to, value);
    }
}

/// @dev Returns false instead of reverting when `failing` is set.
contract FalseReturningToken is TestToken {
    bool public failing;

    constructor() TestToken("FALSE") {}

    function setFailing(bool value) external {
        failing = value;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (failing) return false;
        return super.transfer(to, value);
    }
}

/// @dev Takes a 1% fee on every transfer.
contract FeeOnTransferToken is TestToken {
    constructor() TestToken("FEE") {}

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) return super._update(from, to, value);
        uint256 cut = value / 100;
        super._update(from, address(0xdead), cut);
        super._update(from, to, value - cut);
    }
}

/// @dev Calls back into a target during every transfer and records whether the call succeeded.
contract ReentrantToken is TestToken {
    address public target;
    bytes public payload;
    bool public attempted;
    bool public reentered;
    bytes public lastError;

    constructor() TestToken("REENTER") {}

    function arm(address target_, bytes calldata payload_) external {
        (target, payload, attempted, reentered) = (target_, payload_, false, false);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target != address(0) && !attempted) {
            attempted = true;
            (bool ok, bytes memory err) = target.call(payload);
            reentered = ok;
            lastError = err;
        }
    }
}
