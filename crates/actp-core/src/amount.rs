//! Token amounts as integers of base units, for a 6-decimal token (USDC). No floating point anywhere.
//!
//! Accepted forms: `0.10`, `$0.10`, `10`, `0.10 USDC`, `100000 base units` (also `100000 units`).
//! Printed form: the decimal amount with at least two decimals (`0.10`, `1.50`, `0.123456`).

use std::{fmt, str::FromStr};

use alloy_primitives::U256;

/// Decimals of the escrow token.
pub const DECIMALS: u32 = 6;
const SCALE: u128 = 10u128.pow(DECIMALS);

/// An amount of the escrow token, in base units (1 token = 1,000,000 base units).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Amount(u128);

/// Why a string is not an amount. Each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing was given.
    #[error("empty amount: write e.g. 0.10, $0.10 or 100000 base units")]
    Empty,
    /// A minus sign.
    #[error("negative amount {0:?}: amounts are never negative")]
    Negative(String),
    /// More fractional digits than the token has.
    #[error(
        "{input:?} has {digits} decimals but the token has {DECIMALS}: round it to at most {DECIMALS}"
    )]
    TooManyDecimals {
        /// The input.
        input: String,
        /// How many fractional digits it has.
        digits: usize,
    },
    /// Not a number in any accepted form.
    #[error("{0:?} is not an amount: write e.g. 0.10, $0.10 or 100000 base units")]
    Invalid(String),
    /// Too large to represent.
    #[error("{0:?} is too large")]
    Overflow(String),
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// An amount of `units` base units.
    pub const fn from_base_units(units: u128) -> Self {
        Amount(units)
    }

    /// Whole tokens, e.g. `Amount::from_tokens(5)` is 5.00.
    pub const fn from_tokens(tokens: u64) -> Self {
        Amount(tokens as u128 * SCALE)
    }

    /// The amount in base units.
    pub const fn base_units(self) -> u128 {
        self.0
    }

    /// The amount as a 256-bit integer, as contracts take it.
    pub fn to_u256(self) -> U256 {
        U256::from(self.0)
    }

    /// `value` if it fits (token amounts and balances of a 6-decimal token always do in practice).
    pub fn try_from_u256(value: U256) -> Result<Self, AmountError> {
        u128::try_from(value)
            .map(Amount)
            .map_err(|_| AmountError::Overflow(value.to_string()))
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// Difference, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Product with a count, or `None` on overflow.
    pub fn checked_mul(self, n: u128) -> Option<Amount> {
        self.0.checked_mul(n).map(Amount)
    }
}

impl From<Amount> for U256 {
    fn from(a: Amount) -> U256 {
        a.to_u256()
    }
}

impl fmt::Display for Amount {
    /// `0.10`, `1.50`, `0.123456`, `1000.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / SCALE;
        let frac = format!("{:06}", self.0 % SCALE);
        let trimmed = frac.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        write!(f, "{whole}.{shown}")
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if s.starts_with('-') || s.starts_with("$-") {
            return Err(AmountError::Negative(input.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        for suffix in [" base units", " base unit", " units", " unit"] {
            if let Some(digits) = lower.strip_suffix(suffix) {
                let digits = digits.trim().replace('_', "");
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(AmountError::Invalid(input.to_owned()));
                }
                return digits
                    .parse::<u128>()
                    .map(Amount)
                    .map_err(|_| AmountError::Overflow(input.to_owned()));
            }
        }
        let s = s.strip_prefix('$').unwrap_or(s);
        let s = match s.len().checked_sub(5) {
            Some(cut) if s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(" usdc") => {
                s[..cut].trim_end()
            }
            _ => s,
        };
        let s = s.replace('_', "");
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s.as_str(), ""),
        };
        let digits_only = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
            return Err(AmountError::Invalid(input.to_owned()));
        }
        if frac.len() > DECIMALS as usize {
            return Err(AmountError::TooManyDecimals {
                input: input.to_owned(),
                digits: frac.len(),
            });
        }
        let overflow = || AmountError::Overflow(input.to_owned());
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let frac_units: u128 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<6}");
            padded
                .parse()
                .map_err(|_| AmountError::Invalid(input.to_owned()))?
        };
        whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(overflow)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(s: &str) -> Result<u128, AmountError> {
        s.parse::<Amount>().map(Amount::base_units)
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(p("0.10"), Ok(100_000));
        assert_eq!(p("$0.10"), Ok(100_000));
        assert_eq!(p(" 0.1 "), Ok(100_000));
        assert_eq!(p("10"), Ok(10_000_000));
        assert_eq!(p(".5"), Ok(500_000));
        assert_eq!(p("5."), Ok(5_000_000));
        assert_eq!(p("0.000001"), Ok(1));
        assert_eq!(p("1_000.25"), Ok(1_000_250_000));
        assert_eq!(p("0.10 USDC"), Ok(100_000));
        assert_eq!(p("100000 base units"), Ok(100_000));
        assert_eq!(p("100000 units"), Ok(100_000));
        assert_eq!(p("1 base unit"), Ok(1));
        assert_eq!(p("0"), Ok(0));
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        assert_eq!(p(""), Err(AmountError::Empty));
        assert!(matches!(p("-1"), Err(AmountError::Negative(_))));
        assert!(matches!(p("$-1"), Err(AmountError::Negative(_))));
        assert!(matches!(
            p("0.1234567"),
            Err(AmountError::TooManyDecimals { digits: 7, .. })
        ));
        assert!(matches!(p("1e3"), Err(AmountError::Invalid(_))));
        assert!(matches!(p("."), Err(AmountError::Invalid(_))));
        assert!(matches!(p("1.2.3"), Err(AmountError::Invalid(_))));
        assert!(matches!(p("0.5 base units"), Err(AmountError::Invalid(_))));
        assert!(matches!(p("abc"), Err(AmountError::Invalid(_))));
        assert!(matches!(p("€1"), Err(AmountError::Invalid(_))));
        assert!(matches!(
            p("999999999999999999999999999999999999"),
            Err(AmountError::Overflow(_))
        ));
        assert!(matches!(
            p("999999999999999999999999999999999999999999 base units"),
            Err(AmountError::Overflow(_))
        ));
        let msg = p("0.1234567").unwrap_err().to_string();
        assert!(msg.contains("at most 6"), "{msg}");
    }

    #[test]
    fn display() {
        let show = |u: u128| Amount::from_base_units(u).to_string();
        assert_eq!(show(100_000), "0.10");
        assert_eq!(show(1_500_000), "1.50");
        assert_eq!(show(123_456), "0.123456");
        assert_eq!(show(0), "0.00");
        assert_eq!(show(1), "0.000001");
        assert_eq!(show(1_000_000_000), "1000.00");
    }

    proptest::proptest! {
        #[test]
        fn display_parse_round_trip(units in 0u128..=u128::MAX / 1_000_000) {
            let a = Amount::from_base_units(units);
            proptest::prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
            proptest::prop_assert_eq!(format!("{units} base units").parse::<Amount>().unwrap(), a);
        }
    }
}
