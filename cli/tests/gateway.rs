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

mod support;

use std::{process::Stdio, time::Duration};

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
use axum::{
    Router,
    http::HeaderMap,
    routing::{get, post},
};
use support::{DevnetProcess, terminate};

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
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sells_an_upstream_api() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let upstream = upstream().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut gateway = dev.as_account(1);
    gateway
        .args(["gateway", "--upstream", &upstream, "--listen", &listen])
        .args([
            "--route",
            "POST /v1/echo=0.10@echo",
            "--route",
            "GET /health=free",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut gateway = gateway.spawn().unwrap();
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();

    let mut pricing = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{url}/pricing")).send().await {
            pricing = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pricing = pricing.expect("the gateway never answered");
    assert_eq!(
        pricing["provider"].as_str().unwrap().to_lowercase(),
        dev.address(1).to_lowercase()
    );
    assert_eq!(pricing["routes"].as_array().unwrap().len(), 2, "{pricing}");

    // Free route: straight to the upstream. Unlisted: 404, never served for free.
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let unlisted = http.get(format!("{url}/v1/secret")).send().await.unwrap();
    assert_eq!(unlisted.status(), 404);
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
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let request = RequestAuthorization::new(tx_id, "POST", "/v1/echo", content_hash(b"hi"), exp);
    let signature = signer
        .sign_typed(&request, &consumer.domain())
        .await
        .unwrap();
    let auth = AuthorizationHeader::from_signature(&request, signature);
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
    let mut state = State::Committed;
    for _ in 0..100 {
        state = consumer.get(tx_id).await.unwrap().state;
        if state == State::Delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, State::Delivered);
    assert_eq!(
        consumer.recorded_proof_hash(tx_id, 0).await.unwrap(),
        Some(hash)
    );
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
    let bad = support::run(cmd).code(2);
    assert!(bad.stderr.contains("METHOD PATH=PRICE"), "{bad:?}");
    let mut cmd = dev.as_account(1);
    cmd.args([
        "gateway",
        "--upstream",
        "ftp://x",
        "--route",
        "POST /v1=0.10",
    ]);
    let bad = support::run(cmd).code(2);
    assert!(bad.stderr.contains("http://"), "{bad:?}");
    let mut cmd = dev.as_account(1);
    cmd.args(["gateway", "--upstream", "http://127.0.0.1:1"])
        .args(["--route", "POST /v1=0.10", "--route", "POST /v1=0.20"]);
    let bad = support::run(cmd).code(2);
    assert!(bad.stderr.contains("twice"), "{bad:?}");
}
