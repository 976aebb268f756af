//! The paying client on sessions, against real parts: anvil with the kernel, the paywall over loopback HTTP
//! with its sled store, the client's ledger in sled on disk. One session pays many metered and flat calls;
//! receipts are checked; the budget holds the deposit and counts charges; a crash mid-call loses nothing; a
//! provider that claims more than its receipts is disputed; one that never closes is ended and reclaimed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use std::sync::atomic::Ordering;

use actp_core::{Amount, State, U256, proof::content_hash};
use actp_e2e::eventually;
use actp_pay::{GroupBy, Ledger, PaymentState, UsageQuery};

mod paying_sessions;

use paying_sessions::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_pays_metered_and_flat_calls_and_refunds_the_rest() {
    let w = world(true, None).await;
    // A deposit for 4 chat calls at their maximum (0.20): the calls below need a top-up on the way.
    w.allow_sessions(4).await;
    let client = w.client(config()).await;
    let before = w.devnet.balance_of(w.agent()).await.unwrap();

    let mut charged = U256::ZERO;
    let mut chat_cost = Amount::ZERO;
    for i in 0..12 {
        let text = format!("question number {i} with some words");
        let response = if i % 3 == 2 {
            w.echo(&client, &text).await.unwrap()
        } else {
            w.chat(&client, &text).await.unwrap()
        };
        assert!(response.status.is_success());
        let receipt = response
            .receipt
            .expect("a session call carries its receipt");
        assert_eq!(receipt.seq, i);
        charged += receipt.charge;
        assert_eq!(receipt.charged, charged);
        if i % 3 == 2 {
            assert_eq!(receipt.charge, U256::from(ECHO_PRICE));
        } else {
            // Metered: a thousandth per byte of the answer, well under the maximum.
            let bytes = format!("answer to {text}").len() as u128;
            assert_eq!(receipt.charge, U256::from(bytes * 1_000));
            assert!(receipt.charge < U256::from(CHAT_MAX));
            chat_cost = Amount::from_base_units(chat_cost.base_units() + bytes * 1_000);
        }
        let payment = response.payment.unwrap();
        assert_eq!(payment.session.as_ref().unwrap().charged.to_u256(), charged);
    }
    // One session paid for all of them (topped up once its deposit could not cover a call's maximum).
    let all = sessions(&client, w.agent()).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let session = all[0].clone();
    let tx_id = session.tx_id.unwrap();
    let record = w.consumer.get(tx_id).await.unwrap();
    assert_eq!(
        Amount::try_from_u256(record.amount).unwrap(),
        session.amount
    );
    assert!(
        session.amount > Amount::from_base_units(4 * CHAT_MAX),
        "{session:?}"
    );

    // The budget holds the unspent deposit and counts what was charged.
    let (day, _) = Ledger::periods(actp_pay::ledger::unix_now());
    let totals = client.ledger().totals(w.agent(), &day, None).await.unwrap();
    assert_eq!(totals.spent.to_u256(), charged);
    assert_eq!(totals.reserved.to_u256(), record.amount - charged);

    // Done: the provider closes with the receipts' total; the client settles at once and gets the rest back.
    assert_eq!(client.close_sessions().await.unwrap(), 1);
    reconcile_until(&client, &session.key, "the session to settle", |p| {
        p.state == PaymentState::Settled
    })
    .await;
    let settled = client
        .ledger()
        .payment(w.agent(), &session.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        settled.session.as_ref().unwrap().claimed.unwrap().to_u256(),
        charged
    );
    assert_eq!(settled.refunded.to_u256(), record.amount - charged);
    assert_eq!(settled.spent().to_u256(), charged);
    let after = w.devnet.balance_of(w.agent()).await.unwrap();
    assert_eq!(
        before - after,
        charged,
        "the wallet paid exactly the receipts"
    );
    let totals = client.ledger().totals(w.agent(), &day, None).await.unwrap();
    assert_eq!(totals.spent.to_u256(), charged);
    assert_eq!(totals.reserved, Amount::ZERO);

    // Usage by route shows each route's real cost; the session's own row holds nothing now.
    let usage = client
        .ledger()
        .usage(
            w.agent(),
            &UsageQuery {
                by: GroupBy::Route,
                ..UsageQuery::default()
            },
        )
        .await
        .unwrap();
    let row = |route: &str| usage.rows.iter().find(|r| r.key == route).unwrap().clone();
    assert_eq!(row("POST /v1/chat").calls, 8);
    assert_eq!(row("POST /v1/chat").spent, chat_cost);
    assert_eq!(row("POST /v1/echo").calls, 4);
    assert_eq!(
        row("POST /v1/echo").spent,
        Amount::from_base_units(4 * ECHO_PRICE)
    );
    assert_eq!(usage.total.calls, 12);
    assert_eq!(usage.total.sessions, 1);
    assert_eq!(usage.total.spent.to_u256(), charged);
    assert_eq!(usage.total.refunded.to_u256(), record.amount - charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_call_keeps_the_vouchers_and_charges_and_the_session_closes_once() {
    // The provider charges the third call, but its answer never arrives: the client is stopped waiting.
    let w = world(true, Some(3)).await;
    w.allow_sessions(10).await;
    let key;
    let charged_before;
    {
        let client = w.client(config()).await;
        w.chat(&client, "one").await.unwrap();
        w.chat(&client, "two").await.unwrap();
        let session = sessions(&client, w.agent()).await.remove(0);
        key = session.key.clone();
        charged_before = session.session.unwrap().charged;
        let call = {
            let client = client.clone();
            let url = format!("{}/v1/chat", w.url);
            tokio::spawn(async move { client.post(url).body("three").send().await })
        };
        eventually("the third call to be charged", || async {
            w.wire.withheld.load(Ordering::SeqCst)
        })
        .await;
        // The crash: the call dies with its process, the ledger stays on disk.
        call.abort();
        let _ = call.await;
    }
    let client = w.client(config()).await;
    let session = payment(&client, &key).await;
    let account = session.session.clone().unwrap();
    // What was signed before the voucher left survived; so did the charges accepted before.
    let pending = account
        .pending
        .clone()
        .expect("the call in flight is on disk");
    assert_eq!(pending.max, Amount::from_base_units(CHAT_MAX));
    assert_eq!(
        account.signed,
        Amount::from_base_units(charged_before.base_units() + CHAT_MAX)
    );
    assert_eq!(account.charged, charged_before);
    assert_eq!(
        client
            .ledger()
            .charges(w.agent(), &key)
            .await
            .unwrap()
            .len(),
        2
    );

    // After the restart the next call cannot use that session (a receipt is missing): the lost call counts
    // at its maximum, the provider is asked to close it, and a new session pays the call.
    let response = w.chat(&client, "four").await.unwrap();
    let new_session = response.payment.unwrap();
    assert_ne!(new_session.key, key);
    let old = payment(&client, &key).await;
    let old_account = old.session.clone().unwrap();
    assert!(old_account.pending.is_none());
    assert_eq!(old_account.lost, Amount::from_base_units(CHAT_MAX));
    assert!(old_account.closing_since.is_some());

    // The provider closes it once, claiming its three receipts: within what the client allows for them, so
    // no dispute; the client settles it and gets the rest back.
    reconcile_until(&client, &key, "the old session to settle", |p| {
        p.state == PaymentState::Settled
    })
    .await;
    let old = payment(&client, &key).await;
    let claimed = old.session.as_ref().unwrap().claimed.unwrap();
    assert!(
        claimed > charged_before,
        "the withheld call was charged: {claimed}"
    );
    assert!(claimed <= old.session.as_ref().unwrap().owed_at_most());
    let tx_id = old.tx_id.unwrap();
    let terms = w.provider.session_of(tx_id).await.unwrap().unwrap();
    assert_eq!(terms.claimed, claimed.to_u256());
    assert_eq!(w.consumer.get(tx_id).await.unwrap().state, State::Settled);
    assert_eq!(old.spent(), claimed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_above_the_receipts_is_disputed_and_resolved() {
    // This provider never closes by itself: the test closes for it, dishonestly.
    let w = world(false, None).await;
    w.allow_sessions(10).await;
    let client = w.client(config()).await;
    for text in ["a", "bb", "ccc"] {
        w.chat(&client, text).await.unwrap();
    }
    let session = sessions(&client, w.agent()).await.remove(0);
    let account = session.session.clone().unwrap();
    let tx_id = session.tx_id.unwrap();
    // The last voucher lets the provider take up to charged-before-it plus the call's maximum: more than the
    // receipts say. It claims all of it.
    let last = w.wire.seen.lock().unwrap().last().cloned().unwrap();
    let claim = last.voucher.cumulative;
    assert!(claim > account.charged.to_u256());
    let request =
        actp_core::authorization::request_hash("POST", &last.path, content_hash(&last.body));
    if w.provider.get(tx_id).await.unwrap().state == State::Committed {
        w.provider.start(tx_id).await.unwrap();
    }
    w.provider
        .close_session(tx_id, claim, &last.voucher, request, account.head)
        .await
        .unwrap();

    let report = client.reconcile().await.unwrap();
    assert_eq!(report.disputed, 1, "{report:?}");
    let disputed = client
        .ledger()
        .payment(w.agent(), &session.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disputed.state, PaymentState::Disputed);
    assert!(
        disputed.note.as_deref().unwrap().contains("receipts"),
        "{disputed:?}"
    );
    assert_eq!(w.consumer.get(tx_id).await.unwrap().state, State::Disputed);

    // A resolver gives the provider what the receipts say and the consumer the rest.
    let deposit = session.amount.to_u256();
    let to_provider = account.charged.to_u256();
    w.devnet
        .kernel(0)
        .await
        .unwrap()
        .resolve(tx_id, State::Settled, deposit - to_provider, to_provider)
        .await
        .unwrap();
    let report = client.reconcile().await.unwrap();
    assert_eq!(report.refunded, 1, "{report:?}");
    let resolved = client
        .ledger()
        .payment(w.agent(), &session.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.state, PaymentState::Resolved);
    assert_eq!(resolved.refunded.to_u256(), deposit - to_provider);
    assert_eq!(resolved.spent(), account.charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_closes_is_ended_and_the_deposit_reclaimed() {
    let w = world(false, None).await;
    w.allow_sessions(10).await;
    let client = w.client(config()).await;
    let before = w.devnet.balance_of(w.agent()).await.unwrap();
    w.echo(&client, "hello").await.unwrap();
    w.echo(&client, "again").await.unwrap();
    let session = sessions(&client, w.agent()).await.remove(0);
    let tx_id = session.tx_id.unwrap();

    // Asked to close, the provider accepts but never does; reconcile ends the session on chain.
    assert_eq!(client.close_sessions().await.unwrap(), 1);
    let report = client.reconcile().await.unwrap();
    assert_eq!(report.waiting, 1, "{report:?}");
    let ended = client
        .ledger()
        .payment(w.agent(), &session.key)
        .await
        .unwrap()
        .unwrap();
    assert!(ended.session.as_ref().unwrap().ended, "{ended:?}");
    let terms = w.consumer.session_of(tx_id).await.unwrap().unwrap();
    assert!(terms.close_by > 0);

    // Within the grace period nothing is reclaimed; after it, all of the deposit comes back.
    let report = client.reconcile().await.unwrap();
    assert_eq!(report.reclaimed, 0);
    let now = w.devnet.now().await.unwrap();
    w.devnet
        .advance_time(terms.close_by - now + 1)
        .await
        .unwrap();
    let report = client.reconcile().await.unwrap();
    assert_eq!(report.reclaimed, 1, "{report:?}");
    let reclaimed = client
        .ledger()
        .payment(w.agent(), &session.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reclaimed.state, PaymentState::Refunded);
    assert_eq!(reclaimed.refunded, reclaimed.amount);
    assert_eq!(reclaimed.spent(), Amount::ZERO);
    assert_eq!(w.consumer.get(tx_id).await.unwrap().state, State::Cancelled);
    assert_eq!(w.devnet.balance_of(w.agent()).await.unwrap(), before);
}
