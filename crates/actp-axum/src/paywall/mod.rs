//! The paywall: [`Paywall`] (configuration and shared state) and its builder. The request path lives in
//! submodules, one job each:
//! - [`service`]: [`PaywallLayer`], [`PaywallService`] and its [`ResponseFuture`], side by side; which route
//!   a request is for, and nothing paid ever passes unpaid;
//! - [`verify`]: the checks a paid request must pass, and the claim;
//! - [`session`]: calls paid from a session: the voucher, the hold, the charge and its receipt, the close;
//! - [`deliver`]: the delivery proof, the durable delivery, and giving a claim back when the handler fails;
//! - [`closer`]: closing sessions by themselves (idle, deadline near, ended on chain).

mod closer;
mod deliver;
mod service;
mod session;
mod verify;

pub use service::{PaywallLayer, PaywallService, ResponseFuture};
pub use session::CLOSE_HEADER;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use actp_client::{Kernel, Signer, TransactionRecord};
use actp_core::{
    Address, Amount, B256, U256,
    eip712::actp_domain,
    http::{
        HeaderNames, PROTOCOL, PaymentInstructions, PaymentTerms, PricingDocument, SessionOffer,
    },
    ids::service_hash,
};
use alloy_sol_types::Eip712Domain;
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use http::Method;
use tokio::sync::{Notify, watch};

use crate::{
    clock::ChainClock,
    metrics::Metrics,
    outbox::Outbox,
    refusal::Refusal,
    route::{Route, RouteError, Routes},
    store::{Claim, Store, StoreError},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the paywall makes sure one transaction pays for exactly one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimMode {
    /// The claim is a compare-and-swap in the local sled database, before the handler runs. For a single
    /// provider instance; costs no chain transaction on the request path.
    #[default]
    Local,
    /// The claim is the COMMITTED → IN_PROGRESS transaction itself, sent and confirmed before the handler
    /// runs: the chain is the lock, so several replicas behind a load balancer never serve one transaction
    /// twice. Route retries of a failed request to the same replica (hash on `X-AGIRAILS-TX-ID`).
    OnChain,
}

/// Why the paywall could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PaywallError {
    /// The kernel client has no signer; the provider signs proofs and deliveries.
    #[error(
        "the kernel client has no signer: connect it with the provider's key (the provider signs delivery proofs and deliveries)"
    )]
    NoSigner,
    /// A route pattern is invalid or clashes.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The claim database could not be opened.
    #[error("{0}: check that the data directory is writable and not used by another process")]
    Store(#[from] StoreError),
}

/// The payment a handler is serving, in the request's extensions (`axum::Extension<Payment>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The transaction.
    pub tx_id: B256,
    /// Who pays.
    pub requester: Address,
    /// The escrowed amount.
    pub amount: U256,
    /// The route's price for this request.
    pub price: Amount,
    /// The transaction's deadline.
    pub deadline: u64,
}

/// How the paywall serves sessions: one escrow for many calls, each paid with a voucher (see
/// [`actp_core::session`]). On by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The service sessions are opened for: a session's serviceHash must be `keccak256(service)` (default
    /// `"session"`). It pays for every paid route that accepts sessions.
    pub service: String,
    /// The smallest deposit accepted (default 1.00).
    pub min_deposit: Amount,
    /// The shortest grace period accepted: how long this provider may need to close after the requester asks
    /// to end (default 10 minutes, the kernel's minimum).
    pub min_grace: Duration,
    /// Close a session after this long without a call (default 10 minutes).
    pub idle_close: Duration,
    /// Close a session this long before its deadline (default 10 minutes).
    pub close_margin: Duration,
    /// Close a session whose remainder cannot pay for the cheapest route's maximum after this long without a
    /// top-up (default 60 s); calls meanwhile get `402 session_used_up`, which says how to top it up.
    pub used_up_close: Duration,
    /// How often to look for sessions to close (default 5 s).
    pub check_every: Duration,
    /// Where a requester `POST`s to ask for its session's close (default `/sessions/close`).
    pub close_path: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            service: "session".into(),
            min_deposit: Amount::from_tokens(1),
            min_grace: Duration::from_secs(actp_core::session::MIN_GRACE),
            idle_close: Duration::from_secs(600),
            close_margin: Duration::from_secs(600),
            used_up_close: Duration::from_secs(60),
            check_every: Duration::from_secs(5),
            close_path: "/sessions/close".into(),
        }
    }
}

