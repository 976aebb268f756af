//! The client against a real anvil chain with the real kernel deployed (the embedded devnet).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use actp_client::{
    ClientConfig, ClientError, Devnet, KernelEvent, Signer, TokenError, Watcher, WatcherConfig,
    bindings::EscrowKernel::EscrowKernelEvents,
};
use actp_core::{Amount, B256, Rejection, State, U256, ids::service_hash, model::CreateParams};
use futures::StreamExt;

fn terms(provider: actp_core::Address, now: u64, amount: Amount) -> CreateParams {
    CreateParams::new(
        provider,
        amount.to_u256(),
        now + 86_400,
        3_600,
        service_hash("test/v1"),
    )
}

#[tokio::test]
async fn compatible_path_then_settlement_pays_provider_net_of_fee() {
    let devnet = Devnet::start().await.unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.kernel(2).await.unwrap();
    let pa = provider.signer_address().unwrap();
    let now = devnet.now().await.unwrap();
    let t = terms(pa, now, Amount::from_tokens(2));

    let id = consumer.create(&t).await.unwrap();
    assert_eq!(consumer.get(id).await.unwrap().state, State::Initiated);
    consumer.approve(t.amount).await.unwrap();
    consumer.fund(id).await.unwrap();
    provider.start(id).await.unwrap();
    provider
        .deliver(id, 0, Some(B256::repeat_byte(7)))
        .await
        .unwrap();
    let record = consumer.get(id).await.unwrap();
    assert_eq!(record.state, State::Delivered);
    assert!(record.window_end().is_some());
    let before = provider.balance_of(pa).await.unwrap();
    consumer.settle(id).await.unwrap();
    assert_eq!(
        provider.balance_of(pa).await.unwrap() - before,
        U256::from(1_980_000u64)
    );
    assert_eq!(
        consumer.accrued_fees().await.unwrap(),
        U256::from(20_000u64)
    );
    assert_eq!(consumer.get(id).await.unwrap().state, State::Settled);
}

#[tokio::test]
async fn reverts_come_back_as_typed_rejections_and_token_errors() {
    let devnet = Devnet::start().await.unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.kernel(2).await.unwrap();
    let stranger = devnet.kernel(3).await.unwrap();
    let now = devnet.now().await.unwrap();
    let t = terms(
        provider.signer_address().unwrap(),
        now,
        Amount::from_tokens(1),
    );

    let id = consumer.create(&t).await.unwrap();
    match consumer.fund(id).await {
        Err(ClientError::Token(TokenError::InsufficientAllowance { needed, .. })) => {
            assert_eq!(needed, t.amount)
        }
        other => panic!("expected an allowance error, got {other:?}"),
    }
    consumer.approve(t.amount).await.unwrap();
    consumer.fund(id).await.unwrap();
    let err = stranger.start(id).await.unwrap_err();
    assert_eq!(
        err.rejection(),
        Some(&Rejection::Unauthorized {
            caller: stranger.signer_address().unwrap(),
            expected: provider.signer_address().unwrap()
        })
    );
    let msg = err.to_string();
    assert!(msg.contains("only"), "{msg}");
    let missing = B256::repeat_byte(0x42);
    assert_eq!(
        consumer.get(missing).await.unwrap_err().rejection(),
        Some(&Rejection::TransactionNotFound(missing))
    );
    // the nonce survives a refused call: the next one goes through
    provider.start(id).await.unwrap();
}

#[tokio::test]
async fn many_calls_from_one_signer_in_flight_at_once() {
    let devnet = Devnet::start().await.unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.signer(2).address();
    let now = devnet.now().await.unwrap();
    consumer
        .approve(Amount::from_tokens(1_000).to_u256())
        .await
        .unwrap();
    let calls = (0..40).map(|i| {
        let consumer = consumer.clone();
        let t = terms(provider, now, Amount::from_base_units(100_000 + i));
        async move { consumer.create_and_fund(&t).await }
    });
    let ids: Vec<B256> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 40);
    assert_eq!(
        consumer
            .requester_nonce(devnet.signer(1).address())
            .await
            .unwrap(),
        40
    );
}

/// Anvil's automine can leave a ready transaction in its pool, unmined until another arrives
/// (foundry-rs/foundry#10122). The devnet mines it: here the miner is switched off outright, and the
/// transaction still gets its receipt.
#[tokio::test]
async fn the_devnet_mines_a_transaction_that_automine_left_in_the_pool() {
    use alloy::providers::Provider as _;
    let devnet = Devnet::start().await.unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let _: serde_json::Value = devnet
        .provider()
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let before = devnet.provider().get_block_number().await.unwrap();
    consumer
        .approve(Amount::from_tokens(1).to_u256())
        .await
        .unwrap();
    assert!(devnet.provider().get_block_number().await.unwrap() > before);
}

#[tokio::test]
async fn anyone_settles_after_time_travel_past_the_window() {
    let devnet = Devnet::start().await.unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.kernel(2).await.unwrap();
    let bot = devnet.kernel(5).await.unwrap();
    let now = devnet.now().await.unwrap();
    let id = consumer
        .pay(&terms(
            provider.signer_address().unwrap(),
            now,
            Amount::from_tokens(1),
        ))
        .await
        .unwrap();
    provider.start(id).await.unwrap();
    provider.deliver(id, 0, None).await.unwrap();
    let end = consumer.get(id).await.unwrap().window_end().unwrap();
    assert_eq!(
        bot.settle(id).await.unwrap_err().rejection(),
        Some(&Rejection::DisputeWindowOpen(U256::from(end)))
    );
    devnet.advance_time(3_601).await.unwrap();
    let (n, _) = bot.settle_batch(&[id, B256::ZERO]).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(bot.get(id).await.unwrap().state, State::Settled);
}

