//! A provider behind the paywall on a real devnet, served over loopback, and a consumer that pays it.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actp_axum::{ClaimMode, Paywall, PaywallBuilder, Price, PriceError, Route};
use actp_client::{Devnet, Kernel, Signer, bindings::EscrowKernel::EscrowKernelEvents};
use actp_core::{
    Address, Amount, B256, State,
    authorization::{AuthorizationHeader, RequestAuthorization},
    ids::service_hash,
    model::CreateParams,
    proof::content_hash,
};
use axum::{
    Router,
    extract::State as AxState,
    http::StatusCode,
    routing::{get, post},
};
use tokio::{sync::oneshot, task::JoinHandle};

pub const PRICE: Amount = Amount::from_base_units(100_000);
pub const ECHO: &str = "echo";

/// The provider's handlers: a paid echo, a paid flaky route, a dynamically priced route, a free route.
pub fn app(flaky_failures: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/v1/echo",
            post(|body: String| async move { format!("echo: {body}") }),
        )
        .route(
            "/v1/flaky",
            post(
                |AxState(failures): AxState<Arc<AtomicUsize>>, body: String| async move {
                    if failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "model crashed".to_owned(),
                        )
                    } else {
                        (StatusCode::OK, format!("flaky: {body}"))
                    }
                },
            ),
        )
        .route(
            "/v1/sized",
            post(|body: String| async move { body.len().to_string() }),
        )
        .route("/free", get(|| async { "free" }))
        .with_state(flaky_failures)
}

/// The paywall configuration the tests use.
pub fn configure(kernel: Kernel, dir: &Path) -> PaywallBuilder {
    Paywall::builder(kernel)
        .data_dir(dir)
        .route(Route::post("/v1/echo").flat(PRICE).service(ECHO))
        .route(Route::post("/v1/flaky").flat(PRICE).service(ECHO))
        .route(
            Route::post("/v1/sized")
                .price(Price::dynamic(|req| async move {
                    if req.body.len() > 500 {
                        return Err(PriceError("bodies over 500 bytes are not sold".into()));
                    }
                    Ok(Amount::from_base_units(
                        50_000 + 1_000 * req.body.len() as u128,
                    ))
                }))
                .service("sized"),
        )
        .route(Route::get("/free"))
        .min_time_to_deadline(Duration::from_secs(300))
        .body_limit(4096)
        .chain_timeout(Duration::from_secs(2))
        .retry_after(Duration::from_secs(1))
}

/// A running provider.
pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    pub paywall: Paywall,
    pub failures: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub async fn start(paywall: Paywall) -> Server {
        let failures = Arc::new(AtomicUsize::new(0));
        let router = app(Arc::clone(&failures)).layer(paywall.layer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            url: format!("http://{addr}"),
            addr,
            paywall,
            failures,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving and drops every handle of the paywall this server held.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Opens a paywall on `dir`, waiting for a previous one on the same directory to let go of it.
pub async fn open(builder: impl Fn() -> PaywallBuilder) -> Paywall {
    let until = tokio::time::Instant::now() + actp_e2e::PATIENCE;
    loop {
        match builder().build().await {
            Ok(p) => return p,
            Err(actp_axum::PaywallError::Store(_)) if tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A consumer with a funded wallet.
#[derive(Clone)]
pub struct Consumer {
    pub kernel: Kernel,
    pub signer: Signer,
    pub http: reqwest::Client,
}

impl Consumer {
    pub async fn new(devnet: &Devnet, account: usize) -> Consumer {
        Consumer {
            kernel: devnet.kernel(account).await.unwrap(),
            signer: devnet.signer(account),
            http: reqwest::Client::new(),
        }
    }

    /// Creates and funds a transaction; `deadline_in` seconds from the chain's now.
    pub async fn pay(
        &self,
        provider: Address,
        amount: Amount,
        deadline_in: u64,
        service: &str,
    ) -> B256 {
        let now = self.kernel.chain_time().await.unwrap();
        self.kernel
            .pay(&CreateParams::new(
                provider,
                amount.to_u256(),
                now + deadline_in,
                3_600,
                service_hash(service),
            ))
            .await
            .unwrap()
    }

    /// The authorization header for `method target body`, signed by `signer`, valid for `valid_for` seconds
    /// from the wall clock (negative: already expired).
    pub fn authorize(
        &self,
        signer: &Signer,
        tx_id: B256,
        method: &str,
        target: &str,
        body: &[u8],
        valid_for: i64,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let exp = (now + valid_for) as u64;
        let request = RequestAuthorization::new(tx_id, method, target, content_hash(body), exp);
        // A local key signs at once: blocking on it cannot stall the runtime.
        let signature =
            futures::executor::block_on(signer.sign_typed(&request, &self.kernel.domain()))
                .unwrap();
        AuthorizationHeader::from_signature(&request, signature).to_string()
    }

    /// Sends `POST target` with the given headers.
    pub async fn post(
        &self,
        server: &str,
        target: &str,
        body: &str,
        tx_id: Option<&str>,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{server}{target}"))
            .body(body.to_owned());
        if let Some(id) = tx_id {
            req = req.header("X-AGIRAILS-TX-ID", id);
        }
        if let Some(a) = authorization {
            req = req.header("X-AGIRAILS-AUTHORIZATION", a);
        }
        req.send().await.unwrap()
    }

    /// Pays for and calls `POST target` with `body` as the requester should.
    pub async fn paid_post(
        &self,
        server: &str,
        tx_id: B256,
        target: &str,
        body: &str,
    ) -> reqwest::Response {
        let auth = self.authorize(&self.signer, tx_id, "POST", target, body.as_bytes(), 120);
        self.post(server, target, body, Some(&tx_id.to_string()), Some(&auth))
            .await
    }
}

/// Every DELIVERED transition of `tx_id` on chain, with the proof hash each recorded.
pub async fn deliveries(devnet: &Devnet, tx_id: B256) -> (usize, Vec<B256>) {
    let mut transitions = 0;
    let mut proofs = Vec::new();
    for e in actp_e2e::chain::events(devnet).await {
        match e.event {
            EscrowKernelEvents::StateTransitioned(t)
                if t.transactionId == tx_id && t.newState == State::Delivered as u8 =>
            {
                transitions += 1;
            }
            EscrowKernelEvents::DeliveryProofRecorded(p) if p.transactionId == tx_id => {
                proofs.push(p.proofHash);
            }
            _ => {}
        }
    }
    (transitions, proofs)
}

/// Waits until the chain shows `state` for `tx_id`.
pub async fn wait_for_state(kernel: &Kernel, tx_id: B256, state: State) {
    actp_e2e::eventually(&format!("transaction {tx_id} to reach {state}"), || async {
        kernel.get(tx_id).await.unwrap().state == state
    })
    .await;
}

/// A provider for `devnet` on a fresh data directory.
pub async fn provider(devnet: &Devnet, dir: &Path, mode: ClaimMode) -> Server {
    let kernel = devnet.kernel(1).await.unwrap();
    let paywall = configure(kernel, dir)
        .claim_mode(mode)
        .build()
        .await
        .unwrap();
    Server::start(paywall).await
}
