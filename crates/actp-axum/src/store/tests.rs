//! The store's contract, run on both backends: sled in a temporary directory (with each durability), and a fresh database on a real
//! PostgreSQL server. Then what only the shared store promises: replicas on one database.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actp_core::{Address, B256, U256};
use actp_store::paywall::PaywallStore;

use super::{
    sessions::tests::{open as open_session, u, voucher},
    *,
};

/// A replica of provider `0x02…` on `url`, named `owner`, with the given outbox lease.
async fn replica(url: &str, owner: &str, lease: Duration) -> Store {
    let store = PaywallStore::open(
        url,
        8,
        31_337,
        Address::repeat_byte(1),
        Address::repeat_byte(2),
        owner.into(),
    )
    .await
    .unwrap();
    Store::shared(store, lease, lease)
}

/// Runs `check` on a sled store (its commits synced, then buffered) and on a shared store.
async fn on_both(check: impl AsyncFn(Store)) {
    for durability in [Durability::Synced, Durability::Buffered] {
        let dir = tempfile::tempdir().unwrap();
        check(Store::open(dir.path(), durability).unwrap()).await;
    }
    let url = actp_e2e::postgres::shared().fresh_database().await;
    check(replica(&url, "one", Duration::from_secs(30)).await).await;
}

#[tokio::test]
async fn claim_release_serve_finish() {
    on_both(async |store| {
        let id = B256::repeat_byte(1);
        let req = B256::repeat_byte(2);
        assert_eq!(
            store.claim(id, req).await.unwrap(),
            ClaimOutcome::Claimed { started: false }
        );
        assert_eq!(store.claim(id, req).await.unwrap(), ClaimOutcome::Taken);
        store.mark_started(id).await.unwrap();
        store.release(id).await.unwrap();
        assert_eq!(
            store.claim(id, req).await.unwrap(),
            ClaimOutcome::Claimed { started: true }
        );
        let seq = store.serve(id, B256::repeat_byte(3), true).await.unwrap();
        assert_eq!(store.claim(id, req).await.unwrap(), ClaimOutcome::Taken);
        let pending = store.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].seq, seq);
        assert_eq!(pending[0].delivery.proof_hash, B256::repeat_byte(3));
        assert!(store.is_pending(seq).await);
        assert_eq!(store.outbox_len().await.unwrap(), 1);
        assert!(
            store
                .finish(seq, id, Ok(Some(B256::repeat_byte(4))))
                .await
                .unwrap()
        );
        assert!(!store.finish(seq, id, Ok(None)).await.unwrap(), "once");
        assert!(store.pending().await.unwrap().is_empty());
        let claim = store.claim_of(id).await.unwrap().unwrap();
        assert_eq!(claim.status, ClaimStatus::Delivered);
        assert_eq!(claim.delivery_tx, Some(B256::repeat_byte(4)));
        assert_eq!(claim.proof_hash, Some(B256::repeat_byte(3)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_have_one_winner() {
    on_both(async |store| {
        let id = B256::repeat_byte(7);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.claim(id, B256::ZERO).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(matches!(task.await.unwrap(), ClaimOutcome::Claimed { .. }));
        }
        assert_eq!(wins, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_concurrent_calls_on_a_session_covering_37_hold_exactly_37() {
    on_both(async |store| {
        let id = B256::repeat_byte(3);
        store
            .session_or_insert(id, open_session(37 * 10))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let store = store.clone();
                // every client signs enough; the deposit is what limits
                tokio::spawn(async move {
                    store
                        .hold(id, u(10), voucher(10_000), 1)
                        .await
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        let mut holds = Vec::new();
        for task in tasks {
            if let Ok(hold) = task.await.unwrap() {
                holds.push(hold);
            }
        }
        assert_eq!(holds.len(), 37);
        let s = store.session(id).await.unwrap().unwrap();
        assert_eq!(
            (s.held, s.in_flight, s.available()),
            (u(370), 37, U256::ZERO)
        );
        // Each call ends: charged 7 of its 10, or given back.
        let domain = actp_core::eip712::actp_domain(31_337, Address::repeat_byte(1));
        for (i, hold) in holds.into_iter().enumerate() {
            if i % 2 == 0 {
                store
                    .charge(hold, |s| {
                        s.charge(id, u(10), u(7), B256::ZERO, B256::ZERO, &domain)
                    })
                    .await
                    .unwrap()
                    .unwrap();
            } else {
                store.release_hold(hold).await.unwrap();
            }
        }
        let s = store.session(id).await.unwrap().unwrap();
        assert_eq!((s.held, s.in_flight), (U256::ZERO, 0));
        assert_eq!((s.charged, s.next_seq), (u(7 * 19), 19));
    })
    .await;
}

#[tokio::test]
async fn a_session_is_created_once_closed_once_and_read_back() {
    on_both(async |store| {
        let id = B256::repeat_byte(4);
        assert_eq!(store.session(id).await.unwrap(), None);
        assert_eq!(store.hold(id, u(1), voucher(1), 1).await.unwrap(), None);
        store
            .session_or_insert(id, open_session(100))
            .await
            .unwrap();
        let hold = store
            .hold(id, u(10), voucher(10), 2)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // a second first sight keeps what is there
        let again = store
            .session_or_insert(id, open_session(999))
            .await
            .unwrap();
        assert_eq!((again.deposit, again.held), (u(100), u(10)));
        store.release_hold(hold).await.unwrap();
        assert_eq!(store.sessions().await.unwrap().len(), 1);
        assert_eq!(store.session(id).await.unwrap().unwrap().held, U256::ZERO);
        // Closed once: the close is queued once, and ends once.
        assert!(
            store
                .queue_session_close(id, CloseReason::Asked)
                .await
                .unwrap()
        );
        assert!(
            !store
                .queue_session_close(id, CloseReason::Idle)
                .await
                .unwrap()
        );
        let pending = store.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].delivery.session);
        let seq = pending[0].seq;
        assert!(
            store
                .finish_session_close(seq, id, Ok(Some(B256::repeat_byte(9))))
                .await
                .unwrap()
        );
        assert!(!store.finish_session_close(seq, id, Ok(None)).await.unwrap());
        assert_eq!(
            store.session(id).await.unwrap().unwrap().status,
            SessionStatus::Closed {
                tx: Some(B256::repeat_byte(9)),
                reason: Some(CloseReason::Asked),
            }
        );
        assert!(store.pending().await.unwrap().is_empty());
    })
    .await;
}

/// On the embedded store a session's account reaches sled only at checkpoints (the journal holds it until
/// then): what a charge wrote and flushed is there after a reopen, without a checkpoint in between, and the
/// holds of calls that died with the process are gone.
#[tokio::test]
async fn an_embedded_session_is_read_back_after_a_reopen_from_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let id = B256::repeat_byte(6);
    {
        let store = Store::open(dir.path(), Durability::Synced).unwrap();
        store
            .session_or_insert(id, open_session(100))
            .await
            .unwrap();
        for cumulative in [10, 20] {
            let hold = store
                .hold(id, u(10), voucher(cumulative), 2)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            store
                .charge(hold, |s| {
                    s.held = s.held.saturating_sub(hold.max);
                    s.in_flight -= 1;
                    s.charged += u(7);
                })
                .await
                .unwrap();
        }
        // A call in flight when the process ends.
        store
            .hold(id, u(10), voucher(30), 3)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        store.flush().await.unwrap();
    }
    let until = std::time::Instant::now() + Duration::from_secs(120);
    let store = loop {
        match Store::open(dir.path(), Durability::Synced) {
            Ok(store) => break store,
            Err(_) if std::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    store.clear_holds().unwrap();
    let state = store.session(id).await.unwrap().unwrap();
    assert_eq!(
        (state.charged, state.held, state.in_flight),
        (u(14), U256::ZERO, 0)
    );
    assert_eq!(
        state.best.unwrap().cumulative,
        u(20),
        "the last voucher written through"
    );
    assert_eq!(store.sessions().await.unwrap().len(), 1);
}

/// Two replicas on one database: a transaction serves one request across both; an outbox entry is leased by
/// one at a time, and taken over (marked doubtful) once its owner's lease has run out; a dead replica's claim
/// and its hold on a session expire.
#[tokio::test]
async fn replicas_share_claims_lease_the_outbox_and_let_dead_holds_expire() {
    let url = actp_e2e::postgres::shared().fresh_database().await;
    let lease = Duration::from_secs(1);
    let (a, b) = (
        replica(&url, "a", lease).await,
        replica(&url, "b", lease).await,
    );
    let id = B256::repeat_byte(5);
    assert!(matches!(
        a.claim(id, B256::ZERO).await.unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
    assert_eq!(b.claim(id, B256::ZERO).await.unwrap(), ClaimOutcome::Taken);
    let seq = a.serve(id, B256::repeat_byte(6), false).await.unwrap();

    let leased = a.pending().await.unwrap();
    assert_eq!(leased.len(), 1);
    assert!(!leased[0].doubtful, "its first owner");
    assert!(b.pending().await.unwrap().is_empty(), "a holds it");
    assert!(!b.is_pending(seq).await);
    // a dies: once its lease has run out, b takes the entry over, and must read the chain first.
    let taken = loop {
        let taken = b.pending().await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(taken[0].doubtful);
    assert!(!a.finish(seq, id, Ok(None)).await.unwrap(), "a lost it");
    assert!(b.finish(seq, id, Ok(None)).await.unwrap());
    assert_eq!(
        a.claim_of(id).await.unwrap().unwrap().status,
        ClaimStatus::Delivered
    );

    // a claims another transaction and dies while serving it: once the claim's lease has run out, it reads as
    // released, and b serves the retry.
    let orphan = B256::repeat_byte(0x0e);
    assert!(matches!(
        a.claim(orphan, B256::ZERO).await.unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
    assert_eq!(
        b.claim(orphan, B256::ZERO).await.unwrap(),
        ClaimOutcome::Taken
    );
    loop {
        if b.claim(orphan, B256::ZERO).await.unwrap() != ClaimOutcome::Taken {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.claim_of(orphan).await.unwrap().unwrap().status,
        ClaimStatus::Active
    );

    // a's call on a session holds 60 of 100, then a dies: b can use the 60 once the hold expires.
    let session = B256::repeat_byte(8);
    a.session_or_insert(session, open_session(100))
        .await
        .unwrap();
    a.hold(session, u(60), voucher(1_000), 1)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        b.hold(session, u(60), voucher(1_000), 1).await.unwrap(),
        Some(Err(HoldRefusal::UsedUp { .. }))
    ));
    let hold = loop {
        if let Some(Ok(hold)) = b.hold(session, u(60), voucher(1_000), 1).await.unwrap() {
            break hold;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s = b.session(session).await.unwrap().unwrap();
    assert_eq!((s.held, s.in_flight), (u(60), 1));
    b.release_hold(hold).await.unwrap();
}
