//! EIP-55 checksummed addresses in serde output. `alloy_primitives::Address` serializes in lowercase; web3.py
//! (and so the Python ACTP SDK) refuses lowercase addresses, so every address this project writes as JSON
//! goes through here: `#[serde(with = "actp_core::checksum")]`. Reading accepts any case.
//!
//! ```
//! use actp_core::Address;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Deployment {
//!     #[serde(with = "actp_core::checksum")]
//!     kernel: Address,
//! }
//! let d = Deployment { kernel: "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512".parse().unwrap() };
//! assert_eq!(
//!     serde_json::to_string(&d).unwrap(),
//!     r#"{"kernel":"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"}"#
//! );
//! ```

use alloy_primitives::Address;
use serde::{Deserialize, Deserializer, Serializer};

/// Writes `address` EIP-55 checksummed.
pub fn serialize<S: Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&address.to_checksum(None))
}

/// Reads an address in any case.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
    Address::deserialize(deserializer)
}

/// `Option<Address>`, checksummed.
pub mod option {
    use super::*;

    /// Writes the address checksummed, or `null`.
    pub fn serialize<S: Serializer>(
        address: &Option<Address>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match address {
            Some(a) => serializer.serialize_some(&a.to_checksum(None)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an optional address in any case.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Address>, D::Error> {
        Option::<Address>::deserialize(deserializer)
    }
}

/// `Vec<Address>` (and anything that iterates addresses into a sequence), checksummed.
pub mod vec {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Writes each address checksummed.
    pub fn serialize<S: Serializer>(
        addresses: &[Address],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(addresses.len()))?;
        for a in addresses {
            seq.serialize_element(&a.to_checksum(None))?;
        }
        seq.end()
    }

    /// Reads addresses in any case.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Address>, D::Error> {
        Vec::<Address>::deserialize(deserializer)
    }
}

/// Rewrites every address in `json` (a `0x` string of exactly 40 hex digits) in its EIP-55 form: for output
/// assembled from types that serialize addresses in lowercase.
pub fn checksum_addresses(json: &mut serde_json::Value) {
    match json {
        serde_json::Value::String(s) => {
            let is_address = s.len() == 42
                && s.starts_with("0x")
                && s.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
            if is_address && let Ok(address) = s.parse::<Address>() {
                *s = address.to_checksum(None);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(checksum_addresses),
        serde_json::Value::Object(map) => map.values_mut().for_each(checksum_addresses),
        _ => {}
    }
}

/// Whether `json` holds an Ethereum address (a `0x` string of 40 hex digits) that is not EIP-55
/// checksummed: for tests of every JSON this project writes.
pub fn find_unchecksummed(json: &serde_json::Value) -> Option<String> {
    match json {
        serde_json::Value::String(s) => {
            let hex = s.strip_prefix("0x")?;
            if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let address: Address = s.parse().ok()?;
            (address.to_checksum(None) != *s).then(|| s.clone())
        }
        serde_json::Value::Array(items) => items.iter().find_map(find_unchecksummed),
        serde_json::Value::Object(map) => map.values().find_map(find_unchecksummed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rewrites_addresses_and_nothing_else() {
        let mut v = serde_json::json!({
            "kernel": "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",
            "list": ["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "hello"],
            "hash": format!("0x{}", "ab".repeat(32)),
        });
        checksum_addresses(&mut v);
        assert_eq!(v["kernel"], "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
        assert_eq!(v["list"][0], "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert_eq!(v["hash"], format!("0x{}", "ab".repeat(32)));
        assert_eq!(find_unchecksummed(&v), None);
    }

    #[test]
    fn finds_lowercase_addresses_anywhere() {
        let ok = serde_json::json!({"a": ["0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"], "n": 1});
        assert_eq!(find_unchecksummed(&ok), None);
        let bad = serde_json::json!({"a": {"b": "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"}});
        assert!(find_unchecksummed(&bad).is_some());
        // 32-byte hashes are not addresses
        let hash = serde_json::json!(format!("0x{}", "ab".repeat(32)));
        assert_eq!(find_unchecksummed(&hash), None);
    }
}
