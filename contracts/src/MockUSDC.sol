// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title MockUSDC
/// @notice A 6-decimal ERC-20 standing in for USDC on local chains and in tests. DEVELOPMENT ONLY: anyone can
/// mint any amount to anyone. Never deploy it where its tokens could be mistaken for money.
contract MockUSDC is ERC20, ERC20Permit {
    constructor() ERC20("Mock USDC (dev only)", "mUSDC") ERC20Permit("Mock USDC (dev only)") {}

    /// @notice Mints `amount` base units to `to`. Open to everyone: development only.
    /// @param to The recipient.
    /// @param amount The amount in base units (6 decimals).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
