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

use actp_client::{ClientConfig, Kernel, OpenSession, Signer};
use actp_core::{
    Address, Amount, B256, State, U256,
    http::{PricingDocument, RECEIPT_HEADER, TX_ID_HEADER, VOUCHER_HEADER},
    meter::{Meter, Usage},
    proof::content_hash,
    session::{ReceiptChain, SessionVoucher, SignedReceipt, VoucherHeader},
};
use actp_e2e::process::{DevnetProcess, Run, run, start_gateway, terminate};
use axum::{Json, Router, http::HeaderMap, response::IntoResponse, routing::post};

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

/// The `actp` binary as dev account `account`.
fn cli(dev: &DevnetProcess, account: usize, args: &[&str]) -> Run {
    let mut cmd = dev.as_account(account);
    cmd.args(args);
    run(cmd)
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

    // `actp session show` reads the session; `actp session close` asks the gateway to close it, which it
    // does once with the receipts' total and chain head.
    let shown = cli(&dev, 2, &["--json", "session", "show", &id.to_string()])
        .ok()
        .json();
    assert_eq!(
        (shown["state"].as_str(), shown["grace"].as_u64()),
        (Some("COMMITTED"), Some(offer.grace))
    );
    let _ = shown;
    cli(
        &dev,
        2,
        &["--json", "session", "close", &id.to_string(), "--url", &url],
    )
    .ok();
    actp_e2e::eventually("the session closed on chain", || async {
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
    let listed = cli(&dev, 2, &["--json", "session", "list"]).ok().json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["claimed_base_units"], chain.charged().to_string());
    assert_eq!(listed[0]["state"], "SETTLED");
    terminate(&mut gateway, std::time::Duration::from_secs(10));
}

/// `actp call --session` as a process: the first call opens a session sized by the policy, later calls (each
/// a new process) reuse it from the ledger; `actp usage` shows each route's real cost; `actp session close`
/// finds the provider in the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actp_call_pays_from_one_session_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let upstream = upstream().await;
    let chat_route = format!("POST /v1/chat/completions=tokens:{PRICES}@chat");
    let (mut gateway, url) =
        start_gateway(&dev, 1, &["--upstream", &upstream, "--route", &chat_route]);
    let set = cli(
        &dev,
        2,
        &[
            "--json",
            "budget",
            "set",
            "--session-calls",
            "30",
            "--max-session-deposit",
            "5",
        ],
    )
    .ok()
    .json();
    assert_eq!(set["policy"]["session_calls"], 30);

    let meter: Meter = PRICES.parse().unwrap();
    let mut total = U256::ZERO;
    let mut session = None;
    for (i, words) in ["say hello", "three more words", "one"].iter().enumerate() {
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": words}]})
                .to_string();
        let chat = format!("{url}/v1/chat/completions");
        let paid = cli(
            &dev,
            2,
            &[
                "--json",
                "call",
                "--session",
                &chat,
                "-d",
                &body,
                "-H",
                "content-type: application/json",
            ],
        )
        .ok()
        .json();
        assert_eq!(paid["status"], 200, "{paid}");
        let tokens = words.split_whitespace().count() as u64;
        let charge = meter
            .charge(&Usage::new().with("in", tokens).with("out", 2 * tokens))
            .to_u256();
        total += charge;
        assert_eq!(paid["receipt"]["seq"], i as u64);
        assert_eq!(paid["receipt"]["charge"], charge.to_string());
        assert_eq!(paid["receipt"]["charged"], total.to_string());
        let tx = paid["payment"]["tx_id"].as_str().unwrap().to_owned();
        assert_eq!(
            session.get_or_insert_with(|| tx.clone()),
            &tx,
            "one session for every call"
        );
        // 30 calls at the route's maximum (0.05)
        assert_eq!(paid["payment"]["amount"], 1_500_000);
    }
    let id = session.unwrap();

    let usage = cli(&dev, 2, &["--json", "usage", "--by", "route"])
        .ok()
        .json();
    let row = &usage["rows"][0];
    assert_eq!(row["key"], "POST /v1/chat/completions");
    assert_eq!(row["calls"], 3);
    assert_eq!(row["sessions"], 1);
    assert_eq!(row["spent"], total.to::<u64>());
    assert_eq!(row["reserved"], 1_500_000 - total.to::<u64>());
    let human = cli(&dev, 2, &["usage", "--by", "route"]).ok();
    assert!(human.stdout.contains("sessions"), "{human:?}");

    // No --url: the ledger knows where the session was opened.
    let closing = cli(&dev, 2, &["session", "close", &id]).ok();
    assert_eq!(
        closing.stdout.trim(),
        format!("{id} closing"),
        "{closing:?}"
    );
    assert!(
        closing.stderr.contains("the provider is closing"),
        "{closing:?}"
    );
    let consumer = Kernel::connect(
        &dev.str("rpc_url"),
        dev.str("kernel").parse::<Address>().unwrap(),
        None,
        ClientConfig::default(),
    )
    .await
    .unwrap();
    let id: B256 = id.parse().unwrap();
    actp_e2e::eventually("the session closed on chain", || async {
        consumer.get(id).await.unwrap().state == State::Delivered
    })
    .await;
    assert_eq!(
        consumer.session_of(id).await.unwrap().unwrap().claimed,
        total
    );
    terminate(&mut gateway, std::time::Duration::from_secs(10));
}

