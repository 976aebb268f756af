//! An agent's spend policy: caps per call, per day and per month, in total and per provider; an allowlist or
//! a denylist of providers; and a soft threshold that warns before a cap is reached.
//!
//! Written as TOML (or set field by field with `actp budget set`); amounts are strings in any form
//! [`Amount`] parses (`"5"`, `"$0.10"`, `"100000 units"`):
//!
//! ```toml
//! per_call = "0.50"
//! daily = "5.00"
//! monthly = "50"
//! provider_daily = "2.00"        # each provider, each day
//! soft_threshold = 80            # percent of any cap: warn when a payment crosses it
//! max_escrow_ttl = "1h"          # never lock funds longer than this, whatever a provider asks
//! sessions = true                # pay from a session (one escrow, many calls) where a provider offers one
//! session_calls = 50             # a session's deposit covers 50 calls at the route's maximum
//! max_session_deposit = "10"     # and never more than this
//! deny = ["0x0000000000000000000000000000000000000bad"]
//!
//! [providers."0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
//! daily = "3.00"                 # this provider's own caps replace provider_daily / provider_monthly
//! ```
//!
//! A policy with no caps allows any spend; there is no implicit limit. Dates are UTC.

use std::{collections::BTreeMap, fmt, str::FromStr};

use actp_core::{Address, Amount};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a policy file or value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The TOML does not parse or has an unknown field.
    #[error("the policy is not valid TOML: {0}")]
    Toml(String),
    /// A provider is both allowed and denied.
    #[error("{0} is both in `allow` and in `deny`: keep it in one list")]
    AllowedAndDenied(Address),
    /// The soft threshold is not a percentage in 1..=100.
    #[error("soft_threshold {0} is not a percentage: give a whole number from 1 to 100")]
    SoftThreshold(u8),
    /// The longest escrow lifetime is outside what the kernel allows.
    #[error(
        "max_escrow_ttl {0}s is out of range: give between 5 minutes and 365 days (e.g. \"1h\")"
    )]
    EscrowTtl(u64),
    /// `session_calls` is out of range.
    #[error("session_calls {0} is out of range: give from 1 to 1000000 calls")]
    SessionCalls(u32),
    /// A cap is zero.
    #[error(
        "`{0}` is zero, which would refuse every payment: remove it, or suspend the agent instead"
    )]
    ZeroCap(&'static str),
}

/// Caps on one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCaps {
    /// Most spent with this provider in one UTC day.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub daily: Option<Amount>,
    /// Most spent with this provider in one UTC month.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub monthly: Option<Amount>,
}

/// The spend policy of one agent (one signing key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendPolicy {
    /// Most paid for one call.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub per_call: Option<Amount>,
    /// Most spent in one UTC day, all providers together.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub daily: Option<Amount>,
    /// Most spent in one UTC month, all providers together.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub monthly: Option<Amount>,
    /// Most spent with any one provider in one UTC day.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub provider_daily: Option<Amount>,
    /// Most spent with any one provider in one UTC month.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub provider_monthly: Option<Amount>,
    /// Caps of named providers, replacing `provider_daily` / `provider_monthly` for them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<Address, ProviderCaps>,
    /// When not empty, only these providers are paid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Address>,
    /// These providers are never paid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Address>,
    /// Percent of a cap at which a payment raises a soft-limit warning (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_threshold: Option<u8>,
    /// The longest an escrow may lock the agent's funds (its deadline from now), whatever a provider's
    /// payment instructions ask; a payment that needs longer is refused before any escrow (default 1 hour).
    /// In TOML seconds or a duration: `"90s"`, `"30m"`, `"1h"`, `"2d"`.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_escrow_ttl: Option<u64>,
    /// Pay from a session (one escrow for many calls) when a provider offers one for the route (default:
    /// `false`, an escrow per call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<bool>,
    /// A new session's deposit covers this many calls at the route's maximum (default 20), and at least the
    /// provider's minimum deposit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_calls: Option<u32>,
    /// The largest deposit a session may lock; a route whose deposit would need more is paid per call.
    #[serde(default, with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub max_session_deposit: Option<Amount>,
}

/// The default number of calls a new session's deposit covers.
pub const DEFAULT_SESSION_CALLS: u32 = 20;

