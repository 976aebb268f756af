//! `actp gateway` selling an OpenAI-compatible API by the token, paid from a session: the fake upstream
//! (written here) reports `usage` in its JSON answers as vLLM, llama.cpp server and Ollama do; each call is
//! charged its tokens at the route's prices, the receipts chain and add up, the session is closed on request
//! with the receipts' total, and settlement refunds the unspent deposit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod support;

use actp_client::{ClientConfig, Kernel, OpenSession, Signer};
use actp_core::{
    Address, Amount, State, U256,
    http::{PricingDocument, RECEIPT_HEADER, TX_ID_HEADER, VOUCHER_HEADER},
    meter::{Meter, Usage},
    proof::content_hash,
    session::{ReceiptChain, SessionVoucher, SignedReceipt, VoucherHeader},
};
use axum::{Json, Router, http::HeaderMap, response::IntoResponse, routing::post};
use support::{DevnetProcess, start_gateway, terminate, wait_until};

const PRICES: &str = "in=0.000001,out=0.000004,max=0.05";

/// An OpenAI-compatible chat endpoint: the prompt's words are the input tokens, and it answers with twice
/// as many output tokens. A render endpoint reports its usage in `X-AGIRAILS-USAGE` instead.
async fn upstream() -> String {
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|Json(request): Json<serde_json::Value>| async move {
                let prompt = request["messages"][0]["content"].as_str().unwrap_or("").to_owned();
                let prompt_tokens = prompt.split_whitespace().count() as u64;
                let completion_tokens = 2 * prompt_tokens;
                Json(serde_json::json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": prompt.to_uppercase()}}],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }))
            }),
        )
        .route(
            "/v1/render",
            post(|_headers: HeaderMap, body: String| async move {
                ([("x-agirails-usage", body.len().to_string())], "rendered").into_response()
            }),
        );
    actp_e2e::serve(app).await
}

fn wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sells_tokens_from_a_session_and_the_unspent_deposit_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let upstream = upstream().await;
    let chat_route = format!("POST /v1/chat/completions=tokens:{PRICES}@chat");
    let (mut gateway, url) = start_gateway(
        &dev,
        1,
        &[
            "--upstream",
            &upstream,
            "--route",
            &chat_route,
            "--route",
            "POST /v1/render=usage:unit=0.0001,max=0.01@render",
        ],
    );
    let http = reqwest::Client::new();
    let pricing: PricingDocument = http
        .get(format!("{url}/pricing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer = pricing.terms.session.clone().expect("sessions are offered");
    let chat = pricing
        .routes
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert_eq!(chat.pricing, "metered");
    assert_eq!(chat.units.as_ref().unwrap()["out"], "0.000004");

    let signer = Signer::from_private_key(&dev.key(2)).unwrap();
    let consumer = Kernel::connect(
        &dev.str("rpc_url"),
        dev.str("kernel").parse::<Address>().unwrap(),
        Some(signer.clone()),
        ClientConfig::default(),
    )
    .await
    .unwrap();
    let provider = pricing.terms.provider;
    let deposit = Amount::from_tokens(1).to_u256();
    let now = consumer.chain_time().await.unwrap();
    let id = consumer
        .pay_session(&OpenSession {
            provider,
            deposit,
            deadline: now + 86_400,
            dispute_window: 3_600,
            service_hash: offer.service_hash,
            grace: offer.grace,
        })
        .await
        .unwrap();

    let meter: Meter = PRICES.parse().unwrap();
    let mut chain = ReceiptChain::new(id, provider, consumer.domain());
    let mut expected_total = U256::ZERO;
    for (i, words) in ["say hello", "a longer prompt of six words", "one"]
        .iter()
        .enumerate()
    {
        let (path, body) = if i == 1 {
            ("/v1/render", "render this".to_owned())
        } else {
            (
                "/v1/chat/completions",
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": words}]})
                    .to_string(),
            )
        };
        let max: u64 = if i == 1 { 10_000 } else { 50_000 };
        let cumulative = chain.charged() + U256::from(max);
        let voucher = SessionVoucher::for_request(
            id,
            cumulative,
            "POST",
            path,
            content_hash(body.as_bytes()),
            wall_clock() + 120,
        );
        let signature = signer
            .sign_hash(&voucher.signing_hash(&consumer.domain()))
            .await
            .unwrap();
        let response = http
            .post(format!("{url}{path}"))
            .header(TX_ID_HEADER, id.to_string())
            .header(
                VOUCHER_HEADER,
                VoucherHeader::from_signature(&voucher, signature).to_string(),
            )
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers().get("x-agirails-usage").is_none(),
            "the usage report stays inside"
        );
        let receipt =
            SignedReceipt::from_header(response.headers()[RECEIPT_HEADER].to_str().unwrap())
                .unwrap();
        let answer = response.bytes().await.unwrap();
        chain
            .accept(
                &receipt,
                cumulative,
                voucher.requestHash,
                content_hash(&answer),
            )
            .unwrap();
        let expected = if i == 1 {
            U256::from(body.len() as u64 * 100) // 0.0001 per unit, one unit per byte
        } else {
            let tokens = words.split_whitespace().count() as u64;
            meter
                .charge(&Usage::new().with("in", tokens).with("out", 2 * tokens))
                .to_u256()
        };
        assert_eq!(
            receipt.receipt.charge, expected,
            "{path}: charged by its usage"
        );
        expected_total += expected;
    }
    assert_eq!(chain.charged(), expected_total);

    // The consumer asks to close; the gateway closes once with the receipts' total and chain head.
    let voucher = SessionVoucher::for_request(
        id,
        chain.charged(),
        "POST",
        "/sessions/close",
        content_hash(b""),
        wall_clock() + 120,
    );
    let signature = signer
        .sign_hash(&voucher.signing_hash(&consumer.domain()))
        .await
        .unwrap();
    let asked = http
        .post(format!("{url}/sessions/close"))
        .header(TX_ID_HEADER, id.to_string())
        .header(
            VOUCHER_HEADER,
            VoucherHeader::from_signature(&voucher, signature).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
    wait_until("the session closed on chain", || async {
        consumer.get(id).await.unwrap().state == State::Delivered
    })
    .await;
    assert_eq!(
        consumer.session_of(id).await.unwrap().unwrap().claimed,
        chain.charged()
    );
    assert_eq!(
        consumer.recorded_proof_hash(id, 0).await.unwrap(),
        Some(chain.head())
    );

    // The consumer settles at once: the provider gets the tokens' price less the fee, the rest comes back.
    let me = signer.address();
    let (before_consumer, before_provider) = (
        consumer.balance_of(me).await.unwrap(),
        consumer.balance_of(provider).await.unwrap(),
    );
    consumer.settle(id).await.unwrap();
    let fee = chain.charged() * U256::from(100) / U256::from(10_000);
    assert_eq!(
        consumer.balance_of(provider).await.unwrap() - before_provider,
        chain.charged() - fee
    );
    assert_eq!(
        consumer.balance_of(me).await.unwrap() - before_consumer,
        deposit - chain.charged(),
        "the unspent deposit is refunded"
    );
    terminate(&mut gateway, std::time::Duration::from_secs(10));
}
