//! The watcher carries on by itself after its RPC connection drops: a TCP proxy the test controls sits
//! between the watcher and anvil, is cut while a transaction lands, and is restored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::{net::SocketAddr, time::Duration};

use actp_client::{Devnet, Watcher, WatcherConfig, bindings::EscrowKernel::EscrowKernelEvents};
use actp_core::{Amount, ids::service_hash, model::CreateParams};
use actp_e2e::TcpProxy;
use alloy::providers::{Provider, ProviderBuilder};
use futures::StreamExt;

#[tokio::test]
async fn watcher_resumes_after_the_connection_drops() {
    let devnet = Devnet::start().await.unwrap();
    let upstream: SocketAddr = format!("127.0.0.1:{}", devnet.port()).parse().unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let via_proxy = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(proxy.url().parse().unwrap())
        .erased();
    assert_eq!(
        via_proxy.get_chain_id().await.unwrap(),
        devnet.deployment().chain_id
    );

    let config = WatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..WatcherConfig::default()
    };
    let watcher = Watcher::new(
        via_proxy,
        devnet.deployment().kernel,
        devnet.deployment().block,
        config,
    );
    let mut stream = Box::pin(watcher.into_stream());

    proxy.cut();
    let consumer = devnet.kernel(1).await.unwrap();
    let now = devnet.now().await.unwrap();
    let terms = CreateParams::new(
        devnet.signer(2).address(),
        Amount::from_tokens(1).to_u256(),
        now + 3_600,
        3_600,
        service_hash("resume"),
    );
    let id = consumer.pay(&terms).await.unwrap(); // lands while the watcher cannot reach the node
    let restore = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.restore();
    };
    let find = async {
        let mut errors = 0;
        loop {
            match stream.next().await.unwrap() {
                Ok(ev) => {
                    if let EscrowKernelEvents::TransactionCreated(c) = ev.event {
                        return (c.transactionId, errors);
                    }
                }
                Err(e) => {
                    assert!(
                        e.is_retryable(),
                        "a dropped connection is a retryable error: {e}"
                    );
                    errors += 1;
                }
            }
        }
    };
    let ((seen, _errors), ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(find, restore)
    })
    .await
    .unwrap();
    assert_eq!(
        seen, id,
        "the event that landed during the outage is delivered after it"
    );
}
