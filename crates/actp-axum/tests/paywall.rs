//! The paywall on a real devnet, over real HTTP on loopback, with a real sled database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod support;

use std::time::Duration;

use actp_axum::{ClaimMode, ClaimStatus};
use actp_core::{
    Amount, B256, State,
    http::{ErrorBody, PricingDocument},
    ids::service_hash,
    proof::{SignedDeliveryProof, content_hash},
};
use futures::future::join_all;
use support::*;

async fn error_body(response: reqwest::Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Every refusal of the issue, each against the real devnet, in one table.
#[tokio::test]
async fn every_rejection_has_its_status_code_and_message() {
    let devnet = actp_client::Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = provider(&devnet, dir.path(), ClaimMode::Local).await;
    let url = server.url.clone();
    let me = server.paywall.provider();
    let consumer = Consumer::new(&devnet, 2).await;
    let stranger = devnet.signer(3);
    let other_provider = devnet.signer(4).address();

    let good = consumer.pay(me, PRICE, 86_400, ECHO).await;
    let unfunded = consumer
        .kernel
        .create(&actp_core::model::CreateParams::new(
            me,
            PRICE.to_u256(),
            consumer.kernel.chain_time().await.unwrap() + 86_400,
            3_600,
            service_hash(ECHO),
        ))
        .await
        .unwrap();
    let cheap = consumer
        .pay(me, Amount::from_base_units(50_000), 86_400, ECHO)
        .await;
    let soon = consumer.pay(me, PRICE, 60, ECHO).await;
    let expiring = consumer.pay(me, PRICE, 4, ECHO).await;
    let elsewhere = consumer.pay(other_provider, PRICE, 86_400, ECHO).await;
    let wrong_service = consumer.pay(me, PRICE, 86_400, "something-else").await;
    let used = consumer.pay(me, PRICE, 86_400, ECHO).await;
    assert_eq!(
        consumer
            .paid_post(&url, used, "/v1/echo", "first")
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(5)).await; // `expiring` is now past its deadline

    let auth = |id: B256| consumer.authorize(&consumer.signer, id, "POST", "/v1/echo", b"hi", 120);
    let s = |id: B256| id.to_string();
    struct Case {
        name: &'static str,
        tx: Option<String>,
        auth: Option<String>,
        body: &'static str,
        status: u16,
        code: &'static str,
    }
    let case = |name, tx: Option<String>, auth: Option<String>, status, code| Case {
        name,
        tx,
        auth,
        body: "hi",
        status,
        code,
    };
    let cases = vec![
        case("no txId", None, None, 402, "payment_required"),
        case(
            "malformed txId",
            Some("0x1234".into()),
            Some(auth(good)),
            400,
            "malformed_tx_id",
        ),
        case(
            "malformed authorization",
            Some(s(good)),
            Some("exp=soon".into()),
            400,
            "malformed_authorization",
        ),
        case(
            "unknown transaction",
            Some(s(B256::repeat_byte(0x42))),
            Some(auth(B256::repeat_byte(0x42))),
            402,
            "unknown_transaction",
        ),
        case(
            "another provider's transaction",
            Some(s(elsewhere)),
            Some(auth(elsewhere)),
            403,
            "wrong_provider",
        ),
        case(
            "no authorization",
            Some(s(good)),
            None,
            401,
            "missing_authorization",
        ),
        case(
            "expired authorization",
            Some(s(good)),
            Some(consumer.authorize(&consumer.signer, good, "POST", "/v1/echo", b"hi", -10)),
            401,
            "unauthorized",
        ),
        case(
            "authorization valid too long",
            Some(s(good)),
            Some(consumer.authorize(&consumer.signer, good, "POST", "/v1/echo", b"hi", 3_600)),
            401,
            "unauthorized",
        ),
        case(
            "signed by someone else",
            Some(s(good)),
            Some(consumer.authorize(&stranger, good, "POST", "/v1/echo", b"hi", 120)),
            401,
            "unauthorized",
        ),
        case(
            "signed for another path",
            Some(s(good)),
            Some(consumer.authorize(&consumer.signer, good, "POST", "/v1/flaky", b"hi", 120)),
            401,
            "unauthorized",
        ),
        case(
            "signed for another body",
            Some(s(good)),
            Some(consumer.authorize(&consumer.signer, good, "POST", "/v1/echo", b"ho", 120)),
            401,
            "unauthorized",
        ),
        case(
            "not funded (INITIATED)",
            Some(s(unfunded)),
            Some(auth(unfunded)),
            402,
            "invalid_state",
        ),
        case(
            "amount below price",
            Some(s(cheap)),
            Some(auth(cheap)),
            402,
            "insufficient_amount",
        ),
        case(
            "deadline passed",
            Some(s(expiring)),
            Some(auth(expiring)),
            402,
            "deadline_passed",
        ),
        case(
            "deadline too close",
            Some(s(soon)),
            Some(auth(soon)),
            402,
            "deadline_too_close",
        ),
        case(
            "another service",
            Some(s(wrong_service)),
            Some(auth(wrong_service)),
            402,
            "service_mismatch",
        ),
        case(
            "already used",
            Some(s(used)),
            Some(auth(used)),
            409,
            "already_used",
        ),
        Case {
            body: Box::leak("x".repeat(5000).into_boxed_str()),
            ..case(
                "body over the limit",
                Some(s(good)),
                Some(auth(good)),
                413,
                "body_too_large",
            )
        },
    ];
    for c in &cases {
        let response = consumer
            .post(&url, "/v1/echo", c.body, c.tx.as_deref(), c.auth.as_deref())
            .await;
        let (status, body) = error_body(response).await;
        assert_eq!(
            (status, body.code.as_str()),
            (c.status, c.code),
            "{}: {}",
            c.name,
            body.message
        );
        assert!(
            !body.message.contains("http://") && !body.message.contains("0x08c379a0"),
            "{}: leaks internals: {}",
            c.name,
            body.message
        );
    }

    // The 402s carry what a client needs to pay without reading docs.
    let (_, body) = error_body(consumer.post(&url, "/v1/echo", "hi", None, None).await).await;
    let payment = body.payment.unwrap();
    assert_eq!(payment.amount, "100000");
    assert_eq!(payment.price, "0.10");
    assert_eq!(payment.service_hash, service_hash(ECHO));
    assert_eq!(payment.terms.provider, me);
    assert_eq!(payment.terms.kernel, devnet.deployment().kernel);
    assert_eq!(payment.terms.token, devnet.deployment().token);
    assert_eq!(payment.terms.chain_id, 31337);
    assert_eq!(payment.path, "/v1/echo");
    let (_, body) = error_body(
        consumer
            .post(&url, "/v1/echo", "hi", Some(&s(cheap)), Some(&auth(cheap)))
            .await,
    )
    .await;
    assert_eq!(
        (body.required.as_deref(), body.provided.as_deref()),
        (Some("100000"), Some("50000"))
    );
    let (_, body) = error_body(
        consumer
            .post(
                &url,
                "/v1/echo",
                "hi",
                Some(&s(unfunded)),
                Some(&auth(unfunded)),
            )
            .await,
    )
    .await;
    assert_eq!(body.current_state.as_deref(), Some("INITIATED"));

    // Dynamic prices: quoted per request, refused with the function's reason.
    let (status, body) =
        error_body(consumer.post(&url, "/v1/sized", "12345", None, None).await).await;
    assert_eq!(status, 402);
    assert_eq!(body.payment.unwrap().amount, "55000");
    let big = "y".repeat(600);
    let (status, body) = error_body(consumer.post(&url, "/v1/sized", &big, None, None).await).await;
    assert_eq!((status, body.code.as_str()), (400, "unpriceable"));

    // Free routes and the pricing document need no payment.
    let free = consumer
        .http
        .get(format!("{url}/free"))
        .send()
        .await
        .unwrap();
    assert_eq!(free.status(), 200);
    let pricing: PricingDocument = consumer
        .http
        .get(format!("{url}/pricing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pricing.terms.provider, me);
    assert_eq!(pricing.terms.min_time_to_deadline, 300);
    assert_eq!(pricing.routes.len(), 4);
    let echo = &pricing.routes[0];
    assert_eq!(
        (echo.pricing.as_str(), echo.amount.as_deref()),
        ("flat", Some("100000"))
    );
    assert_eq!(pricing.routes[2].pricing, "dynamic");
    assert_eq!(pricing.routes[3].pricing, "free");

    // Nothing refused was claimed or delivered; the one good call was.
    for id in [good, unfunded, cheap, soon, elsewhere, wrong_service] {
        assert!(server.paywall.claim(id).await.unwrap().is_none());
    }
    assert_eq!(server.paywall.metrics().requests("already_used"), 1);

    // The chain goes away: 503 with Retry-After, and the handler does not run.
    drop(devnet);
    let fresh = B256::repeat_byte(0x77);
    let response = consumer
        .post(
            &url,
            "/v1/echo",
            "hi",
            Some(&s(fresh)),
            Some(&consumer.authorize(&consumer.signer, fresh, "POST", "/v1/echo", b"hi", 120)),
        )
        .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = error_body(response).await;
    assert_eq!((status, body.code.as_str()), (503, "chain_unavailable"));
    assert!(!body.message.contains("127.0.0.1"), "{}", body.message);
    assert_eq!(server.paywall.metrics().requests("chain_unavailable"), 1);
}

/// A served request: the consumer checks the body against the proof the provider put on chain.
#[tokio::test]
async fn served_body_hashes_to_the_proof_recorded_on_chain() {
    let devnet = actp_client::Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = provider(&devnet, dir.path(), ClaimMode::Local).await;
    let consumer = Consumer::new(&devnet, 2).await;
    let tx = consumer
        .pay(server.paywall.provider(), PRICE, 86_400, ECHO)
        .await;

    let response = consumer
        .paid_post(&server.url, tx, "/v1/echo?lang=en", "hello")
        .await;
    assert_eq!(response.status(), 200);
    let proof_hash: B256 = response.headers()["x-agirails-proof-hash"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let signed = SignedDeliveryProof::from_header_value(
        response.headers()["x-agirails-delivery-proof"]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..], b"echo: hello");

    let domain = consumer.kernel.domain();
    assert_eq!(signed.proof.resultHash, content_hash(&body));
    assert_eq!(signed.proof.txId, tx);
    assert_eq!(
        signed.proof.consumer,
        actp_core::proof::aip4::did(31337, consumer.signer.address())
    );
    assert_eq!(
        signed.binding.as_ref().unwrap().request_hash,
        actp_core::authorization::request_hash("POST", "/v1/echo?lang=en", content_hash(b"hello"))
    );
    assert_eq!(signed.signer(&domain).unwrap(), server.paywall.provider());
    assert_eq!(signed.proof_hash(&domain), proof_hash);
    assert_eq!(
        actp_core::proof::verify_delivery(
            &signed,
            &body,
            tx,
            server.paywall.provider(),
            &domain,
            Some(proof_hash)
        ),
        Ok(proof_hash)
    );

    wait_for_state(&consumer.kernel, tx, State::Delivered).await;
    let (transitions, proofs) = deliveries(&devnet, tx).await;
    assert_eq!(transitions, 1);
    assert_eq!(proofs, vec![proof_hash]);
    let claim = server.paywall.claim(tx).await.unwrap().unwrap();
    assert_eq!(claim.status, ClaimStatus::Delivered);
    assert_eq!(server.paywall.outbox_len().await.unwrap(), 0);
    // The consumer is satisfied and releases the escrow at once.
    consumer.kernel.settle(tx).await.unwrap();
}

/// 100 concurrent requests with one txId: one served, 99 conflicts, one delivery.
#[tokio::test]
async fn hundred_concurrent_requests_one_transaction_one_delivery() {
    let devnet = actp_client::Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = provider(&devnet, dir.path(), ClaimMode::Local).await;
    let consumer = Consumer::new(&devnet, 2).await;
    let tx = consumer
        .pay(server.paywall.provider(), PRICE, 86_400, ECHO)
        .await;
    let auth = consumer.authorize(&consumer.signer, tx, "POST", "/v1/echo", b"race", 120);
    let id = tx.to_string();
    let statuses: Vec<u16> = join_all((0..100).map(|_| {
        let consumer = consumer.clone();
        let (url, id, auth) = (server.url.clone(), id.clone(), auth.clone());
        async move {
            consumer
                .post(&url, "/v1/echo", "race", Some(&id), Some(&auth))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 99);
    wait_for_state(&consumer.kernel, tx, State::Delivered).await;
    assert_eq!(deliveries(&devnet, tx).await.0, 1);
    assert_eq!(server.paywall.metrics().requests("served"), 1);
    assert_eq!(server.paywall.metrics().requests("already_used"), 99);
}

/// A failing handler delivers nothing and gives the transaction back; the retry is served.
#[tokio::test]
async fn failed_handler_releases_the_claim_and_the_retry_is_served() {
    for mode in [ClaimMode::Local, ClaimMode::OnChain] {
        let devnet = actp_client::Devnet::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = provider(&devnet, dir.path(), mode).await;
        let consumer = Consumer::new(&devnet, 2).await;
        let tx = consumer
            .pay(server.paywall.provider(), PRICE, 86_400, ECHO)
            .await;
        server
            .failures
            .store(1, std::sync::atomic::Ordering::SeqCst);

        let first = consumer.paid_post(&server.url, tx, "/v1/flaky", "x").await;
        assert_eq!(first.status(), 500, "{mode:?}");
        assert!(first.headers().get("x-agirails-proof-hash").is_none());
        let claim = server.paywall.claim(tx).await.unwrap().unwrap();
        assert_eq!(claim.status, ClaimStatus::Released);
        let expected = match mode {
            ClaimMode::Local => State::Committed,
            ClaimMode::OnChain => State::InProgress,
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(consumer.kernel.get(tx).await.unwrap().state, expected);
        assert_eq!(server.paywall.outbox_len().await.unwrap(), 0);
        assert_eq!(server.paywall.metrics().requests("handler_failed"), 1);

        let retry = consumer.paid_post(&server.url, tx, "/v1/flaky", "x").await;
        assert_eq!(retry.status(), 200, "{mode:?}");
        assert_eq!(retry.text().await.unwrap(), "flaky: x");
        wait_for_state(&consumer.kernel, tx, State::Delivered).await;
        assert_eq!(deliveries(&devnet, tx).await.0, 1);
    }
}

/// On-chain claims: concurrent requests race for the IN_PROGRESS transaction; the chain picks one.
#[tokio::test]
async fn on_chain_claim_serves_one_of_many_concurrent_requests() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let devnet = actp_client::Devnet::start().await.unwrap();
    let consumer = Consumer::new(&devnet, 2).await;
    // Two replicas with their own databases, as behind a load balancer.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = provider(&devnet, dirs[0].path(), ClaimMode::OnChain).await;
    let b = provider(&devnet, dirs[1].path(), ClaimMode::OnChain).await;
    let tx = consumer
        .pay(a.paywall.provider(), PRICE, 86_400, ECHO)
        .await;
    let auth = consumer.authorize(&consumer.signer, tx, "POST", "/v1/echo", b"r", 120);
    let id = tx.to_string();
    let statuses: Vec<u16> = join_all((0..20).map(|i| {
        let consumer = consumer.clone();
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let (id, auth) = (id.clone(), auth.clone());
        async move {
            consumer
                .post(&url, "/v1/echo", "r", Some(&id), Some(&auth))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409 || *s == 402),
        "{statuses:?}"
    );
    wait_for_state(&consumer.kernel, tx, State::Delivered).await;
    assert_eq!(deliveries(&devnet, tx).await.0, 1);
}

/// The server dies after serving but before delivering; on restart the outbox delivers, once.
#[tokio::test]
async fn crash_between_serving_and_delivering_loses_nothing() {
    let devnet = actp_client::Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kernel = devnet.kernel(1).await.unwrap();
    let consumer = Consumer::new(&devnet, 2).await;

    let builder = || configure(kernel.clone(), dir.path());
    let first = Server::start(open(|| builder().run_outbox(false)).await).await;
    let provider = first.paywall.provider();
    let mut served = Vec::new();
    for i in 0..3 {
        let tx = consumer.pay(provider, PRICE, 86_400, ECHO).await;
        let response = consumer
            .paid_post(&first.url, tx, "/v1/echo", &format!("job {i}"))
            .await;
        assert_eq!(response.status(), 200);
        served.push(tx);
    }
    assert_eq!(first.paywall.outbox_len().await.unwrap(), 3);
    first.shutdown().await; // the process is gone with three deliveries queued
    drop(consumer.http.clone());
    for tx in &served {
        assert_eq!(
            consumer.kernel.get(*tx).await.unwrap().state,
            State::Committed
        );
    }

    let second = Server::start(open(builder).await).await;
    for tx in &served {
        wait_for_state(&consumer.kernel, *tx, State::Delivered).await;
    }
    actp_e2e::eventually("the outbox to drain", || async {
        second.paywall.outbox_len().await.unwrap() == 0
    })
    .await;
    second.shutdown().await;

    // A third start finds nothing to do and sends nothing.
    let third = Server::start(open(builder).await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for tx in &served {
        assert_eq!(deliveries(&devnet, *tx).await.0, 1);
        assert_eq!(
            third.paywall.claim(*tx).await.unwrap().unwrap().status,
            ClaimStatus::Delivered
        );
    }
    third.shutdown().await;
}
