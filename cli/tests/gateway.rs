//! `actp gateway` in front of a plain HTTP API: the pricing document, 402 with payment instructions, free
//! and unlisted routes, and a paid call served by the upstream with a delivery proof that checks out and is
//! delivered on chain.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::time::Duration;

use actp_client::{ClientConfig, Kernel, Signer};
use actp_core::{
    Address, B256, State,
    authorization::{
        AUTHORIZATION_HEADER, AuthorizationHeader, RequestAuthorization, TX_ID_HEADER,
    },
    http::{DELIVERY_PROOF_HEADER, ErrorBody, PROOF_HASH_HEADER},
    ids::service_hash,
    model::CreateParams,
    proof::{SignedDeliveryProof, content_hash, verify_delivery},
};
use actp_e2e::process::{DevnetProcess, start_gateway, terminate};
use axum::{
    Router,
    http::HeaderMap,
    routing::{get, post},
};

/// Paid work the upstream did for `GET /v1/report`.
static REPORTS_SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn upstream() -> String {
    let app = Router::new()
        .route(
            "/v1/echo",
            post(|headers: HeaderMap, body: String| async move {
                let payer = headers
                    .get("x-agirails-requester")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nobody")
                    .to_owned();
                format!("echo: {body} (paid by {payer})")
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .route(
            "/v1/slow",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                "too late"
            }),
        )
        .route(
            "/v1/report",
            get(|| async {
                REPORTS_SERVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "a costly report"
            }),
        )
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                headers
                    .get("x-agirails-requester")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nobody")
                    .to_owned()
            }),
        );
    actp_e2e::serve(app).await
}

