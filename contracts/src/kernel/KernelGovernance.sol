// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IEscrowKernel} from "../interfaces/IEscrowKernel.sol";
import {Packed} from "../libraries/Packed.sol";
import {KernelState} from "./KernelState.sol";

/// @title KernelGovernance
/// @notice Fees, deferred payouts, mediators, pause and the admin role, with their views.
abstract contract KernelGovernance is KernelState {
    using SafeERC20 for IERC20;

    // ================================================================================================
    // Fees and governance
    // ================================================================================================

    /// @inheritdoc IEscrowKernel
    function collectFees() external nonReentrant {
        uint256 account = _feeAccount;
        uint256 amount = account >> FEE_SHIFT;
        if (amount == 0) revert NoFeesAccrued();
        address recipient = address(uint160(account));
        _feeAccount = uint256(uint160(recipient));
        emit FeesCollected(recipient, amount);
        _TOKEN.safeTransfer(recipient, amount);
    }

    /// @inheritdoc IEscrowKernel
    function claimDeferred(address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert ZeroAddress();
        amount = _deferred[msg.sender];
        if (amount == 0) revert NothingToClaim();
        delete _deferred[msg.sender];
        emit DeferredPaymentClaimed(msg.sender, to, amount);
        _TOKEN.safeTransfer(to, amount);
    }

    /// @inheritdoc IEscrowKernel
    function setFeeRecipient(address recipient) external onlyAdmin {
        if (recipient == address(0)) revert ZeroAddress();
        uint256 account = _feeAccount;
        _feeAccount = (account & ~Packed.ADDRESS_MASK) | uint256(uint160(recipient));
        emit FeeRecipientUpdated(address(uint160(account)), recipient);
    }

    /// @inheritdoc IEscrowKernel
    function scheduleFeeChange(uint16 feeBps) external onlyAdmin {
        if (feeBps > MAX_PLATFORM_FEE_BPS) revert FeeAboveCap(feeBps, MAX_PLATFORM_FEE_BPS);
        uint256 executeAfter = block.timestamp + FEE_CHANGE_DELAY;
        _pendingFee = uint256(feeBps) | (executeAfter << 16);
        emit PlatformFeeChangeScheduled(feeBps, executeAfter);
    }

    /// @inheritdoc IEscrowKernel
    function cancelFeeChange() external onlyAdmin {
        uint256 pending = _pendingFee;
        if (pending == 0) revert NoPendingFeeChange();
        delete _pendingFee;
        emit PlatformFeeChangeCancelled(uint16(pending));
    }

    /// @inheritdoc IEscrowKernel
    function executeFeeChange() external {
        uint256 pending = _pendingFee;
        if (pending == 0) revert NoPendingFeeChange();
        uint256 executeAfter = pending >> 16;
        if (block.timestamp < executeAfter) revert FeeChangeNotReady(executeAfter);
        uint256 config = _config;
        uint16 oldFee = uint16(config >> FEE_SHIFT);
        uint16 newFee = uint16(pending);
        _config = (config & ~(uint256(0xffff) << FEE_SHIFT)) | (uint256(newFee) << FEE_SHIFT);
        delete _pendingFee;
        emit PlatformFeeUpdated(oldFee, newFee);
    }

    /// @inheritdoc IEscrowKernel
    function setMediator(address mediator, bool approved) external onlyAdmin {
        if (mediator == address(0)) revert ZeroAddress();
        uint256 activeFrom = _mediators[mediator];
        if (approved) {
            // Re-approving keeps the original start: the delay cannot be reset or skipped.
            if (activeFrom == 0) activeFrom = block.timestamp + MEDIATOR_DELAY;
        } else {
            activeFrom = 0;
        }
        _mediators[mediator] = activeFrom;
        emit MediatorUpdated(mediator, activeFrom);
    }

    /// @inheritdoc IEscrowKernel
    function setPauser(address newPauser) external onlyAdmin {
        if (newPauser == address(0)) revert ZeroAddress();
        uint256 config = _config;
        _config = (config & ~Packed.ADDRESS_MASK) | uint256(uint160(newPauser));
        emit PauserUpdated(_pauserOf(config, msg.sender), newPauser);
    }

    /// @inheritdoc IEscrowKernel
    function pause() external {
        uint256 config = _requirePauser();
        _config = config | PAUSED;
        emit KernelPaused(msg.sender, block.timestamp);
    }

    /// @inheritdoc IEscrowKernel
    function unpause() external {
        uint256 config = _requirePauser();
        _config = config & ~PAUSED;
        emit KernelUnpaused(msg.sender, block.timestamp);
    }

    /// @inheritdoc IEscrowKernel
    function transferAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroAddress();
        _pendingAdmin = newAdmin;
        emit AdminTransferStarted(msg.sender, newAdmin);
    }

    /// @inheritdoc IEscrowKernel
    function acceptAdmin() external {
        if (msg.sender != _pendingAdmin) revert NotPendingAdmin(msg.sender);
        address oldAdmin = _currentAdmin();
        uint256 config = _config;
        address oldPauser = _pauserOf(config, oldAdmin);
        _adminAccount = uint256(uint160(msg.sender)) | ((block.timestamp + MEDIATOR_DELAY) << RESOLVES_FROM_SHIFT);
        delete _pendingAdmin;
        // The pause power moves with the role: whoever the old admin named (or the old admin itself) loses it.
        _config = config & ~Packed.ADDRESS_MASK;
        emit AdminTransferred(oldAdmin, msg.sender);
        emit PauserUpdated(oldPauser, msg.sender);
    }

    // ================================================================================================
    // Views
    // ================================================================================================

    /// @inheritdoc IEscrowKernel
    function isResolver(address account) public view returns (bool) {
        uint256 adminAccount = _adminAccount;
        if (account == address(uint160(adminAccount)) && block.timestamp >= adminAccount >> RESOLVES_FROM_SHIFT) {
            return true;
        }
        uint256 activeFrom = _mediators[account];
        return activeFrom != 0 && block.timestamp >= activeFrom;
    }

    /// @inheritdoc IEscrowKernel
    function mediatorActiveFrom(address mediator) external view returns (uint256) {
        return _mediators[mediator];
    }

    /// @inheritdoc IEscrowKernel
    function deferredOf(address account) external view returns (uint256) {
        return _deferred[account];
    }

    /// @inheritdoc IEscrowKernel
    function accruedFees() external view returns (uint256) {
        return _feeAccount >> FEE_SHIFT;
    }

    /// @inheritdoc IEscrowKernel
    function feeRecipient() external view returns (address) {
        return address(uint160(_feeAccount));
    }

    /// @inheritdoc IEscrowKernel
    function pendingFeeChange() external view returns (uint16 feeBps, uint256 executeAfter) {
        uint256 pending = _pendingFee;
        return (uint16(pending), pending >> 16);
    }

    /// @inheritdoc IEscrowKernel
    function admin() external view returns (address) {
        return _currentAdmin();
    }

    /// @inheritdoc IEscrowKernel
    function pendingAdmin() external view returns (address) {
        return _pendingAdmin;
    }

    /// @inheritdoc IEscrowKernel
    function pauser() external view returns (address) {
        return _pauserOf(_config, _currentAdmin());
    }
}
