//! The paywall: [`Paywall`] (configuration and shared state), [`PaywallLayer`], [`PaywallService`] and its
//! [`ResponseFuture`], side by side.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use actp_client::{ClientError, Kernel, Signer, TransactionRecord};
use actp_core::{
    Address, Amount, B256, Rejection, State, U256,
    authorization::{AuthorizationHeader, RequestAuthorization, request_hash},
    eip712::actp_domain,
    http::{
        AUTHORIZATION_HEADER, DELIVERY_PROOF_HEADER, HeaderNames, PROOF_HASH_HEADER, PROTOCOL,
        PaymentInstructions, PaymentTerms, PricingDocument, TX_ID_HEADER,
    },
    proof::{DeliveryProof, SignedDeliveryProof, content_hash},
};
use alloy_sol_types::Eip712Domain;
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use http::{HeaderValue, Method, Request, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{Notify, watch};
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, field};

use crate::{
    clock::ChainClock,
    metrics::Metrics,
    outbox::Outbox,
    refusal::Refusal,
    route::{Price, PriceRequest, Route, RouteError, Routes},
    store::{Claim, ClaimOutcome, ClaimStatus, Store, StoreError},
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
}

impl PaywallBuilder {
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
        let routes = Routes::new(self.routes)?;
        let store = Store::open(&self.data_dir)?;
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
        };
        let pricing = PricingDocument {
            terms: terms.clone(),
            routes: routes.iter().map(Route::describe).collect(),
            instructions: vec![
                format!(
                    "Create and fund an escrow on kernel {} (chain {}): provider {provider}, amount at least the route's price, serviceHash the route's, deadline at least {}s ahead.",
                    terms.kernel, terms.chain_id, terms.min_time_to_deadline
                ),
                "Sign RequestAuthorization(bytes32 txId,string method,string path,bytes32 bodyHash,uint256 expiresAt) as the requester, EIP-712 domain {name: \"AGIRAILS\", version: \"1\", chainId, verifyingContract: kernel}; bodyHash is keccak256 of the raw body.".into(),
                "Send the request with X-AGIRAILS-TX-ID: <txId> and X-AGIRAILS-AUTHORIZATION: exp=<expiresAt>; sig=0x<signature>.".into(),
                "The response carries X-AGIRAILS-PROOF-HASH and X-AGIRAILS-DELIVERY-PROOF; the provider records the proof hash on chain with DELIVERED. Check it, then release the escrow or let the dispute window pass.".into(),
            ],
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
            tokio::spawn(outbox.clone().run(stopped));
        }
        Ok(Paywall {
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
                _stop: stop,
            }),
        })
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

/// The tower [`Layer`] of a [`Paywall`].
#[derive(Clone)]
pub struct PaywallLayer {
    paywall: Paywall,
}

impl<S> Layer<S> for PaywallLayer {
    type Service = PaywallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaywallService {
            inner,
            paywall: self.paywall.clone(),
        }
    }
}

/// The paywall around an inner service.
#[derive(Clone)]
pub struct PaywallService<S> {
    inner: S,
    paywall: Paywall,
}

/// The response future of [`PaywallService`].
pub struct ResponseFuture<E> {
    inner: BoxFuture<'static, Result<Response, E>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PaywallService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this request; the fresh clone stays behind.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let paywall = Arc::clone(&self.paywall.inner);
        ResponseFuture {
            inner: Box::pin(handle(paywall, service, req)),
        }
    }
}

