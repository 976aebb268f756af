//! What the paywall learns from the kernel's events, on a real devnet, with the provider's RPC behind a
//! counting proxy: funded transactions are served without a chain read, one funded before the paywall started
//! is read once, and a session whose requester asks on chain to end it is closed from the event alone (or,
//! without events, from the closer's read).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod support;

use std::time::Duration;

use actp_axum::{Route, SessionConfig};
use actp_client::{ClientConfig, Devnet, HttpOptions, Kernel, OpenSession, http_provider};
use actp_core::{
    Amount, State, U256,
    http::{TX_ID_HEADER, VOUCHER_HEADER},
    ids::service_hash,
    proof::content_hash,
    session::{SessionVoucher, VoucherHeader},
};
use actp_e2e::{RpcLimits, RpcProxy, eventually};
use support::{Consumer, ECHO, PRICE, Server, configure};

const NO_LIMITS: RpcLimits = RpcLimits {
    max_log_blocks: u64::MAX,
    rate_limit_every: 0,
    retry_after_secs: 1,
};

/// The provider's kernel client, talking to the devnet through `proxy`.
async fn provider_via(devnet: &Devnet, proxy: &RpcProxy) -> Kernel {
    Kernel::new(
        http_provider(&proxy.url(), &HttpOptions::default()).unwrap(),
        devnet.deployment().kernel,
        Some(devnet.signer(1)),
        ClientConfig::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn funded_transactions_learned_from_events_are_served_without_a_chain_read() {
    let devnet = Devnet::start().await.unwrap();
    let proxy = RpcProxy::start(&devnet.rpc_url(), NO_LIMITS).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let consumer = Consumer::new(&devnet, 2).await;
    let provider = devnet.signer(1).address();
    // Funded before the paywall starts: not learned, read when used.
    let early = consumer.pay(provider, PRICE, 86_400, ECHO).await;

    let paywall = configure(provider_via(&devnet, &proxy).await, dir.path())
        .follow_events(Some(Duration::from_millis(100)))
        // Deliveries wait, so that nothing but the requests reads the chain meanwhile.
        .run_outbox(false)
        .build()
        .await
        .unwrap();
    let server = Server::start(paywall.clone()).await;
    let mut learned = Vec::new();
    for _ in 0..3 {
        learned.push(consumer.pay(provider, PRICE, 86_400, ECHO).await);
    }
    eventually(
        "the paywall learns the three funded transactions",
        || async { paywall.funded_known() == 3 },
    )
    .await;

    let reads = proxy.calls("eth_call");
    for (i, tx) in learned.iter().enumerate() {
        let response = consumer
            .paid_post(&server.url, *tx, "/v1/echo", &format!("call {i}"))
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        proxy.calls("eth_call"),
        reads,
        "a learned transaction needs no chain read"
    );
    assert_eq!(paywall.funded_known(), 0, "a used transaction is forgotten");
    let response = consumer
        .paid_post(&server.url, early, "/v1/echo", "early")
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.calls("eth_call"),
        reads + 1,
        "one read for a transaction funded before the paywall started"
    );
    // Used is used, learned or not (a forgotten transaction is read again, then refused).
    let again = consumer
        .paid_post(&server.url, learned[0], "/v1/echo", "call 0")
        .await;
    assert_eq!(again.status(), 409);

    // The deliveries go out once the outbox runs.
    let runner = paywall.clone();
    tokio::spawn(async move { runner.run_outbox().await });
    for tx in learned.iter().chain([&early]) {
        support::wait_for_state(&consumer.kernel, *tx, State::Delivered).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_whose_requester_asks_to_end_it_closes_from_the_event() {
    // The closer reads the chain once at start and then not for an hour: only the event can close it.
    end_request_closes(Some(Duration::from_millis(100)), Duration::from_secs(3_600)).await;
}

#[tokio::test]
async fn without_events_the_closer_reads_each_open_session() {
    end_request_closes(None, Duration::from_millis(200)).await;
}

/// A session with one call, whose requester then asks on chain to end it: the provider closes with the call's
/// charge.
async fn end_request_closes(follow: Option<Duration>, check_every: Duration) {
    let devnet = Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provider = devnet.kernel(1).await.unwrap();
    let paywall = actp_axum::Paywall::builder(provider.clone())
        .data_dir(dir.path())
        .route(Route::post("/v1/echo").flat(PRICE).service(ECHO))
        .follow_events(follow)
        .sessions(Some(SessionConfig {
            check_every,
            ..SessionConfig::default()
        }))
        .build()
        .await
        .unwrap();
    let server = Server::start(paywall.clone()).await;
    let consumer = Consumer::new(&devnet, 2).await;
    let now = devnet.now().await.unwrap();
    let id = consumer
        .kernel
        .pay_session(&OpenSession {
            provider: paywall.provider(),
            deposit: U256::from(Amount::from_tokens(1).base_units()),
            deadline: now + 86_400,
            dispute_window: 3_600,
            service_hash: service_hash("session"),
            grace: 600,
        })
        .await
        .unwrap();

    // One call, so that the provider holds a voucher and an account.
    let expires = now + 120;
    let voucher = SessionVoucher::for_request(
        id,
        PRICE.to_u256(),
        "POST",
        "/v1/echo",
        content_hash(b"hi"),
        expires,
    );
    let signature = consumer
        .signer
        .sign_hash(&voucher.signing_hash(&consumer.kernel.domain()))
        .await
        .unwrap();
    let response = consumer
        .http
        .post(format!("{}/v1/echo", server.url))
        .header(TX_ID_HEADER, id.to_string())
        .header(
            VOUCHER_HEADER,
            VoucherHeader::from_signature(&voucher, signature).to_string(),
        )
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    consumer.kernel.end_session(id).await.unwrap();
    support::wait_for_state(&consumer.kernel, id, State::Delivered).await;
    let terms = consumer.kernel.session_of(id).await.unwrap().unwrap();
    assert_eq!(terms.claimed, PRICE.to_u256(), "the close claims the call");
    server.shutdown().await;
}