/// Builds a [`Paywall`].
#[must_use]
pub struct PaywallBuilder {
    kernel: Kernel,
    routes: Vec<Route>,
    data_dir: PathBuf,
    claim_mode: ClaimMode,
    pricing_path: Option<String>,
    min_time_to_deadline: Duration,
    max_authorization_validity: Duration,
    body_limit: usize,
    chain_timeout: Duration,
    claim_timeout: Duration,
    retry_after: Duration,
    clock_refresh: Duration,
    run_outbox: bool,
    outbox_concurrency: usize,
    sessions: Option<SessionConfig>,
}

impl PaywallBuilder {
    /// How sessions are served (default [`SessionConfig::default`]); `None` takes none.
    pub fn sessions(mut self, config: Option<SessionConfig>) -> Self {
        self.sessions = config;
        self
    }

    /// A route (paid, dynamic or free). Requests to paths no route matches pass through unpaid.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Where the sled database lives (default `.actp/paywall`). One process per directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// The claim mode (default [`ClaimMode::Local`]).
    pub fn claim_mode(mut self, mode: ClaimMode) -> Self {
        self.claim_mode = mode;
        self
    }

    /// Path of the public `GET` pricing document (default `/pricing`; `None` serves none).
    pub fn pricing_path(mut self, path: Option<&str>) -> Self {
        self.pricing_path = path.map(str::to_owned);
        self
    }

    /// The least time a transaction must have left before its deadline to be served (default 5 minutes):
    /// long enough to serve and get the delivery mined.
    pub fn min_time_to_deadline(mut self, margin: Duration) -> Self {
        self.min_time_to_deadline = margin;
        self
    }

    /// The furthest ahead an authorization's expiry may lie (default 5 minutes).
    pub fn max_authorization_validity(mut self, validity: Duration) -> Self {
        self.max_authorization_validity = validity;
        self
    }

    /// The largest request body the paywall buffers to hash (default 1 MiB); larger bodies get `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long the transaction read may take before the request gets `503` (default 5 s).
    pub fn chain_timeout(mut self, timeout: Duration) -> Self {
        self.chain_timeout = timeout;
        self
    }

    /// How long an on-chain claim may take to be mined before the request gets `503` (default 60 s).
    pub fn claim_timeout(mut self, timeout: Duration) -> Self {
        self.claim_timeout = timeout;
        self
    }

    /// The `Retry-After` of a `503` (default 2 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// How often the chain clock may be re-measured in the background (default 30 s).
    pub fn clock_refresh(mut self, every: Duration) -> Self {
        self.clock_refresh = every;
        self
    }

    /// Whether this paywall runs the delivery outbox itself (default yes). Turn it off only when another
    /// process runs it on the same data directory later (e.g. [`Paywall::run_outbox`] in a worker).
    pub fn run_outbox(mut self, run: bool) -> Self {
        self.run_outbox = run;
        self
    }

    /// How many deliveries the outbox sends at once (default 32).
    pub fn outbox_concurrency(mut self, n: usize) -> Self {
        self.outbox_concurrency = n;
        self
    }

