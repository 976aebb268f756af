//! TLS on loopback with a real handshake: a throwaway CA and server certificate made by the test, a
//! TLS-terminating proxy in front of anvil and another in front of a provider (the gateway). With the CA
//! given (`--ca-cert`), `actp deploy`, `tx pay`, `settle --once` and `call https://…` work through them;
//! without it each fails at once with exit 4 and a message naming `--ca-cert`, after a single connection
//! (a certificate that does not verify is never retried as if the network were down).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use actp_e2e::process::{DevnetProcess, Run, actp, run, start_gateway, terminate};
use actp_e2e::{TestCa, TlsProxy};
use alloy::providers::{Provider, ProviderBuilder};
use axum::{Router, routing::post};

/// A command on `data_dir` signing with `key`, RPC `rpc`.
fn as_key(data_dir: &Path, rpc: &str, key: &str) -> Command {
    let mut cmd = actp(data_dir);
    cmd.env("ACTP_RPC_URL", rpc).env("ACTP_PRIVATE_KEY", key);
    cmd
}

#[track_caller]
fn assert_untrusted(out: &Run) {
    let error = out.error_json();
    let message = error["error"]["message"].as_str().unwrap();
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        message.contains("not trusted") && message.contains("--ca-cert"),
        "{out:?}"
    );
}

/// The loopback address an `http://localhost:port` or `http://127.0.0.1:port` URL points at.
fn addr_of(url: &str) -> SocketAddr {
    let port = reqwest::Url::parse(url).unwrap().port().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn upstream() -> String {
    let app = Router::new().route("/v1/echo", post(|body: String| async move { body }));
    actp_e2e::serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_tls_with_the_ca_and_fails_fast_without() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let ca = TestCa::new().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca(certs.path()).unwrap();
    let ca_arg = ca_file.to_str().unwrap();
    let rpc = TlsProxy::start(&ca, addr_of(&dev.str("rpc_url")))
        .await
        .unwrap();
    let rpc_url = rpc.url();
    // A data directory of its own: no devnet config, so everything comes from the RPC and what deploy
    // records.
    let data = tempfile::tempdir().unwrap();
    let (admin, provider, consumer, bot) = (dev.key(0), dev.key(1), dev.key(2), dev.key(3));

    // Without the CA: refused at once, one connection, exit 4, and the message says what to do.
    let before = rpc.connections();
    let mut cmd = as_key(data.path(), &rpc_url, &admin);
    cmd.args(["--json", "deploy"]);
    assert_untrusted(&run(cmd));
    assert_eq!(
        rpc.connections() - before,
        1,
        "retried an untrusted certificate"
    );

    // With it: deploy (MockUSDC on this chain), recorded for the commands that follow.
    let mut cmd = as_key(data.path(), &rpc_url, &admin);
    cmd.args(["--json", "--ca-cert", ca_arg, "deploy"]);
    let deployed = run(cmd).ok().json();
    assert_eq!(actp_core::checksum::find_unchecksummed(&deployed), None);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("deployments/31337.json")).unwrap())
            .unwrap();
    assert_eq!(record, deployed, "the deployment is recorded as printed");

    // tx pay through TLS, with the kernel found in the record.
    let mut cmd = as_key(data.path(), &rpc_url, &consumer);
    cmd.args(["--ca-cert", ca_arg, "mint", "5"]);
    run(cmd).ok();
    let mut cmd = as_key(data.path(), &rpc_url, &consumer);
    cmd.args(["--json", "--ca-cert", ca_arg, "tx", "pay"])
        .args(["--provider", &dev.address(1), "--amount", "0.10"])
        .args(["--deadline", "+1d", "--window", "1h", "--service", "tls"]);
    let paid = run(cmd).ok().json();
    assert_eq!(paid["state"], "COMMITTED");
    let id = paid["tx_id"].as_str().unwrap().to_owned();
    for step in [["tx", "start"], ["tx", "deliver"]] {
        let mut cmd = as_key(data.path(), &rpc_url, &provider);
        cmd.args(["--ca-cert", ca_arg]).args(step).arg(&id);
        run(cmd).ok();
    }
    let mut cmd = as_key(data.path(), &rpc_url, &consumer);
    cmd.args(["--json", "tx", "show", &id]);
    assert_untrusted(&run(cmd));

    // settle --once through TLS once the window is over; without the CA it stops at once.
    let node = ProviderBuilder::new()
        .connect_http(dev.str("rpc_url").parse().unwrap())
        .erased();
    let _: serde_json::Value = node
        .raw_request("evm_increaseTime".into(), (3_601u64,))
        .await
        .unwrap();
    let _: serde_json::Value = node.raw_request("evm_mine".into(), ()).await.unwrap();
    let settle_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(settle_dir.path().join("deployments")).unwrap();
    std::fs::copy(
        data.path().join("deployments/31337.json"),
        settle_dir.path().join("deployments/31337.json"),
    )
    .unwrap();
    let before = rpc.connections();
    let mut cmd = as_key(settle_dir.path(), &rpc_url, &bot);
    cmd.args(["--json", "settle", "--once"]);
    assert_untrusted(&run(cmd));
    assert_eq!(
        rpc.connections() - before,
        1,
        "retried an untrusted certificate"
    );
    let mut cmd = as_key(settle_dir.path(), &rpc_url, &bot);
    cmd.args(["--json", "--ca-cert", ca_arg, "settle", "--once"]);
    let report = run(cmd).ok().json();
    assert_eq!(report["settled"], 1, "{report}");

    // call https://: a provider (the gateway) behind TLS, paid on the devnet's kernel.
    let upstream = upstream().await;
    let (mut gateway, gateway_url) = start_gateway(
        &dev,
        1,
        &[
            "--upstream",
            &upstream,
            "--route",
            "POST /v1/echo=0.10@echo",
        ],
    );
    let provider_tls = TlsProxy::start(&ca, addr_of(&gateway_url)).await.unwrap();
    // With the CA, the RPC is behind TLS too; without it, the RPC is plain so that only the provider's
    // certificate is in question.
    let call = |with_ca: bool| {
        let mut cmd = if with_ca {
            let mut cmd = as_key(data.path(), &rpc_url, &consumer);
            cmd.args(["--ca-cert", ca_arg]);
            cmd
        } else {
            as_key(data.path(), &dev.str("rpc_url"), &consumer)
        };
        cmd.env("ACTP_KERNEL", dev.str("kernel"));
        cmd.args(["--json", "call"])
            .arg(format!("{}/v1/echo", provider_tls.url()))
            .args(["-d", "over tls"]);
        run(cmd)
    };
    let served = call(true).ok().json();
    assert_eq!(served["status"], 200, "{served}");
    assert_eq!(served["body"], "over tls");
    assert_eq!(served["payment"]["state"], "served", "{served}");
    assert_eq!(actp_core::checksum::find_unchecksummed(&served), None);
    let untrusted = call(false);
    assert_untrusted(&untrusted);
    assert!(provider_tls.failed_handshakes() >= 1);
    assert_eq!(terminate(&mut gateway, Duration::from_secs(20)), Some(0));
}
