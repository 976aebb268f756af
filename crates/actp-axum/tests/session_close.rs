//! The provider closes a session by itself, once, through the outbox, on a real devnet: after the idle time,
//! before the deadline (by the configured margin), and within the grace period once the requester asked on
//! chain to end it. (Closes a consumer asks for, and used-up sessions: `sessions.rs`.) The provider's record
//! of each closed session says why it was closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use actp_axum::{CloseReason, SessionConfig, SessionStatus};
use actp_core::{Amount, B256, State, U256};

mod session_world;

use session_world::{ECHO_PRICE, World, terms, world_with};

fn config(change: impl FnOnce(&mut SessionConfig)) -> SessionConfig {
    let mut config = terms(Amount::from_base_units(100_000));
    change(&mut config);
    config
}

/// Waits until the paywall has closed `id` on chain, then checks why and what: `reason`, delivered, claiming
/// exactly what the receipts charged, with the last receipt's hash as the proof hash.
async fn closes_for(w: &World, id: B256, reason: CloseReason) {
    actp_e2e::eventually("the session is closed", || async {
        matches!(
            w.paywall.session(id).await.unwrap().unwrap().status,
            SessionStatus::Closed { tx: Some(_), .. } | SessionStatus::Failed { .. }
        )
    })
    .await;
    let session = w.paywall.session(id).await.unwrap().unwrap();
    assert!(
        matches!(session.status, SessionStatus::Closed { reason: Some(r), .. } if r == reason),
        "{:?}",
        session.status
    );
    assert_eq!(w.state(id).await, State::Delivered);
    let on_chain = w.consumer.session_of(id).await.unwrap().unwrap();
    assert_eq!(on_chain.claimed, session.charged);
    assert_eq!(
        w.consumer.recorded_proof_hash(id, 0).await.unwrap(),
        Some(session.head)
    );
}

/// Two paid calls, in order.
async fn two_calls(w: &World, id: B256) {
    for n in 1..=2 {
        let response = w.call(id, n * ECHO_PRICE, "/v1/echo", "x").await;
        assert_eq!(response.status(), 200, "call {n}");
    }
}

#[tokio::test]
async fn a_session_nobody_calls_for_the_idle_time_is_closed() {
    // The outbox runs in a task of its own, as in a worker: it looks for sessions to close too.
    let w = world_with(config(|c| c.idle_close = Duration::from_secs(60)), false).await;
    let runner = w.paywall.clone();
    tokio::spawn(async move { runner.run_outbox().await });
    let id = w.open(10 * ECHO_PRICE, "session").await;
    two_calls(&w, id).await;
    assert_eq!(
        w.paywall.session(id).await.unwrap().unwrap().status,
        SessionStatus::Open
    );
    w.devnet.advance_time(61).await.unwrap();
    w.paywall.sync_clock().await.unwrap();
    closes_for(&w, id, CloseReason::Idle).await;
    assert_eq!(
        w.consumer.session_of(id).await.unwrap().unwrap().claimed,
        U256::from(2 * ECHO_PRICE)
    );
}

#[tokio::test]
async fn a_session_is_closed_before_its_deadline_by_the_margin() {
    let margin = 600;
    // Idle for far longer than the margin: the deadline still decides, as it comes first.
    let w = world_with(
        config(|c| {
            c.close_margin = Duration::from_secs(margin);
            c.idle_close = Duration::from_secs(86_400);
        }),
        true,
    )
    .await;
    let lasting = 4_000;
    let id = w.open_until(10 * ECHO_PRICE, "session", lasting).await;
    two_calls(&w, id).await;
    let deadline = w.consumer.get(id).await.unwrap().deadline;
    // Just inside the margin: a few seconds later than `deadline - margin`.
    let now = w.devnet.now().await.unwrap();
    w.devnet
        .advance_time(deadline - margin - now + 5)
        .await
        .unwrap();
    w.paywall.sync_clock().await.unwrap();
    closes_for(&w, id, CloseReason::Deadline).await;
    assert!(w.devnet.now().await.unwrap() < deadline);
}

#[tokio::test]
async fn a_session_the_requester_ends_on_chain_is_closed_within_the_grace_period() {
    let w = world_with(config(|_| {}), true).await;
    let id = w.open(10 * ECHO_PRICE, "session").await;
    two_calls(&w, id).await;
    w.consumer.end_session(id).await.unwrap();
    let close_by = w.consumer.session_of(id).await.unwrap().unwrap().close_by;
    assert!(close_by > 0);
    closes_for(&w, id, CloseReason::EndRequested).await;
    // The kernel takes a close only until `close_by`; it took this one.
    assert!(w.devnet.now().await.unwrap() <= close_by);
    assert_eq!(
        w.consumer.session_of(id).await.unwrap().unwrap().claimed,
        U256::from(2 * ECHO_PRICE)
    );
}