    /// Opens the database, measures the chain clock (a failure is logged and retried later), and starts the
    /// outbox on the current tokio runtime.
    pub async fn build(self) -> Result<Paywall, PaywallError> {
        let signer = self
            .kernel
            .signer()
            .cloned()
            .ok_or(PaywallError::NoSigner)?;
        if let Some(config) = &self.sessions
            && let Some(route) = self.routes.iter().find(|r| r.service == config.service)
        {
            return Err(PaywallError::Route(RouteError {
                method: route.method.to_string(),
                path: route.path.clone(),
                reason: format!(
                    "its service {:?} is the sessions' service: name it differently (a per-call transaction and a session must never pay for each other)",
                    config.service
                ),
            }));
        }
        // The least a session call can need: the cheapest maximum of the routes sessions pay for (dynamic
        // prices are known only per request).
        let cheapest_session_call = self
            .routes
            .iter()
            .filter(|r| r.sessions)
            .filter_map(|r| match &r.price {
                crate::route::Price::Flat(a) => Some(*a),
                crate::route::Price::Metered(m) => Some(m.max),
                _ => None,
            })
            .min();
        let routes = Routes::new(self.routes)?;
        let store = Store::open(&self.data_dir)?;
        // Calls in flight died with the process that served them: their holds go back.
        store.clear_holds()?;
        let provider = signer.address();
        let terms = PaymentTerms {
            protocol: PROTOCOL.into(),
            chain_id: self.kernel.chain_id(),
            kernel: self.kernel.address(),
            token: self.kernel.token(),
            decimals: actp_core::amount::DECIMALS as u8,
            provider,
            min_time_to_deadline: self.min_time_to_deadline.as_secs(),
            max_authorization_validity: self.max_authorization_validity.as_secs(),
            headers: HeaderNames::default(),
            session: self.sessions.as_ref().map(|c| SessionOffer {
                service: c.service.clone(),
                service_hash: service_hash(&c.service),
                min_deposit: c.min_deposit.base_units().to_string(),
                min_deposit_price: c.min_deposit.to_string(),
                grace: c.min_grace.as_secs(),
                idle_close: c.idle_close.as_secs(),
                close_margin: c.close_margin.as_secs(),
                close_path: c.close_path.clone(),
            }),
        };
        let mut instructions = vec![
                format!(
                    "Create and fund an escrow on kernel {} (chain {}): provider {provider}, amount at least the route's price, serviceHash the route's, deadline at least {}s ahead.",
                    terms.kernel, terms.chain_id, terms.min_time_to_deadline
                ),
                "Sign RequestAuthorization(bytes32 txId,string method,string path,bytes32 bodyHash,uint256 expiresAt) as the requester, EIP-712 domain {name: \"AGIRAILS\", version: \"1\", chainId, verifyingContract: kernel}; bodyHash is keccak256 of the raw body.".into(),
                "Send the request with X-AGIRAILS-TX-ID: <txId> and X-AGIRAILS-AUTHORIZATION: exp=<expiresAt>; sig=0x<signature>.".into(),
                "The response carries X-AGIRAILS-PROOF-HASH and X-AGIRAILS-DELIVERY-PROOF: base64url JSON with `proof`, the AIP-4 DeliveryProof wire message the ACTP SDKs verify (EIP-712 domain version \"1\"), and `requestHash` with `binding`, the provider's signature over ActpDelivery(bytes32 txId,bytes32 deliveryProof,bytes32 requestHash), whose signing hash is the proof hash recorded on chain with DELIVERED. Check it, then release the escrow or let the dispute window pass.".into(),
            ];
        if let Some(offer) = &terms.session {
            instructions.extend([
                format!(
                    "Or open a session for many calls: openSession(provider {provider}, deposit at least {} base units, deadline, disputeWindow, serviceHash {}, grace at least {}s) on the kernel.",
                    offer.min_deposit, offer.service_hash, offer.grace
                ),
                "Send each call with X-AGIRAILS-TX-ID: <session id> and X-AGIRAILS-VOUCHER: cum=<cumulative>; exp=<expiresAt>; sig=0x<signature>, the requester's signature over SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt) in the same domain; cumulative covers everything charged so far plus the maximum of every call in flight, this one included; requestHash is keccak256(abi.encode(keccak256(METHOD), keccak256(path), bodyHash)).".into(),
                "Each response carries X-AGIRAILS-RECEIPT: the provider's signed SessionReceipt (charge, total charged, remaining, request and result hashes, previous receipt's hash). The provider closes the session with the last receipt's hash as proof hash: check the claim against the receipts, then release or dispute.".into(),
            ]);
        }
        let pricing = PricingDocument {
            terms: terms.clone(),
            routes: routes
                .iter()
                .map(|r| r.describe(self.sessions.is_some()))
                .collect(),
            instructions,
        };
        let pricing_json = Bytes::from(serde_json::to_vec_pretty(&pricing).unwrap_or_default());
        let clock = Arc::new(ChainClock::new(self.clock_refresh));
        if let Err(e) = clock.sync(&self.kernel).await {
            tracing::warn!(error = %e, "could not read the chain's time; using the wall clock until it answers");
        }
        let metrics = Arc::new(Metrics::default());
        let notify = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(());
        let outbox = Outbox {
            store: store.clone(),
            kernel: self.kernel.clone(),
            notify: Arc::clone(&notify),
            metrics: Arc::clone(&metrics),
            concurrency: self.outbox_concurrency,
            retry_delay: self.retry_after,
        };
        if self.run_outbox {
            tokio::spawn(outbox.clone().run(stopped.clone()));
        }
        let paywall = Paywall {
            inner: Arc::new(Inner {
                domain: actp_domain(self.kernel.chain_id(), self.kernel.address()),
                kernel: self.kernel,
                signer,
                routes,
                store,
                claim_mode: self.claim_mode,
                terms,
                pricing,
                pricing_json,
                pricing_path: self.pricing_path,
                min_time_to_deadline: self.min_time_to_deadline.as_secs(),
                max_authorization_validity: self.max_authorization_validity.as_secs(),
                body_limit: self.body_limit,
                chain_timeout: self.chain_timeout,
                claim_timeout: self.claim_timeout,
                retry_after: self.retry_after,
                clock,
                metrics,
                lookups: Mutex::default(),
                outbox,
                proof_nonce: std::sync::atomic::AtomicU64::new(0),
                sessions: self.sessions,
                cheapest_session_call,
                _stop: stop,
            }),
        };
        if paywall.inner.sessions.is_some() && self.run_outbox {
            tokio::spawn(closer::run(Arc::downgrade(&paywall.inner), stopped));
        }
        Ok(paywall)
    }
}

