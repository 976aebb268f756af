//! Platform fee arithmetic, as the kernel computes it.
//!
//! The fee is charged only on what the provider is paid, at the rate locked into the transaction, on the
//! provider's running total: splitting a payout into milestones never changes the total fee.

use alloy_primitives::U256;

/// Basis points in one whole.
pub const BPS: u64 = 10_000;

/// The fee on a payout of `gross` to a provider already paid `paid_before` for the same transaction.
///
/// ```
/// use actp_core::{U256, fee::fee_on};
/// let u = |x: u64| U256::from(x);
/// assert_eq!(fee_on(u(0), u(1_000_000), 100), u(10_000));
/// // 10 milestones of 99 units each: 0 + 0 + ... on their own, but 9 in total at 1%
/// let total: U256 = (0..10).map(|i| fee_on(u(99 * i), u(99), 100)).sum();
/// assert_eq!(total, u(9));
/// ```
pub fn fee_on(paid_before: U256, gross: U256, fee_bps: u16) -> U256 {
    let bps = U256::from(fee_bps);
    let whole = U256::from(BPS);
    (paid_before + gross) * bps / whole - paid_before * bps / whole
}

/// What the provider receives of `gross`, and the fee.
pub fn split(paid_before: U256, gross: U256, fee_bps: u16) -> (U256, U256) {
    let fee = fee_on(paid_before, gross, fee_bps);
    (gross - fee, fee)
}