#[tokio::test]
async fn receipt_wait_times_out_with_a_clear_error() {
    let devnet = Devnet::start().await.unwrap();
    let k = devnet
        .kernel_with(
            1,
            ClientConfig {
                receipt_timeout: Duration::from_millis(300),
                ..ClientConfig::default()
            },
        )
        .await
        .unwrap();
    let hash = B256::repeat_byte(0x99);
    match k.wait_for_receipt(hash).await {
        Err(ClientError::ReceiptTimeout { tx_hash, .. }) => assert_eq!(tx_hash, hash),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn keystore_signer_sends() {
    let devnet = Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = devnet.signer(4);
    let mut rng = rand08::thread_rng();
    let hex_key = &devnet.dev_private_keys()[4];
    let secret: [u8; 32] = alloy::primitives::hex::decode(hex_key)
        .unwrap()
        .try_into()
        .unwrap();
    let (_, name) = alloy::signers::local::PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rng,
        secret,
        "pw",
        None,
    )
    .unwrap();
    let signer = Signer::from_keystore(&dir.path().join(name), "pw").unwrap();
    assert_eq!(signer.address(), key.address());
    let k = devnet.kernel(0).await.unwrap().with_signer(signer);
    k.approve(U256::from(1u64)).await.unwrap();
    assert_eq!(k.allowance(key.address()).await.unwrap(), U256::from(1u64));
}

#[tokio::test]
async fn watcher_streams_events_behind_confirmations() {
    let devnet = Devnet::start().await.unwrap();
    let consumer = devnet.kernel(1).await.unwrap();
    let provider = devnet.signer(2).address();
    let now = devnet.now().await.unwrap();
    let id = consumer
        .pay(&terms(provider, now, Amount::from_tokens(1)))
        .await
        .unwrap();
    let config = WatcherConfig {
        confirmations: 3,
        poll_interval: Duration::from_millis(20),
        ..WatcherConfig::default()
    };
    let mut watcher = Watcher::new(
        devnet.provider(),
        devnet.deployment().kernel,
        devnet.deployment().block,
        config,
    );
    // the funding block is not 3 deep yet: nothing is delivered until blocks are mined on top
    let early = tokio::time::timeout(Duration::from_millis(200), watcher.next_batch()).await;
    assert!(
        early.is_err()
            || early
                .unwrap()
                .unwrap()
                .0
                .iter()
                .all(|e| !matches!(e.event, EscrowKernelEvents::EscrowLinked(_)))
    );
    for _ in 0..3 {
        devnet.mine().await.unwrap();
    }
    let mut seen: Vec<KernelEvent> = Vec::new();
    let mut stream = Box::pin(watcher.into_stream());
    while seen
        .iter()
        .all(|e| !matches!(e.event, EscrowKernelEvents::EscrowLinked(_)))
    {
        let ev = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(ev);
    }
    let created = seen.iter().find_map(|e| match &e.event {
        EscrowKernelEvents::TransactionCreated(c) => Some(c.transactionId),
        _ => None,
    });
    assert_eq!(created, Some(id));
}

/// Amounts everywhere assume a 6-decimal token: a token with other decimals is refused when deploying a
/// kernel for it and when connecting to a kernel that uses it.
#[tokio::test]
async fn a_token_without_six_decimals_is_refused_at_deploy_and_at_connect() {
    use alloy::providers::Provider as _;
    let devnet = Devnet::start().await.unwrap();
    let provider = devnet.provider();
    // A "token" answering 18 to every call (decimals()), and a "kernel" answering that token's address to
    // every call (token()).
    let token = actp_core::Address::repeat_byte(0x18);
    let kernel = actp_core::Address::repeat_byte(0x4b);
    let set_code = |at: actp_core::Address, code: String| {
        let provider = provider.clone();
        async move {
            let _: serde_json::Value = provider
                .raw_request("anvil_setCode".into(), (at, code))
                .await
                .unwrap();
        }
    };
    set_code(token, "0x601260005260206000f3".into()).await;
    set_code(
        kernel,
        format!(
            "0x73{}60005260206000f3",
            alloy::primitives::hex::encode(token)
        ),
    )
    .await;

    let deployer = devnet.kernel(0).await.unwrap();
    let refused = actp_client::deploy(
        &deployer,
        actp_client::DeployOptions {
            token: Some(token),
            ..actp_client::DeployOptions::default()
        },
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::UnsupportedToken { decimals: 18, .. })
        ),
        "{refused:?}"
    );
    let connected = actp_client::Kernel::new(provider, kernel, None, Default::default()).await;
    assert!(
        matches!(
            connected,
            Err(ClientError::UnsupportedToken { decimals: 18, .. })
        ),
        "{connected:?}"
    );
    let message = connected.unwrap_err().to_string();
    assert!(message.contains("6 decimals"), "{message}");
}
