//! The provider's receipts: one signed, chained record per call of what it charged, so the proof hash on chain
//! commits to every call in order and the consumer can hold the provider to them.

use alloy_primitives::{Address, B256, Signature, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{Eip712Domain, sol};
use serde::{Deserialize, Serialize};

/// Header carrying the receipt of a call paid from a session.
pub const RECEIPT_HEADER: &str = "x-agirails-receipt";

/// Header (value `1`) the provider sets on a session call's response when its handler failed (a status that
/// is not 2xx): the call's hold was given back and nothing was charged. A failed response without it and
/// without a refusal of the paywall's own came from something between the consumer and the provider (a load
/// balancer's 502 when a replica died mid-call): whether the call was charged is unknown.
pub const NOT_CHARGED_HEADER: &str = "x-agirails-not-charged";

sol! {
    /// What one call paid from a session cost (EIP-712, ACTP domain), signed by the provider.
    #[derive(Debug, PartialEq, Eq)]
    struct SessionReceipt {
        /// The session.
        bytes32 txId;
        /// The call's position in the session: 0, 1, 2, …
        uint64 seq;
        /// What this call cost, in token base units.
        uint256 charge;
        /// What all calls so far cost, this one included.
        uint256 charged;
        /// What the deposit still covers after this call.
        uint256 remaining;
        /// The call (method, path, body), as the voucher names it.
        bytes32 requestHash;
        /// keccak256 of the response body.
        bytes32 resultHash;
        /// The hash of the receipt before (zero for the first): the chain the proof hash commits to.
        bytes32 previous;
    }
}

impl SessionReceipt {
    /// The receipt of a session's first call.
    pub fn first(
        tx_id: B256,
        charge: U256,
        remaining: U256,
        request_hash: B256,
        result_hash: B256,
    ) -> Self {
        SessionReceipt {
            txId: tx_id,
            seq: 0,
            charge,
            charged: charge,
            remaining,
            requestHash: request_hash,
            resultHash: result_hash,
            previous: B256::ZERO,
        }
    }

    /// The receipt of the call after `previous` (whose hash in `domain` it names). `None` if the total
    /// overflows.
    pub fn after(
        previous: &SessionReceipt,
        domain: &Eip712Domain,
        charge: U256,
        remaining: U256,
        request_hash: B256,
        result_hash: B256,
    ) -> Option<Self> {
        Some(SessionReceipt {
            txId: previous.txId,
            seq: previous.seq.checked_add(1)?,
            charge,
            charged: previous.charged.checked_add(charge)?,
            remaining,
            requestHash: request_hash,
            resultHash: result_hash,
            previous: previous.hash(domain),
        })
    }

    /// The receipt's hash: its EIP-712 signing hash. The next receipt names it, and the provider records the
    /// last one's as the proof hash when it closes the session.
    pub fn hash(&self, domain: &Eip712Domain) -> B256 {
        crate::eip712::signing_hash(self, domain)
    }
}

/// Why a receipt is refused. Messages say what went wrong; each is evidence against the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt in the wire form.
    #[error("malformed X-AGIRAILS-RECEIPT header: {0}")]
    Malformed(String),
    /// The signature does not recover.
    #[error("receipt signature is invalid: {0}")]
    BadSignature(String),
    /// Signed by someone other than the session's provider.
    #[error("receipt was signed by {signer}, not the session's provider {provider}")]
    WrongSigner {
        /// Who signed.
        signer: Address,
        /// The provider.
        provider: Address,
    },
    /// A receipt for another session.
    #[error("receipt is for session {got}, not {expected}")]
    WrongSession {
        /// The session the receipt names.
        got: B256,
        /// The session called.
        expected: B256,
    },
    /// Out of order: a receipt skipped, repeated, or not chained to the one before.
    #[error(
        "receipt {seq} does not follow receipt {expected_seq} (hash {expected_previous}): the provider skipped, repeated or rewrote a call"
    )]
    Broken {
        /// The receipt's position.
        seq: u64,
        /// The position expected.
        expected_seq: u64,
        /// The hash it should name as previous.
        expected_previous: B256,
    },
    /// A call charged more than the consumer authorized for it.
    #[error("receipt {seq} charges {charge}, more than the {authorized} authorized for the call")]
    Overcharged {
        /// The receipt's position.
        seq: u64,
        /// Its charge.
        charge: U256,
        /// What the voucher allowed for this call.
        authorized: U256,
    },
    /// The running total does not add up.
    #[error("receipt {seq} says {charged} charged in total, but the receipts add up to {sum}")]
    WrongTotal {
        /// The receipt's position.
        seq: u64,
        /// The total it states.
        charged: U256,
        /// The sum of the charges.
        sum: U256,
    },
    /// The receipt names another call or another response.
    #[error("receipt {seq} names another {what} than the one sent and received")]
    WrongCall {
        /// The receipt's position.
        seq: u64,
        /// "request" or "response".
        what: &'static str,
    },
    /// Signing failed.
    #[error("could not sign the receipt: {0}")]
    Signing(String),
}

