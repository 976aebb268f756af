//! The provider's signatures over receipts and request bindings, made in batches (see
//! [`actp_core::batch`]): one signature over the root of a Merkle tree of every hash waiting, and each waiting
//! call gets the signature with its hash's path.
//!
//! The calls combine their work themselves, the way a group commit does, with no task of its own: the first
//! call to arrive leads. It yields once to the scheduler, so that every call ready to run can queue its hash
//! behind it, then takes the queue as its batch, signs, and answers each call it took. A call that arrives
//! while a batch is being signed queues for the next one, whose leader is the first call queued, woken when
//! the batch before it is answered. Under load a batch is every call that reached this point in one turn of
//! the scheduler; a call alone waits one yield and is signed by itself, the form it had before batches. No
//! thread is woken to sign, which a task of its own cost on every batch.
//!
//! A leader that is dropped (its request cancelled) puts the calls it had taken back at the head of the queue
//! and hands the lead to the first of them. The AIP-4 delivery proof, which the ACTP SDKs check as a plain signature, is not
//! signed here.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use actp_client::{ClientError, Signer};
use actp_core::{B256, Signature, batch};
use alloy_sol_types::Eip712Domain;
use tokio::sync::oneshot;

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

/// A queued call: its hash, and where its answer goes.
struct Job {
    leaf: B256,
    answer: oneshot::Sender<Answer>,
}

enum Answer {
    Signed(Result<Signed, String>),
    /// The batch before is answered: lead the next one.
    Lead,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// A call is leading a batch (from its yield to its answers).
    leading: bool,
}

/// Signs hashes in batches for one provider key (see the module's documentation).
pub(super) struct BatchSigner {
    signer: Signer,
    domain: Eip712Domain,
    queue: Mutex<Queue>,
    made: AtomicU64,
    hashes: AtomicU64,
}

impl BatchSigner {
    /// A signer for `signer`'s key in `domain`.
    pub(super) fn new(signer: Signer, domain: Eip712Domain) -> Self {
        BatchSigner {
            signer,
            domain,
            queue: Mutex::default(),
            made: AtomicU64::new(0),
            hashes: AtomicU64::new(0),
        }
    }

    /// Signs `leaf` (an EIP-712 signing hash), alone or in a batch.
    pub(super) async fn sign(&self, leaf: B256) -> actp_client::Result<Signed> {
        loop {
            let queued = {
                let mut queue = self.queue();
                if queue.leading {
                    let (answer, queued) = oneshot::channel();
                    queue.jobs.push_back(Job { leaf, answer });
                    Some(queued)
                } else {
                    queue.leading = true;
                    None
                }
            };
            let Some(answer) = queued else {
                return self.lead(leaf).await;
            };
            let mut waiting = Waiting {
                signer: self,
                answer,
            };
            match (&mut waiting.answer).await {
                Ok(Answer::Signed(signed)) => return signed.map_err(ClientError::Signer),
                Ok(Answer::Lead) => return self.lead(leaf).await,
                // Not reached: a leader dropped puts the calls it took back in the queue. Queue again.
                Err(_) => continue,
            }
        }
    }

    /// What was signed so far.
    pub(super) fn signatures(&self) -> Signatures {
        Signatures {
            made: self.made.load(Ordering::Relaxed),
            hashes: self.hashes.load(Ordering::Relaxed),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is changed only by whole pushes and takes, so a panic elsewhere leaves it whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs `leaf` with every call queued after one yield, answers them, and hands the lead on.
    async fn lead(&self, leaf: B256) -> actp_client::Result<Signed> {
        let mut lead = Lead {
            signer: self,
            taken: Vec::new(),
        };
        // Let the calls that are ready to run queue their hashes behind this one.
        tokio::task::yield_now().await;
        lead.taken = {
            let mut queue = self.queue();
            let n = queue.jobs.len().min(MAX_BATCH - 1);
            queue.jobs.drain(..n).collect()
        };
        let leaves: Vec<B256> = std::iter::once(leaf)
            .chain(lead.taken.iter().map(|job| job.leaf))
            .collect();
        let Some((hash, mut paths)) = batch::tree(&leaves, &self.domain) else {
            // Not reached: the batch holds at least `leaf`.
            return Err(ClientError::Signer("an empty batch".into()));
        };
        let signature = self
            .signer
            .sign_hash(&hash)
            .await
            .map_err(|e| e.to_string());
        if signature.is_ok() {
            self.made.fetch_add(1, Ordering::Relaxed);
            self.hashes
                .fetch_add(leaves.len() as u64, Ordering::Relaxed);
        }
        let own = paths.remove(0);
        for (job, path) in std::mem::take(&mut lead.taken).into_iter().zip(paths) {
            // A call that gave up no longer waits for its answer.
            let _ = job.answer.send(Answer::Signed(
                signature
                    .clone()
                    .map(|signature| Signed { signature, path }),
            ));
        }
        signature
            .map(|signature| Signed {
                signature,
                path: own,
            })
            .map_err(ClientError::Signer)
    }
}

/// A queued call's wait for its answer. A call dropped after the lead was passed to it, and before it took it,
/// passes it on.
struct Waiting<'a> {
    signer: &'a BatchSigner,
    answer: oneshot::Receiver<Answer>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Closed first, so that a lead sent from now on fails to arrive (and goes to the next call) instead
        // of being dropped with the channel; one that arrived before is taken here.
        self.answer.close();
        if let Ok(Answer::Lead) = self.answer.try_recv() {
            drop(Lead {
                signer: self.signer,
                taken: Vec::new(),
            });
        }
    }
}