async fn handle<S, ReqBody, ResBody>(
    paywall: Arc<Inner>,
    mut service: S,
    req: Request<ReqBody>,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && paywall.pricing_path.as_deref() == Some(parts.uri.path()) {
        let mut response = Response::new(Body::from(paywall.pricing_json.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    let route = match paywall.routes.find(&parts.method, parts.uri.path()) {
        Some(route) if !matches!(route.price, Price::Free) => route.clone(),
        _ => {
            let response = service
                .call(Request::from_parts(parts, Body::new(body)))
                .await?;
            return Ok(response.map(Body::new));
        }
    };
    let span = tracing::info_span!(
        "paywall",
        method = %parts.method,
        route = %route.path,
        tx_id = field::Empty,
        outcome = field::Empty,
        verify_ms = field::Empty,
        handler_ms = field::Empty,
    );
    async move {
        let start = Instant::now();
        paywall.clock.refresh_in_background(&paywall.kernel);
        let granted = match verify(&paywall, &route, &parts, body).await {
            Ok(granted) => granted,
            Err(refusal) => {
                let span = tracing::Span::current();
                span.record("outcome", refusal.code());
                span.record("verify_ms", start.elapsed().as_millis() as u64);
                paywall.metrics.request(refusal.code());
                tracing::info!(code = refusal.code(), "refused");
                return Ok(refusal.into_response());
            }
        };
        let span = tracing::Span::current();
        span.record("verify_ms", start.elapsed().as_millis() as u64);
        let handler_start = Instant::now();
        let tx_id = granted.payment.tx_id;
        let mut request = Request::from_parts(parts, Body::from(granted.body));
        request.extensions_mut().insert(granted.payment.clone());
        let outcome = service.call(request).await;
        span.record("handler_ms", handler_start.elapsed().as_millis() as u64);
        let response = match outcome {
            Ok(response) => response,
            Err(e) => {
                paywall.give_back(tx_id, "handler_failed");
                return Err(e);
            }
        };
        if !response.status().is_success() {
            paywall.give_back(tx_id, "handler_failed");
            return Ok(response.map(Body::new));
        }
        Ok(paywall
            .deliver(
                granted.payment,
                granted.request_hash,
                granted.started,
                response,
            )
            .await)
    }
    .instrument(span)
    .await
}

/// A request that passed every check and holds the claim.
struct Granted {
    payment: Payment,
    body: Bytes,
    request_hash: B256,
    started: bool,
}

async fn verify<B>(
    paywall: &Inner,
    route: &Route,
    parts: &Parts,
    body: B,
) -> Result<Granted, Refusal>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let body = read_body(body, paywall.body_limit).await?;
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let price = match &route.price {
        Price::Free => Amount::ZERO,
        Price::Flat(a) => *a,
        Price::Dynamic(f) => f(PriceRequest {
            method: parts.method.clone(),
            target: target.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        })
        .await
        .map_err(|e| Refusal::Unpriceable(e.0))?,
    };
    let now = paywall.clock.now();
    let payment = || Box::new(paywall.instructions(route, &parts.method, &target, price, now));

    let Some(raw_id) = parts.headers.get(TX_ID_HEADER) else {
        return Err(Refusal::PaymentRequired {
            price: format!("{price} USDC"),
            payment: payment(),
        });
    };
    let tx_id = parse_tx_id(raw_id).ok_or(Refusal::MalformedTxId)?;
    tracing::Span::current().record("tx_id", field::display(tx_id));
    let authorization = match parts.headers.get(AUTHORIZATION_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    actp_core::authorization::AuthorizationError::Malformed("not ASCII".into())
                })
                .and_then(str::parse::<AuthorizationHeader>)
                .map_err(Refusal::MalformedAuthorization)?,
        ),
    };

    let record = match paywall.lookup(tx_id).await {
        Ok(record) => record,
        Err(LookupFailure::NotFound) => {
            return Err(Refusal::UnknownTransaction {
                tx_id,
                payment: payment(),
            });
        }
        Err(LookupFailure::Unavailable(reason)) => {
            tracing::warn!(%reason, "transaction read failed");
            return Err(Refusal::ChainUnavailable {
                retry_after: paywall.retry_after,
            });
        }
    };
    if record.provider != paywall.terms.provider {
        return Err(Refusal::WrongProvider {
            tx_id,
            provider: record.provider,
            expected: paywall.terms.provider,
        });
    }
    let authorization = authorization.ok_or(Refusal::MissingAuthorization)?;
    let body_hash = content_hash(&body);
    let signed = RequestAuthorization::new(
        tx_id,
        parts.method.as_str(),
        &target,
        body_hash,
        authorization.expires_at,
    );
    authorization
        .verify(
            &signed,
            &paywall.domain,
            record.requester,
            now,
            paywall.max_authorization_validity,
        )
        .map_err(Refusal::Unauthorized)?;
    let request_hash = request_hash(parts.method.as_str(), &target, body_hash);

    // Our own record decides before the chain state does: a transaction this provider is serving or served
    // is "used" even while the chain still says COMMITTED, and a released one may be retried.
    let retry_in_progress = match paywall.store.claim_of(tx_id) {
        Ok(None) => false,
        Ok(Some(claim)) if claim.status == ClaimStatus::Released => {
            claim.started && claim.request_hash == request_hash
        }
        Ok(Some(_)) => return Err(Refusal::AlreadyUsed { tx_id }),
        Err(e) => return Err(paywall.storage_failed(&e)),
    };
    let serviceable = record.state == State::Committed
        || (record.state == State::InProgress && retry_in_progress);
    if !serviceable {
        return Err(Refusal::InvalidState {
            tx_id,
            state: record.state,
            payment: payment(),
        });
    }
    if record.amount < price.to_u256() {
        return Err(Refusal::InsufficientAmount {
            tx_id,
            required: price.base_units(),
            provided: record.amount.to_string(),
            payment: payment(),
        });
    }
    if record.deadline < now {
        return Err(Refusal::DeadlinePassed {
            tx_id,
            deadline: record.deadline,
            now,
            payment: payment(),
        });
    }
    let min_deadline = now + paywall.min_time_to_deadline;
    if record.deadline < min_deadline {
        return Err(Refusal::DeadlineTooClose {
            tx_id,
            deadline: record.deadline,
            min_deadline,
            payment: payment(),
        });
    }
    let service_hash = route.service_hash();
    if record.service_hash != service_hash {
        return Err(Refusal::ServiceMismatch {
            tx_id,
            expected: service_hash,
            got: record.service_hash,
            payment: payment(),
        });
    }

    let started = match paywall.store.claim(tx_id, request_hash) {
        Ok(ClaimOutcome::Claimed { started }) => started,
        Ok(ClaimOutcome::Taken) => return Err(Refusal::AlreadyUsed { tx_id }),
        Err(e) => return Err(paywall.storage_failed(&e)),
    };
    let started = if paywall.claim_mode == ClaimMode::OnChain && !started {
        paywall.claim_on_chain(tx_id, &record, payment).await?;
        true
    } else {
        started
    };
    Ok(Granted {
        payment: Payment {
            tx_id,
            requester: record.requester,
            amount: record.amount,
            price,
            deadline: record.deadline,
        },
        body,
        request_hash,
        started,
    })
}

