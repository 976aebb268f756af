//! What a session saves an agent that calls one provider many times in a row. On a devnet that mines a block
//! every 2 seconds (as Base does), one agent makes 100 sequential paid calls through its `PayingClient`,
//! twice, side by side in one run: with one escrow per call (each call waits for its `createAndFund` to be
//! mined) and from one session (one `openSession`, then vouchers). The allowance is approved up front for both,
//! so each run measures its own path only. Reports the wall time of each and their ratio.
//!
//! `make bench` runs it; `ACTP_BENCH_CALLS` (default 100) and `ACTP_BENCH_BLOCK_TIME` (seconds, default 2)
//! change the setup. The figures go to stdout and `target/bench/sequential.json`.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::{Duration, Instant};

use actp_axum::{Paywall, Route};
use actp_client::{Devnet, DevnetOptions};
use actp_core::{Amount, U256};
use actp_pay::{Ledger, PayConfig, PayingClient, SpendPolicy};
use actp_store::StoreUrl;
use axum::{Router, routing::post};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `calls` sequential calls to `url`, from a session or with an escrow each; the wall time.
async fn run(client: &PayingClient, url: &str, calls: usize, session: bool) -> Duration {
    let start = Instant::now();
    for i in 0..calls {
        let response = client
            .post(url)
            .body(format!("call {i}"))
            .session(session)
            .send()
            .await
            .unwrap();
        assert!(response.status.is_success());
        assert!(response.payment.is_some());
        assert_eq!(response.receipt.is_some(), session);
    }
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let calls: usize = env("ACTP_BENCH_CALLS", 100);
    let block_time: f64 = env("ACTP_BENCH_BLOCK_TIME", 2.0);
    let devnet = Devnet::start_with(DevnetOptions {
        block_time: Some(block_time),
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The kernel's smallest escrow.
    let price = Amount::from_base_units(50_000);
    let paywall = Paywall::builder(devnet.kernel(1).await.unwrap())
        .data_dir(dir.path().join("provider"))
        .route(Route::post("/v1/answer").flat(price).service("answer"))
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/v1/answer", post(|body: String| async move { body }))
        .layer(paywall.layer());
    let url = format!("{}/v1/answer", actp_e2e::serve(app).await);

    let consumer = devnet.kernel(2).await.unwrap();
    consumer.approve(U256::MAX).await.unwrap();
    let ledger = Ledger::open(&StoreUrl::Sled(dir.path().join("pay")))
        .await
        .unwrap();
    let agent = consumer.signer_address().unwrap();
    ledger
        .set_policy(
            agent,
            &SpendPolicy {
                session_calls: Some(u32::try_from(calls).unwrap_or(u32::MAX)),
                ..SpendPolicy::default()
            },
        )
        .await
        .unwrap();
    let client = PayingClient::with_config(consumer, ledger, PayConfig::default())
        .await
        .unwrap();

    println!("{calls} sequential paid calls, a block every {block_time} s");
    let per_call = run(&client, &url, calls, false).await;
    println!("  one escrow per call: {:.1} s", per_call.as_secs_f64());
    let session = run(&client, &url, calls, true).await;
    println!("  one session:         {:.2} s", session.as_secs_f64());
    let ratio = per_call.as_secs_f64() / session.as_secs_f64();
    println!("escrow-per-call / session wall time: {ratio:.0}x");

    let json = serde_json::json!({
        "calls": calls,
        "block_time_s": block_time,
        "escrow_per_call_s": per_call.as_secs_f64(),
        "session_s": session.as_secs_f64(),
        "ratio": ratio,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("sequential.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