/// The lead of a batch, held by its leader with the calls it took: when it ends (answered, or the leader
/// dropped, which puts the calls it took back at the head of the queue), the first call still queued leads
/// the next batch, or no call leads.
struct Lead<'a> {
    signer: &'a BatchSigner,
    taken: Vec<Job>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut queue = self.signer.queue();
        for job in std::mem::take(&mut self.taken).into_iter().rev() {
            queue.jobs.push_front(job);
        }
        while let Some(job) = queue.jobs.pop_front() {
            // A call that gave up cannot lead: pass to the next.
            if job.answer.send(Answer::Lead).is_ok() {
                return;
            }
        }
        queue.leading = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actp_core::Address;
    use actp_core::proof::content_hash as keccak256;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hashes_share_signatures_and_each_checks_against_the_provider() {
        let provider = Signer::random();
        let domain = actp_core::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let signer = Arc::new(BatchSigner::new(provider.clone(), domain.clone()));
        let leaves: Vec<B256> = (0..200u32).map(|i| keccak256(&i.to_be_bytes())).collect();
        let signed = futures::future::join_all(leaves.iter().map(|leaf| {
            let signer = Arc::clone(&signer);
            let leaf = *leaf;
            tokio::spawn(async move { signer.sign(leaf).await.unwrap() })
        }))
        .await;
        for (leaf, signed) in leaves.iter().zip(signed) {
            assert_signed_by(&provider, &domain, *leaf, &signed.unwrap());
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
        let signer = BatchSigner::new(provider.clone(), domain);
        let leaf = keccak256(b"alone");
        let signed = signer.sign(leaf).await.unwrap();
        assert!(signed.path.is_empty());
        assert_eq!(
            actp_core::ecdsa::recover(&leaf, &signed.signature).unwrap(),
            provider.address()
        );
        assert_eq!(signer.signatures(), Signatures { made: 1, hashes: 1 });
    }

    #[tokio::test]
    async fn calls_dropped_while_leading_or_handed_the_lead_pass_it_on() {
        let provider = Signer::random();
        let domain = actp_core::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let signer = BatchSigner::new(provider.clone(), domain.clone());
        let leaves: Vec<B256> = (0..4u32).map(|i| keccak256(&i.to_be_bytes())).collect();
        let mut leader = Box::pin(signer.sign(leaves[0]));
        let mut handed = Box::pin(signer.sign(leaves[1]));
        let mut last = Box::pin(signer.sign(leaves[2]));
        // The first leads and waits in its yield; the others queue behind it.
        assert!(futures::poll!(&mut leader).is_pending());
        assert!(futures::poll!(&mut handed).is_pending());
        assert!(futures::poll!(&mut last).is_pending());
        assert_eq!(signer.queue().jobs.len(), 2);
        // The leader's request is cancelled: the lead passes to the first queued call, which is cancelled in
        // turn before it takes it; the last call then leads, and is signed.
        drop(leader);
        drop(handed);
        let signed = tokio::time::timeout(std::time::Duration::from_secs(30), last)
            .await
            .expect("the lead reached the last call")
            .unwrap();
        assert_signed_by(&provider, &domain, leaves[2], &signed);
        // Nothing leads any longer: a new call leads at once.
        assert!(!signer.queue().leading);
        let signed = signer.sign(leaves[3]).await.unwrap();
        assert!(signed.path.is_empty());
        assert_eq!(signer.signatures(), Signatures { made: 2, hashes: 2 });
    }

    /// Calls cancelled at random moments on two threads, leaders and queued calls alike, never leave the lead
    /// with no one: after rounds of them, every call that was not cancelled is signed, and a new call is too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_cancelled_on_two_threads_never_strand_the_lead() {
        let provider = Signer::random();
        let domain = actp_core::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let signer = Arc::new(BatchSigner::new(provider.clone(), domain.clone()));
        let deadline = std::time::Duration::from_secs(60);
        for round in 0..50u32 {
            let calls: Vec<_> = (0..64u32)
                .map(|i| {
                    let signer = Arc::clone(&signer);
                    let leaf = keccak256(&[round.to_be_bytes(), i.to_be_bytes()].concat());
                    (
                        i,
                        leaf,
                        tokio::spawn(async move { signer.sign(leaf).await }),
                    )
                })
                .collect();
            // Cancel once calls are queued (or all are done), so that some are cancelled while they wait.
            while signer.queue().jobs.is_empty() && calls.iter().any(|(_, _, c)| !c.is_finished()) {
                tokio::task::yield_now().await;
            }
            let mut kept = Vec::new();
            for (i, leaf, call) in calls {
                if i % 3 == round % 3 {
                    call.abort();
                } else {
                    kept.push((leaf, call));
                }
            }
            for (leaf, call) in kept {
                let signed = tokio::time::timeout(deadline, call)
                    .await
                    .expect("a call that was not cancelled is signed")
                    .unwrap()
                    .unwrap();
                assert_signed_by(&provider, &domain, leaf, &signed);
            }
        }
        let leaf = keccak256(b"after");
        let signed = tokio::time::timeout(deadline, signer.sign(leaf))
            .await
            .expect("the lead is free")
            .unwrap();
        assert_signed_by(&provider, &domain, leaf, &signed);
        assert!(!signer.queue().leading);
    }

    fn assert_signed_by(provider: &Signer, domain: &Eip712Domain, leaf: B256, signed: &Signed) {
        batch::check(
            leaf,
            &signed.path,
            &signed.signature,
            provider.address(),
            domain,
        )
        .unwrap();
    }
}
