//! Configuring a [`Paywall`]: its routes, database, claim mode, limits and sessions; `build` opens the
//! database, publishes the pricing document and starts the background tasks (outbox, closer, follower).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use actp_client::Kernel;
use actp_core::{
    eip712::actp_domain,
    http::{HeaderNames, PROTOCOL, PaymentTerms, PricingDocument, SessionOffer},
    ids::service_hash,
};
use bytes::Bytes;
use tokio::sync::{Notify, watch};

use super::{ClaimMode, Inner, Paywall, PaywallError, SessionConfig, closer, follow, sign};
use crate::{
    clock::ChainClock,
    metrics::Metrics,
    outbox::Outbox,
    route::{Route, RouteError, Routes},
    store::{Durability, Store, StoreError},
};

/// Builds a [`Paywall`].
#[must_use]
pub struct PaywallBuilder {
    kernel: Kernel,
    routes: Vec<Route>,
    data_dir: PathBuf,
    shared: Option<String>,
    durability: Option<Durability>,
    outbox_lease: Duration,
    hold_lease: Duration,
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
    follow_every: Option<Duration>,
    follow_from: Option<u64>,
}

impl PaywallBuilder {
    /// The defaults.
    pub(super) fn new(kernel: Kernel) -> PaywallBuilder {
        PaywallBuilder {
            kernel,
            routes: Vec::new(),
            data_dir: PathBuf::from(".actp/paywall"),
            shared: None,
            durability: None,
            outbox_lease: Duration::from_secs(30),
            hold_lease: Duration::from_secs(600),
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
            follow_every: Some(Duration::from_secs(1)),
            follow_from: None,
        }
    }

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

    /// Keeps the claims, the outbox and the sessions in the PostgreSQL database at `url` instead of the sled
    /// database in [`data_dir`](Self::data_dir), so that replicas of this provider behind one load balancer
    /// share them: a transaction serves one request across all of them, a session's headroom is never
    /// overdrawn, and each delivery and session close is sent once. Every replica must use the same provider
    /// key and kernel.
    pub fn shared_store(mut self, url: impl Into<String>) -> Self {
        self.shared = Some(url.into());
        self
    }

    /// When a response may leave, on the embedded store: once what it changed is on disk
    /// ([`Durability::Synced`], the default), or once it is written to the operating system and synced in the
    /// background within [`BUFFERED_SYNC_INTERVAL`](actp_store::paywall::BUFFERED_SYNC_INTERVAL)
    /// ([`Durability::Buffered`]: no disk wait in the response; a crash of the machine, not of the process,
    /// may lose the charges and claims of that interval, a loss for the provider alone). On the shared store
    /// the server's `synchronous_commit` decides instead, and setting this is refused at build.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// On a shared store, how long a replica holds an outbox entry it is sending before another may take it
    /// over (default 30 s; renewed while it works on it). A replica that dies leaves its entries to the others
    /// after this long.
    pub fn outbox_lease(mut self, lease: Duration) -> Self {
        self.outbox_lease = lease;
        self
    }

