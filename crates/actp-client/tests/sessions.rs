//! Sessions on the real kernel (anvil, the embedded devnet): a voucher signed by `actp_core::session` is the
//! voucher the kernel checks, and the client's session calls move the money the kernel's rules say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use actp_client::{ClientError, Devnet, Kernel, OpenSession, SessionTerms, Signer};
use actp_core::{
    Amount, B256, Rejection, State, U256,
    ids::service_hash,
    session::{SessionVoucher, VoucherHeader},
};

const GRACE: u64 = 600;

fn tokens(x: &str) -> U256 {
    x.parse::<Amount>().unwrap().to_u256()
}

async fn open(consumer: &Kernel, provider: &Kernel, now: u64, deposit: U256) -> B256 {
    consumer
        .pay_session(&OpenSession {
            provider: provider.signer_address().unwrap(),
            deposit,
            deadline: now + 86_400,
            dispute_window: 3_600,
            service_hash: service_hash("chat/v1"),
            grace: GRACE,
        })
        .await
        .unwrap()
}

async fn voucher(requester: &Signer, kernel: &Kernel, id: B256, cumulative: U256) -> VoucherHeader {
    let v = SessionVoucher::new(id, cumulative, B256::repeat_byte(0x42), 1_900_000_000);
    let signature = requester
        .sign_hash(&v.signing_hash(&kernel.domain()))
        .await
        .unwrap();
    VoucherHeader::from_signature(&v, signature)
}

fn rejection<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Rejection {
    match result {
        Err(ClientError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_voucher_signed_here_closes_a_session_and_settlement_refunds_the_rest() {
    let devnet = Devnet::start().await.unwrap();
    let (consumer, provider, stranger) = (
        devnet.kernel(1).await.unwrap(),
        devnet.kernel(2).await.unwrap(),
        devnet.signer(3),
    );
    let (ca, pa) = (
        consumer.signer_address().unwrap(),
        provider.signer_address().unwrap(),
    );
    let now = devnet.now().await.unwrap();
    let id = open(&consumer, &provider, now, tokens("5.00")).await;
    assert_eq!(
        consumer.session_of(id).await.unwrap(),
        Some(SessionTerms {
            grace: GRACE,
            close_by: 0,
            claimed: U256::ZERO
        })
    );
    let record = consumer.get(id).await.unwrap();
    assert_eq!(
        (record.state, record.amount),
        (State::Committed, tokens("5.00"))
    );
    consumer.approve(tokens("1.00")).await.unwrap();
    consumer.top_up_session(id, tokens("1.00")).await.unwrap();
    assert_eq!(consumer.get(id).await.unwrap().amount, tokens("6.00"));
    provider.start(id).await.unwrap();

    // The provider's own check and the kernel's agree.
    let good = voucher(&devnet.signer(1), &provider, id, tokens("2.00")).await;
    let rebuilt = SessionVoucher::new(
        id,
        good.cumulative,
        B256::repeat_byte(0x42),
        good.expires_at,
    );
    good.verify(&rebuilt, &provider.domain(), ca, now, 1_900_000_000)
        .unwrap();
    let forged = voucher(&stranger, &provider, id, tokens("2.00")).await;
    assert_eq!(
        rejection(
            provider
                .close_session(
                    id,
                    tokens("1.50"),
                    &forged,
                    B256::repeat_byte(0x42),
                    B256::ZERO
                )
                .await
        ),
        Rejection::InvalidVoucherSignature(ca)
    );
    assert_eq!(
        rejection(
            provider
                .close_session(
                    id,
                    tokens("2.01"),
                    &good,
                    B256::repeat_byte(0x42),
                    B256::ZERO
                )
                .await
        ),
        Rejection::ClaimTooHigh {
            claim: tokens("2.01"),
            cumulative: tokens("2.00"),
            deposit: tokens("6.00")
        }
    );
    provider
        .close_session(
            id,
            tokens("1.50"),
            &good,
            B256::repeat_byte(0x42),
            B256::repeat_byte(7),
        )
        .await
        .unwrap();
    assert_eq!(
        consumer.session_of(id).await.unwrap().unwrap().claimed,
        tokens("1.50")
    );
    assert_eq!(
        consumer.recorded_proof_hash(id, 0).await.unwrap(),
        Some(B256::repeat_byte(7))
    );

    let (consumer_before, provider_before) = (
        devnet.balance_of(ca).await.unwrap(),
        devnet.balance_of(pa).await.unwrap(),
    );
    consumer.settle(id).await.unwrap();
    assert_eq!(
        devnet.balance_of(pa).await.unwrap() - provider_before,
        tokens("1.485"),
        "the claim less the 1% fee"
    );
    assert_eq!(
        devnet.balance_of(ca).await.unwrap() - consumer_before,
        tokens("4.50"),
        "the rest of the deposit, top-up included"
    );
    assert_eq!(consumer.get(id).await.unwrap().state, State::Settled);
}

#[tokio::test]
async fn the_requester_ends_a_session_and_reclaims_it_after_the_grace_period() {
    let devnet = Devnet::start().await.unwrap();
    let (consumer, provider) = (
        devnet.kernel(1).await.unwrap(),
        devnet.kernel(2).await.unwrap(),
    );
    let ca = consumer.signer_address().unwrap();
    let now = devnet.now().await.unwrap();
    let id = open(&consumer, &provider, now, tokens("3.00")).await;
    provider.start(id).await.unwrap();
    consumer.end_session(id).await.unwrap();
    let close_by = consumer.session_of(id).await.unwrap().unwrap().close_by;
    assert!(close_by >= now + GRACE, "{close_by}");
    assert_eq!(
        rejection(consumer.cancel(id).await),
        Rejection::GracePeriodNotOver(U256::from(close_by))
    );
    assert!(matches!(
        rejection(consumer.top_up_session(id, tokens("1.00")).await),
        Rejection::SessionEnding { .. }
    ));

    devnet.advance_time(GRACE + 1).await.unwrap();
    let good = voucher(&devnet.signer(1), &provider, id, tokens("1.00")).await;
    assert_eq!(
        rejection(
            provider
                .close_session(
                    id,
                    tokens("1.00"),
                    &good,
                    B256::repeat_byte(0x42),
                    B256::ZERO
                )
                .await
        ),
        Rejection::GracePeriodOver(U256::from(close_by))
    );
    let before = devnet.balance_of(ca).await.unwrap();
    consumer.cancel(id).await.unwrap();
    assert_eq!(
        devnet.balance_of(ca).await.unwrap() - before,
        tokens("3.00")
    );
    assert_eq!(consumer.get(id).await.unwrap().state, State::Cancelled);
}

#[tokio::test]
async fn per_call_operations_are_refused_on_sessions_and_session_calls_on_ordinary_transactions() {
    let devnet = Devnet::start().await.unwrap();
    let (consumer, provider) = (
        devnet.kernel(1).await.unwrap(),
        devnet.kernel(2).await.unwrap(),
    );
    let now = devnet.now().await.unwrap();
    let id = open(&consumer, &provider, now, tokens("1.00")).await;
    provider.start(id).await.unwrap();
    assert_eq!(
        rejection(provider.deliver(id, 0, None).await),
        Rejection::SessionOperationRefused(id)
    );
    assert_eq!(
        consumer.session_of(B256::repeat_byte(9)).await.unwrap(),
        None
    );
    provider.close_session_empty(id, B256::ZERO).await.unwrap();
    assert_eq!(consumer.get(id).await.unwrap().state, State::Delivered);
}
