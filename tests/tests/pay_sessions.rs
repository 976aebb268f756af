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

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use actp_axum::{Paywall, Route, SessionConfig, Usage};
use actp_client::{Devnet, DevnetOptions, Kernel};
use actp_core::{
    Address, Amount, State, U256, http::VOUCHER_HEADER, proof::content_hash, session::VoucherHeader,
};
use actp_e2e::{PATIENCE, eventually, serve};
use actp_pay::{
    AfterDelivery, GroupBy, Ledger, PayConfig, PayError, PayingClient, Payment, PaymentState,
    SpendPolicy, UsageQuery,
};
use actp_store::StoreUrl;
use axum::{
    Router,
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::post,
};

/// 0.001 per output "token" (a byte of the answer), at most 0.05 per call.
const CHAT_MAX: u128 = 50_000;
/// A flat route: 0.01 per call.
const ECHO_PRICE: u128 = 10_000;

/// A voucher the provider received, with the request it signs.
#[derive(Clone)]
struct Seen {
    voucher: VoucherHeader,
    path: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Wire {
    /// Every voucher, in order.
    seen: Mutex<Vec<Seen>>,
    /// Calls that reached the provider.
    calls: AtomicUsize,
    /// The response to this call (1-based) is never sent, after the paywall charged it.
    withhold: Option<usize>,
    /// Set once the withheld call was charged.
    withheld: AtomicBool,
}

struct World {
    devnet: Devnet,
    provider: Kernel,
    consumer: Kernel,
    url: String,
    dir: tempfile::TempDir,
    wire: Arc<Wire>,
    _paywall: Paywall,
}

/// A provider with a metered chat route and a flat echo route, both payable from sessions. `closes`: whether
/// it runs its outbox (closing sessions); `withhold`: a call whose response it keeps.
async fn world(closes: bool, withhold: Option<usize>) -> World {
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
    let wire = Arc::new(Wire {
        withhold,
        ..Wire::default()
    });
    let app = Router::new()
        .route(
            "/v1/chat",
            post(|body: String| async move {
                let answer = format!("answer to {body}");
                let mut response: Response = answer.clone().into_response();
                response
                    .extensions_mut()
                    .insert(Usage::new().with("out", answer.len() as u64));
                response
            }),
        )
        .route("/v1/echo", post(|body: String| async move { body }))
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
async fn watch(
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
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if paid_call && wire.withhold == Some(n) {
        wire.withheld.store(true, Ordering::SeqCst);
        // The paywall charged it and signed its receipt; the consumer never sees either.
        std::future::pending::<()>().await;
    }
    response
}

impl World {
    fn ledger_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("pay")
    }

    fn agent(&self) -> Address {
        self.consumer.signer_address().unwrap()
    }

    async fn client(&self, config: PayConfig) -> PayingClient {
        let ledger = open_ledger(&self.ledger_dir()).await;
        PayingClient::with_config(self.consumer.clone(), ledger, config)
            .await
            .unwrap()
    }

    /// Sessions on, deposits for `calls` calls at the route's maximum.
    async fn allow_sessions(&self, calls: u32) {
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

    async fn chat(
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

    async fn echo(
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

async fn sessions(client: &PayingClient, agent: Address) -> Vec<Payment> {
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
async fn payment(client: &PayingClient, key: &str) -> Payment {
    client
        .ledger()
        .payment(client.agent(), key)
        .await
        .unwrap()
        .unwrap()
}

fn config() -> PayConfig {
    PayConfig {
        after_delivery: AfterDelivery::SettleNow,
        session_close_wait: Duration::ZERO,
        ..PayConfig::default()
    }
}

/// Runs reconcile until `done` holds for the session with key `key`.
async fn reconcile_until(
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
async fn open_ledger(dir: &Path) -> Ledger {
    let url = StoreUrl::Sled(dir.to_path_buf());
    actp_e2e::open_when_free(
        async || Ledger::open(&url).await,
        |e| matches!(e, actp_pay::LedgerError::Busy { .. }),
    )
    .await
}

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
