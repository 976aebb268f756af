//! What several suites of this directory share (each suite is its own crate and uses part of it).
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use actp_client::Devnet;
use actp_pay::{Ledger, PayConfig, PayingClient, SpendPolicy};
use actp_store::StoreUrl;
use axum::{Router, routing::post};

/// A paying agent of dev account `account` with `policy`, its ledger on sled in a directory of its own (kept
/// as long as the returned directory lives). It does not wait before asking a provider to close a session.
pub(crate) async fn agent(
    devnet: &Devnet,
    account: usize,
    policy: SpendPolicy,
) -> (PayingClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&StoreUrl::Sled(dir.path().join("pay")))
        .await
        .unwrap();
    let kernel = devnet.kernel(account).await.unwrap();
    ledger
        .set_policy(kernel.signer_address().unwrap(), &policy)
        .await
        .unwrap();
    let config = PayConfig {
        session_close_wait: Duration::ZERO,
        ..PayConfig::default()
    };
    let client = PayingClient::with_config(kernel, ledger, config)
        .await
        .unwrap();
    (client, dir)
}

/// An upstream API answering `POST /v1/echo` with `echo: <body>`; its base URL.
pub(crate) async fn echo_upstream() -> String {
    actp_e2e::serve(Router::new().route(
        "/v1/echo",
        post(|body: String| async move { format!("echo: {body}") }),
    ))
    .await
}
