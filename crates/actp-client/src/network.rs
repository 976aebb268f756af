//! Named networks: the chain id, USDC, public RPC and the defaults that suit each (confirmations, the
//! `eth_getLogs` range its public endpoints accept, a fee cap). `devnet` is the embedded anvil chain.

use std::time::Duration;

use actp_core::Address;
use alloy::primitives::address;

use crate::ClientConfig;

/// A network this project knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The name used on the command line (`--network`).
    pub name: &'static str,
    /// Its chain id; an RPC on another chain is refused.
    pub chain_id: u64,
    /// Circle's USDC on this network (`None` on the devnet, which deploys MockUSDC).
    pub usdc: Option<Address>,
    /// A public JSON-RPC endpoint (rate-limited; use your own provider for production).
    pub public_rpc: Option<&'static str>,
    /// Blocks on top before an event counts (the settlement daemon, watchers). Receipts count once
    /// included, as everywhere.
    pub confirmations: u64,
    /// The largest `eth_getLogs` block range to ask for (halved further when a node refuses).
    pub max_log_range: u64,
    /// The default cap on the price per gas (wei); `None`: no cap.
    pub max_fee_per_gas: Option<u128>,
    /// Real money: raw keys in the environment are refused here without an explicit opt-in.
    pub mainnet: bool,
}

/// 1 gwei: on Base the price per gas is usually below 0.05 gwei, so this leaves room for congestion while
/// refusing a send priced 20 to 100 times above normal.
const ONE_GWEI: u128 = 1_000_000_000;

/// Base mainnet.
pub const BASE: Network = Network {
    name: "base",
    chain_id: 8453,
    usdc: Some(address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")),
    public_rpc: Some("https://mainnet.base.org"),
    confirmations: 3,
    max_log_range: 2_000,
    max_fee_per_gas: Some(ONE_GWEI),
    mainnet: true,
};

/// Base Sepolia, the test network.
pub const BASE_SEPOLIA: Network = Network {
    name: "base-sepolia",
    chain_id: 84532,
    usdc: Some(address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e")),
    public_rpc: Some("https://sepolia.base.org"),
    confirmations: 3,
    max_log_range: 2_000,
    max_fee_per_gas: Some(ONE_GWEI),
    mainnet: false,
};

/// The embedded anvil devnet.
pub const DEVNET: Network = Network {
    name: "devnet",
    chain_id: 31337,
    usdc: None,
    public_rpc: None,
    confirmations: 0,
    max_log_range: 10_000,
    max_fee_per_gas: None,
    mainnet: false,
};

impl Network {
    /// Every named network.
    pub const ALL: [Network; 3] = [BASE, BASE_SEPOLIA, DEVNET];

    /// The network called `name` (`base`, `base-sepolia`, `devnet`).
    pub fn by_name(name: &str) -> Option<Network> {
        Self::ALL
            .into_iter()
            .find(|n| n.name.eq_ignore_ascii_case(name.trim()))
    }

    /// The named network with this chain id, if any.
    pub fn by_chain_id(chain_id: u64) -> Option<Network> {
        Self::ALL.into_iter().find(|n| n.chain_id == chain_id)
    }

    /// A client configuration with this network's log range and fee cap.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            max_log_range: self.max_log_range,
            max_fee_per_gas: self.max_fee_per_gas,
            poll_interval: if self.chain_id == DEVNET.chain_id {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(1)
            },
            ..ClientConfig::default()
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(Network::by_name("Base-Sepolia"), Some(BASE_SEPOLIA));
        assert_eq!(Network::by_chain_id(8453), Some(BASE));
        assert_eq!(Network::by_name("mainnet"), None);
        assert_eq!(
            BASE.usdc.map(|a| a.to_checksum(None)).as_deref(),
            Some("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
        );
    }
}
