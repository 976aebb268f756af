//! Calls paid from a session, on a real devnet over real HTTP with a real sled database: vouchers, holds that
//! never overdraw the deposit, metered charges with chained receipts, the close through the outbox, and every
//! session refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::time::Duration;

use actp_axum::SessionConfig;
use actp_core::{
    Amount, State, U256,
    authorization::{AuthorizationHeader, RequestAuthorization},
    http::{PricingDocument, RECEIPT_HEADER, TX_ID_HEADER, VOUCHER_HEADER},
    ids::service_hash,
    model::CreateParams,
    proof::content_hash,
    session::{ReceiptChain, SignedReceipt, VoucherHeader},
};
use futures::future::join_all;

mod session_world;

use session_world::{CHAT_MAX, ECHO_PRICE, refusal, terms, wall_clock, world, world_with};

#[tokio::test]
async fn a_session_pays_many_metered_calls_with_chained_receipts_and_closes_once() {
    let w = world(Amount::from_tokens(1)).await;
    let me = w.paywall.provider();
    // The pricing document and a 402 advertise the session terms.
    let pricing: PricingDocument = w
        .http
        .get(format!("{}/pricing", w.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer = pricing.terms.session.clone().unwrap();
    assert_eq!(offer.service_hash, service_hash("session"));
    assert_eq!(offer.min_deposit, "1000000");
    assert_eq!(offer.grace, actp_core::session::MIN_GRACE);
    let chat = pricing
        .routes
        .iter()
        .find(|r| r.path == "/v1/chat")
        .unwrap();
    assert_eq!(
        (chat.pricing.as_str(), chat.amount.as_deref()),
        ("metered", Some("50000"))
    );
    assert_eq!(chat.units.as_ref().unwrap()["out"], "0.001");
    assert!(chat.sessions);
    let (status, unpaid) = refusal(
        w.http
            .post(format!("{}/v1/chat", w.url))
            .body("hi")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 402);
    // The 402: the session terms, the most one call may cost, and the price of each unit.
    let payment = unpaid.payment.unwrap();
    assert_eq!(payment.terms.session.clone().unwrap(), offer);
    assert_eq!((payment.amount.as_str(), payment.sessions), ("50000", true));
    assert_eq!(payment.units, chat.units);

    let id = w.open(2_000_000, &offer.service).await;
    let mut chain = ReceiptChain::new(id, me, w.provider.domain());
    for (i, body) in ["one", "two", "three", "four", "five"].iter().enumerate() {
        let path = if i % 2 == 0 { "/v1/chat" } else { "/v1/echo" };
        let max = if i % 2 == 0 { CHAT_MAX } else { ECHO_PRICE };
        let cumulative = chain.charged().to::<u64>() + max;
        let response = w.call(id, cumulative, path, body).await;
        assert_eq!(response.status(), 200);
        let receipt =
            SignedReceipt::from_header(response.headers()[RECEIPT_HEADER].to_str().unwrap())
                .unwrap();
        let answer = response.bytes().await.unwrap();
        let request_hash =
            actp_core::authorization::request_hash("POST", path, content_hash(body.as_bytes()));
        chain
            .accept(
                &receipt,
                U256::from(cumulative),
                request_hash,
                content_hash(&answer),
            )
            .unwrap();
        // metered: one base unit per 0.001 x bytes of the answer; flat: the price
        let expected = if i % 2 == 0 {
            1_000 * answer.len() as u64
        } else {
            ECHO_PRICE
        };
        assert_eq!(receipt.receipt.charge, U256::from(expected));
        assert_eq!(
            receipt.receipt.remaining,
            U256::from(2_000_000) - chain.charged()
        );
    }
    let charged = chain.charged();
    let account = w.paywall.session(id).await.unwrap().unwrap();
    assert_eq!(
        (account.charged, account.head, account.in_flight),
        (charged, chain.head(), 0)
    );

    // The consumer asks to close; the outbox starts and closes it once, with the chain's head as proof.
    let asked = w.ask_close(id, charged.to::<u64>()).await;
    assert_eq!(asked.status(), 202);
    let (status, closing) = refusal(
        w.call(id, charged.to::<u64>() + CHAT_MAX, "/v1/chat", "late")
            .await,
    )
    .await;
    assert_eq!((status, closing.code.as_str()), (409, "session_closed"));
    actp_e2e::eventually("the session is closed on chain", || async {
        w.state(id).await == State::Delivered
    })
    .await;
    let terms = w.consumer.session_of(id).await.unwrap().unwrap();
    assert_eq!(terms.claimed, charged);
    assert_eq!(
        w.consumer.recorded_proof_hash(id, 0).await.unwrap(),
        Some(chain.head())
    );
    actp_e2e::eventually("the close is recorded", || async {
        matches!(
            w.paywall.session(id).await.unwrap().unwrap().status,
            actp_axum::SessionStatus::Closed {
                tx: Some(_),
                reason: Some(actp_axum::CloseReason::Asked)
            }
        )
    })
    .await;
    assert_eq!(w.paywall.outbox_len().await.unwrap(), 0);

    // Settlement pays the claim less the fee and refunds the rest.
    let (consumer_before, provider_before) = (
        w.devnet.balance_of(w.signer.address()).await.unwrap(),
        w.devnet.balance_of(me).await.unwrap(),
    );
    w.consumer.settle(id).await.unwrap();
    let fee = charged * U256::from(100) / U256::from(10_000);
    assert_eq!(
        w.devnet.balance_of(me).await.unwrap() - provider_before,
        charged - fee
    );
    assert_eq!(
        w.devnet.balance_of(w.signer.address()).await.unwrap() - consumer_before,
        U256::from(2_000_000) - charged
    );
}

#[tokio::test]
async fn one_hundred_concurrent_calls_on_a_session_that_covers_37_serve_exactly_37() {
    let w = world(Amount::from_base_units(100_000)).await;
    let id = w.open(37 * ECHO_PRICE, "session").await;
    // The consumer authorizes far more than the deposit: the deposit is what limits.
    let bodies: Vec<String> = (0..100).map(|i| format!("call {i}")).collect();
    let responses = join_all(
        bodies
            .iter()
            .map(|body| w.call(id, 100 * ECHO_PRICE, "/v1/echo", body)),
    )
    .await;
    let mut served = 0;
    let mut used_up = 0;
    let mut receipts = Vec::new();
    for (response, body) in responses.into_iter().zip(&bodies) {
        match response.status().as_u16() {
            200 => {
                served += 1;
                let receipt = SignedReceipt::from_header(
                    response.headers()[RECEIPT_HEADER].to_str().unwrap(),
                )
                .unwrap();
                let answer = response.bytes().await.unwrap();
                receipts.push((receipt, body, answer));
            }
            402 => {
                let (_, body) = refusal(response).await;
                assert_eq!(body.code, "session_used_up", "{}", body.message);
                assert!(
                    body.message.contains("open a new session"),
                    "{}",
                    body.message
                );
                used_up += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((served, used_up), (37, 63));
    // The receipts of calls answered together share signatures (each with its path to the batch signed), and
    // in the order of the chain every one checks as the provider's.
    receipts.sort_by_key(|(r, _, _)| r.receipt.seq);
    let mut chain = ReceiptChain::new(
        id,
        w.provider.signer_address().unwrap(),
        w.provider.domain(),
    );
    for (receipt, body, answer) in &receipts {
        let request_hash = actp_core::authorization::request_hash(
            "POST",
            "/v1/echo",
            content_hash(body.as_bytes()),
        );
        chain
            .accept(
                receipt,
                U256::from(100 * ECHO_PRICE),
                request_hash,
                content_hash(answer),
            )
            .unwrap();
    }
    assert_eq!(chain.charged(), U256::from(37 * ECHO_PRICE));
    let signatures = w.paywall.signatures();
    assert_eq!(signatures.hashes, 37);
    assert!((1..=37).contains(&signatures.made), "{signatures:?}");
    // Used up: the provider closes it by itself, claiming exactly the 37 calls.
    actp_e2e::eventually("the used-up session is closed", || async {
        w.state(id).await == State::Delivered
    })
    .await;
    assert_eq!(
        w.consumer.session_of(id).await.unwrap().unwrap().claimed,
        U256::from(37 * ECHO_PRICE)
    );
}

/// The paywall checks a known requester's vouchers by `r` and `s` alone (no recovery), so a voucher may carry
/// the other recovery bit; the close sets the bit the kernel's `ecrecover` needs.
#[tokio::test]
async fn a_voucher_with_the_other_recovery_bit_still_closes_on_chain() {
    let w = world(Amount::from_base_units(100_000)).await;
    let id = w.open(10 * ECHO_PRICE, "session").await;
    // The first call makes the requester's key known.
    assert_eq!(
        w.call(id, ECHO_PRICE, "/v1/echo", "first").await.status(),
        200
    );
    // The second, with the best voucher of the session, carries the other bit.
    let sent: VoucherHeader = w
        .voucher(&w.signer, id, 2 * ECHO_PRICE, "/v1/echo", "second")
        .await
        .parse()
        .unwrap();
    let flipped = VoucherHeader {
        signature: actp_core::Signature::new(
            sent.signature.r(),
            sent.signature.s(),
            !sent.signature.v(),
        ),
        ..sent
    };
    let response = w
        .http
        .post(format!("{}/v1/echo", w.url))
        .header(TX_ID_HEADER, id.to_string())
        .header(VOUCHER_HEADER, flipped.to_string())
        .body("second")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let best = w.paywall.session(id).await.unwrap().unwrap().best.unwrap();
    assert_eq!(
        best.signature.as_ref(),
        flipped.signature.as_bytes().as_slice()
    );
    assert_eq!(w.ask_close(id, 2 * ECHO_PRICE).await.status(), 202);
    actp_e2e::eventually("the session is closed on chain", || async {
        w.state(id).await == State::Delivered
    })
    .await;
    assert_eq!(
        w.consumer.session_of(id).await.unwrap().unwrap().claimed,
        U256::from(2 * ECHO_PRICE)
    );
}

/// Every session refusal, each against the devnet, in one table.
#[tokio::test]
async fn every_session_refusal_has_its_status_code_and_message() {
    // A used-up session stays open for a top-up for a minute: long enough for its refusal to say so.
    let w = world_with(
        SessionConfig {
            used_up_close: Duration::from_secs(60),
            ..terms(Amount::from_base_units(100_000))
        },
        true,
    )
    .await;
    let me = w.paywall.provider();
    let stranger = w.devnet.signer(3);
    let id = w.open(1_000_000, "session").await;
    let small = w.open(50_000, "session").await;
    // Ten calls use up a deposit of 0.1 at 0.01 each.
    let tight = w.open(100_000, "session").await;
    for n in 1..=10 {
        let paid = w.call(tight, n * ECHO_PRICE, "/v1/echo", "x").await;
        assert_eq!(paid.status(), 200, "call {n}");
    }
    let other_service = w.open(1_000_000, "chat").await;
    let now = w.devnet.now().await.unwrap();
    let per_call = w
        .consumer
        .pay(&CreateParams::new(
            me,
            U256::from(50_000),
            now + 86_400,
            3_600,
            service_hash("echo"),
        ))
        .await
        .unwrap();

    let mut cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "voucher on a per-call transaction",
            w.call(per_call, ECHO_PRICE, "/v1/echo", "x").await,
            400,
            "not_a_session",
        ),
        (
            "deposit below the minimum",
            w.call(small, ECHO_PRICE, "/v1/echo", "x").await,
            402,
            "deposit_too_small",
        ),
        (
            "session used up",
            w.call(tight, 11 * ECHO_PRICE, "/v1/echo", "x").await,
            402,
            "session_used_up",
        ),
        (
            "session for another service",
            w.call(other_service, ECHO_PRICE, "/v1/echo", "x").await,
            402,
            "session_terms_refused",
        ),
        (
            "voucher signed by a stranger",
            w.call_as(&stranger, id, ECHO_PRICE, "/v1/echo", "x").await,
            401,
            "unauthorized",
        ),
        (
            "voucher below the call's maximum",
            w.call(id, ECHO_PRICE - 1, "/v1/echo", "x").await,
            402,
            "voucher_below_owed",
        ),
    ];
    // A per-call authorization on a session.
    let auth = {
        let request = RequestAuthorization::new(
            id,
            "POST",
            "/v1/echo",
            content_hash(b"x"),
            wall_clock() + 60,
        );
        let sig = w
            .signer
            .sign_hash(&alloy_sol_types::SolStruct::eip712_signing_hash(
                &request,
                &w.provider.domain(),
            ))
            .await
            .unwrap();
        AuthorizationHeader::from_signature(&request, sig).to_string()
    };
    let wrong_header = w
        .http
        .post(format!("{}/v1/echo", w.url))
        .header(TX_ID_HEADER, id.to_string())
        .header(actp_core::http::AUTHORIZATION_HEADER, auth)
        .body("x")
        .send()
        .await
        .unwrap();
    cases.push((
        "authorization instead of a voucher",
        wrong_header,
        400,
        "voucher_required",
    ));
    let malformed = w
        .http
        .post(format!("{}/v1/echo", w.url))
        .header(TX_ID_HEADER, id.to_string())
        .header(VOUCHER_HEADER, "cum=1; exp=2")
        .body("x")
        .send()
        .await
        .unwrap();
    cases.push((
        "malformed voucher",
        malformed,
        400,
        "malformed_authorization",
    ));
    // Served once with the close header (the consumer's last call), then closing: a later call is refused.
    let voucher = w.voucher(&w.signer, id, ECHO_PRICE, "/v1/echo", "x").await;
    let last = w
        .http
        .post(format!("{}/v1/echo", w.url))
        .header(TX_ID_HEADER, id.to_string())
        .header(VOUCHER_HEADER, voucher)
        .header(actp_axum::CLOSE_HEADER, "1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 200);
    assert!(matches!(
        w.paywall.session(id).await.unwrap().unwrap().status,
        actp_axum::SessionStatus::Closing { .. } | actp_axum::SessionStatus::Closed { .. }
    ));
    // Asking again through the close path is accepted and changes nothing.
    let again = w.ask_close(id, ECHO_PRICE).await;
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["alreadyClosing"], true);
    cases.push((
        "closing or closed session",
        w.call(id, 2 * ECHO_PRICE, "/v1/echo", "y").await,
        409,
        "session_closed",
    ));
    actp_e2e::eventually("the session is closed on chain", || async {
        w.state(id).await == State::Delivered
    })
    .await;
    cases.push((
        "session closed on chain",
        w.call(id, 2 * ECHO_PRICE, "/v1/echo", "z").await,
        409,
        "session_closed",
    ));

    // What each message tells the consumer to do, where the code alone does not say it.
    let advice = |what: &str| match what {
        "deposit below the minimum" => Some("a deposit of at least 100000"),
        "session used up" => Some("top it up (topUpSession)"),
        "voucher signed by a stranger" => Some("not the transaction's requester"),
        "voucher below the call's maximum" => Some("sign the voucher for at least"),
        "session closed on chain" => Some("is closed"),
        _ => None,
    };
    for (what, response, status, code) in cases {
        let (got, body) = refusal(response).await;
        assert_eq!(
            (got, body.code.as_str()),
            (status, code),
            "{what}: {}",
            body.message
        );
        assert!(body.message.len() > 30, "{what}: {}", body.message);
        if let Some(advice) = advice(what) {
            assert!(body.message.contains(advice), "{what}: {}", body.message);
        }
        if code == "deposit_too_small" {
            assert_eq!(
                (body.required.as_deref(), body.provided.as_deref()),
                (Some("100000"), Some("50000"))
            );
        }
    }
}
