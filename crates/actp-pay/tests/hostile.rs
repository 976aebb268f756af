//! Everything in a 402 comes from a party the agent does not trust. A provider that asks for an escrow
//! lasting a year, or sends numbers near the top of their types, gets a typed refusal before any escrow
//! exists: no reservation is left, nothing is created on chain, the wallet is untouched, and nothing
//! panics or wraps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};

use actp_client::{Devnet, Kernel};
use actp_core::{
    Address,
    http::{ErrorBody, HeaderNames, PROTOCOL, PaymentInstructions, PaymentTerms},
    ids::service_hash,
};
use actp_pay::{BudgetError, Ledger, PayError, PayingClient, SpendPolicy};
use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::post};

/// A provider that answers every request with the 402 `instructions` make from the chain's now.
async fn hostile(instructions: PaymentInstructions) -> String {
    let body = Arc::new(Mutex::new(instructions));
    let app = Router::new().route(
        "/v1/work",
        post(move || {
            let payment = body.lock().unwrap().clone();
            async move {
                let body = ErrorBody {
                    error: "Payment Required".into(),
                    code: "payment_required".into(),
                    message: "pay".into(),
                    payment: Some(payment),
                    current_state: None,
                    required: None,
                    provided: None,
                };
                (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response()
            }
        }),
    );
    format!("{}/v1/work", actp_e2e::serve(app).await)
}

fn instructions(kernel: &Kernel, provider: Address, min_deadline: u64) -> PaymentInstructions {
    PaymentInstructions {
        terms: PaymentTerms {
            protocol: PROTOCOL.into(),
            chain_id: kernel.chain_id(),
            kernel: kernel.address(),
            token: kernel.token(),
            decimals: 6,
            provider,
            min_time_to_deadline: 0,
            max_authorization_validity: 300,
            headers: HeaderNames::default(),
            session: None,
        },
        method: "POST".into(),
        path: "/v1/work".into(),
        amount: "100000".into(),
        price: "0.10".into(),
        units: None,
        service: "work".into(),
        service_hash: service_hash("work"),
        min_deadline,
        sessions: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_cannot_lock_funds_longer_than_the_policy_allows() {
    let devnet = Devnet::start().await.unwrap();
    let agent = devnet.kernel(2).await.unwrap();
    let provider = devnet.signer(1).address();
    let now = agent.chain_time().await.unwrap();
    let before = agent
        .balance_of(agent.signer_address().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&actp_store::StoreUrl::Sled(dir.path().to_path_buf()))
        .await
        .unwrap();
    let client = PayingClient::new(agent.clone(), ledger.clone())
        .await
        .unwrap();

    // A year out, with the default limit of one hour.
    let a_year = hostile(instructions(&agent, provider, now + 365 * 86_400)).await;
    match client.post(&a_year).body("x").send().await {
        Err(PayError::Budget(BudgetError::EscrowTooLong {
            needed_seconds,
            max_seconds,
            provider: named,
            ..
        })) => {
            assert!(needed_seconds >= 365 * 86_400 - 60, "{needed_seconds}");
            assert_eq!(max_seconds, 3_600);
            assert_eq!(named, provider);
        }
        other => panic!("expected EscrowTooLong, got {other:?}"),
    }

    // Numbers at the top of their type: refused, never an overflow.
    let far = hostile(instructions(&agent, provider, u64::MAX)).await;
    assert!(matches!(
        client.post(&far).body("x").send().await,
        Err(PayError::Budget(BudgetError::EscrowTooLong { .. }))
    ));
    let mut huge = instructions(&agent, provider, now + 600);
    huge.amount = u128::MAX.to_string() + "0";
    let huge = hostile(huge).await;
    assert!(matches!(
        client.post(&huge).body("x").send().await,
        Err(PayError::BadInstructions { .. })
    ));

    // The limit is the policy's: raised for this agent, the same provider is paid within it.
    let policy = SpendPolicy {
        max_escrow_ttl: Some(2 * 86_400),
        ..SpendPolicy::default()
    };
    ledger
        .set_policy(agent.signer_address().unwrap(), &policy)
        .await
        .unwrap();
    let in_a_day = hostile(instructions(&agent, provider, now + 86_400)).await;
    let answered = client.post(&in_a_day).body("x").send().await;
    assert!(
        !matches!(answered, Err(PayError::Budget(_))),
        "a deadline within the raised limit was refused: {answered:?}"
    );

    // Nothing was escrowed for the refused ones: the only escrow on chain is the one within the limit.
    let created = agent
        .created_by(agent.signer_address().unwrap(), devnet.deployment().block)
        .await
        .unwrap();
    assert_eq!(created.len(), 1, "{created:?}");
    let spent = before
        - agent
            .balance_of(agent.signer_address().unwrap())
            .await
            .unwrap();
    assert_eq!(spent, actp_core::U256::from(100_000u64));
}
