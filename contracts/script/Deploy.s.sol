// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {EscrowKernel} from "../src/EscrowKernel.sol";
import {MockUSDC} from "../src/MockUSDC.sol";
import {Vm, VM_ADDRESS} from "./Vm.sol";

/// @title Deploy
/// @notice Deploys the escrow kernel (and MockUSDC when no token is given) to any RPC and writes a deployment
/// JSON. Configuration comes from environment variables (see README, "Deploying"):
/// - ACTP_DEPLOYER_KEY (required): the deployer's private key; it pays for the deployment.
/// - ACTP_TOKEN: the escrow token; when unset, a MockUSDC (development only) is deployed.
/// - ACTP_ADMIN: the admin (default: the deployer).
/// - ACTP_FEE_RECIPIENT: the fee recipient (default: the admin).
/// - ACTP_FEE_BPS: the platform fee in basis points (default 100 = 1%, at most 500).
/// - ACTP_DEPLOYMENT_OUT: where to write the deployment JSON (default target/deployments/latest.json).
/// Run: forge script contracts/script/Deploy.s.sol --rpc-url $RPC --broadcast
contract Deploy {
    Vm private constant vm = Vm(VM_ADDRESS);

    function run() external returns (EscrowKernel kernel, address token) {
        uint256 deployerKey = vm.envOr("ACTP_DEPLOYER_KEY", uint256(0));
        require(deployerKey != 0, "set ACTP_DEPLOYER_KEY to the deployer's private key");
        address deployer = vm.addr(deployerKey);
        token = vm.envOr("ACTP_TOKEN", address(0));
        address admin = vm.envOr("ACTP_ADMIN", deployer);
        address feeRecipient = vm.envOr("ACTP_FEE_RECIPIENT", admin);
        uint256 feeBps = vm.envOr("ACTP_FEE_BPS", uint256(100));
        require(feeBps <= 500, "ACTP_FEE_BPS must be at most 500");
        string memory out = vm.envOr("ACTP_DEPLOYMENT_OUT", string("target/deployments/latest.json"));

        // The deployment transactions land after this block: scanning events from here misses nothing.
        uint256 fromBlock = block.number;
        vm.startBroadcast(deployerKey);
        if (token == address(0)) token = address(new MockUSDC());
        kernel = new EscrowKernel(IERC20(token), admin, feeRecipient, uint16(feeBps));
        vm.stopBroadcast();

        string memory json = string.concat(
            '{"chain_id":',
            vm.toString(block.chainid),
            ',"kernel":"',
            vm.toString(address(kernel)),
            '","escrow_vault":"',
            vm.toString(address(kernel)),
            '","token":"',
            vm.toString(token),
            '","block":',
            vm.toString(fromBlock),
            "}\n"
        );
        vm.writeFile(out, json);
    }
}
