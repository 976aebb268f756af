//! Public-RPC limits: a long history read through a JSON-RPC proxy that refuses `eth_getLogs` over a block
//! limit (with the error texts of real providers, one of them carrying a rate-limit code) and answers `429`
//! with `Retry-After` now and then. The watcher, the paying client's event query and the settlement daemon
//! each read it completely and exactly once.
//!
//! `make test` reads 2,000 blocks through a 50-block limit: the same number of ranges as 20,000 blocks
//! through 500, which `ACTP_LONG_HISTORY=1` (`make test-long`) runs. Anvil mines empty blocks in time that
//! grows with the chain's length (20,000 take about four minutes on a 2-core machine), so the long form is
//! kept out of the default suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::{collections::HashSet, time::Duration};

use actp_client::{
    ClientConfig, Devnet, HttpOptions, Kernel, Watcher, WatcherConfig,
    bindings::EscrowKernel::EscrowKernelEvents, http_provider,
};
use actp_core::{Amount, B256, State, ids::service_hash, model::CreateParams};
use actp_e2e::{RpcLimits, RpcProxy, ServedRange};
use actp_settler::{Settler, SettlerConfig};

const TRANSACTIONS: u64 = 20;

/// The history's length and the proxy's block limit per `eth_getLogs`.
fn scale() -> (u64, u64) {
    if std::env::var_os("ACTP_LONG_HISTORY").is_some() {
        (20_000, 500)
    } else {
        (2_000, 50)
    }
}

/// The served ranges cover `from..=to` exactly: in order, no gap, no overlap, none too large.
#[track_caller]
fn assert_read_once(served: &[ServedRange], from: u64, to: u64, limit: u64) {
    let mut next = from;
    for r in served {
        assert!(
            r.to - r.from < limit,
            "a range over the limit was served: {r:?}"
        );
        assert_eq!(r.from, next, "gap or overlap at {r:?} (expected {next})");
        next = r.to + 1;
    }
    assert_eq!(next, to + 1, "the history was not read to its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_is_read_completely_and_once_through_a_limited_rpc() {
    let (blocks, limit) = scale();
    let devnet = Devnet::start().await.unwrap();
    let deployed = devnet.deployment().block;
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.kernel(2).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..TRANSACTIONS {
        let now = devnet.now().await.unwrap();
        let terms = CreateParams::new(
            provider.signer_address().unwrap(),
            Amount::from_tokens(1).to_u256(),
            now + 30 * 86_400,
            3_600,
            service_hash("history"),
        );
        let id = consumer.pay(&terms).await.unwrap();
        if i % 2 == 0 {
            provider.start(id).await.unwrap();
            provider.deliver(id, 0, None).await.unwrap();
        }
        ids.push(id);
        devnet.mine_blocks(blocks / TRANSACTIONS).await.unwrap();
    }
    let head = consumer.block_number().await.unwrap();
    assert!(head - deployed >= blocks);

    let proxy = RpcProxy::start(
        &devnet.rpc_url(),
        RpcLimits {
            max_log_blocks: limit,
            rate_limit_every: 9,
            retry_after_secs: 1,
        },
    )
    .await
    .unwrap();

    // The watcher, asking for ranges four times the limit.
    let via_proxy = http_provider(&proxy.url(), &HttpOptions::default()).unwrap();
    let mut watcher = Watcher::new(
        via_proxy.clone(),
        devnet.deployment().kernel,
        deployed,
        WatcherConfig {
            max_range: 4 * limit,
            ..WatcherConfig::default()
        },
    );
    let mut created = Vec::new();
    let mut seen = HashSet::new();
    while watcher.next_block() <= head {
        let polled = watcher.poll().await.unwrap();
        for e in polled.events {
            assert!(
                seen.insert((e.tx_hash, e.log_index)),
                "event delivered twice: {e:?}"
            );
            if let EscrowKernelEvents::TransactionCreated(c) = e.event {
                created.push(c.transactionId);
            }
        }
    }
    assert_eq!(created, ids, "every creation, in order, once");
    let served = proxy.served();
    assert_read_once(&served, deployed, head, limit);
    assert!(
        proxy.refused_ranges() > 0,
        "the proxy refused no range: the test proves nothing"
    );
    assert!(proxy.rate_limited() > 0, "the proxy sent no 429");

    // The paying client's query for its own escrows (reconcile), through the same limits.
    let limited = ClientConfig {
        max_log_range: 4 * limit,
        ..ClientConfig::default()
    };
    let consumer_via_proxy = Kernel::new(
        via_proxy.clone(),
        devnet.deployment().kernel,
        Some(devnet.signer(1)),
        limited.clone(),
    )
    .await
    .unwrap();
    let mine: Vec<B256> = consumer_via_proxy
        .created_by(devnet.signer(1).address(), deployed)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(mine, ids);

    // The settlement daemon, from the deployment block, once the windows are over.
    devnet.advance_time(3_601).await.unwrap();
    let bot = Kernel::new(
        via_proxy,
        devnet.deployment().kernel,
        Some(devnet.signer(3)),
        ClientConfig {
            receipt_timeout: Duration::from_secs(60),
            ..limited
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settler = Settler::open(
        bot,
        SettlerConfig {
            store: actp_settler::StoreUrl::Sled(dir.path().join("settler")),
            from_block: deployed,
            confirmations: 0,
            max_range: 4 * limit,
            ..SettlerConfig::default()
        },
    )
    .await
    .unwrap();
    let report = settler.run_once(20).await.unwrap();
    assert_eq!(report.settled, TRANSACTIONS / 2, "{report:?}");
    for (i, id) in ids.iter().enumerate() {
        let state = consumer.get(*id).await.unwrap().state;
        let expected = if i % 2 == 0 {
            State::Settled
        } else {
            State::Committed
        };
        assert_eq!(state, expected, "transaction {i}");
    }
}
