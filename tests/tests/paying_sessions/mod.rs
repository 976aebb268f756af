//! A provider selling a metered chat route and a flat echo route from sessions behind the paywall (its outbox
//! optional), on anvil over loopback HTTP with its sled store; a wire between it and the consumer that records
//! vouchers, can withhold a response or tamper with a receipt; and the paying client's ledger on disk.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use actp_axum::{Paywall, Route, SessionConfig};
use actp_client::{Devnet, DevnetOptions, Kernel};
use actp_core::{
    Address, Amount,
    http::{RECEIPT_HEADER, VOUCHER_HEADER},
    session::VoucherHeader,
};
use actp_e2e::{PATIENCE, serve};
use actp_pay::{AfterDelivery, Ledger, PayConfig, PayError, PayingClient, Payment, SpendPolicy};
use actp_store::StoreUrl;
use axum::{
    body::Body,
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::post,
};

/// 0.001 per output "token" (a byte of the answer), at most 0.05 per call.
pub const CHAT_MAX: u128 = 50_000;
/// A flat route: 0.01 per call.
pub const ECHO_PRICE: u128 = 10_000;

/// A voucher the provider received, with the request it signs.
#[derive(Clone)]
pub struct Seen {
    pub voucher: VoucherHeader,
    pub path: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub struct Wire {
    /// Every voucher, in order.
    pub seen: Mutex<Vec<Seen>>,
    /// Calls that reached the provider.
    pub calls: AtomicUsize,
    /// The response to this call (1-based) is never sent, after the paywall charged it.
    pub withhold: Option<usize>,
    /// Set once the withheld call was charged.
    pub withheld: AtomicBool,
    /// The receipt of this call (1-based) reaches the consumer with another charge than the provider signed.
    pub tamper: Option<usize>,
    /// The answer to this call (1-based) is lost after the paywall charged it: the consumer gets a 502, as
    /// from a load balancer whose replica died mid-call.
    pub cut: Option<usize>,
}

pub struct World {
    pub devnet: Devnet,
    pub provider: Kernel,
    pub consumer: Kernel,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub wire: Arc<Wire>,
    pub _paywall: Paywall,
}

/// A provider with a metered chat route, a flat echo route and a flat route whose handler always fails, all
/// payable from sessions. `closes`: whether it runs its outbox (closing sessions); `withhold`: a call whose
/// response it keeps.
pub async fn world(closes: bool, withhold: Option<usize>) -> World {
    world_with(
        closes,
        Wire {
            withhold,
            ..Wire::default()
        },
    )
    .await
}

/// [`world`] with the wire given.
pub async fn world_with(closes: bool, wire: Wire) -> World {
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 4,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provider = devnet.kernel(1).await.unwrap();
    let paywall = Paywall::builder(provider.clone())
        .data_dir(dir.path().join("provider"))
        .route(
            Route::post("/v1/chat")
                .metered("out=0.001,max=0.05".parse().unwrap())
                .service("chat"),
        )
        .route(
            Route::post("/v1/echo")
                .flat(Amount::from_base_units(ECHO_PRICE))
                .service("echo"),
        )
        .route(
            Route::post("/v1/fail")
                .flat(Amount::from_base_units(ECHO_PRICE))
                .service("echo"),
        )
        .sessions(Some(SessionConfig {
            min_deposit: Amount::from_base_units(100_000),
            check_every: Duration::from_millis(100),
            used_up_close: Duration::from_secs(30),
            ..SessionConfig::default()
        }))
        .run_outbox(closes)
        .build()
        .await
        .unwrap();
    let wire = Arc::new(wire);
    let app = actp_e2e::chat_and_echo()
        .route(
            "/v1/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "the model is down") }),
        )
        .layer(paywall.layer())
        .layer(axum::middleware::from_fn_with_state(wire.clone(), watch));
    let url = serve(app).await;
    World {
        consumer: devnet.kernel(2).await.unwrap(),
        provider,
        url,
        dir,
        wire,
        devnet,
        _paywall: paywall,
    }
}

/// Between the client and the paywall: records vouchers, and keeps the response of the withheld call.
pub async fn watch(
    axum::extract::State(wire): axum::extract::State<Arc<Wire>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let voucher = parts
        .headers
        .get(VOUCHER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<VoucherHeader>().ok());
    let paid_call = voucher.is_some() && parts.uri.path() != "/sessions/close";
    if let Some(voucher) = voucher {
        wire.seen.lock().unwrap().push(Seen {
            voucher,
            path: parts.uri.path().to_owned(),
            body: body.to_vec(),
        });
    }
    let n = if paid_call {
        wire.calls.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        0
    };
    let mut response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if paid_call && wire.cut == Some(n) {
        return (StatusCode::BAD_GATEWAY, "replica failed: connection reset").into_response();
    }
    if paid_call && wire.tamper == Some(n) {
        let receipt = response.headers()[RECEIPT_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let (before, after) = receipt.split_once("\"charge\":\"").unwrap();
        let (_, rest) = after.split_once('"').unwrap();
        let forged = format!("{before}\"charge\":\"1\"{rest}");
        response
            .headers_mut()
            .insert(RECEIPT_HEADER, forged.parse().unwrap());
    }
    if paid_call && wire.withhold == Some(n) {
        wire.withheld.store(true, Ordering::SeqCst);
        // The paywall charged it and signed its receipt; the consumer never sees either.
        std::future::pending::<()>().await;
    }
    response
}

impl World {
    pub fn ledger_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("pay")
    }

    pub fn agent(&self) -> Address {
        self.consumer.signer_address().unwrap()
    }

    pub async fn client(&self, config: PayConfig) -> PayingClient {
        let ledger = open_ledger(&self.ledger_dir()).await;
        PayingClient::with_config(self.consumer.clone(), ledger, config)
            .await
            .unwrap()
    }

    /// Sessions on, deposits for `calls` calls at the route's maximum.
    pub async fn allow_sessions(&self, calls: u32) {
        let ledger = open_ledger(&self.ledger_dir()).await;
        ledger
            .set_policy(
                self.agent(),
                &SpendPolicy {
                    sessions: Some(true),
                    session_calls: Some(calls),
                    daily: Some(Amount::from_tokens(5)),
                    ..SpendPolicy::default()
                },
            )
            .await
            .unwrap();
    }

    pub async fn chat(
        &self,
        client: &PayingClient,
        text: &str,
    ) -> Result<actp_pay::PaidResponse, PayError> {
        client
            .post(format!("{}/v1/chat", self.url))
            .body(text.to_owned())
            .send()
            .await
    }

    pub async fn echo(
        &self,
        client: &PayingClient,
        text: &str,
    ) -> Result<actp_pay::PaidResponse, PayError> {
        client
            .post(format!("{}/v1/echo", self.url))
            .body(text.to_owned())
            .send()
            .await
    }
}

pub async fn sessions(client: &PayingClient, agent: Address) -> Vec<Payment> {
    client
        .ledger()
        .payments(agent)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.session.is_some())
        .collect()
}

/// The payment with key `key` in the client's ledger.
pub async fn payment(client: &PayingClient, key: &str) -> Payment {
    client
        .ledger()
        .payment(client.agent(), key)
        .await
        .unwrap()
        .unwrap()
}

pub fn config() -> PayConfig {
    PayConfig {
        after_delivery: AfterDelivery::SettleNow,
        session_close_wait: Duration::ZERO,
        ..PayConfig::default()
    }
}

/// Runs reconcile until `done` holds for the session with key `key`.
pub async fn reconcile_until(
    client: &PayingClient,
    key: &str,
    what: &str,
    done: impl Fn(&Payment) -> bool,
) {
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        client.reconcile().await.unwrap();
        let p = client
            .ledger()
            .payment(client.agent(), key)
            .await
            .unwrap()
            .unwrap();
        if done(&p) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "gave up waiting for {what}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the ledger, waiting while a handle dropped a moment ago still holds it.
pub async fn open_ledger(dir: &Path) -> Ledger {
    let url = StoreUrl::Sled(dir.to_path_buf());
    actp_e2e::open_when_free(
        async || Ledger::open(&url).await,
        |e| matches!(e, actp_pay::LedgerError::Busy { .. }),
    )
    .await
}
