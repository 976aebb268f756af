//! The provider's signatures over receipts and request bindings, made in batches (see
//! [`actp_core::batch`]): one task signs, for every hash waiting, the root of a Merkle tree over them, and
//! each waiting call gets the signature with its hash's path.
//!
//! The task takes the first hash that arrives, then yields once to the scheduler, so that every call ready to
//! run gets to add its hash before the batch is cut. Under load a batch is every call that reached this point
//! in one turn of the scheduler, and one signature serves them all; a call alone waits one yield and is
//! signed by itself, the form it had before batches. The AIP-4 delivery proof, which the ACTP SDKs check as
//! a plain signature, is not signed here.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use actp_client::{ClientError, Signer};
use actp_core::{B256, Signature, batch};
use alloy_sol_types::Eip712Domain;
use tokio::sync::{mpsc, oneshot};

/// The most hashes one signature covers (a path of at most 10 hashes).
const MAX_BATCH: usize = 1_024;

/// A hash's signature: over the hash itself when `path` is empty, over its batch's root otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signed {
    pub(super) signature: Signature,
    pub(super) path: Vec<B256>,
}

/// How many signatures the provider made, and how many hashes they covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signatures {
    /// Signatures made over receipts and request bindings.
    pub made: u64,
    /// Receipts and request bindings they covered.
    pub hashes: u64,
}

struct Job {
    leaf: B256,
    answer: oneshot::Sender<Result<Signed, String>>,
}

#[derive(Default)]
struct Counts {
    made: AtomicU64,
    hashes: AtomicU64,
}

/// The handle of the signing task; the task ends when the last handle is dropped.
pub(super) struct BatchSigner {
    jobs: mpsc::UnboundedSender<Job>,
    counts: Arc<Counts>,
}

impl BatchSigner {
    /// Starts the signing task for `signer` in `domain` (inside a Tokio runtime).
    pub(super) fn start(signer: Signer, domain: Eip712Domain) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(signer, domain, queue, Arc::clone(&counts)));
        BatchSigner { jobs, counts }
    }

    /// Signs `leaf` (an EIP-712 signing hash), alone or in a batch.
    pub(super) async fn sign(&self, leaf: B256) -> actp_client::Result<Signed> {
        let (answer, signed) = oneshot::channel();
        self.jobs
            .send(Job { leaf, answer })
            .map_err(|_| ClientError::Signer("the signing task stopped".into()))?;
        match signed.await {
            Ok(result) => result.map_err(ClientError::Signer),
            Err(_) => Err(ClientError::Signer("the signing task stopped".into())),
        }
    }

    /// What was signed so far.
    pub(super) fn signatures(&self) -> Signatures {
        Signatures {
            made: self.counts.made.load(Ordering::Relaxed),
            hashes: self.counts.hashes.load(Ordering::Relaxed),
        }
    }
}

async fn run(
    signer: Signer,
    domain: Eip712Domain,
    mut queue: mpsc::UnboundedReceiver<Job>,
    counts: Arc<Counts>,
) {
    let mut jobs = Vec::new();
    while let Some(first) = queue.recv().await {
        jobs.push(first);
        // Let the calls that are ready to run add their hashes to this batch.
        tokio::task::yield_now().await;
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let leaves: Vec<B256> = jobs.iter().map(|job| job.leaf).collect();
        let Some((hash, paths)) = batch::tree(&leaves, &domain) else {
            // Not reached: the batch holds at least the first job.
            jobs.clear();
            continue;
        };
        let signature = signer.sign_hash(&hash).await.map_err(|e| e.to_string());
        counts.made.fetch_add(1, Ordering::Relaxed);
        counts
            .hashes
            .fetch_add(leaves.len() as u64, Ordering::Relaxed);
        for (job, path) in jobs.drain(..).zip(paths) {
            // A call that gave up no longer waits for its answer.
            let _ = job.answer.send(
                signature
                    .clone()
                    .map(|signature| Signed { signature, path }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actp_core::Address;
    use actp_core::proof::content_hash as keccak256;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hashes_share_signatures_and_each_checks_against_the_provider() {
        let provider = Signer::random();
        let domain = actp_core::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let signer = Arc::new(BatchSigner::start(provider.clone(), domain.clone()));
        let leaves: Vec<B256> = (0..200u32).map(|i| keccak256(&i.to_be_bytes())).collect();
        let signed = futures::future::join_all(leaves.iter().map(|leaf| {
            let signer = Arc::clone(&signer);
            let leaf = *leaf;
            tokio::spawn(async move { signer.sign(leaf).await.unwrap() })
        }))
        .await;
        for (leaf, signed) in leaves.iter().zip(signed) {
            let signed = signed.unwrap();
            batch::check(
                *leaf,
                &signed.path,
                &signed.signature,
                provider.address(),
                &domain,
            )
            .unwrap();
        }
        let counts = signer.signatures();
        assert_eq!(counts.hashes, 200);
        // 200 calls spawned at once are not signed one by one.
        assert!(counts.made < 200, "{counts:?}");
    }

    #[tokio::test]
    async fn a_hash_alone_is_signed_as_itself() {
        let provider = Signer::random();
        let domain = actp_core::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let signer = BatchSigner::start(provider.clone(), domain);
        let leaf = keccak256(b"alone");
        let signed = signer.sign(leaf).await.unwrap();
        assert!(signed.path.is_empty());
        assert_eq!(
            actp_core::ecdsa::recover(&leaf, &signed.signature).unwrap(),
            provider.address()
        );
        assert_eq!(signer.signatures(), Signatures { made: 1, hashes: 1 });
    }
}
