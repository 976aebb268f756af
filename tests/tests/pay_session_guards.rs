//! What guards a consumer paying from sessions, against real parts (anvil with the kernel, the paywall over
//! loopback HTTP, the client's ledger on disk): a session's deposit is reserved against every cap before any
//! escrow exists; a receipt that does not check out retires the session, counts as nothing, and the
//! provider's claim for that call is disputed; an answer lost after the charge (a proxy's 502) counts at the
//! call's maximum, while a handler's failure, marked by the provider, counts as nothing and keeps the session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use actp_core::{Amount, State, U256};
use actp_e2e::eventually;
use actp_pay::{
    BudgetError, CapKind, Ledger, PayError, PayingClient, Payment, PaymentState, SpendPolicy,
};

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

/// A provider behind `wire`, and an agent that paid two echo calls from one session: what they charged, and
/// the session.
async fn two_calls_on(wire: Wire) -> (World, PayingClient, U256, Payment) {
    let w = world_with(true, wire).await;
    w.allow_sessions(10).await;
    let client = w.client(config()).await;
    let mut charged = U256::ZERO;
    for text in ["one", "two"] {
        let response = w.echo(&client, text).await.unwrap();
        charged += response.receipt.as_ref().unwrap().charge;
    }
    let first = sessions(&client, w.agent()).await.remove(0);
    (w, client, charged, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_does_not_check_out_retires_the_session_and_its_claim_is_disputed() {
    let (w, client, charged, first) = two_calls_on(Wire {
        tamper: Some(3),
        ..Wire::default()
    })
    .await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_the_charge_counts_at_its_maximum_and_a_failed_handler_at_nothing() {
    let (w, client, charged, first) = two_calls_on(Wire {
        cut: Some(3),
        ..Wire::default()
    })
    .await;

    // The provider charged the third call; its answer became a 502 on the way. The agent cannot tell whether
    // it was charged: it counts at its maximum, and the session takes no more calls.
    let lost = w.echo(&client, "three").await.unwrap_err();
    assert!(matches!(lost, PayError::BadReceipt { .. }), "{lost}");
    let account = payment(&client, &first.key).await.session.unwrap();
    assert_eq!(account.charged.to_u256(), charged);
    assert_eq!(account.lost, Amount::from_base_units(ECHO_PRICE));
    assert!(account.closing_since.is_some(), "{account:?}");

    // A handler that fails is marked as charged nothing by the provider: the agent keeps its (new) session.
    let failed = client
        .post(format!("{}/v1/fail", w.url))
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(failed, PayError::SessionRefused { status: 500, .. }),
        "{failed}"
    );
    let second = sessions(&client, w.agent())
        .await
        .into_iter()
        .find(|p| p.key != first.key)
        .unwrap();
    let account = second.session.clone().unwrap();
    assert_eq!(
        (account.lost, account.charged),
        (Amount::ZERO, Amount::ZERO)
    );
    assert!(
        account.closing_since.is_none() && account.pending.is_none(),
        "{account:?}"
    );
    w.echo(&client, "four").await.unwrap();
    assert_eq!(
        sessions(&client, w.agent()).await.len(),
        2,
        "the second session served it"
    );

    // The first session closes for its receipts and the lost call: within what the agent counted, so it
    // settles without a dispute.
    let tx_id = first.tx_id.unwrap();
    eventually("the first session is closed on chain", || async {
        w.consumer.get(tx_id).await.unwrap().state == State::Delivered
    })
    .await;
    let claimed = w.consumer.session_of(tx_id).await.unwrap().unwrap().claimed;
    assert_eq!(claimed, charged + U256::from(ECHO_PRICE));
    reconcile_until(&client, &first.key, "the first session settled", |p| {
        p.state == PaymentState::Settled
    })
    .await;
}