/// The default longest escrow lifetime, in seconds.
pub const DEFAULT_MAX_ESCROW_TTL: u64 = 3_600;
/// The shortest `max_escrow_ttl` accepted: a paywall wants a few minutes before the deadline to serve.
pub const MIN_ESCROW_TTL: u64 = 300;
/// The longest `max_escrow_ttl` accepted: the kernel's own limit on deadlines.
pub const MAX_ESCROW_TTL: u64 = actp_core::limits::MAX_DEADLINE_AHEAD;

/// The default soft threshold, in percent of a cap.
pub const DEFAULT_SOFT_THRESHOLD: u8 = 80;

/// Which cap a limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapKind {
    /// One call.
    PerCall,
    /// All providers, one UTC day.
    Daily,
    /// All providers, one UTC month.
    Monthly,
    /// One provider, one UTC day.
    ProviderDaily,
    /// One provider, one UTC month.
    ProviderMonthly,
}

impl CapKind {
    /// The policy field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            CapKind::PerCall => "per_call",
            CapKind::Daily => "daily",
            CapKind::Monthly => "monthly",
            CapKind::ProviderDaily => "provider_daily",
            CapKind::ProviderMonthly => "provider_monthly",
        }
    }

    /// Whether it counts one provider's spend only.
    pub fn per_provider(self) -> bool {
        matches!(self, CapKind::ProviderDaily | CapKind::ProviderMonthly)
    }

    /// Whether it counts a month (else a day, or the call itself).
    pub fn monthly(self) -> bool {
        matches!(self, CapKind::Monthly | CapKind::ProviderMonthly)
    }
}

impl fmt::Display for CapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapKind::PerCall => "per-call cap",
            CapKind::Daily => "daily cap",
            CapKind::Monthly => "monthly cap",
            CapKind::ProviderDaily => "daily cap for this provider",
            CapKind::ProviderMonthly => "monthly cap for this provider",
        })
    }
}

impl SpendPolicy {
    /// Parses and validates a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: SpendPolicy =
            toml::from_str(text).map_err(|e| PolicyError::Toml(e.message().to_owned()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// The policy as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks that the policy can be enforced as written.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Some(both) = self.allow.iter().find(|a| self.deny.contains(a)) {
            return Err(PolicyError::AllowedAndDenied(*both));
        }
        if let Some(t) = self.soft_threshold
            && !(1..=100).contains(&t)
        {
            return Err(PolicyError::SoftThreshold(t));
        }
        for kind in [
            CapKind::PerCall,
            CapKind::Daily,
            CapKind::Monthly,
            CapKind::ProviderDaily,
            CapKind::ProviderMonthly,
        ] {
            if self.cap(kind, None) == Some(Amount::ZERO) {
                return Err(PolicyError::ZeroCap(kind.field()));
            }
        }
        for caps in self.providers.values() {
            if caps.daily == Some(Amount::ZERO) || caps.monthly == Some(Amount::ZERO) {
                return Err(PolicyError::ZeroCap("providers.<address>"));
            }
        }
        if let Some(ttl) = self.max_escrow_ttl
            && !(MIN_ESCROW_TTL..=MAX_ESCROW_TTL).contains(&ttl)
        {
            return Err(PolicyError::EscrowTtl(ttl));
        }
        if let Some(n) = self.session_calls
            && !(1..=1_000_000).contains(&n)
        {
            return Err(PolicyError::SessionCalls(n));
        }
        if self.max_session_deposit == Some(Amount::ZERO) {
            return Err(PolicyError::ZeroCap("max_session_deposit"));
        }
        Ok(())
    }

    /// The deposit of a new session for calls costing at most `max` each at a provider asking at least
    /// `min_deposit`: enough for `session_calls` calls, at least the minimum; `None` when sessions are off or
    /// that deposit is above `max_session_deposit` even at its smallest (one call, or the minimum).
    pub fn session_deposit(&self, max: Amount, min_deposit: Amount) -> Option<Amount> {
        if !self.sessions.unwrap_or(false) {
            return None;
        }
        let calls = u128::from(self.session_calls.unwrap_or(DEFAULT_SESSION_CALLS));
        let wanted = max
            .base_units()
            .saturating_mul(calls)
            .max(min_deposit.base_units());
        let smallest = max.base_units().max(min_deposit.base_units());
        let limit = self
            .max_session_deposit
            .map_or(u128::MAX, |a| a.base_units());
        (smallest <= limit).then(|| Amount::from_base_units(wanted.min(limit)))
    }

