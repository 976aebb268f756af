// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IEscrowVault
/// @notice The escrow-vault views an ACTP v3 client reads. The kernel is its own vault and answers them.
interface IEscrowVault {
    /// @notice What the escrow `escrowId` still holds; 0 once it reached a terminal state or was never funded.
    /// `escrowId` names, in this order: the caller's own alias (asked by the requester that linked it), a
    /// transaction id, an alias only one requester linked. An alias several requesters linked names nothing
    /// for other callers: ask `verifyEscrow` with the requester instead.
    /// @param escrowId The escrow id (the transaction id, or the id an older client linked).
    /// @return The amount still held, in token base units.
    function remaining(bytes32 escrowId) external view returns (uint256);

    /// @notice The escrow token.
    /// @return The ERC-20 token address.
    function token() external view returns (address);

    /// @notice The kernel this vault serves (itself).
    /// @return The kernel address.
    function kernel() external view returns (address);

    /// @notice Whether `escrowId` is a live escrow between `requester` and `provider` holding at least `amount`.
    /// `escrowId` is `requester`'s own alias if it linked one under that id, else a transaction id.
    /// @param escrowId The escrow id.
    /// @param requester The expected requester.
    /// @param provider The expected provider.
    /// @param amount The minimum amount expected.
    /// @return isActive True when funded, not terminal, parties match and at least `amount` is held.
    /// @return escrowAmount What the escrow still holds.
    function verifyEscrow(bytes32 escrowId, address requester, address provider, uint256 amount)
        external
        view
        returns (bool isActive, uint256 escrowAmount);
}
