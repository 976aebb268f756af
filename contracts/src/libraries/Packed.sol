// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IACTPKernel} from "../interfaces/IACTPKernel.sol";

/// @title Packed
/// @notice Bit layouts of the packed words of a transaction record. Pure functions only: this library
/// never touches storage and never validates; the kernel validates before it packs.
///
/// Status word (record slot 0): read and written by every transition, so one SLOAD and one SSTORE serve it.
/// ```
///  255        230 229       198 197       166 165 164 163 162  160 159                  0
/// | window (26) | deadline (32)| updated (32) | S | D | E | state | provider (160)        |
/// ```
/// - state: the wire state code (0..7).
/// - E (escrowed): set when funded; kept in terminal states (the view reports the escrow afterwards).
/// - D (delivered): set at DELIVERED; kept afterwards.
/// - S (side word): set when the side word below is in use: a session (from opening), or a transaction that
///   released a milestone.
/// - updated, deadline: unix seconds (uint32: valid until 2106-02-07; creation refuses later deadlines).
///   A funded transaction can still move after that date (settlement, refunds and resolution have no time
///   limit): `moved` then stores `updated` as 2^32 - 1 (saturated, so it never spills into the deadline and
///   never goes backwards).
/// - window: before and during DELIVERED, a dispute window in seconds (the requester's minimum, then the
///   window chosen at delivery, whose end is `updated + window` while DELIVERED); after leaving DELIVERED,
///   the window end minus `createdAt` (at most 365 + 30 days, below 2^26).
///
/// Terms word (record slot 1): written at creation; read when money moves.
/// ```
///  255         224 223     214 213          160 159                  0
/// | createdAt (32) | fee (10)  | amount (54)     | requester (160)      |
/// ```
/// - amount: the escrow amount in token base units (at most 1e15, below 2^54).
/// - fee: the platform fee in basis points locked at creation (at most 500, below 2^10).
///
/// Side word (a slot of its own, read only when S is set):
/// - a transaction that released milestones: the released total (at most 1e15, so bit 255 is clear);
/// - a session:
/// ```
///  255   254      128 127          96 95        64 63              0
/// | SESSION | 0       | closeBy (32)  | grace (32) | claimed (64)     |
/// ```
///   closeBy is zero until the requester asks to end (then its time plus grace, saturated to 32 bits), and
///   claimed is zero until the provider closes.
library Packed {
    uint256 internal constant ADDRESS_MASK = (1 << 160) - 1;

    uint256 internal constant STATE_OFFSET = 160;
    uint256 internal constant STATE_MASK = 0x7;
    uint256 internal constant ESCROWED = 1 << 163;
    uint256 internal constant DELIVERED = 1 << 164;
    uint256 internal constant SIDE = 1 << 165;
    uint256 internal constant UPDATED_OFFSET = 166;
    uint256 internal constant DEADLINE_OFFSET = 198;
    uint256 internal constant WINDOW_OFFSET = 230;
    uint256 internal constant U32_MASK = 0xffffffff;
    uint256 internal constant WINDOW_MASK = (1 << 26) - 1;

    uint256 internal constant AMOUNT_OFFSET = 160;
    uint256 internal constant AMOUNT_MASK = (1 << 54) - 1;
    uint256 internal constant FEE_OFFSET = 214;
    uint256 internal constant FEE_MASK = (1 << 10) - 1;
    uint256 internal constant CREATED_OFFSET = 224;

    uint256 internal constant SESSION = 1 << 255;
    uint256 internal constant CLAIMED_MASK = (1 << 64) - 1;
    uint256 internal constant GRACE_OFFSET = 64;
    uint256 internal constant CLOSE_BY_OFFSET = 96;

    /// @dev Bits a transition rewrites: state, updated and window. Flags, deadline and provider survive.
    uint256 internal constant TRANSITION_CLEAR =
        ~((STATE_MASK << STATE_OFFSET) | (U32_MASK << UPDATED_OFFSET) | (WINDOW_MASK << WINDOW_OFFSET));

    // ---- status word ----

    function status(
        address provider_,
        IACTPKernel.State state_,
        uint256 flags,
        uint256 updated_,
        uint256 deadline_,
        uint256 window_
    ) internal pure returns (uint256) {
        return uint256(uint160(provider_)) | (uint256(state_) << STATE_OFFSET) | flags | (updated_ << UPDATED_OFFSET)
            | (deadline_ << DEADLINE_OFFSET) | (window_ << WINDOW_OFFSET);
    }

    function provider(uint256 s) internal pure returns (address) {
        return address(uint160(s));
    }

    function state(uint256 s) internal pure returns (IACTPKernel.State) {
        return IACTPKernel.State((s >> STATE_OFFSET) & STATE_MASK);
    }

    function updated(uint256 s) internal pure returns (uint256) {
        return (s >> UPDATED_OFFSET) & U32_MASK;
    }

    function deadline(uint256 s) internal pure returns (uint256) {
        return (s >> DEADLINE_OFFSET) & U32_MASK;
    }

    function window(uint256 s) internal pure returns (uint256) {
        return s >> WINDOW_OFFSET;
    }

    /// @dev `updated + window`: while DELIVERED, the last second of the dispute window.
    function windowEnd(uint256 s) internal pure returns (uint256 end) {
        unchecked {
            end = updated(s) + window(s); // a 32-bit time plus a 26-bit window: far below 2^256
        }
    }

    function has(uint256 s, uint256 flag) internal pure returns (bool) {
        return s & flag != 0;
    }

    /// @dev `s` moved to `to` at `now_` (saturated to 32 bits), with `window_` in the window field and `flags`
    /// added.
    function moved(uint256 s, IACTPKernel.State to, uint256 now_, uint256 window_, uint256 flags)
        internal
        pure
        returns (uint256)
    {
        if (now_ > U32_MASK) now_ = U32_MASK;
        return (s & TRANSITION_CLEAR) | (uint256(to) << STATE_OFFSET) | flags | (now_ << UPDATED_OFFSET)
            | (window_ << WINDOW_OFFSET);
    }

    // ---- terms word ----

    function terms(address requester_, uint256 amount_, uint256 feeBps_, uint256 createdAt_)
        internal
        pure
        returns (uint256)
    {
        return uint256(uint160(requester_)) | (amount_ << AMOUNT_OFFSET) | (feeBps_ << FEE_OFFSET)
            | (createdAt_ << CREATED_OFFSET);
    }

    function requester(uint256 t) internal pure returns (address) {
        return address(uint160(t));
    }

    function amount(uint256 t) internal pure returns (uint256) {
        return (t >> AMOUNT_OFFSET) & AMOUNT_MASK;
    }

    function feeBps(uint256 t) internal pure returns (uint256) {
        return (t >> FEE_OFFSET) & FEE_MASK;
    }

    function createdAt(uint256 t) internal pure returns (uint256) {
        return t >> CREATED_OFFSET;
    }

    function withAmount(uint256 t, uint256 amount_) internal pure returns (uint256) {
        return (t & ~(AMOUNT_MASK << AMOUNT_OFFSET)) | (amount_ << AMOUNT_OFFSET);
    }

    // ---- side word of a session ----

    function session(uint256 grace_) internal pure returns (uint256) {
        return SESSION | (grace_ << GRACE_OFFSET);
    }

    function isSession(uint256 side) internal pure returns (bool) {
        return side & SESSION != 0;
    }

    function claimed(uint256 side) internal pure returns (uint256) {
        return side & CLAIMED_MASK;
    }

    function grace(uint256 side) internal pure returns (uint256) {
        return (side >> GRACE_OFFSET) & U32_MASK;
    }

    function closeBy(uint256 side) internal pure returns (uint256) {
        return (side >> CLOSE_BY_OFFSET) & U32_MASK;
    }

    /// @dev The claim is at most the deposit (below 2^50); the word had none before.
    function withClaimed(uint256 side, uint256 claimed_) internal pure returns (uint256) {
        return side | claimed_;
    }

    /// @dev `closeBy_` saturated to 32 bits; the word had none before.
    function withCloseBy(uint256 side, uint256 closeBy_) internal pure returns (uint256) {
        if (closeBy_ > U32_MASK) closeBy_ = U32_MASK;
        return side | (closeBy_ << CLOSE_BY_OFFSET);
    }
}