    /// The cap of `kind`; for per-provider caps, `provider`'s own cap when it has one.
    pub fn cap(&self, kind: CapKind, provider: Option<Address>) -> Option<Amount> {
        let own = provider.and_then(|p| self.providers.get(&p));
        match kind {
            CapKind::PerCall => self.per_call,
            CapKind::Daily => self.daily,
            CapKind::Monthly => self.monthly,
            CapKind::ProviderDaily => own.and_then(|c| c.daily).or(self.provider_daily),
            CapKind::ProviderMonthly => own.and_then(|c| c.monthly).or(self.provider_monthly),
        }
    }

    /// Whether `provider` may be paid at all.
    pub fn allows(&self, provider: Address) -> bool {
        !self.deny.contains(&provider) && (self.allow.is_empty() || self.allow.contains(&provider))
    }

    /// The soft threshold in percent.
    pub fn soft_percent(&self) -> u8 {
        self.soft_threshold.unwrap_or(DEFAULT_SOFT_THRESHOLD)
    }

    /// The longest an escrow may lock the agent's funds, in seconds (the default unless set).
    pub fn escrow_ttl_limit(&self) -> u64 {
        self.max_escrow_ttl.unwrap_or(DEFAULT_MAX_ESCROW_TTL)
    }
}

impl FromStr for SpendPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpendPolicy::from_toml(s)
    }
}