/// Funds a transaction for what `quote` asks and signs the POST of `body` to `path` with it: the
/// transaction id and the `X-AGIRAILS-AUTHORIZATION` value.
async fn pay_and_sign(
    consumer: &Kernel,
    signer: &Signer,
    quote: &actp_core::http::PaymentInstructions,
    path: &str,
    body: &[u8],
) -> (B256, AuthorizationHeader) {
    let now = consumer.chain_time().await.unwrap();
    let tx_id = consumer
        .pay(&CreateParams::new(
            quote.terms.provider,
            quote.amount.parse().unwrap(),
            now + 3_600,
            3_600,
            quote.service_hash,
        ))
        .await
        .unwrap();
    let request = RequestAuthorization::new(tx_id, "POST", path, content_hash(body), now + 60);
    let signature = signer
        .sign_typed(&request, &consumer.domain())
        .await
        .unwrap();
    (
        tx_id,
        AuthorizationHeader::from_signature(&request, signature),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sells_an_upstream_api() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let upstream = upstream().await;
    let (mut gateway, url) = start_gateway(
        &dev,
        1,
        &[
            "--upstream",
            &upstream,
            "--route",
            "POST /v1/echo=0.10@echo",
            "--route",
            "GET /health=free",
            "--route",
            "GET /v1/report=0.10@report",
            "--route",
            "GET /whoami=free",
            "--route",
            "POST /v1/slow=0.10@echo",
            "--upstream-timeout",
            "2s",
        ],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    let pricing: serde_json::Value = http
        .get(format!("{url}/pricing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pricing["provider"].as_str().unwrap().to_lowercase(),
        dev.address(1).to_lowercase()
    );
    assert_eq!(pricing["routes"].as_array().unwrap().len(), 5, "{pricing}");
    assert_eq!(
        actp_core::checksum::find_unchecksummed(&pricing),
        None,
        "addresses are EIP-55 checksummed: {pricing}"
    );

    // Free route: straight to the upstream. Unlisted: 404, never served for free.
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let unlisted = http.get(format!("{url}/v1/secret")).send().await.unwrap();
    assert_eq!(unlisted.status(), 404);

    // Nothing paid is reachable for free: HEAD on the paid GET route pays like GET, and the upstream does
    // no work; variants of the paid path are refused.
    let head = http.head(format!("{url}/v1/report")).send().await.unwrap();
    assert_eq!(head.status(), 402);
    for variant in [
        "/v1/report/",
        "//v1/report",
        "/v1/./report",
        "/v1/%72eport",
        "/V1/Report",
    ] {
        let r = http.get(format!("{url}{variant}")).send().await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 402,
            "{variant} answered {}",
            r.status()
        );
    }
    assert_eq!(
        REPORTS_SERVED.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the upstream did paid work for free"
    );
    // A client-sent X-AGIRAILS-REQUESTER never reaches the upstream as if it named who paid.
    let spoofed = http
        .get(format!("{url}/whoami"))
        .header(
            "X-AGIRAILS-REQUESTER",
            "0x000000000000000000000000000000000000dEaD",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 200);
    assert_eq!(spoofed.text().await.unwrap(), "nobody");
    let body: serde_json::Value = unlisted.json().await.unwrap();
    assert_eq!(body["code"], "unknown_route");

    // Unpaid: 402 with what to pay.
    let refused = http
        .post(format!("{url}/v1/echo"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let quote = refused.json::<ErrorBody>().await.unwrap().payment.unwrap();
    assert_eq!(quote.amount, "100000");
    assert_eq!(quote.service_hash, service_hash("echo"));

    // Paid: the upstream serves, the gateway signs the proof.
    let rpc = dev.str("rpc_url");
    let kernel_address: Address = dev.str("kernel").parse().unwrap();
    let signer = Signer::from_private_key(&dev.key(2)).unwrap();
    let consumer = Kernel::connect(
        &rpc,
        kernel_address,
        Some(signer.clone()),
        ClientConfig::default(),
    )
    .await
    .unwrap();
    let (tx_id, auth) = pay_and_sign(&consumer, &signer, &quote, "/v1/echo", b"hi").await;
    let served = http
        .post(format!("{url}/v1/echo"))
        .header(TX_ID_HEADER, tx_id.to_string())
        .header(AUTHORIZATION_HEADER, auth.to_string())
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let proof = served.headers()[DELIVERY_PROOF_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    let announced: B256 = served.headers()[PROOF_HASH_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = served.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body).to_lowercase(),
        format!("echo: hi (paid by {})", signer.address()).to_lowercase()
    );
    let signed = SignedDeliveryProof::from_header_value(&proof).unwrap();
    let hash = verify_delivery(
        &signed,
        &body,
        tx_id,
        quote.terms.provider,
        &consumer.domain(),
        Some(announced),
    )
    .unwrap();

    // The gateway's outbox delivers on chain with that proof hash.
    actp_e2e::eventually("the delivery on chain", || async {
        consumer.get(tx_id).await.unwrap().state == State::Delivered
    })
    .await;
    assert_eq!(
        consumer.recorded_proof_hash(tx_id, 0).await.unwrap(),
        Some(hash)
    );

    // An upstream that never answers: 504 after --upstream-timeout, nothing delivered, and the same
    // transaction can pay for a retry.
    let (slow_tx, auth) = pay_and_sign(&consumer, &signer, &quote, "/v1/slow", b"x").await;
    let timed_out = http
        .post(format!("{url}/v1/slow"))
        .header(TX_ID_HEADER, slow_tx.to_string())
        .header(AUTHORIZATION_HEADER, auth.to_string())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(timed_out.status(), 504);
    assert_eq!(consumer.get(slow_tx).await.unwrap().state, State::Committed);
    assert_eq!(terminate(&mut gateway, Duration::from_secs(10)), Some(0));
}

#[test]
fn gateway_refuses_bad_routes_and_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let mut cmd = dev.as_account(1);
    cmd.args([
        "gateway",
        "--upstream",
        "http://127.0.0.1:1",
        "--route",
        "POST /v1=abc",
    ]);
    let bad = actp_e2e::process::run(cmd).code(2);
    assert!(bad.stderr.contains("METHOD PATH=PRICE"), "{bad:?}");
    let mut cmd = dev.as_account(1);
    cmd.args([
        "gateway",
        "--upstream",
        "ftp://x",
        "--route",
        "POST /v1=0.10",
    ]);
    let bad = actp_e2e::process::run(cmd).code(2);
    assert!(bad.stderr.contains("http://"), "{bad:?}");
    let mut cmd = dev.as_account(1);
    cmd.args(["gateway", "--upstream", "http://127.0.0.1:1"])
        .args(["--route", "POST /v1=0.10", "--route", "POST /v1=0.20"]);
    let bad = actp_e2e::process::run(cmd).code(2);
    assert!(bad.stderr.contains("twice"), "{bad:?}");
    // A durability is the embedded store's: with PostgreSQL the server decides, and saying otherwise is refused.
    let mut cmd = dev.as_account(1);
    cmd.env("ACTP_STORE", "postgres://actp@127.0.0.1:1/none")
        .args(["gateway", "--upstream", "http://127.0.0.1:1"])
        .args(["--route", "POST /v1=0.10", "--durability", "buffered"]);
    let bad = actp_e2e::process::run(cmd).code(2);
    assert!(bad.stderr.contains("synchronous_commit"), "{bad:?}");
    // A PostgreSQL server that cannot be reached is a network failure.
    let mut cmd = dev.as_account(1);
    cmd.env("ACTP_STORE", "postgres://actp@127.0.0.1:1/none")
        .args(["gateway", "--upstream", "http://127.0.0.1:1"])
        .args(["--route", "POST /v1=0.10"]);
    let unreachable = actp_e2e::process::run(cmd).code(4);
    assert!(!unreachable.stderr.is_empty(), "{unreachable:?}");
}
