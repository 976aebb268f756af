//! Settling a backlog: 1,000 due transactions settled by the daemon with `settleBatch` (groups of 100, four
//! transactions in flight) versus one `transitionState(SETTLED)` transaction per settlement (four in flight),
//! side by side on one devnet in one run. Reports wall time and total gas of each and the ratios.
//!
//! `make bench` runs it; `ACTP_BENCH_SETTLEMENTS` (default 1000) and `ACTP_BENCH_BATCH` (default 100) change
//! the setup. The figures go to stdout and `target/bench/settle.json`.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::Instant;

use actp_client::{Devnet, DevnetOptions};
use actp_core::{Amount, B256, U256, ids::service_hash, model::CreateParams};
use actp_settler::{Settler, SettlerConfig};
use futures::{StreamExt, stream};

const IN_FLIGHT: usize = 4;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn delivered(devnet: &Devnet, n: usize) -> Vec<B256> {
    let consumer = devnet.kernel(2).await.unwrap();
    let provider = devnet.kernel(1).await.unwrap();
    let price = Amount::from_base_units(100_000).to_u256();
    let now = devnet.now().await.unwrap();
    let terms = CreateParams::new(
        devnet.signer(1).address(),
        price,
        now + 86_400,
        3_600,
        service_hash("bench"),
    );
    consumer
        .ensure_allowance(price * U256::from(n))
        .await
        .unwrap();
    let ids: Vec<B256> = stream::iter(0..n)
        .map(|_| consumer.create_and_fund(&terms))
        .buffer_unordered(64)
        .map(Result::unwrap)
        .collect()
        .await;
    for step in 0..2 {
        stream::iter(&ids)
            .map(|id| {
                let provider = provider.clone();
                async move {
                    if step == 0 {
                        provider.start(*id).await
                    } else {
                        provider.deliver(*id, 0, Some(B256::repeat_byte(1))).await
                    }
                }
            })
            .buffer_unordered(64)
            .for_each(|r| async move {
                r.unwrap();
            })
            .await;
    }
    ids
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let n = env("ACTP_BENCH_SETTLEMENTS", 1_000);
    let batch = env("ACTP_BENCH_BATCH", 100);
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 4,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let d = devnet.deployment();
    let operator = devnet.kernel(3).await.unwrap();

    // The daemon's way: settleBatch in groups, `IN_FLIGHT` transactions at once.
    println!("setting up {n} delivered transactions for the daemon…");
    delivered(&devnet, n).await;
    devnet.advance_time(3_601).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settler = Settler::open(
        operator.clone(),
        SettlerConfig {
            store: actp_settler::StoreUrl::Sled(dir.path().to_path_buf()),
            from_block: d.block,
            confirmations: 0,
            batch_size: batch,
            concurrency: IN_FLIGHT,
            ..SettlerConfig::default()
        },
    )
    .await
    .unwrap();
    // The pass includes reading the backlog's events from the chain, as a daemon catching up would.
    let started = Instant::now();
    let report = settler.run_once(3).await.unwrap();
    let batch_secs = started.elapsed().as_secs_f64();
    assert_eq!(report.settled as usize, n, "the daemon settled {report:?}");
    let batch_gas = report.gas;

    // One transitionState(SETTLED) per settlement, the same number in flight.
    println!("setting up {n} delivered transactions to settle one by one…");
    let ids = delivered(&devnet, n).await;
    devnet.advance_time(3_601).await.unwrap();
    let started = Instant::now();
    let gas: u64 = stream::iter(&ids)
        .map(|id| {
            let operator = operator.clone();
            async move { operator.settle(*id).await.unwrap().gas_used }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0u64, |acc, g| async move { acc + g })
        .await;
    let single_secs = started.elapsed().as_secs_f64();

    let per_batch = batch_gas as f64 / n as f64;
    let per_single = gas as f64 / n as f64;
    println!();
    println!(
        "| settling {n} due transactions | daemon: settleBatch, {batch} per tx | one tx each | ratio |"
    );
    println!("|---|---|---|---|");
    println!(
        "| wall time | {batch_secs:.2} s | {single_secs:.2} s | {:.3} |",
        batch_secs / single_secs
    );
    println!(
        "| gas per settlement | {per_batch:.0} | {per_single:.0} | {:.3} |",
        per_batch / per_single
    );
    println!(
        "| total gas | {batch_gas} | {gas} | {:.3} |",
        batch_gas as f64 / gas as f64
    );
    println!("| transactions sent | {} | {n} | |", report.batches);
    let json = serde_json::json!({
        "settlements": n,
        "batch_size": batch,
        "in_flight": IN_FLIGHT,
        "batch": { "settled": n, "transactions": report.batches, "seconds": batch_secs, "gas": batch_gas, "gas_per_settlement": per_batch },
        "single": { "settled": n, "seconds": single_secs, "gas": gas, "gas_per_settlement": per_single },
        "gas_ratio": per_batch / per_single,
        "time_ratio": batch_secs / single_secs,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("settle.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
}
