//! The paying client against real parts: anvil with the kernel deployed, the example provider behind the
//! paywall over loopback HTTP, and the ledger in sled on disk.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actp_client::{Devnet, DevnetOptions, Kernel};
use actp_core::{Address, Amount, State, U256};
use actp_examples::provider;
use actp_pay::{
    AfterDelivery, BudgetError, CapKind, GroupBy, KillSwitch, Ledger, PayConfig, PayError,
    PayingClient, PaymentState, SpendPolicy, UsageQuery,
};
use actp_store::StoreUrl;
use axum::{Router, http::StatusCode, response::IntoResponse, routing::post};

const PRICE: Amount = provider::PRICE;

struct World {
    devnet: Devnet,
    url: String,
    consumer: Kernel,
    dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

/// How the provider behaves in a test.
#[derive(Clone, Copy)]
enum Provider {
    /// The example provider.
    Honest,
    /// Serves a body that is not the one its proof signs (something between the paywall and the wire
    /// changes it).
    AltersBody,
    /// Fails with 500 this many times, then serves.
    FailsFirst(usize),
}

async fn world(kind: Provider) -> World {
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 4,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paywall = provider::paywall(
        devnet.kernel(1).await.unwrap(),
        &dir.path().join("provider"),
        PRICE,
    )
    .build()
    .await
    .unwrap();
    let app: Router = match kind {
        Provider::Honest => provider::app(&paywall),
        Provider::AltersBody => provider::app(&paywall).layer(axum::middleware::map_response(
            |response: axum::response::Response| async move {
                if !response.status().is_success() {
                    return response;
                }
                let (parts, body) = response.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mut altered = bytes.to_vec();
                altered.extend_from_slice(b" (altered)");
                axum::response::Response::from_parts(parts, axum::body::Body::from(altered))
            },
        )),
        Provider::FailsFirst(n) => {
            let failures = Arc::new(AtomicUsize::new(n));
            Router::new()
                .route(
                    provider::PATH,
                    post(move |text: String| {
                        let failures = failures.clone();
                        async move {
                            let left = failures.load(Ordering::SeqCst);
                            if left > 0 {
                                failures.store(left - 1, Ordering::SeqCst);
                                return (StatusCode::INTERNAL_SERVER_ERROR, "model overloaded")
                                    .into_response();
                            }
                            provider::summarise(text).await.into_response()
                        }
                    }),
                )
                .layer(paywall.layer())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        provider::PATH
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let consumer = devnet.kernel(2).await.unwrap();
    World {
        devnet,
        url,
        consumer,
        dir,
        _server: server,
    }
}

impl World {
    fn ledger_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("pay")
    }

    fn agent(&self) -> Address {
        self.consumer.signer_address().unwrap()
    }

    fn provider(&self) -> Address {
        self.devnet.signer(1).address()
    }

    async fn client(&self, config: PayConfig) -> PayingClient {
        let ledger = open_ledger(&self.ledger_dir()).await;
        PayingClient::with_config(self.consumer.clone(), ledger, config)
            .await
            .unwrap()
    }

    async fn escrows(&self) -> usize {
        self.consumer
            .created_by(self.agent(), self.devnet.deployment().block)
            .await
            .unwrap()
            .len()
    }
}

fn today() -> String {
    actp_pay::ledger::utc_day_month(actp_pay::ledger::unix_now()).0
}

/// Opens the ledger, waiting while a handle dropped a moment ago still holds it.
async fn open_ledger(dir: &Path) -> Ledger {
    let url = StoreUrl::Sled(dir.to_path_buf());
    actp_e2e::open_when_free(
        async || Ledger::open(&url).await,
        |e| matches!(e, actp_pay::LedgerError::Busy { .. }),
    )
    .await
}

async fn cap(ledger_dir: &Path, agent: Address, policy: SpendPolicy) {
    let ledger = open_ledger(ledger_dir).await;
    ledger.set_policy(agent, &policy).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_calls_against_a_cap_of_37() {
    let w = world(Provider::Honest).await;
    cap(
        &w.ledger_dir(),
        w.agent(),
        SpendPolicy {
            daily: PRICE.checked_mul(37),
            ..SpendPolicy::default()
        },
    )
    .await;
    let soft = Arc::new(AtomicUsize::new(0));
    let seen = soft.clone();
    let client = w
        .client(PayConfig::default())
        .await
        .on_soft_limit(move |limit| {
            assert_eq!(limit.cap, CapKind::Daily);
            seen.fetch_add(1, Ordering::SeqCst);
        });
    let before = w.devnet.balance_of(w.agent()).await.unwrap();

    let calls = (0..100).map(|i| {
        let client = client.clone();
        let url = w.url.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .body(format!("call number {i} of a hundred"))
                .send()
                .await
        })
    });
    let results = futures::future::join_all(calls).await;
    let (mut paid, mut capped) = (0, 0);
    for result in results {
        match result.unwrap() {
            Ok(response) => {
                assert_eq!(response.status, 200);
                assert_eq!(response.payment.unwrap().state, PaymentState::Served);
                paid += 1;
            }
            Err(PayError::Budget(BudgetError::CapReached { cap, limit, .. })) => {
                assert_eq!(cap, CapKind::Daily);
                assert_eq!(limit, PRICE.checked_mul(37).unwrap());
                capped += 1;
            }
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!((paid, capped), (37, 63));
    assert_eq!(w.escrows().await, 37);
    let spent = before - w.devnet.balance_of(w.agent()).await.unwrap();
    assert_eq!(spent, PRICE.checked_mul(37).unwrap().to_u256());
    let (day, _) = Ledger::periods(actp_pay::ledger::unix_now());
    let totals = client.ledger().totals(w.agent(), &day, None).await.unwrap();
    assert_eq!(totals.spent, PRICE.checked_mul(37).unwrap());
    assert_eq!(totals.reserved, Amount::ZERO);
    assert_eq!(
        soft.load(Ordering::SeqCst),
        1,
        "80% of the cap is crossed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_run_keeps_reservations_and_spend_and_never_pays_a_key_twice() {
    let w = world(Provider::Honest).await;
    let keys: Vec<String> = (0..24).map(|i| format!("job-7/step-{i}")).collect();

    // Run 1: calls in flight, then the process "dies": every task is aborted wherever it is.
    {
        let client = w.client(PayConfig::default()).await;
        let tasks: Vec<_> = keys
            .iter()
            .map(|key| {
                let (client, url, key) = (client.clone(), w.url.clone(), key.clone());
                tokio::spawn(async move {
                    client
                        .post(url)
                        .body("interrupted")
                        .idempotency_key(key)
                        .send()
                        .await
                })
            })
            .collect();
        // Let some escrows be funded, then abort at a random instant.
        while w.escrows().await < 6 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 40)).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    // Restart: the ledger is where it was.
    let ledger = open_ledger(&w.ledger_dir()).await;
    let (day, month) = Ledger::periods(actp_pay::ledger::unix_now());
    let totals = ledger.totals(w.agent(), &day, None).await.unwrap();
    let payments = ledger.payments(w.agent()).await.unwrap();
    let held = |state: PaymentState| {
        payments
            .iter()
            .filter(|p| p.state == state)
            .map(|p| p.amount.base_units())
            .sum::<u128>()
    };
    assert_eq!(totals.reserved.base_units(), held(PaymentState::Reserved));
    assert_eq!(
        totals.spent.base_units(),
        held(PaymentState::Funded) + held(PaymentState::Served)
    );
    assert_eq!(
        ledger.totals(w.agent(), &month, None).await.unwrap(),
        totals
    );
    drop(ledger);

    // Reconcile: every reservation is matched to its escrow or given back.
    let client = w.client(PayConfig::default()).await;
    let report = client.reconcile().await.unwrap();
    let after: Vec<_> = client.ledger().payments(w.agent()).await.unwrap();
    assert!(after.iter().all(|p| p.state != PaymentState::Reserved));
    let escrows = w.escrows().await;
    let with_escrow = after.iter().filter(|p| p.tx_id.is_some()).count();
    assert_eq!(
        with_escrow, escrows,
        "each escrow is one payment: {report:?}"
    );
    let mut ids: Vec<_> = after.iter().filter_map(|p| p.tx_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), escrows, "no escrow counted twice");
    let spent = client.ledger().totals(w.agent(), &day, None).await.unwrap();
    assert_eq!(
        spent.spent,
        PRICE.checked_mul(escrows as u128).unwrap(),
        "spend is exactly the escrows on chain"
    );
    assert_eq!(spent.reserved, Amount::ZERO);

    // Run 2 with the same keys: funded keys are served on their own escrow, the rest pay once.
    for key in &keys {
        match client
            .post(&w.url)
            .body("interrupted")
            .idempotency_key(key.clone())
            .send()
            .await
        {
            Ok(r) => assert_eq!(r.status, 200),
            Err(PayError::AlreadyServed { .. }) => {}
            Err(e) => panic!("{key}: {e}"),
        }
    }
    assert_eq!(w.escrows().await, keys.len(), "one escrow per key, ever");
    let spent = client.ledger().totals(w.agent(), &day, None).await.unwrap();
    assert_eq!(spent.spent, PRICE.checked_mul(keys.len() as u128).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspend_during_a_run_stops_new_escrows() {
    let w = world(Provider::Honest).await;
    let client = w.client(PayConfig::default()).await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let runner = {
        let (client, url) = (client.clone(), w.url.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..40 {
                let _ = started_tx.send(i);
                let outcome = client.post(&url).body("loop").send().await;
                outcomes.push((i, outcome.map(|_| ())));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        })
    };
    while w.escrows().await < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another process would do exactly this (`actp budget suspend`): it needs no ledger handle.
    let switch = KillSwitch::open(&StoreUrl::Sled(w.ledger_dir()))
        .await
        .unwrap();
    switch
        .suspend(w.agent(), Some("runaway loop"))
        .await
        .unwrap();
    let mut last_before = 0;
    while let Ok(i) = started.try_recv() {
        last_before = i;
    }
    let at_switch = w.escrows().await;
    let outcomes = runner.await.unwrap();
    let escrows = w.escrows().await;
    assert!(
        escrows <= at_switch + 1,
        "at most the call already past its last check ({at_switch} → {escrows})"
    );
    for (i, outcome) in outcomes {
        if i > last_before {
            assert!(
                matches!(outcome, Err(PayError::Budget(BudgetError::Suspended { ref reason, .. })) if reason.as_deref() == Some("runaway loop")),
                "call {i} started after the switch: {outcome:?}"
            );
        }
    }
    switch.resume(w.agent()).await.unwrap();
    let r = client.post(&w.url).body("resumed").send().await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(w.escrows().await, escrows + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_not_matching_its_proof_is_disputed_within_the_window() {
    let w = world(Provider::AltersBody).await;
    let client = w.client(PayConfig::default()).await;
    let err = client
        .post(&w.url)
        .body("please summarise this")
        .idempotency_key("bad-proof")
        .send()
        .await
        .unwrap_err();
    let PayError::DeliveryMismatch {
        tx_id,
        disputed,
        ref mismatch,
        ref body,
        ..
    } = err
    else {
        panic!("expected a mismatch, got {err}");
    };
    assert!(disputed, "{err}");
    assert!(matches!(
        mismatch.as_deref(),
        Some(actp_core::proof::DeliveryMismatch::Body { .. })
    ));
    assert!(body.ends_with(b"(altered)"));
    let record = w.consumer.get(tx_id).await.unwrap();
    assert_eq!(record.state, State::Disputed);
    let payment = client
        .ledger()
        .payment(w.agent(), "bad-proof")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.state, PaymentState::Disputed);

    // The admin (a resolver) refunds 0.07 of the 0.10 to the consumer: reconcile records it and the budget
    // gets that much back.
    let refund = U256::from(70_000u64);
    w.devnet
        .kernel(0)
        .await
        .unwrap()
        .resolve(tx_id, State::Settled, refund, PRICE.to_u256() - refund)
        .await
        .unwrap();
    let report = client.reconcile().await.unwrap();
    assert_eq!(report.refunded, 1);
    let payment = client
        .ledger()
        .payment(w.agent(), "bad-proof")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.state, PaymentState::Resolved);
    assert_eq!(payment.refunded, Amount::from_base_units(70_000));
    assert_eq!(payment.spent(), Amount::from_base_units(30_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_verifies_settles_and_the_usage_report_shows_it() {
    let w = world(Provider::Honest).await;
    let client = w
        .client(PayConfig {
            after_delivery: AfterDelivery::SettleNow,
            ..PayConfig::default()
        })
        .await;
    let provider_before = w.devnet.balance_of(w.provider()).await.unwrap();

    // A free route is not paid.
    let health = client
        .get(w.url.replace(provider::PATH, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!((health.status.as_u16(), health.payment), (200, None));

    let response = client
        .post(&w.url)
        .body("the quick brown fox jumps over the lazy dog")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["words"], 9);
    let payment = response.payment.unwrap();
    assert_eq!(payment.state, PaymentState::Settled);
    assert_eq!(payment.amount, PRICE);
    assert_eq!(payment.fee, Amount::from_base_units(1_000));
    let tx_id = payment.tx_id.unwrap();
    assert_eq!(w.consumer.get(tx_id).await.unwrap().state, State::Settled);
    assert_eq!(
        w.consumer.recorded_proof_hash(tx_id, 0).await.unwrap(),
        payment.proof_hash
    );
    assert_eq!(
        w.devnet.balance_of(w.provider()).await.unwrap() - provider_before,
        U256::from(99_000u64)
    );

    let usage = async |by| {
        client
            .ledger()
            .usage(
                w.agent(),
                &UsageQuery {
                    by,
                    ..UsageQuery::default()
                },
            )
            .await
            .unwrap()
    };
    let by_provider = usage(GroupBy::Provider).await;
    assert_eq!(by_provider.rows.len(), 1);
    assert_eq!(by_provider.rows[0].key, format!("{:#x}", w.provider()));
    assert_eq!(by_provider.rows[0].calls, 1);
    assert_eq!(by_provider.total.spent, PRICE);
    assert_eq!(by_provider.total.fees, Amount::from_base_units(1_000));
    assert_eq!(
        usage(GroupBy::Route).await.rows[0].key,
        "POST /v1/summarise"
    );
    assert_eq!(usage(GroupBy::Day).await.rows[0].key, today());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_provider_is_retried_on_the_same_escrow() {
    let w = world(Provider::FailsFirst(2)).await;
    let client = w.client(PayConfig::default()).await;
    let response = client.post(&w.url).body("try again").send().await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(w.escrows().await, 1, "three attempts, one escrow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_that_never_serves_is_reclaimed_after_the_deadline() {
    let w = world(Provider::FailsFirst(usize::MAX)).await;
    let client = w
        .client(PayConfig {
            attempts: 2,
            retry_backoff: Duration::from_millis(10),
            ..PayConfig::default()
        })
        .await;
    let before = w.devnet.balance_of(w.agent()).await.unwrap();
    let err = client
        .post(&w.url)
        .body("never")
        .idempotency_key("never")
        .send()
        .await
        .unwrap_err();
    let PayError::ProviderFailed {
        tx_id,
        attempts,
        deadline,
        ..
    } = err
    else {
        panic!("expected a provider failure, got {err}");
    };
    assert_eq!(attempts, 2);
    // Calling again with the key retries the same escrow; it never pays twice.
    assert!(matches!(
        client.post(&w.url).body("never").idempotency_key("never").send().await,
        Err(PayError::ProviderFailed { tx_id: again, .. }) if again == tx_id
    ));
    assert_eq!(w.escrows().await, 1);
    // Before the deadline there is nothing to reclaim.
    assert_eq!(client.reconcile().await.unwrap().reclaimed, 0);
    let now = w.devnet.now().await.unwrap();
    w.devnet.advance_time(deadline - now + 1).await.unwrap();
    let report = client.reconcile().await.unwrap();
    assert_eq!(report.reclaimed, 1);
    let payment = client
        .ledger()
        .payment(w.agent(), "never")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.state, PaymentState::Refunded);
    assert_eq!(payment.spent(), Amount::ZERO);
    assert_eq!(w.devnet.balance_of(w.agent()).await.unwrap(), before);
    let (day, _) = Ledger::periods(actp_pay::ledger::unix_now());
    assert_eq!(
        client
            .ledger()
            .totals(w.agent(), &day, None)
            .await
            .unwrap()
            .used(),
        Amount::ZERO
    );
}
