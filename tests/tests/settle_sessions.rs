//! The settlement daemon settles closed sessions with their refunds, in batches beside ordinary
//! transactions: after the dispute window, each provider gets its claim less the fee, each requester the rest
//! of its deposit, once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use actp_client::{Devnet, OpenSession};
use actp_core::{
    B256, State, U256, ids::service_hash, model::CreateParams, session::SessionVoucher,
    session::VoucherHeader,
};
use actp_settler::{Settler, SettlerConfig};

#[tokio::test]
async fn the_daemon_settles_sessions_with_their_refunds_beside_ordinary_transactions() {
    let devnet = Devnet::start().await.unwrap();
    let (consumer, provider, bot) = (
        devnet.kernel(1).await.unwrap(),
        devnet.kernel(2).await.unwrap(),
        devnet.kernel(3).await.unwrap(),
    );
    let (ca, pa) = (
        consumer.signer_address().unwrap(),
        provider.signer_address().unwrap(),
    );
    let now = devnet.now().await.unwrap();
    let open = |deposit: u64| OpenSession {
        provider: pa,
        deposit: U256::from(deposit),
        deadline: now + 86_400,
        dispute_window: 3_600,
        service_hash: service_hash("session"),
        grace: 600,
    };
    let claims = [300_000u64, 0, 1_000_000];
    let mut sessions = Vec::new();
    for claim in claims {
        let id = consumer.pay_session(&open(1_000_000)).await.unwrap();
        provider.start(id).await.unwrap();
        if claim == 0 {
            provider.close_session_empty(id, B256::ZERO).await.unwrap();
        } else {
            let v = SessionVoucher::new(id, U256::from(claim), B256::repeat_byte(1), now + 60);
            let sig = devnet
                .signer(1)
                .sign_hash(&v.signing_hash(&consumer.domain()))
                .await
                .unwrap();
            let voucher = VoucherHeader::from_signature(&v, sig);
            provider
                .close_session(
                    id,
                    U256::from(claim),
                    &voucher,
                    v.requestHash,
                    B256::repeat_byte(2),
                )
                .await
                .unwrap();
        }
        sessions.push(id);
    }
    let ordinary = consumer
        .pay(&CreateParams::new(
            pa,
            U256::from(500_000),
            now + 86_400,
            3_600,
            service_hash("x"),
        ))
        .await
        .unwrap();
    provider.start(ordinary).await.unwrap();
    provider.deliver(ordinary, 0, None).await.unwrap();

    let (consumer_before, provider_before) = (
        devnet.balance_of(ca).await.unwrap(),
        devnet.balance_of(pa).await.unwrap(),
    );
    devnet.advance_time(3_601).await.unwrap();
    devnet.mine_blocks(3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settler = Settler::open(
        bot,
        SettlerConfig {
            store: actp_settler::StoreUrl::Sled(dir.path().to_path_buf()),
            confirmations: 1,
            ..SettlerConfig::default()
        },
    )
    .await
    .unwrap();
    settler.run_once(5).await.unwrap();

    for id in sessions.iter().chain([&ordinary]) {
        assert_eq!(consumer.get(*id).await.unwrap().state, State::Settled);
    }
    let gross: u64 = claims.iter().sum::<u64>() + 500_000;
    let fees: u64 = claims.iter().map(|c| c / 100).sum::<u64>() + 5_000;
    assert_eq!(
        devnet.balance_of(pa).await.unwrap() - provider_before,
        U256::from(gross - fees),
        "claims and the ordinary amount, less fees"
    );
    assert_eq!(
        devnet.balance_of(ca).await.unwrap() - consumer_before,
        U256::from(3 * 1_000_000 - claims.iter().sum::<u64>()),
        "every session's unclaimed deposit"
    );
    // A second pass settles nothing again.
    let before = devnet.balance_of(ca).await.unwrap();
    settler.run_once(5).await.unwrap();
    assert_eq!(devnet.balance_of(ca).await.unwrap(), before);
}
