//! Metered prices: a maximum per call plus a price per unit of usage (per output token, per second, per
//! row), the way language models are sold. No floating point anywhere.
//!
//! A call's charge is `min(ceil(Σ units × unit price), max)`: rounded up to the next base unit, so a provider
//! is never paid less than its price, and never more than the maximum the consumer authorized for the call.
//! Unit prices may be far below one base unit (language models cost fractions of a cent per thousand tokens),
//! so they are kept in millionths of a base unit: 12 decimals of a 6-decimal token.
//!
//! ```
//! use actp_core::meter::{Meter, Usage};
//!
//! // $0.000001 per input token, $0.000004 per output token, at most $0.50 per call
//! let meter: Meter = "in=0.000001,out=0.000004,max=0.50".parse().unwrap();
//! let usage = Usage::new().with("in", 1_200).with("out", 350);
//! assert_eq!(meter.charge(&usage).to_string(), "0.0026");
//! assert_eq!(meter.charge(&Usage::new().with("out", 10_000_000)), meter.max);
//! ```

use std::{collections::BTreeMap, fmt, str::FromStr};

use crate::amount::{Amount, AmountError};

/// Millionths of a base unit per base unit.
const MICROS: u128 = 1_000_000;
/// Decimals of a unit price: the token's 6 and 6 more.
pub const UNIT_PRICE_DECIMALS: u32 = 12;

/// A price per unit of usage, in millionths of a token base unit.
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
pub struct UnitPrice(u128);

impl UnitPrice {
    /// `micros` millionths of a base unit per unit.
    pub const fn from_micros(micros: u128) -> Self {
        UnitPrice(micros)
    }

    /// A whole number of base units per unit.
    pub const fn from_base_units(units: u128) -> Self {
        UnitPrice(units.saturating_mul(MICROS))
    }

    /// The price in millionths of a base unit.
    pub const fn micros(self) -> u128 {
        self.0
    }
}

impl fmt::Display for UnitPrice {
    /// The price in tokens, e.g. `0.000004` or `0.00000015`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u128.pow(UNIT_PRICE_DECIMALS);
        let frac = format!("{:012}", self.0 % scale);
        let trimmed = frac.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        write!(f, "{}.{shown}", self.0 / scale)
    }
}

/// Why a string is not a unit price. Each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitPriceError {
    /// Not a decimal number.
    #[error("{0:?} is not a price per unit: write a token amount such as 0.000004 or $0.00000015")]
    Invalid(String),
    /// More than 12 decimals.
    #[error(
        "{0:?} has more than {UNIT_PRICE_DECIMALS} decimals: round it to at most {UNIT_PRICE_DECIMALS}"
    )]
    TooManyDecimals(String),
    /// Too large.
    #[error("{0:?} is too large")]
    Overflow(String),
}

impl FromStr for UnitPrice {
    type Err = UnitPriceError;

    /// A decimal token amount with at most 12 decimals, optionally with `$`: `0.000004`, `$0.00000015`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let s = s.strip_prefix('$').unwrap_or(s).trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (!frac.is_empty() && !digits(frac)) || s.ends_with('.') {
            return Err(UnitPriceError::Invalid(input.to_owned()));
        }
        if frac.len() > UNIT_PRICE_DECIMALS as usize {
            return Err(UnitPriceError::TooManyDecimals(input.to_owned()));
        }
        let overflow = || UnitPriceError::Overflow(input.to_owned());
        let whole: u128 = whole.parse().map_err(|_| overflow())?;
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse::<u128>().map_err(|_| overflow())?
                * 10u128.pow(UNIT_PRICE_DECIMALS - frac.len() as u32)
        };
        whole
            .checked_mul(10u128.pow(UNIT_PRICE_DECIMALS))
            .and_then(|w| w.checked_add(frac_value))
            .map(UnitPrice)
            .ok_or_else(overflow)
    }
}

/// How much of each unit a call used, by unit name (`"in"`, `"out"`, `"unit"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Usage(BTreeMap<String, u64>);

impl Usage {
    /// No usage.
    pub fn new() -> Self {
        Usage::default()
    }

    /// `count` of the single default unit [`Meter::UNIT`].
    pub fn units(count: u64) -> Self {
        Usage::new().with(Meter::UNIT, count)
    }

