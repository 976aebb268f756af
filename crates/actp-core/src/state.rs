//! Lifecycle states and their wire codes.

use std::fmt;

/// A transaction's lifecycle state. The numeric codes are part of the ACTP wire format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum State {
    /// 0: created, not funded.
    Initiated = 0,
    /// 1: the provider proposed a price.
    Quoted = 1,
    /// 2: funds locked in escrow.
    Committed = 2,
    /// 3: the provider has started.
    InProgress = 3,
    /// 4: the provider delivered; the dispute window is running.
    Delivered = 4,
    /// 5: paid out (terminal).
    Settled = 5,
    /// 6: contested; awaits a resolver.
    Disputed = 6,
    /// 7: refunded or abandoned (terminal).
    Cancelled = 7,
}

impl State {
    /// Every state, in code order.
    pub const ALL: [State; 8] = [
        State::Initiated,
        State::Quoted,
        State::Committed,
        State::InProgress,
        State::Delivered,
        State::Settled,
        State::Disputed,
        State::Cancelled,
    ];

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// True for SETTLED and CANCELLED, which never change again.
    pub const fn is_terminal(self) -> bool {
        matches!(self, State::Settled | State::Cancelled)
    }

    /// The wire name, e.g. `IN_PROGRESS`.
    pub const fn name(self) -> &'static str {
        match self {
            State::Initiated => "INITIATED",
            State::Quoted => "QUOTED",
            State::Committed => "COMMITTED",
            State::InProgress => "IN_PROGRESS",
            State::Delivered => "DELIVERED",
            State::Settled => "SETTLED",
            State::Disputed => "DISPUTED",
            State::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A state code outside 0..=7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown transaction state code {0} (valid codes are 0..=7)")]
pub struct UnknownState(pub u8);

impl TryFrom<u8> for State {
    type Error = UnknownState;

    fn try_from(code: u8) -> Result<Self, Self::Error> {
        State::ALL
            .get(usize::from(code))
            .copied()
            .ok_or(UnknownState(code))
    }
}

impl std::str::FromStr for State {
    type Err = UnknownState;

    /// Parses a wire name (`DELIVERED`, case-insensitive, `-` for `_`) or a code (`4`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(code) = s.parse::<u8>() {
            return State::try_from(code);
        }
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        State::ALL
            .iter()
            .copied()
            .find(|st| st.name() == wanted)
            .ok_or(UnknownState(u8::MAX))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (i, s) in State::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i);
            assert_eq!(State::try_from(s.code()).unwrap(), *s);
            assert_eq!(s.name().parse::<State>().unwrap(), *s);
        }
        assert_eq!(State::try_from(8), Err(UnknownState(8)));
        assert_eq!("in-progress".parse::<State>().unwrap(), State::InProgress);
        assert!("nope".parse::<State>().is_err());
    }
}