async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Refusal>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Refusal::BodyTooLarge { limit })
        }
        Err(_) => Err(Refusal::BodyUnreadable),
    }
}

/// `0x` and 64 hex digits, nothing else.
fn parse_tx_id(value: &HeaderValue) -> Option<B256> {
    let s = value.to_str().ok()?.trim();
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.len() != 64 {
        return None;
    }
    hex.parse().ok()
}

impl Inner {
    fn instructions(
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
        }
    }

    /// One read per transaction however many requests ask at once.
    async fn lookup(&self, tx_id: B256) -> Result<TransactionRecord, LookupFailure> {
        let read = {
            let Ok(mut lookups) = self.lookups.lock() else {
                return Err(LookupFailure::Unavailable("lookup table poisoned".into()));
            };
            lookups
                .entry(tx_id)
                .or_insert_with(|| {
                    let kernel = self.kernel.clone();
                    let timeout = self.chain_timeout;
                    async move {
                        match tokio::time::timeout(timeout, kernel.get(tx_id)).await {
                            Ok(Ok(record)) => Ok(record),
                            Ok(Err(ClientError::Rejected(Rejection::TransactionNotFound(_)))) => {
                                Err(LookupFailure::NotFound)
                            }
                            Ok(Err(e)) => Err(LookupFailure::Unavailable(e.to_string())),
                            Err(_) => Err(LookupFailure::Unavailable(format!(
                                "no answer within {timeout:?}"
                            ))),
                        }
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let result = read.await;
        if let Ok(mut lookups) = self.lookups.lock() {
            lookups.remove(&tx_id);
        }
        result
    }

    /// Sends and confirms COMMITTED → IN_PROGRESS: the chain-wide claim. Losing the race is `409`.
    async fn claim_on_chain(
        &self,
        tx_id: B256,
        record: &TransactionRecord,
        payment: impl Fn() -> Box<PaymentInstructions>,
    ) -> Result<(), Refusal> {
        let outcome = tokio::time::timeout(self.claim_timeout, self.kernel.start(tx_id)).await;
        let refusal = match outcome {
            Ok(Ok(_)) => {
                if let Err(e) = self.store.mark_started(tx_id) {
                    tracing::warn!(error = %e, "could not record IN_PROGRESS locally");
                }
                return Ok(());
            }
            Ok(Err(ClientError::Rejected(Rejection::DeadlinePassed { .. }))) => {
                Refusal::DeadlinePassed {
                    tx_id,
                    deadline: record.deadline,
                    now: self.clock.now(),
                    payment: payment(),
                }
            }
            Ok(Err(ClientError::Rejected(rejection))) => {
                tracing::info!(%rejection, "on-chain claim lost");
                Refusal::AlreadyUsed { tx_id }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "on-chain claim failed");
                Refusal::ChainUnavailable {
                    retry_after: self.retry_after,
                }
            }
            Err(_) => {
                tracing::warn!("on-chain claim not mined in time");
                Refusal::ChainUnavailable {
                    retry_after: self.retry_after,
                }
            }
        };
        if let Err(e) = self.store.release(tx_id) {
            tracing::error!(error = %e, "could not release the claim");
        }
        Err(refusal)
    }

    fn storage_failed(&self, error: &StoreError) -> Refusal {
        tracing::error!(%error, "claim database failed");
        Refusal::StorageUnavailable {
            retry_after: self.retry_after,
        }
    }

    /// The handler failed: nothing is delivered and the transaction may pay for a retry.
    fn give_back(&self, tx_id: B256, outcome: &'static str) {
        tracing::Span::current().record("outcome", outcome);
        self.metrics.request(outcome);
        if let Err(e) = self.store.release(tx_id) {
            tracing::error!(error = %e, "could not release the claim");
        }
        tracing::info!("handler failed; claim released");
    }

    /// The handler succeeded: hash the body as sent, sign the proof, queue the delivery durably, answer.
    async fn deliver<ResBody>(
        &self,
        payment: Payment,
        request_hash: B256,
        started: bool,
        response: Response<ResBody>,
    ) -> Response
    where
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let tx_id = payment.tx_id;
        let (mut parts, body) = response.into_parts();
        let Ok(collected) = body.collect().await else {
            self.give_back(tx_id, "handler_failed");
            return (
                StatusCode::BAD_GATEWAY,
                "the service's response body failed; nothing was delivered and the transaction can pay for a retry",
            )
                .into_response();
        };
        let bytes = collected.to_bytes();
        let proof = DeliveryProof {
            txId: tx_id,
            provider: self.terms.provider,
            consumer: payment.requester,
            resultHash: content_hash(&bytes),
            requestHash: request_hash,
            deliveredAt: U256::from(self.clock.now()),
            chainId: U256::from(self.terms.chain_id),
            nonce: U256::ZERO,
        };
        let signed = match self.signer.sign_typed(&proof, &self.domain).await {
            Ok(signature) => SignedDeliveryProof { proof, signature },
            Err(e) => {
                tracing::error!(error = %e, "could not sign the delivery proof");
                self.give_back(tx_id, "handler_failed");
                return Refusal::StorageUnavailable {
                    retry_after: self.retry_after,
                }
                .into_response();
            }
        };
        let proof_hash = signed.proof.proof_hash(&self.domain);
        if let Err(e) = self.store.serve(tx_id, proof_hash, started).await {
            self.give_back(tx_id, "handler_failed");
            return self.storage_failed(&e).into_response();
        }
        self.outbox.notify.notify_one();
        let headers = &mut parts.headers;
        if let Ok(v) = HeaderValue::from_str(&tx_id.to_string()) {
            headers.insert(TX_ID_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&proof_hash.to_string()) {
            headers.insert(PROOF_HASH_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&signed.to_header_value()) {
            headers.insert(DELIVERY_PROOF_HEADER, v);
        }
        headers.remove(header::CONTENT_LENGTH);
        tracing::Span::current().record("outcome", "served");
        self.metrics.request("served");
        tracing::info!(%proof_hash, "served");
        Response::from_parts(parts, Body::from(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_id_header_is_strict() {
        let ok = format!("0x{}", "ab".repeat(32));
        assert!(
            parse_tx_id(&HeaderValue::from_str(&ok).unwrap_or(HeaderValue::from_static("")))
                .is_some()
        );
        for bad in [
            "",
            "0x12",
            &"ab".repeat(32),
            &format!("0x{}", "zz".repeat(32)),
        ] {
            let v = HeaderValue::from_str(bad).unwrap_or(HeaderValue::from_static(""));
            assert!(parse_tx_id(&v).is_none(), "{bad}");
        }
    }
}