    /// Adds `count` of `unit` (saturating).
    pub fn with(mut self, unit: &str, count: u64) -> Self {
        let entry = self.0.entry(unit.to_owned()).or_default();
        *entry = entry.saturating_add(count);
        self
    }

    /// The count of `unit` (zero if not reported).
    pub fn get(&self, unit: &str) -> u64 {
        self.0.get(unit).copied().unwrap_or(0)
    }

    /// Every unit and its count.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// A metered price: a price per unit for each named unit, and a maximum per call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meter {
    /// Price per unit, by unit name.
    pub rates: BTreeMap<String, UnitPrice>,
    /// The most one call costs: what a consumer authorizes before the call.
    pub max: Amount,
}

/// Why a meter description does not parse. Each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    /// A part is not `name=price`.
    #[error("`{0}` is not `unit=price`: write e.g. `in=0.000001,out=0.000004,max=0.50`")]
    Malformed(String),
    /// No maximum.
    #[error(
        "a metered price needs `max=<amount>`, the most one call may cost (the consumer authorizes it before the call)"
    )]
    NoMax,
    /// No unit price.
    #[error("a metered price needs at least one unit price, e.g. `out=0.000004`")]
    NoRates,
    /// A zero maximum.
    #[error("max must be above zero")]
    ZeroMax,
    /// A unit named twice.
    #[error("unit `{0}` is priced twice")]
    Duplicate(String),
    /// A unit name with characters other than letters, digits, `_` and `-`.
    #[error("unit name `{0}` must be letters, digits, `_` or `-`")]
    BadName(String),
    /// A unit price that does not parse.
    #[error("price of `{unit}`: {source}")]
    Price {
        /// The unit.
        unit: String,
        /// Why.
        source: UnitPriceError,
    },
    /// A maximum that is not an amount.
    #[error("max: {0}")]
    Max(AmountError),
}

impl Meter {
    /// The unit of a meter with a single rate reported as a plain count (`Usage(n)`).
    pub const UNIT: &'static str = "unit";

    /// A meter with one rate for the default unit.
    pub fn per_unit(price: UnitPrice, max: Amount) -> Self {
        Meter {
            rates: BTreeMap::from([(Self::UNIT.to_owned(), price)]),
            max,
        }
    }

    /// What `usage` costs: `min(ceil(Σ units × price), max)`. Units the meter does not price cost nothing.
    pub fn charge(&self, usage: &Usage) -> Amount {
        let micros = usage.iter().fold(0u128, |sum, (unit, count)| {
            let price = self.rates.get(unit).map_or(0, |p| p.micros());
            sum.saturating_add(price.saturating_mul(u128::from(count)))
        });
        let base_units = micros / MICROS + u128::from(micros % MICROS != 0);
        Amount::from_base_units(base_units).min(self.max)
    }
}

impl fmt::Display for Meter {
    /// `in=0.000001,out=0.000004,max=0.50`: the form [`Meter::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, price) in &self.rates {
            write!(f, "{unit}={price},")?;
        }
        write!(f, "max={}", self.max)
    }
}

impl FromStr for Meter {
    type Err = MeterError;