    /// On a shared store, how long a request in progress keeps its claim (per call) or its hold on the
    /// session's deposit if its replica dies before it ends (default 10 minutes): then another replica may
    /// serve the transaction's retry, and other calls may use the headroom. Give it more than the longest a
    /// handler runs: a call that ends after its hold expired is still charged, but other calls may have been
    /// granted the same headroom meanwhile.
    pub fn hold_lease(mut self, lease: Duration) -> Self {
        self.hold_lease = lease;
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

    /// How often to read the kernel's events once caught up (default every second; `None` reads none). From
    /// them the paywall learns the transactions funded for it, so a request paying with one needs no chain
    /// read, and the sessions whose requester asks to end them, so they close at once. Each poll is one
    /// `eth_blockNumber`, plus one `eth_getLogs` when there are new blocks.
    pub fn follow_events(mut self, every: Option<Duration>) -> Self {
        self.follow_every = every;
        self
    }

    /// The first block whose events are followed (default the one after the head when the paywall starts):
    /// an earlier one
    /// also teaches it the transactions funded since, e.g. while it was restarting.
    pub fn follow_events_from(mut self, block: u64) -> Self {
        self.follow_from = Some(block);
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
        let provider = signer.address();
        let store = match &self.shared {
            None => Store::open(&self.data_dir, self.durability.unwrap_or_default())?,
            Some(_) if self.durability.is_some() => return Err(PaywallError::DurabilityOfShared),
            Some(url) => {
                let shared = actp_store::paywall::PaywallStore::open(
                    url,
                    16,
                    self.kernel.chain_id(),
                    self.kernel.address(),
                    provider,
                    format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
                )
                .await
                .map_err(StoreError::from)?;
                Store::shared(shared, self.outbox_lease, self.hold_lease)
            }
        };
        // Calls in flight died with the process that served them: their holds go back.
        store.clear_holds()?;
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
                "The response carries X-AGIRAILS-PROOF-HASH and X-AGIRAILS-DELIVERY-PROOF: base64url JSON with `proof`, the AIP-4 DeliveryProof wire message the ACTP SDKs verify (EIP-712 domain version \"1\"), and `requestHash` with `binding`, the provider's signature over ActpDelivery(bytes32 txId,bytes32 deliveryProof,bytes32 requestHash), whose signing hash is the proof hash recorded on chain with DELIVERED; with `bindingBatch`, the signature is over HashBatch(bytes32 root), the Merkle root (keccak256 of sorted pairs) that hash reaches through the listed siblings. Check it, then release the escrow or let the dispute window pass.".into(),
            ];
        if let Some(offer) = &terms.session {
            instructions.extend([
                format!(
                    "Or open a session for many calls: openSession(provider {provider}, deposit at least {} base units, deadline, disputeWindow, serviceHash {}, grace at least {}s) on the kernel.",
                    offer.min_deposit, offer.service_hash, offer.grace
                ),
                "Send each call with X-AGIRAILS-TX-ID: <session id> and X-AGIRAILS-VOUCHER: cum=<cumulative>; exp=<expiresAt>; sig=0x<signature>, the requester's signature over SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt) in the same domain; cumulative covers everything charged so far plus the maximum of every call in flight, this one included; requestHash is keccak256(abi.encode(keccak256(METHOD), keccak256(path), bodyHash)).".into(),
                "Each response carries X-AGIRAILS-RECEIPT: the provider's signed SessionReceipt (charge, total charged, remaining, request and result hashes, previous receipt's hash); with `batch`, the signature is over HashBatch(bytes32 root), the Merkle root (keccak256 of sorted pairs) the receipt's hash reaches through the listed siblings. The provider closes the session with the last receipt's hash as proof hash: check the claim against the receipts, then release or dispute.".into(),
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
        // Events are followed from the block after the head as the paywall starts; anything older is read
        // when it is used.
        let from = match (self.follow_every, self.follow_from) {
            (None, _) => None,
            (Some(_), Some(block)) => Some(block),
            (Some(_), None) => match self.kernel.block_number().await {
                Ok(head) => Some(head + 1),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the chain head: not following the kernel's events (every transaction is read when used)");
                    None
                }
            },
        };
        let watcher = from.zip(self.follow_every).map(|(from, every)| {
            let config = actp_client::WatcherConfig {
                confirmations: 0,
                poll_interval: every,
                max_range: self.kernel.config().max_log_range,
                retry: self.kernel.config().retry,
            };
            (
                actp_client::Watcher::new(
                    self.kernel.provider().clone(),
                    self.kernel.address(),
                    from,
                    config,
                ),
                every,
            )
        });
        let domain = actp_domain(self.kernel.chain_id(), self.kernel.address());
        let paywall = Paywall {
            inner: Arc::new(Inner {
                batch_signer: sign::BatchSigner::new(signer.clone(), domain.clone()),
                domain,
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
                follower: watcher.as_ref().map(|_| follow::Follower::default()),
                _stop: stop,
            }),
        };
        if let Some((watcher, every)) = watcher {
            tokio::spawn(follow::run(
                Arc::downgrade(&paywall.inner),
                watcher,
                every,
                stopped.clone(),
            ));
        }
        if paywall.inner.sessions.is_some() && self.run_outbox {
            tokio::spawn(closer::run(Arc::downgrade(&paywall.inner), stopped));
        }
        Ok(paywall)
    }
}
