//! 200 escrows created and funded (`createAndFund`) from one signer on a devnet: one at a time (each awaited
//! to its receipt before the next) versus pipelined (all in flight at once, nonces reserved by the client).
//! Run with `make bench`; prints both times and the ratio (target: pipelined at least 5 times faster), on
//! two devnets: anvil mining a block per transaction (instant inclusion: the worst case for pipelining, where
//! only RPC round trips overlap) and anvil mining every 100 ms (a real chain's cadence, scaled down).
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use actp_client::{Devnet, Kernel};
use actp_core::{Amount, ids::service_hash, model::CreateParams};

const N: u64 = 200;

fn terms(provider: actp_core::Address, now: u64, i: u64) -> CreateParams {
    CreateParams::new(
        provider,
        Amount::from_base_units(100_000 + u128::from(i)).to_u256(),
        now + 86_400,
        3_600,
        service_hash("bench"),
    )
}

async fn sequential(k: &Kernel, provider: actp_core::Address, now: u64) -> f64 {
    let t = Instant::now();
    for i in 0..N {
        k.create_and_fund(&terms(provider, now, i)).await.unwrap();
    }
    t.elapsed().as_secs_f64()
}

async fn pipelined(k: &Kernel, provider: actp_core::Address, now: u64) -> f64 {
    let t = Instant::now();
    let calls = (0..N).map(|i| {
        let k = k.clone();
        let terms = terms(provider, now, N + i);
        async move { k.create_and_fund(&terms).await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    t.elapsed().as_secs_f64()
}

async fn scenario(name: &str, block_time: Option<f64>) -> (f64, f64) {
    let devnet = Devnet::start_with(actp_client::DevnetOptions {
        block_time,
        ..Default::default()
    })
    .await
    .unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.signer(2).address();
    consumer
        .approve(Amount::from_tokens(10_000).to_u256())
        .await
        .unwrap();
    let now = devnet.now().await.unwrap();
    consumer
        .create_and_fund(&terms(provider, now, 10_000))
        .await
        .unwrap(); // warm-up
    let seq = sequential(&consumer, provider, now).await;
    let pipe = pipelined(&consumer, provider, now).await;
    println!("{N} escrows created and funded from one signer, devnet {name}:");
    println!(
        "  one at a time  {seq:7.2} s  ({:6.1} escrows/s)",
        N as f64 / seq
    );
    println!(
        "  pipelined      {pipe:7.2} s  ({:6.1} escrows/s)",
        N as f64 / pipe
    );
    println!("  ratio          {:7.2}x (target: at least 5x)", seq / pipe);
    (seq, pipe)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (a_seq, a_pipe) = scenario("mining a block per transaction", None).await;
    let (b_seq, b_pipe) = scenario("mining every 100 ms", Some(0.1)).await;
    let json = format!(
        "{{\"escrows\":{N},\"automine\":{{\"sequential_s\":{a_seq:.3},\"pipelined_s\":{a_pipe:.3},\"ratio\":{:.2}}},\"block_time_100ms\":{{\"sequential_s\":{b_seq:.3},\"pipelined_s\":{b_pipe:.3},\"ratio\":{:.2}}}}}\n",
        a_seq / a_pipe,
        b_seq / b_pipe
    );
    std::fs::create_dir_all("../../target/bench").ok();
    std::fs::write("../../target/bench/pipelining.json", json).ok();
}
