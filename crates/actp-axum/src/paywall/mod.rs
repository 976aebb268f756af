//! The paywall: [`Paywall`] (its shared state and handle). Its parts live in submodules, one job each:
//! - [`builder`]: [`PaywallBuilder`], the configuration, and starting the background tasks;
//! - [`service`]: [`PaywallLayer`], [`PaywallService`] and its [`ResponseFuture`], side by side; which route
//!   a request is for (nothing paid ever passes unpaid), and its way through the steps below;
//! - the checks that grant a request: [`verify`] (paid per call: the transaction, the authorization, the
//!   claim) and [`session`] (paid from a session: the voucher, the session's terms, the hold);
//! - delivery after the handler: [`deliver`] (the delivery proof and the durable delivery; a failed handler
//!   gives the claim back) and [`deliver_session`] (the charge and its chained receipt; or the hold back);
//! - [`sign`]: the provider's signatures over receipts and request bindings, one per batch of calls;
//! - [`closer`]: closing sessions, by themselves (idle, deadline near, used up, ended on chain) or when their
//!   consumer asks on the close path;
//! - [`follow`]: what the kernel's events teach it: funded transactions (no chain read per request) and
//!   requests to end a session.

mod builder;
mod closer;
mod deliver;
mod deliver_session;
mod follow;
mod service;
mod session;
mod sign;
mod verify;

pub use builder::PaywallBuilder;
pub use service::{PaywallLayer, PaywallService, ResponseFuture};
pub use session::CLOSE_HEADER;
pub use sign::Signatures;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actp_client::{Kernel, Signer, TransactionRecord};
use actp_core::{
    Address, Amount, B256, U256,
    http::{PaymentInstructions, PaymentTerms, PricingDocument},
};
use alloy_sol_types::Eip712Domain;
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use http::Method;
use tokio::sync::watch;

use crate::{
    clock::ChainClock,
    metrics::Metrics,
    outbox::Outbox,
    refusal::Refusal,
    route::{Route, RouteError, Routes},
    store::{Claim, DiskSyncs, Store, StoreError},
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
    /// A durability was set for the shared store, whose commits are the server's.
    #[error(
        "durability applies to the embedded store only: with PostgreSQL, set the server's synchronous_commit (for example `options=-c synchronous_commit=off` in the store URL)"
    )]
    DurabilityOfShared,
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

type Lookup = Shared<BoxFuture<'static, Result<TransactionRecord, LookupFailure>>>;

#[derive(Debug, Clone)]
enum LookupFailure {
    NotFound,
    Unavailable(String),
}

struct Inner {
    kernel: Kernel,
    signer: Signer,
    /// Signs receipts and request bindings in batches.
    batch_signer: sign::BatchSigner,
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
    /// Transactions learned from the kernel's events, if they are followed.
    follower: Option<follow::Follower>,
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
        PaywallBuilder::new(kernel)
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
    pub async fn claim(&self, tx_id: B256) -> Result<Option<Claim>, StoreError> {
        self.inner.store.claim_of(tx_id).await
    }

    /// This provider's account of a session, if it has seen it.
    pub async fn session(
        &self,
        tx_id: B256,
    ) -> Result<Option<crate::store::SessionState>, StoreError> {
        self.inner.store.session(tx_id).await
    }

    /// Queues the close of a session now (as its requester may ask), unless it is closing already.
    pub async fn close_session(&self, tx_id: B256) -> Result<bool, StoreError> {
        let queued = self
            .inner
            .store
            .queue_session_close(tx_id, crate::store::CloseReason::Asked)
            .await?;
        self.inner.store.flush().await?;
        self.inner.outbox.notify.notify_one();
        Ok(queued)
    }

    /// How many times the store's journal was synced to disk. Requests that wait for a sync at the same time
    /// share one (group commit), so under load this grows slower than the requests served.
    pub fn disk_flushes(&self) -> u64 {
        self.disk_syncs().count
    }

    /// The store's syncs to disk so far, and how many took longer than 1, 10 and 100 ms: a synced response
    /// waits for one, so a latency tail that is the disk's shows here.
    pub fn disk_syncs(&self) -> DiskSyncs {
        self.inner.store.disk_syncs()
    }

    /// How many signatures the paywall made over receipts and request bindings, and how many it covered:
    /// calls answered at about the same moment share one (see [`actp_core::batch`]).
    pub fn signatures(&self) -> Signatures {
        self.inner.batch_signer.signatures()
    }

    /// How many funded transactions the paywall has learned from the kernel's events and not used yet
    /// (requests paying with them need no chain read).
    pub fn funded_known(&self) -> usize {
        self.inner
            .follower
            .as_ref()
            .map_or(0, follow::Follower::funded_len)
    }

    /// How many deliveries wait in the outbox (on a shared store: of every replica).
    pub async fn outbox_len(&self) -> Result<usize, StoreError> {
        self.inner.outbox.store.outbox_len().await
    }

    /// Re-measures the chain clock now (e.g. after moving a devnet's time).
    pub async fn sync_clock(&self) -> actp_client::Result<()> {
        self.inner.clock.sync(&self.inner.kernel).await
    }

    /// Runs the outbox until every handle of this paywall is dropped; for a paywall built with
    /// `run_outbox(false)` whose deliveries another task should send. With sessions, it also looks for the
    /// sessions due to close (idle, near their deadline, used up, ended by their requester) and queues their
    /// closes, as the paywall does by itself when it runs its outbox.
    pub async fn run_outbox(&self) {
        let stopped = self.inner._stop.subscribe();
        let outbox = self.inner.outbox.clone().run(stopped.clone());
        if self.inner.sessions.is_some() {
            let closer = closer::run(Arc::downgrade(&self.inner), stopped);
            futures::future::join(outbox, closer).await;
        } else {
            outbox.await;
        }
    }

    /// Makes every change so far durable (each response already waits for its own; this is for shutdown).
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
            units: route.unit_prices(),
            service: route.service.clone(),
            service_hash: route.service_hash(),
            min_deadline: now + self.min_time_to_deadline,
            sessions: route.sessions && self.sessions.is_some(),
        }
    }

    /// The pricing document, as `GET` on the pricing path answers it.
    pub(super) fn pricing_response(&self) -> axum::response::Response {
        let mut response =
            axum::response::Response::new(axum::body::Body::from(self.pricing_json.clone()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }

    pub(super) fn storage_failed(&self, error: &StoreError) -> Refusal {
        tracing::error!(%error, "claim database failed");
        Refusal::StorageUnavailable {
            retry_after: self.retry_after,
        }
    }
}
