//! Any alloy signer plugs in: a signer of the test's own (standing in for a KMS or hardware wallet: it holds
//! its key elsewhere, signs on another thread, and counts what it signs) signs for the provider's paywall
//! (delivery proofs, the on-chain start and delivery) and for the paying client (approve, createAndFund, the
//! request authorization). A paid call goes through end to end with no local key in either crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use actp_axum::{Paywall, Route};
use actp_client::{Devnet, Kernel, Signer};
use actp_core::{Address, Amount, B256, State};
use actp_pay::{Ledger, PayingClient, PaymentState};
use actp_store::StoreUrl;
use alloy::{
    consensus::SignableTransaction,
    network::TxSigner,
    primitives::Signature,
    signers::{SignerSync, local::PrivateKeySigner},
};
use axum::{Router, routing::post};

/// A remote signer: the key lives behind it; each signature is made on a blocking thread and counted.
#[derive(Debug)]
struct Remote {
    key: Arc<PrivateKeySigner>,
    hashes: Arc<AtomicU64>,
    transactions: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl alloy::signers::Signer for Remote {
    async fn sign_hash(&self, hash: &B256) -> alloy::signers::Result<Signature> {
        self.hashes.fetch_add(1, Ordering::SeqCst);
        let (key, hash) = (Arc::clone(&self.key), *hash);
        tokio::task::spawn_blocking(move || key.sign_hash_sync(&hash))
            .await
            .map_err(alloy::signers::Error::other)?
    }

    fn address(&self) -> Address {
        self.key.address()
    }

    fn chain_id(&self) -> Option<u64> {
        None
    }

    fn set_chain_id(&mut self, _: Option<u64>) {}
}

#[async_trait::async_trait]
impl TxSigner<Signature> for Remote {
    fn address(&self) -> Address {
        self.key.address()
    }

    async fn sign_transaction(
        &self,
        tx: &mut dyn SignableTransaction<Signature>,
    ) -> alloy::signers::Result<Signature> {
        self.transactions.fetch_add(1, Ordering::SeqCst);
        let hash = tx.signature_hash();
        let key = Arc::clone(&self.key);
        tokio::task::spawn_blocking(move || key.sign_hash_sync(&hash))
            .await
            .map_err(alloy::signers::Error::other)?
    }
}

fn remote(devnet: &Devnet, account: usize) -> (Signer, Arc<AtomicU64>, Arc<AtomicU64>) {
    let key: PrivateKeySigner = devnet.dev_private_keys()[account].parse().unwrap();
    let (hashes, transactions) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let signer = Signer::new(Remote {
        key: Arc::new(key),
        hashes: Arc::clone(&hashes),
        transactions: Arc::clone(&transactions),
    });
    (signer, hashes, transactions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_signer_signs_for_the_paywall_and_the_paying_client() {
    let devnet = Devnet::start().await.unwrap();
    let kernel = |signer: Signer| {
        let d = devnet.deployment();
        Kernel::new(
            devnet.provider(),
            d.kernel,
            Some(signer),
            Default::default(),
        )
    };
    let (provider_signer, provider_hashes, provider_txs) = remote(&devnet, 1);
    let (agent_signer, agent_hashes, agent_txs) = remote(&devnet, 2);

    let dir = tempfile::tempdir().unwrap();
    let paywall = Paywall::builder(kernel(provider_signer).await.unwrap())
        .data_dir(dir.path().join("provider"))
        .route(
            Route::post("/v1/work")
                .flat(Amount::from_base_units(100_000))
                .service("work"),
        )
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route(
            "/v1/work",
            post(|body: String| async move { body.to_uppercase() }),
        )
        .layer(paywall.layer());
    let url = format!("{}/v1/work", actp_e2e::serve(app).await);

    let agent = kernel(agent_signer).await.unwrap();
    let client = PayingClient::new(
        agent.clone(),
        Ledger::open(&StoreUrl::Sled(dir.path().join("pay")))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let response = client
        .post(&url)
        .body("signed elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"SIGNED ELSEWHERE");
    let payment = response.payment.unwrap();
    assert_eq!(payment.state, PaymentState::Served, "the proof checked out");
    let tx_id = payment.tx_id.unwrap();
    actp_e2e::eventually("the delivery on chain", || async {
        agent.get(tx_id).await.unwrap().state == State::Delivered
    })
    .await;

    // The requester: approve and createAndFund signed as transactions, the request authorization as a hash.
    assert!(agent_txs.load(Ordering::SeqCst) >= 2);
    assert!(agent_hashes.load(Ordering::SeqCst) >= 1);
    // The provider: the AIP-4 proof and its binding as hashes, start and deliver as transactions.
    assert!(provider_hashes.load(Ordering::SeqCst) >= 2);
    assert!(provider_txs.load(Ordering::SeqCst) >= 2);
}