/// `Option<Amount>` as a human amount string (`"5.00"`).
mod opt_amount {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Amount>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| t.parse::<Amount>().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A duration in seconds, written as seconds or `"90s"`, `"30m"`, `"1h"`, `"2d"`.
mod opt_duration {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(secs) => s.serialize_str(&super::format_duration(*secs)),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Seconds(s)) => Ok(Some(s)),
            Some(Raw::Text(t)) => parse_duration(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Seconds from `"90"`, `"90s"`, `"30m"`, `"1h"`, `"2d"`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a duration: write e.g. \"90s\", \"30m\", \"1h\", \"2d\"");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// The shortest exact form of `secs` (`"1h"`, `"90s"`).
fn format_duration(secs: u64) -> String {
    for (unit, scale) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs != 0 && secs.is_multiple_of(scale) {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PROVIDER: Address = Address::repeat_byte(0x70);

    #[test]
    fn escrow_lifetime_limit() {
        let p = SpendPolicy::from_toml("max_escrow_ttl = \"2h\"").unwrap();
        assert_eq!(p.escrow_ttl_limit(), 7_200);
        assert_eq!(
            SpendPolicy::from_toml("max_escrow_ttl = 600")
                .unwrap()
                .escrow_ttl_limit(),
            600
        );
        assert_eq!(SpendPolicy::default().escrow_ttl_limit(), 3_600);
        assert!(
            p.to_toml().contains("max_escrow_ttl = \"2h\""),
            "{}",
            p.to_toml()
        );
        assert!(matches!(
            SpendPolicy::from_toml("max_escrow_ttl = 10"),
            Err(PolicyError::EscrowTtl(10))
        ));
        let err = SpendPolicy::from_toml("max_escrow_ttl = \"1y\"").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        assert!(SpendPolicy::from_toml("max_escrow_ttl = \"99999999999999999999d\"").is_err());
    }

    #[test]
    fn session_deposits_follow_the_policy() {
        let cent = Amount::from_base_units(10_000);
        let dollar = Amount::from_tokens(1);
        let mut policy = SpendPolicy::default();
        // Off unless allowed.
        assert_eq!(policy.session_deposit(cent, dollar), None);
        policy.sessions = Some(true);
        // 20 calls at 0.50 is 10.00; at a cent it is 0.20, raised to the provider's minimum.
        assert_eq!(
            policy.session_deposit(Amount::from_base_units(500_000), dollar),
            Some(Amount::from_tokens(10))
        );
        assert_eq!(policy.session_deposit(cent, dollar), Some(dollar));
        policy.session_calls = Some(500);
        assert_eq!(
            policy.session_deposit(cent, dollar),
            Some(Amount::from_tokens(5))
        );
        // The largest deposit clamps it, and refuses a session it cannot fund at all.
        policy.max_session_deposit = Some(Amount::from_tokens(2));
        assert_eq!(
            policy.session_deposit(cent, dollar),
            Some(Amount::from_tokens(2))
        );
        assert_eq!(policy.session_deposit(Amount::from_tokens(3), dollar), None);
        // Huge numbers from a provider saturate.
        assert_eq!(
            policy.session_deposit(Amount::from_base_units(u128::MAX), Amount::ZERO),
            None
        );
        let bad = SpendPolicy::from_toml("session_calls = 0").unwrap_err();
        assert_eq!(bad, PolicyError::SessionCalls(0));
        let bad = SpendPolicy::from_toml("max_session_deposit = \"0\"").unwrap_err();
        assert_eq!(bad, PolicyError::ZeroCap("max_session_deposit"));
    }

    #[test]
    fn toml_round_trip_with_every_field() {
        let text = r#"
per_call = "0.50"
daily = "$5"
monthly = "50"
provider_daily = "2.00"
provider_monthly = "20000000 units"
soft_threshold = 90
deny = ["0x0000000000000000000000000000000000000bad"]

[providers."0x7070707070707070707070707070707070707070"]
daily = "3"
"#;
        let policy = SpendPolicy::from_toml(text).unwrap();
        assert_eq!(policy.per_call, Some(Amount::from_base_units(500_000)));
        assert_eq!(policy.daily, Some(Amount::from_tokens(5)));
        assert_eq!(policy.provider_monthly, Some(Amount::from_tokens(20)));
        assert_eq!(policy.soft_percent(), 90);
        assert_eq!(
            policy.cap(CapKind::ProviderDaily, Some(PROVIDER)),
            Some(Amount::from_tokens(3))
        );
        assert_eq!(
            policy.cap(CapKind::ProviderDaily, Some(Address::ZERO)),
            Some(Amount::from_tokens(2))
        );
        // own caps replace only what they set
        assert_eq!(
            policy.cap(CapKind::ProviderMonthly, Some(PROVIDER)),
            Some(Amount::from_tokens(20))
        );
        let again = SpendPolicy::from_toml(&policy.to_toml()).unwrap();
        assert_eq!(again, policy);
    }

    #[test]
    fn allow_and_deny_lists() {
        let mut policy = SpendPolicy::default();
        assert!(policy.allows(PROVIDER));
        policy.deny.push(PROVIDER);
        assert!(!policy.allows(PROVIDER));
        policy.deny.clear();
        policy.allow.push(Address::ZERO);
        assert!(!policy.allows(PROVIDER));
        assert!(policy.allows(Address::ZERO));
        policy.deny.push(Address::ZERO);
        assert_eq!(
            policy.validate(),
            Err(PolicyError::AllowedAndDenied(Address::ZERO))
        );
    }

    #[test]
    fn bad_policies_say_what_to_fix() {
        let unknown = SpendPolicy::from_toml("dayly = \"5\"").unwrap_err();
        assert!(unknown.to_string().contains("dayly"), "{unknown}");
        let bad_amount = SpendPolicy::from_toml("daily = \"five\"").unwrap_err();
        assert!(bad_amount.to_string().contains("five"), "{bad_amount}");
        assert_eq!(
            SpendPolicy::from_toml("daily = \"0\"").unwrap_err(),
            PolicyError::ZeroCap("daily")
        );
        assert_eq!(
            SpendPolicy::from_toml("soft_threshold = 0").unwrap_err(),
            PolicyError::SoftThreshold(0)
        );
        assert_eq!(
            SpendPolicy::from_toml("soft_threshold = 101").unwrap_err(),
            PolicyError::SoftThreshold(101)
        );
    }

    #[test]
    fn empty_policy_has_no_caps() {
        let policy = SpendPolicy::from_toml("").unwrap();
        assert_eq!(policy, SpendPolicy::default());
        assert_eq!(policy.cap(CapKind::Daily, None), None);
        assert_eq!(policy.soft_percent(), DEFAULT_SOFT_THRESHOLD);
    }
}