    /// `unit=price,…,max=amount`, e.g. `in=0.000001,out=0.000004,max=0.50` or `unit=0.001,max=1.00`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut rates = BTreeMap::new();
        let mut max = None;
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| MeterError::Malformed(part.to_owned()))?;
            let (name, value) = (name.trim(), value.trim());
            if name == "max" {
                max = Some(value.parse::<Amount>().map_err(MeterError::Max)?);
                continue;
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(MeterError::BadName(name.to_owned()));
            }
            let price = value
                .parse::<UnitPrice>()
                .map_err(|source| MeterError::Price {
                    unit: name.to_owned(),
                    source,
                })?;
            if rates.insert(name.to_owned(), price).is_some() {
                return Err(MeterError::Duplicate(name.to_owned()));
            }
        }
        let max = max.ok_or(MeterError::NoMax)?;
        if max == Amount::ZERO {
            return Err(MeterError::ZeroMax);
        }
        if rates.is_empty() {
            return Err(MeterError::NoRates);
        }
        Ok(Meter { rates, max })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn price(s: &str) -> UnitPrice {
        s.parse().unwrap()
    }

    #[test]
    fn unit_prices_keep_twelve_decimals_exactly() {
        assert_eq!(price("0.000001").micros(), 1_000_000);
        assert_eq!(price("$0.00000015").micros(), 150_000);
        assert_eq!(price("0.000000000001").micros(), 1);
        assert_eq!(price("2").micros(), 2_000_000_000_000);
        assert_eq!(price("0.000004").to_string(), "0.000004");
        assert_eq!(price("0.00000015").to_string(), "0.00000015");
        assert_eq!(price("1.5").to_string(), "1.50");
        for s in ["0.000004", "0.00000015", "1.50", "0.000000000001", "12.00"] {
            assert_eq!(
                price(s).to_string().parse::<UnitPrice>().unwrap(),
                price(s),
                "{s}"
            );
        }
        for bad in ["", "-1", "1e-6", "abc", ".5", "5.", "0x10", "1.2.3"] {
            assert!(
                matches!(bad.parse::<UnitPrice>(), Err(UnitPriceError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "0.0000000000001".parse::<UnitPrice>(),
            Err(UnitPriceError::TooManyDecimals(_))
        ));
        assert!(matches!(
            "999999999999999999999999999999".parse::<UnitPrice>(),
            Err(UnitPriceError::Overflow(_))
        ));
    }

    #[test]
    fn charges_round_up_to_a_base_unit_and_stop_at_the_maximum() {
        let m: Meter = "in=0.000001,out=0.000004,max=0.50".parse().unwrap();
        assert_eq!(m.charge(&Usage::new()), Amount::ZERO);
        assert_eq!(
            m.charge(&Usage::new().with("in", 1).with("out", 1)),
            Amount::from_base_units(5)
        );
        // 0.15 base units per token: three tokens are 0.45, charged as one base unit
        let cheap = Meter::per_unit(price("0.00000015"), "1.00".parse().unwrap());
        assert_eq!(cheap.charge(&Usage::units(3)), Amount::from_base_units(1));
        assert_eq!(cheap.charge(&Usage::units(20)), Amount::from_base_units(3));
        assert_eq!(cheap.charge(&Usage::units(0)), Amount::ZERO);
        assert_eq!(m.charge(&Usage::new().with("out", 125_000)), m.max);
        assert_eq!(
            m.charge(&Usage::new().with("out", u64::MAX).with("in", u64::MAX)),
            m.max
        );
        // units it does not price cost nothing
        assert_eq!(m.charge(&Usage::new().with("images", 9)), Amount::ZERO);
        let huge = Meter::per_unit(
            UnitPrice::from_micros(u128::MAX),
            Amount::from_base_units(7),
        );
        assert_eq!(
            huge.charge(&Usage::units(u64::MAX)),
            Amount::from_base_units(7)
        );
    }

    #[test]
    fn the_written_form_round_trips_and_every_mistake_says_what_to_write() {
        let m: Meter = " out = 0.000004 , in=0.000001, max=$0.50 ".parse().unwrap();
        assert_eq!(m.to_string(), "in=0.000001,out=0.000004,max=0.50");
        assert_eq!(m.to_string().parse::<Meter>().unwrap(), m);
        type Check = fn(&MeterError) -> bool;
        let cases: [(&str, Check); 8] = [
            ("in=0.000001", |e| matches!(e, MeterError::NoMax)),
            ("max=0.50", |e| matches!(e, MeterError::NoRates)),
            ("in=0.1,max=0", |e| matches!(e, MeterError::ZeroMax)),
            ("in=0.1,in=0.2,max=1", |e| {
                matches!(e, MeterError::Duplicate(_))
            }),
            ("in 0.1,max=1", |e| matches!(e, MeterError::Malformed(_))),
            ("in/put=0.1,max=1", |e| matches!(e, MeterError::BadName(_))),
            ("in=abc,max=1", |e| matches!(e, MeterError::Price { .. })),
            ("in=0.1,max=0.0000001", |e| matches!(e, MeterError::Max(_))),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Meter>().unwrap_err();
            assert!(expected(&err), "{input}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn usage_sums_saturate() {
        let u = Usage::units(u64::MAX).with(Meter::UNIT, 5);
        assert_eq!(u.get(Meter::UNIT), u64::MAX);
        assert_eq!(u.get("other"), 0);
    }
}
