//! What the chain shows, for assertions: every kernel event up to the head, every `settleBatch` mined, and
//! the check that a set of transactions was settled exactly once.

use std::collections::HashMap;

use actp_client::{
    Devnet, KernelEvent, Watcher, WatcherConfig,
    bindings::EscrowKernel::{EscrowKernelEvents, settleBatchCall},
};
use actp_core::{Amount, State, U256, ids::service_hash, model::CreateParams};
use alloy::{
    consensus::Transaction as _,
    primitives::{Address, B256},
    providers::Provider as _,
    sol_types::SolCall as _,
};
use futures::{StreamExt, stream};

/// `n` transactions of `price` from dev account 2 to dev account 1, delivered (dispute window one hour, deadline
/// a day away), 32 at a time.
///
/// # Panics
/// If the chain refuses.
#[expect(
    clippy::panic,
    reason = "a test harness: a setup the chain refuses fails the test"
)]
pub async fn delivered(devnet: &Devnet, n: usize, price: Amount) -> Vec<B256> {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { panic!("{what}: {e}") };
    let consumer = devnet
        .kernel(2)
        .await
        .unwrap_or_else(|e| fail("consumer", &e));
    let provider = devnet
        .kernel(1)
        .await
        .unwrap_or_else(|e| fail("provider", &e));
    let now = devnet
        .now()
        .await
        .unwrap_or_else(|e| fail("chain time", &e));
    let terms = CreateParams::new(
        devnet.signer(1).address(),
        price.to_u256(),
        now + 86_400,
        3_600,
        service_hash("e2e"),
    );
    consumer
        .ensure_allowance(price.to_u256() * U256::from(n))
        .await
        .unwrap_or_else(|e| fail("allowance", &e));
    let ids: Vec<B256> = stream::iter(0..n)
        .map(|_| consumer.create_and_fund(&terms))
        .buffer_unordered(32)
        .map(|r| r.unwrap_or_else(|e| fail("createAndFund", &e)))
        .collect()
        .await;
    stream::iter(&ids)
        .map(|id| provider.start(*id))
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.unwrap_or_else(|e| fail("start", &e));
        })
        .await;
    stream::iter(&ids)
        .map(|id| provider.deliver(*id, 0, Some(B256::repeat_byte(7))))
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.unwrap_or_else(|e| fail("deliver", &e));
        })
        .await;
    ids
}

/// How many of `ids` are in `state` now.
///
/// # Panics
/// If the chain cannot be read.
#[expect(
    clippy::panic,
    reason = "a test harness: a node that cannot be read fails the test"
)]
pub async fn count_in(devnet: &Devnet, ids: &[B256], state: State) -> usize {
    let kernel = devnet
        .kernel(0)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the devnet: {e}"));
    let states: Vec<State> = stream::iter(ids)
        .map(|id| {
            let kernel = kernel.clone();
            async move {
                kernel
                    .get(*id)
                    .await
                    .unwrap_or_else(|e| panic!("cannot read {id}: {e}"))
                    .state
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    states.iter().filter(|s| **s == state).count()
}

/// The head block number.
#[expect(
    clippy::panic,
    reason = "a test harness: a node that cannot be read fails the test"
)]
async fn head(devnet: &Devnet) -> u64 {
    devnet
        .provider()
        .get_block_number()
        .await
        .unwrap_or_else(|e| panic!("cannot read the head: {e}"))
}

/// Every event of `devnet`'s kernel from its deployment block to the head, in order.
///
/// # Panics
/// If the node cannot be read.
#[expect(
    clippy::panic,
    reason = "a test harness: a node that cannot be read fails the test"
)]
pub async fn events(devnet: &Devnet) -> Vec<KernelEvent> {
    let d = devnet.deployment();
    let provider = devnet.provider();
    let head = head(devnet).await;
    let mut watcher = Watcher::new(
        provider,
        d.kernel,
        d.block,
        WatcherConfig {
            confirmations: 0,
            ..WatcherConfig::default()
        },
    );
    let mut all = Vec::new();
    while watcher.next_block() <= head {
        let (events, _) = watcher
            .next_batch()
            .await
            .unwrap_or_else(|e| panic!("cannot read the kernel's events: {e}"));
        all.extend(events);
    }
    all
}

/// Every `settleBatch` mined on `devnet`'s kernel, whether it settled anything or not (a batch whose ids were
/// all settled already emits no event): who sent it, and the ids it named.
///
/// # Panics
/// If the node cannot be read.
#[expect(
    clippy::panic,
    reason = "a test harness: a node that cannot be read fails the test"
)]
pub async fn settle_batches(devnet: &Devnet) -> Vec<(Address, Vec<B256>)> {
    let d = devnet.deployment();
    let provider = devnet.provider();
    let head = head(devnet).await;
    let mut batches = Vec::new();
    for number in d.block..=head {
        let block = provider
            .get_block_by_number(number.into())
            .full()
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("cannot read block {number}"));
        for tx in block.transactions.txns() {
            if tx.to() == Some(d.kernel) && tx.input().starts_with(&settleBatchCall::SELECTOR) {
                let call = settleBatchCall::abi_decode(tx.input())
                    .unwrap_or_else(|e| panic!("a settleBatch that does not decode: {e}"));
                batches.push((tx.inner.signer(), call.transactionIds));
            }
        }
    }
    batches
}

/// How many times each transaction moved to `state`, by the kernel's events.
pub async fn transitions_to(devnet: &Devnet, state: State) -> HashMap<B256, usize> {
    let mut count: HashMap<B256, usize> = HashMap::new();
    for e in events(devnet).await {
        if let EscrowKernelEvents::StateTransitioned(t) = &e.event
            && t.newState == state.code()
        {
            *count.entry(t.transactionId).or_default() += 1;
        }
    }
    count
}

/// Asserts that each of `ids` was settled exactly once (one SETTLED transition) and named in exactly one
/// mined `settleBatch` (none sent twice, even if the second would have been skipped). Returns how many
/// settlements each account sent.
pub async fn assert_each_settled_once(devnet: &Devnet, ids: &[B256]) -> HashMap<Address, usize> {
    let settled = transitions_to(devnet, State::Settled).await;
    let mut named: HashMap<B256, usize> = HashMap::new();
    let mut senders: HashMap<Address, usize> = HashMap::new();
    for (sender, batch) in settle_batches(devnet).await {
        *senders.entry(sender).or_default() += 1;
        for id in batch {
            *named.entry(id).or_default() += 1;
        }
    }
    for id in ids {
        assert_eq!(settled.get(id), Some(&1), "{id}: settled events");
        assert_eq!(
            named.get(id),
            Some(&1),
            "{id}: named in more than one mined settlement"
        );
    }
    senders
}
