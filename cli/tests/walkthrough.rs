//! README's "On Base Sepolia" walk-through, command for command, against a local chain that answers as
//! Base Sepolia: chain id 84532, a 6-decimal token at Circle's USDC address, and a base fee like Base's (the
//! network's 1 gwei fee cap applies). The differences from the README: the RPC is the local node instead of
//! `https://sepolia.base.org`, the gateway listens on a port the OS picks, test USDC comes from the token's
//! open mint instead of Circle's faucet, the upstream is a small axum server instead of `python3 -m
//! http.server`, and the daemon runs `--once` after the chain's clock is moved past the dispute window.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::{path::Path, process::Command, time::Duration};

use actp_client::{ClientConfig, Kernel, Signer, bindings::MockUSDC};
use actp_e2e::process::{actp, run, spawn_announcing, terminate};
use alloy::{
    node_bindings::Anvil,
    providers::{Provider, ProviderBuilder},
};
use axum::{Router, routing::get};

const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const README_BODY: &str = "# a file served for 0.05 USDC\n";

/// `actp` with the walk-through's environment (the RPC pointed at the local chain).
fn actp_as(data: &Path, rpc: &str, role: &str, keys: &Path) -> Command {
    let mut cmd = actp(data);
    cmd.env("ACTP_NETWORK", "base-sepolia")
        .env("ACTP_DATA_DIR", data)
        .env("ACTP_RPC_URL", rpc)
        .env("ACTP_KEY_PASSWORD", "walkthrough")
        .arg("--keystore")
        .arg(keys.join(role));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_sepolia_walkthrough_runs_as_written() {
    let node = Anvil::at(actp_client::find_anvil().unwrap())
        .chain_id(84532)
        .args(["--block-base-fee-per-gas", "1000000"])
        .try_spawn()
        .unwrap();
    let rpc = node.endpoint();
    let provider = ProviderBuilder::new()
        .connect_http(rpc.parse().unwrap())
        .erased();

    // A 6-decimal token at the USDC address: MockUSDC's runtime code, copied there.
    let dev_keys: Vec<String> = node
        .keys()
        .iter()
        .map(|k| alloy::primitives::hex::encode_prefixed(k.to_bytes()))
        .collect();
    let deployer = Kernel::for_deployment(
        provider.clone(),
        Signer::from_private_key(&dev_keys[9]).unwrap(),
        ClientConfig::default(),
    )
    .await
    .unwrap();
    let mock = deployer
        .send(None, MockUSDC::BYTECODE.clone())
        .await
        .unwrap()
        .contract_address
        .unwrap();
    let code = provider.get_code_at(mock).await.unwrap();
    let _: serde_json::Value = provider
        .raw_request("anvil_setCode".into(), (USDC_BASE_SEPOLIA, code))
        .await
        .unwrap();

    // The four keystores of the walk-through, made from funded dev keys.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for (i, role) in ["admin", "provider", "consumer", "bot"]
        .into_iter()
        .enumerate()
    {
        let secret: [u8; 32] = alloy::primitives::hex::decode(&dev_keys[i])
            .unwrap()
            .try_into()
            .unwrap();
        alloy::signers::local::PrivateKeySigner::encrypt_keystore(
            &keys,
            &mut rand08::thread_rng(),
            secret,
            "walkthrough",
            Some(role),
        )
        .unwrap();
    }
    let data = dir.path().join("actp-sepolia");
    let cmd = |role: &str| actp_as(&data, &rpc, role, &keys);

    // 1. Deploy, with the network's USDC, recorded for the chain.
    let mut deploy = cmd("admin");
    deploy.args(["deploy", "--fee-bps", "100"]);
    let deployed: serde_json::Value = serde_json::from_str(&run(deploy).ok().stdout).unwrap();
    assert_eq!(deployed["chain_id"], 84532);
    assert_eq!(deployed["token"], USDC_BASE_SEPOLIA);
    assert!(data.join("deployments/84532.json").is_file());

    // The faucet's part: test USDC for the consumer.
    let mut faucet = cmd("consumer");
    faucet.args(["mint", "5"]);
    run(faucet).ok();

    // 2. The provider's gateway in front of an HTTP API.
    let upstream = Router::new().route("/README.md", get(|| async { README_BODY }));
    let upstream_url = actp_e2e::serve(upstream).await;
    let mut gateway = cmd("provider");
    gateway
        .args(["--json", "gateway", "--upstream", &upstream_url])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--route",
            "GET /README.md=0.05@readme",
        ])
        .stderr(std::process::Stdio::null());
    let (mut gateway, announced) = spawn_announcing(gateway);
    let gateway_url = announced["listen"].as_str().unwrap().to_owned();

    // 3. The consumer's budget, then a call that pays by itself.
    let mut budget = cmd("consumer");
    budget.args([
        "budget",
        "set",
        "--daily",
        "1",
        "--per-call",
        "0.10",
        "--max-escrow-ttl",
        "1h",
    ]);
    run(budget).ok();
    let mut call = cmd("consumer");
    call.args(["call", &format!("{gateway_url}/README.md")]);
    let called = run(call).ok();
    assert_eq!(called.stdout, README_BODY);

    // 4. After the dispute window (and the network's 3 confirmations), the daemon settles it.
    let kernel: alloy::primitives::Address = deployed["kernel"].as_str().unwrap().parse().unwrap();
    let watcher = Kernel::new(provider.clone(), kernel, None, ClientConfig::default())
        .await
        .unwrap();
    actp_e2e::eventually("the delivery on chain", || delivered(&watcher)).await;
    let _: serde_json::Value = provider
        .raw_request("evm_increaseTime".into(), (3_601u64,))
        .await
        .unwrap();
    for _ in 0..4 {
        let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    }
    let mut settle = cmd("bot");
    settle.args(["--json", "settle", "--once"]);
    let report = run(settle).ok().json();
    assert_eq!(report["settled"], 1, "{report}");
    assert_eq!(terminate(&mut gateway, Duration::from_secs(20)), Some(0));
}

/// Whether some transaction of the kernel is DELIVERED.
async fn delivered(kernel: &Kernel) -> bool {
    use actp_client::bindings::EscrowKernel::EscrowKernelEvents;
    let head = kernel.block_number().await.unwrap_or_default();
    let mut watcher = actp_client::Watcher::new(
        kernel.provider().clone(),
        kernel.address(),
        0,
        actp_client::WatcherConfig::default(),
    );
    while watcher.next_block() <= head {
        let Ok(polled) = watcher.poll().await else {
            return false;
        };
        if polled.events.iter().any(
            |e| matches!(&e.event, EscrowKernelEvents::StateTransitioned(t) if t.newState == 4),
        ) {
            return true;
        }
    }
    false
}
