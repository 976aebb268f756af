//! What guards a consumer paying from sessions, against real parts (anvil with the kernel, the paywall over
//! loopback HTTP, the client's ledger on disk): a session's deposit is reserved against every cap before any
//! escrow exists, and a receipt that does not check out retires the session, counts as nothing, and the
//! provider's claim for that call is disputed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use actp_core::{Amount, State, U256};
use actp_e2e::eventually;
use actp_pay::{BudgetError, CapKind, Ledger, PayError, PaymentState, SpendPolicy};

mod paying_sessions;

use paying_sessions::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deposit_is_held_against_every_cap_before_any_escrow() {
    let w = world(true, None).await;
    let client = w.client(config()).await;
    let before = w.devnet.balance_of(w.agent()).await.unwrap();
    // Ten chat calls at their maximum (0.05): a deposit of 0.50. Each cap in turn is below it, the others
    // far above.
    let deposit = Amount::from_base_units(10 * CHAT_MAX);
    let tight = Amount::from_base_units(300_000);
    let roomy = Some(Amount::from_tokens(100));
    for cap in [
        CapKind::Daily,
        CapKind::Monthly,
        CapKind::ProviderDaily,
        CapKind::ProviderMonthly,
    ] {
        let mut policy = SpendPolicy {
            sessions: Some(true),
            session_calls: Some(10),
            daily: roomy,
            monthly: roomy,
            provider_daily: roomy,
            provider_monthly: roomy,
            ..SpendPolicy::default()
        };
        match cap {
            CapKind::Daily => policy.daily = Some(tight),
            CapKind::Monthly => policy.monthly = Some(tight),
            CapKind::ProviderDaily => policy.provider_daily = Some(tight),
            CapKind::ProviderMonthly => policy.provider_monthly = Some(tight),
            CapKind::PerCall => unreachable!(),
        }
        client
            .ledger()
            .set_policy(w.agent(), &policy)
            .await
            .unwrap();
        let refused = w.chat(&client, "a question").await.unwrap_err();
        match &refused {
            PayError::Budget(BudgetError::CapReached {
                cap: got,
                limit,
                amount,
                ..
            }) => assert_eq!((*got, *limit, *amount), (cap, tight, deposit), "{refused}"),
            other => panic!("{cap:?}: {other}"),
        }
    }
    // Nothing was reserved, funded or recorded.
    assert!(sessions(&client, w.agent()).await.is_empty());
    assert_eq!(w.devnet.balance_of(w.agent()).await.unwrap(), before);

    // Room under every cap: the session opens, and its deposit is held until the charges become spend.
    let mut policy = client.ledger().policy(w.agent()).await.unwrap();
    policy.provider_monthly = Some(Amount::from_tokens(1));
    client
        .ledger()
        .set_policy(w.agent(), &policy)
        .await
        .unwrap();
    let response = w.chat(&client, "a question").await.unwrap();
    let charge = response.receipt.as_ref().unwrap().charge;
    let session = sessions(&client, w.agent()).await.remove(0);
    assert_eq!(session.amount, deposit);
    let (day, _) = Ledger::periods(actp_pay::ledger::unix_now());
    let totals = client.ledger().totals(w.agent(), &day, None).await.unwrap();
    assert_eq!(totals.spent.to_u256(), charge);
    assert_eq!(totals.reserved.to_u256(), deposit.to_u256() - charge);
    assert_eq!(
        w.devnet.balance_of(w.agent()).await.unwrap(),
        before - deposit.to_u256()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_does_not_check_out_retires_the_session_and_its_claim_is_disputed() {
    let w = world_with(
        true,
        Wire {
            tamper: Some(3),
            ..Wire::default()
        },
    )
    .await;
    w.allow_sessions(10).await;
    let client = w.client(config()).await;
    let mut charged = U256::ZERO;
    for text in ["one", "two"] {
        let response = w.echo(&client, text).await.unwrap();
        charged += response.receipt.as_ref().unwrap().charge;
    }
    let first = sessions(&client, w.agent()).await.remove(0);

    // The third call's receipt names a charge the provider did not sign.
    let bad = w.echo(&client, "three").await.unwrap_err();
    assert!(matches!(bad, PayError::BadReceipt { .. }), "{bad}");
    assert!(bad.to_string().contains("counts as nothing"), "{bad}");
    let retired = payment(&client, &first.key).await;
    let account = retired.session.clone().unwrap();
    assert_eq!(account.charged.to_u256(), charged);
    assert_eq!(account.receipts, 2);
    assert!(account.closing_since.is_some(), "{retired:?}");
    assert!(
        retired.note.as_deref().unwrap().contains("receipt"),
        "{retired:?}"
    );

    // The next call opens another session.
    w.echo(&client, "four").await.unwrap();
    let now = sessions(&client, w.agent()).await;
    assert_eq!(now.len(), 2);
    assert!(
        now.iter()
            .any(|p| p.tx_id != first.tx_id && p.session.as_ref().unwrap().receipts == 1)
    );

    // The provider, asked to close the first, claims the three calls it served: one more than the receipts.
    let tx_id = first.tx_id.unwrap();
    eventually("the retired session is closed on chain", || async {
        w.consumer.get(tx_id).await.unwrap().state == State::Delivered
    })
    .await;
    let claimed = w.consumer.session_of(tx_id).await.unwrap().unwrap().claimed;
    assert_eq!(claimed, charged + U256::from(ECHO_PRICE));
    reconcile_until(&client, &first.key, "the over-claim disputed", |p| {
        p.state == PaymentState::Disputed
    })
    .await;
    assert_eq!(w.consumer.get(tx_id).await.unwrap().state, State::Disputed);
}