/// A receipt with the provider's signature over its hash, alone or in a batch (see [`crate::batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: SessionReceipt,
    /// The provider's signature over [`SessionReceipt::hash`], or over the batch `path` leads to.
    pub signature: Signature,
    /// The receipt hash's path to the root of the batch signed (empty: the receipt was signed alone).
    pub path: Vec<B256>,
}

impl SignedReceipt {
    /// Signs `receipt` as the provider with a local key.
    pub fn sign(
        receipt: SessionReceipt,
        domain: &Eip712Domain,
        provider: &impl SignerSync,
    ) -> Result<Self, ReceiptError> {
        let signature = provider
            .sign_hash_sync(&receipt.hash(domain))
            .map_err(|e| ReceiptError::Signing(e.to_string()))?;
        Ok(SignedReceipt {
            receipt,
            signature,
            path: Vec::new(),
        })
    }

    /// The receipt's hash.
    pub fn hash(&self, domain: &Eip712Domain) -> B256 {
        self.receipt.hash(domain)
    }

    /// Who signed it.
    pub fn signer(&self, domain: &Eip712Domain) -> Result<Address, ReceiptError> {
        crate::batch::recover(self.hash(domain), &self.path, &self.signature, domain)
            .map_err(|e| ReceiptError::BadSignature(e.to_string()))
    }