/// `actp session open | top-up | end` and the reclaim after the grace period, with no provider running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_opens_tops_up_and_ends_a_session_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let provider = dev.address(1);
    let opened = cli(
        &dev,
        2,
        &[
            "--json",
            "session",
            "open",
            "--provider",
            &provider,
            "--deposit",
            "2.00",
            "--grace",
            "10m",
        ],
    )
    .ok()
    .json();
    let id = opened["tx_id"].as_str().unwrap().to_owned();
    assert_eq!(opened["amount_base_units"], "2000000");
    assert_eq!(opened["grace"], 600);
    // Each command's human output, beside its JSON.
    let listed = cli(&dev, 2, &["session", "list"]).ok();
    assert!(
        listed.stdout.contains(&id) && listed.stdout.contains("COMMITTED"),
        "{listed:?}"
    );
    let listed = cli(&dev, 2, &["--json", "session", "list"]).ok().json();
    assert_eq!(listed[0]["tx_id"], id.as_str());
    let topped = cli(&dev, 2, &["session", "top-up", &id, "0.25"]).ok();
    assert_eq!(
        topped.stdout.trim(),
        format!("{id} COMMITTED"),
        "{topped:?}"
    );
    assert!(topped.stderr.contains("is now COMMITTED"), "{topped:?}");
    cli(&dev, 2, &["--json", "session", "top-up", &id, "0.25"]).ok();
    let shown = cli(&dev, 2, &["--json", "session", "show", &id])
        .ok()
        .json();
    assert_eq!(shown["amount_base_units"], "2500000");
    let shown = cli(&dev, 2, &["session", "show", &id]).ok();
    for line in [
        &format!("tx          {id}"),
        "amount      2.50",
        "grace       600s",
        "end         not asked",
    ] {
        assert!(shown.stdout.contains(line), "{line}: {shown:?}");
    }
    // Not a session: a clear usage error.
    cli(
        &dev,
        2,
        &["session", "show", &format!("0x{}", "11".repeat(32))],
    )
    .code(6);
    cli(&dev, 2, &["--json", "session", "end", &id]).ok();
    let ended = cli(&dev, 2, &["--json", "session", "show", &id])
        .ok()
        .json();
    let close_by = ended["close_by"].as_u64().unwrap();
    assert!(close_by > 0);
    let shown = cli(&dev, 2, &["session", "show", &id]).ok();
    assert!(
        shown.stdout.contains(&format!(
            "end         asked; the provider may close until {close_by}"
        )),
        "{shown:?}"
    );
    // A second session, opened and ended in human output.
    let second = cli(
        &dev,
        2,
        &[
            "session",
            "open",
            "--provider",
            &provider,
            "--deposit",
            "1.00",
        ],
    )
    .ok();
    let second = second.stdout.trim().to_owned();
    assert!(second.starts_with("0x") && second.len() == 66, "{second}");
    let ended = cli(&dev, 2, &["session", "end", &second]).ok();
    assert_eq!(
        ended.stdout.trim(),
        format!("{second} COMMITTED"),
        "{ended:?}"
    );
    assert!(
        ended.stderr.contains("the provider may close until"),
        "{ended:?}"
    );
    // Before the grace period ends the kernel refuses the reclaim (exit 3, the reason printed).
    let early = cli(&dev, 2, &["--json", "tx", "cancel", &id]).code(3);
    assert_eq!(
        early.error_json()["error"]["kernel_error"],
        "GracePeriodNotOver"
    );
    let rpc = dev.str("rpc_url");
    let client = reqwest::Client::new();
    for (method, params) in [
        ("evm_increaseTime", serde_json::json!([601])),
        ("evm_mine", serde_json::json!([])),
    ] {
        client
            .post(&rpc)
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            )
            .send()
            .await
            .unwrap();
    }
    let before = cli(&dev, 2, &["--json", "balance"]).ok().json();
    cli(&dev, 2, &["--json", "tx", "cancel", &id]).ok();
    let after = cli(&dev, 2, &["--json", "balance"]).ok().json();
    let units = |v: &serde_json::Value| {
        v["balance_base_units"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap()
    };
    assert_eq!(
        units(&after) - units(&before),
        2_500_000,
        "the whole deposit, top-up included"
    );
}