type Lookup = Shared<BoxFuture<'static, Result<TransactionRecord, LookupFailure>>>;

#[derive(Debug, Clone)]
enum LookupFailure {
    NotFound,
    Unavailable(String),
}

struct Inner {
    kernel: Kernel,
    signer: Signer,
    domain: Eip712Domain,
    routes: Routes,
    store: Store,
    claim_mode: ClaimMode,
    terms: PaymentTerms,
    pricing: PricingDocument,
    pricing_json: Bytes,
    pricing_path: Option<String>,
    min_time_to_deadline: u64,
    max_authorization_validity: u64,
    body_limit: usize,
    chain_timeout: Duration,
    claim_timeout: Duration,
    retry_after: Duration,
    clock: Arc<ChainClock>,
    metrics: Arc<Metrics>,
    /// Transaction reads in flight: concurrent requests for one txId share one read.
    lookups: Mutex<HashMap<B256, Lookup>>,
    outbox: Outbox,
    /// The last delivery proof's number.
    proof_nonce: std::sync::atomic::AtomicU64,
    /// How sessions are served, if they are.
    sessions: Option<SessionConfig>,
    /// The cheapest maximum of a session call (flat and metered routes).
    cheapest_session_call: Option<Amount>,
    /// Dropping the last handle stops the outbox.
    _stop: watch::Sender<()>,
}

/// A provider's paywall. Cheap to clone; clones share the database, the outbox and the counters.
///
/// ```no_run
/// # async fn run(kernel: actp_client::Kernel) -> Result<(), Box<dyn std::error::Error>> {
/// use actp_axum::{Paywall, Route};
/// use axum::{Router, routing::post};
///
/// let paywall = Paywall::builder(kernel)
///     .route(Route::post("/v1/generate").flat("0.10".parse()?).service("text-generation"))
///     .data_dir(".actp/provider")
///     .build()
///     .await?;
/// let app: Router = Router::new()
///     .route("/v1/generate", post(|body: String| async move { body.to_uppercase() }))
///     .layer(paywall.layer());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Paywall {
    inner: Arc<Inner>,
}