    /// The header value: compact JSON, amounts as decimal strings.
    pub fn to_header(&self) -> String {
        let r = &self.receipt;
        let wire = Wire {
            tx_id: r.txId,
            seq: r.seq,
            charge: r.charge.to_string(),
            charged: r.charged.to_string(),
            remaining: r.remaining.to_string(),
            request_hash: r.requestHash,
            result_hash: r.resultHash,
            previous: r.previous,
            signature: format!(
                "0x{}",
                alloy_primitives::hex::encode(self.signature.as_bytes())
            ),
            batch: self.path.clone(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses a header value written by [`SignedReceipt::to_header`].
    pub fn from_header(value: &str) -> Result<Self, ReceiptError> {
        let wire: Wire =
            serde_json::from_str(value).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let amount = |name: &str, text: &str| {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReceiptError::Malformed(format!(
                    "{name} `{text}` is not base units"
                )));
            }
            U256::from_str_radix(text, 10)
                .map_err(|_| ReceiptError::Malformed(format!("{name} `{text}` is too large")))
        };
        let bytes = alloy_primitives::hex::decode(&wire.signature)
            .map_err(|_| ReceiptError::Malformed("signature is not hex".into()))?;
        let signature = Signature::try_from(bytes.as_slice())
            .map_err(|_| ReceiptError::Malformed("signature is not 65 bytes".into()))?;
        if wire.batch.len() > crate::batch::MAX_PATH {
            return Err(ReceiptError::Malformed(format!(
                "batch path of {} hashes is longer than the {} of any batch",
                wire.batch.len(),
                crate::batch::MAX_PATH
            )));
        }
        Ok(SignedReceipt {
            receipt: SessionReceipt {
                txId: wire.tx_id,
                seq: wire.seq,
                charge: amount("charge", &wire.charge)?,
                charged: amount("charged", &wire.charged)?,
                remaining: amount("remaining", &wire.remaining)?,
                requestHash: wire.request_hash,
                resultHash: wire.result_hash,
                previous: wire.previous,
            },
            signature,
            path: wire.batch,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    tx_id: B256,
    seq: u64,
    charge: String,
    charged: String,
    remaining: String,
    request_hash: B256,
    result_hash: B256,
    previous: B256,
    signature: String,
    /// The path to the batch signed; absent when the receipt was signed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    batch: Vec<B256>,
}

/// A consumer's check of one session's receipts, in order, as they arrive: each is the provider's, follows the
/// one before, charges at most what the consumer authorized for the call, adds up, and names the call sent and
/// the response received. What it accepted is what the provider may claim: [`ReceiptChain::charged`], under
/// the proof hash [`ReceiptChain::head`].
#[derive(Debug, Clone)]
pub struct ReceiptChain {
    tx_id: B256,
    provider: Address,
    domain: Eip712Domain,
    next_seq: u64,
    head: B256,
    charged: U256,
}

impl ReceiptChain {
    /// An empty chain for session `tx_id` with `provider`, in the ACTP `domain`.
    pub fn new(tx_id: B256, provider: Address, domain: Eip712Domain) -> Self {
        ReceiptChain {
            tx_id,
            provider,
            domain,
            next_seq: 0,
            head: B256::ZERO,
            charged: U256::ZERO,
        }
    }

    /// Resumes a chain from what was accepted before (after a restart): the next position, the last hash and
    /// the total.
    pub fn resume(
        tx_id: B256,
        provider: Address,
        domain: Eip712Domain,
        next_seq: u64,
        head: B256,
        charged: U256,
    ) -> Self {
        ReceiptChain {
            tx_id,
            provider,
            domain,
            next_seq,
            head,
            charged,
        }
    }

    /// Checks `signed` as the receipt of the next call, whose voucher the consumer signed for
    /// `authorized_cumulative` (so the call may cost at most that less what was charged before), sent as
    /// `request_hash` and answered with a body hashing to `result_hash`; then appends it. A refused receipt
    /// changes nothing.
    pub fn accept(
        &mut self,
        signed: &SignedReceipt,
        authorized_cumulative: U256,
        request_hash: B256,
        result_hash: B256,
    ) -> Result<(), ReceiptError> {
        let r = &signed.receipt;
        // At most one recovery per provider: later receipts verify against its key.
        crate::batch::check(
            signed.hash(&self.domain),
            &signed.path,
            &signed.signature,
            self.provider,
            &self.domain,
        )
        .map_err(|e| match e {
            crate::batch::BatchError::Signature(crate::ecdsa::CheckError::OtherSigner {
                signer,
                ..
            }) => ReceiptError::WrongSigner {
                signer,
                provider: self.provider,
            },
            other => ReceiptError::BadSignature(other.to_string()),
        })?;
        if r.txId != self.tx_id {
            return Err(ReceiptError::WrongSession {
                got: r.txId,
                expected: self.tx_id,
            });
        }
        if r.seq != self.next_seq || r.previous != self.head {
            return Err(ReceiptError::Broken {
                seq: r.seq,
                expected_seq: self.next_seq,
                expected_previous: self.head,
            });
        }
        if r.requestHash != request_hash {
            return Err(ReceiptError::WrongCall {
                seq: r.seq,
                what: "request",
            });
        }
        if r.resultHash != result_hash {
            return Err(ReceiptError::WrongCall {
                seq: r.seq,
                what: "response",
            });
        }
        let authorized = authorized_cumulative.saturating_sub(self.charged);
        if r.charge > authorized {
            return Err(ReceiptError::Overcharged {
                seq: r.seq,
                charge: r.charge,
                authorized,
            });
        }
        let sum = self.charged.saturating_add(r.charge);
        if r.charged != sum {
            return Err(ReceiptError::WrongTotal {
                seq: r.seq,
                charged: r.charged,
                sum,
            });
        }
        self.next_seq += 1;
        self.head = signed.hash(&self.domain);
        self.charged = sum;
        Ok(())
    }

    /// What the accepted receipts add up to: the most the provider may claim.
    pub fn charged(&self) -> U256 {
        self.charged
    }

    /// The last accepted receipt's hash (zero before any): the proof hash the provider should close with.
    pub fn head(&self) -> B256 {
        self.head
    }

    /// How many receipts were accepted.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// Whether no receipt was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
}

#[cfg(test)]
mod tests;