impl Paywall {
    /// Starts configuring a paywall for the kernel client's signer as provider.
    pub fn builder(kernel: Kernel) -> PaywallBuilder {
        PaywallBuilder {
            kernel,
            routes: Vec::new(),
            data_dir: PathBuf::from(".actp/paywall"),
            claim_mode: ClaimMode::Local,
            pricing_path: Some("/pricing".into()),
            min_time_to_deadline: Duration::from_secs(300),
            max_authorization_validity: Duration::from_secs(300),
            body_limit: 1 << 20,
            chain_timeout: Duration::from_secs(5),
            claim_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(2),
            clock_refresh: Duration::from_secs(30),
            run_outbox: true,
            outbox_concurrency: 32,
            sessions: Some(SessionConfig::default()),
        }
    }

    /// The tower layer to put on the provider's routes.
    pub fn layer(&self) -> PaywallLayer {
        PaywallLayer {
            paywall: self.clone(),
        }
    }

    /// The provider's address.
    pub fn provider(&self) -> Address {
        self.inner.terms.provider
    }

    /// The public pricing document.
    pub fn pricing(&self) -> &PricingDocument {
        &self.inner.pricing
    }

    /// Request and delivery counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The local record of a transaction's use, if any.
    pub fn claim(&self, tx_id: B256) -> Result<Option<Claim>, StoreError> {
        self.inner.store.claim_of(tx_id)
    }

    /// This provider's account of a session, if it has seen it.
    pub fn session(&self, tx_id: B256) -> Result<Option<crate::store::SessionState>, StoreError> {
        self.inner.store.session(tx_id)
    }

    /// Queues the close of a session now (as its requester may ask), unless it is closing already.
    pub async fn close_session(&self, tx_id: B256) -> Result<bool, StoreError> {
        let queued = self
            .inner
            .store
            .queue_session_close(tx_id, crate::store::CloseReason::Asked)?;
        self.inner.store.flush().await?;
        self.inner.outbox.notify.notify_one();
        Ok(queued)
    }

    /// How many times the database was flushed to disk. Requests that wait for a flush at the same time
    /// share one (group commit), so under load this grows slower than the requests served.
    pub fn disk_flushes(&self) -> u64 {
        self.inner.store.flushes()
    }

    /// How many deliveries wait in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.inner.outbox.store.outbox_len()
    }

    /// Re-measures the chain clock now (e.g. after moving a devnet's time).
    pub async fn sync_clock(&self) -> actp_client::Result<()> {
        self.inner.clock.sync(&self.inner.kernel).await
    }

    /// Runs the outbox until every handle of this paywall is dropped; for a paywall built with
    /// `run_outbox(false)` whose deliveries another task should send.
    pub async fn run_outbox(&self) {
        let stopped = self.inner._stop.subscribe();
        self.inner.outbox.clone().run(stopped).await;
    }

    /// Flushes the database (the outbox is already flushed before each response; this is for shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.store.flush().await
    }
}

impl Inner {
    pub(super) fn instructions(
        &self,
        route: &Route,
        method: &Method,
        target: &str,
        price: Amount,
        now: u64,
    ) -> PaymentInstructions {
        PaymentInstructions {
            terms: self.terms.clone(),
            method: method.to_string(),
            path: target.to_owned(),
            amount: price.base_units().to_string(),
            price: price.to_string(),
            service: route.service.clone(),
            service_hash: route.service_hash(),
            min_deadline: now + self.min_time_to_deadline,
            sessions: route.sessions && self.sessions.is_some(),
        }
    }

    pub(super) fn storage_failed(&self, error: &StoreError) -> Refusal {
        tracing::error!(%error, "claim database failed");
        Refusal::StorageUnavailable {
            retry_after: self.retry_after,
        }
    }
}
