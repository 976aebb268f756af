//! [`PayingClient`]: an HTTP client that pays for `402 Payment Required` by itself.
//!
//! One call, step by step:
//! 1. the request goes out unpaid; anything but a 402 with ACTP payment instructions is returned as is;
//! 2. the instructions must name this client's chain, kernel and token;
//! 3. the ledger reserves the quoted price against every cap of the agent's policy (the hard limit refuses
//!    here, before any escrow), under the call's idempotency key;
//! 4. the allowance is topped up if needed, the kill switch is read a last time, and `createAndFund` escrows
//!    exactly the price with the route's serviceHash; the reservation becomes spend;
//! 5. the request is sent again with `X-AGIRAILS-TX-ID` and a fresh authorization signature, retried with the
//!    same txId while the provider fails (the paywall frees a transaction whose handler failed);
//! 6. the delivery proof is checked against the body received (content hash, provider signature, announced
//!    proof hash); then, by policy, the escrow is settled at once once the chain shows the same proof hash,
//!    or left to its window; a body that does not match is disputed within the window.
//!
//! Steps 1 to 3 are here, 4 in `fund`, 5 and 6 in `deliver`; `reconcile` holds the recovery.
//!
//! When the provider offers a session for the route and the agent's policy allows sessions
//! ([`SpendPolicy::sessions`](crate::SpendPolicy::sessions)), steps 3 to 6 are replaced by `session`: one escrow
//! (the session) pays many calls, each with a voucher, each answered with a signed receipt.
//!
//! [`PayingClient::reconcile`] finishes what a crash or a failed provider left open: it finds escrows of
//! reservations whose outcome was lost, gives back reservations that never became escrows, reclaims escrows
//! whose provider never served once their deadline has passed, disputes mismatches and records refunds.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use actp_client::{ClientError, Kernel};
use actp_core::{
    Address, Amount, U256,
    fee::fee_on,
    http::{ErrorBody, PROTOCOL, PaymentInstructions},
    session::SessionReceipt,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

mod deliver;
mod fund;
mod reconcile;
mod session;

pub use reconcile::ReconcileReport;

use crate::{
    error::PayError,
    ledger::{BudgetError, Intent, Ledger, Payment, PaymentState, Reserved, SoftLimit, unix_now},
};

/// What to do once a delivery checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterDelivery {
    /// Leave the escrow to its dispute window; the settlement daemon (or the provider) settles it after.
    #[default]
    LeaveToWindow,
    /// Wait for the provider's DELIVERED on chain with the same proof hash, then settle at once as requester.
    SettleNow,
}

/// What to do when a delivery does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMismatch {
    /// Wait for the provider's DELIVERED and dispute within the window.
    #[default]
    Dispute,
    /// Record it and do nothing on chain (a person decides).
    Record,
}

/// How the client pays.
#[derive(Debug, Clone)]
pub struct PayConfig {
    /// The escrow's lifetime: its deadline is this far ahead (or the provider's minimum, if later). A provider
    /// that never serves ties the money up until then.
    pub escrow_ttl: Duration,
    /// The dispute window written into each escrow.
    pub dispute_window: Duration,
    /// How long a request authorization is valid (capped by what the provider accepts).
    pub authorization_validity: Duration,
    /// Attempts of the paid request while the provider fails (same txId each time).
    pub attempts: u32,
    /// First wait between attempts (doubles; a provider's `Retry-After` wins, up to 10 s).
    pub retry_backoff: Duration,
    /// After a verified delivery.
    pub after_delivery: AfterDelivery,
    /// After a mismatch.
    pub on_mismatch: OnMismatch,
    /// How long to wait for the provider's DELIVERED before settling or disputing.
    pub delivery_wait: Duration,
    /// Extra allowance approved beyond what is in flight, to save an `approve` per call (0: exact amounts).
    pub approve_ahead: Amount,
    /// A session's lifetime: its deadline is this far ahead (within the policy's `max_escrow_ttl`).
    pub session_ttl: Duration,
    /// How long a provider asked to close a session may take before [`PayingClient::reconcile`] ends it on
    /// chain (the provider then still has the session's grace period).
    pub session_close_wait: Duration,
}

impl Default for PayConfig {
    fn default() -> Self {
        PayConfig {
            escrow_ttl: Duration::from_secs(900),
            dispute_window: Duration::from_secs(3_600),
            authorization_validity: Duration::from_secs(120),
            attempts: 3,
            retry_backoff: Duration::from_millis(250),
            after_delivery: AfterDelivery::LeaveToWindow,
            on_mismatch: OnMismatch::Dispute,
            delivery_wait: Duration::from_secs(60),
            approve_ahead: Amount::ZERO,
            session_ttl: Duration::from_secs(3_600),
            session_close_wait: Duration::from_secs(120),
        }
    }
}

/// A response, with the payment that bought it (none for a route that did not ask for one).
#[derive(Debug, Clone)]
pub struct PaidResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The receipt, as recorded in the ledger: the call's escrow, or the session that paid it.
    pub payment: Option<Payment>,
    /// For a call paid from a session: the provider's receipt (this call's charge, the total charged, what
    /// remains), checked.
    pub receipt: Option<SessionReceipt>,
}

type SoftHook = Arc<dyn Fn(&SoftLimit) + Send + Sync>;

/// The paying client. Cheap to clone.
#[derive(Clone)]
pub struct PayingClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    kernel: Kernel,
    ledger: Ledger,
    agent: Address,
    fee_bps: u16,
    config: PayConfig,
    on_soft: Option<SoftHook>,
    /// Allowance needed by escrows being created now; the lock serializes top-ups.
    in_flight: Mutex<u128>,
    approving: tokio::sync::Mutex<()>,
    /// Idempotency keys of calls running in this process (reconcile leaves them alone).
    running: Mutex<HashSet<String>>,
    /// The session in use with each provider and service; calls on one session take turns.
    slots: Mutex<HashMap<(Address, actp_core::B256), session::Slot>>,
}

impl std::fmt::Debug for PayingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayingClient")
            .field("agent", &self.inner.agent)
            .field("kernel", &self.inner.kernel.address())
            .finish_non_exhaustive()
    }
}

/// Removes a running key when the call ends, however it ends.
struct Running<'a>(&'a Inner, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&self.1);
        }
    }
}

/// Gives back the in-flight allowance of one escrow when its creation ends.
struct InFlight<'a>(&'a Inner, u128);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut n) = self.0.in_flight.lock() {
            *n = n.saturating_sub(self.1);
        }
    }
}

/// A request being built; [`CallBuilder::send`] makes (and pays for) it.
#[derive(Debug)]
#[must_use = "a call does nothing until sent"]
pub struct CallBuilder {
    client: PayingClient,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    key: Option<String>,
    error: Option<String>,
    session: Option<bool>,
}

impl CallBuilder {
    /// Pays from a session (`true`) or with an escrow of its own (`false`), whatever the policy's `sessions`
    /// says. A provider that offers no session for the route is paid per call.
    pub fn session(mut self, session: bool) -> Self {
        self.session = Some(session);
        self
    }

    /// Adds a header. An invalid name or value fails the call when sent.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.error = Some(format!("invalid header {name:?}")),
        }
        self
    }

    /// The request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The call's idempotency key: however often the call is sent, it pays at most one escrow. A random key
    /// is used when none is given.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends the request, paying if asked to.
    pub async fn send(self) -> Result<PaidResponse, PayError> {
        if let Some(reason) = self.error {
            return Err(PayError::Unreachable {
                url: self.url,
                message: reason,
            });
        }
        let key = self.key.unwrap_or_else(random_key);
        let call = Call {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            session: self.session,
        };
        self.client.call(&key, &call).await
    }
}

fn random_key() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Call {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    /// Overrides the policy's `sessions`.
    session: Option<bool>,
}

/// The path and query of `url` (what the authorization signs).
fn target_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let mut target = parsed.path().to_owned();
    if let Some(q) = parsed.query() {
        target.push('?');
        target.push_str(q);
    }
    Some(target)
}

impl PayingClient {
    /// A client paying as `kernel`'s signer, recording in `ledger`.
    pub async fn new(kernel: Kernel, ledger: Ledger) -> Result<Self, PayError> {
        Self::with_config(kernel, ledger, PayConfig::default()).await
    }

    /// A client with a configuration.
    pub async fn with_config(
        kernel: Kernel,
        ledger: Ledger,
        config: PayConfig,
    ) -> Result<Self, PayError> {
        let agent = kernel.signer_address().ok_or_else(|| {
            ClientError::Config("the paying client needs the consumer's signing key".into())
        })?;
        let fee_bps = kernel.platform_fee_bps().await?;
        Ok(PayingClient {
            inner: Arc::new(Inner {
                http: reqwest::Client::new(),
                kernel,
                ledger,
                agent,
                fee_bps,
                config,
                on_soft: None,
                in_flight: Mutex::new(0),
                approving: tokio::sync::Mutex::new(()),
                running: Mutex::new(HashSet::new()),
                slots: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn inner_mut(&mut self) -> Option<&mut Inner> {
        Arc::get_mut(&mut self.inner)
    }

    /// Calls `hook` (and logs a warning) whenever a payment crosses a cap's soft threshold. Set it before
    /// cloning the client.
    pub fn on_soft_limit(mut self, hook: impl Fn(&SoftLimit) + Send + Sync + 'static) -> Self {
        if let Some(inner) = self.inner_mut() {
            inner.on_soft = Some(Arc::new(hook));
        }
        self
    }

    /// Uses `http` for requests (timeouts, proxies, extra CAs: see [`actp_client::HttpOptions`]). Set it
    /// before cloning the client.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        if let Some(inner) = self.inner_mut() {
            inner.http = http;
        }
        self
    }

    /// The paying agent (the signer).
    pub fn agent(&self) -> Address {
        self.inner.agent
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The kernel client.
    pub fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    /// A request with `method` to `url`.
    pub fn request(&self, method: Method, url: impl Into<String>) -> CallBuilder {
        CallBuilder {
            client: self.clone(),
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            key: None,
            error: None,
            session: None,
        }
    }

    /// A GET request.
    pub fn get(&self, url: impl Into<String>) -> CallBuilder {
        self.request(Method::GET, url)
    }

    /// A POST request.
    pub fn post(&self, url: impl Into<String>) -> CallBuilder {
        self.request(Method::POST, url)
    }

    async fn call(&self, key: &str, call: &Call) -> Result<PaidResponse, PayError> {
        let inner = &*self.inner;
        let _running = {
            let mut running = inner.running.lock().unwrap_or_else(|p| p.into_inner());
            running.insert(key.to_owned());
            Running(inner, key.to_owned())
        };
        if let Some(existing) = inner.ledger.payment(inner.agent, key).await?
            && existing.state != PaymentState::Released
        {
            return self.resume(existing, call).await;
        }

        let unpaid = self
            .send_http(call, None)
            .await
            .map_err(|e| PayError::Unreachable {
                url: call.url.clone(),
                message: e,
            })?;
        if unpaid.status != StatusCode::PAYMENT_REQUIRED {
            return Ok(unpaid);
        }
        let quote = self.instructions(call, &unpaid)?;
        let amount = quote
            .amount_base_units()
            .map(Amount::from_base_units)
            .filter(|a| *a > Amount::ZERO)
            .ok_or_else(|| PayError::BadInstructions {
                url: call.url.clone(),
                reason: format!("amount {:?} is not a positive integer", quote.amount),
            })?;
        let route = format!(
            "{} {}",
            quote.method.to_ascii_uppercase(),
            quote.path.split('?').next().unwrap_or_default()
        );
        if let Some(plan) = self.session_plan(call, &quote, amount, &route).await? {
            return self.call_in_session(call, &quote, &plan).await;
        }
        let fee = Amount::try_from_u256(fee_on(U256::ZERO, amount.to_u256(), inner.fee_bps))
            .unwrap_or_default();
        let (block, now) = inner.kernel.head().await?;
        // Everything in a 402 comes from a party the agent does not trust: a provider may not make it lock
        // funds longer than its policy allows.
        let max_ttl = inner.ledger.policy(inner.agent).await?.escrow_ttl_limit();
        if quote.min_deadline > now.saturating_add(max_ttl) {
            return Err(BudgetError::EscrowTooLong {
                agent: inner.agent,
                provider: quote.terms.provider,
                needed_seconds: quote.min_deadline - now,
                max_seconds: max_ttl,
            }
            .into());
        }
        let reserved = inner
            .ledger
            .reserve(Intent {
                key: key.to_owned(),
                agent: inner.agent,
                provider: quote.terms.provider,
                route,
                url: call.url.clone(),
                service: quote.service.clone(),
                amount,
                fee,
                block,
                now: unix_now(),
                session: None,
            })
            .await??;
        let payment = match reserved {
            Reserved::Existing(existing) => return self.resume(existing, call).await,
            Reserved::New(payment, soft) => {
                self.soft_limits(&soft);
                payment
            }
        };
        let payment = self.fund(payment, &quote, None).await?;
        self.deliver(payment, call, false).await
    }

    /// How to pay from a session, when the provider offers one for this request and the policy (or the call)
    /// allows it; `None` pays per call. The per-call cap and the provider lists apply to each call.
    async fn session_plan<'q>(
        &self,
        call: &Call,
        quote: &'q PaymentInstructions,
        max: Amount,
        route: &str,
    ) -> Result<Option<session::SessionPlan<'q>>, PayError> {
        let inner = &*self.inner;
        let Some(offer) = quote.terms.session.as_ref().filter(|_| quote.sessions) else {
            return Ok(None);
        };
        let mut policy = inner.ledger.policy(inner.agent).await?;
        if let Some(wanted) = call.session {
            policy.sessions = Some(wanted);
        }
        let min_deposit = offer
            .min_deposit
            .parse()
            .map(Amount::from_base_units)
            .unwrap_or(Amount::ZERO);
        let Some(deposit) = policy.session_deposit(max, min_deposit) else {
            return Ok(None);
        };
        if !policy.allows(quote.terms.provider) {
            return Err(BudgetError::ProviderNotAllowed {
                agent: inner.agent,
                provider: quote.terms.provider,
            }
            .into());
        }
        if let Some(limit) = policy.cap(crate::CapKind::PerCall, None)
            && max > limit
        {
            return Err(BudgetError::CapReached {
                cap: crate::CapKind::PerCall,
                limit,
                used: Amount::ZERO,
                amount: max,
                period: "this call".into(),
                provider: None,
            }
            .into());
        }
        Ok(Some(session::SessionPlan {
            offer,
            route: route.to_owned(),
            max,
            deposit,
        }))
    }

    /// Reports the soft thresholds a reservation crossed.
    fn soft_limits(&self, soft: &[SoftLimit]) {
        for limit in soft {
            tracing::warn!(
                agent = %limit.agent, cap = %limit.cap, used = %limit.used, limit = %limit.limit,
                period = %limit.period, "soft spend threshold crossed"
            );
            if let Some(hook) = &self.inner.on_soft {
                hook(limit);
            }
        }
    }

    /// Counts `amount` as allowance needed by an escrow being created, until the guard drops.
    fn in_flight(&self, amount: Amount) -> InFlight<'_> {
        let amount = amount.base_units();
        let mut n = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_add(amount);
        InFlight(&self.inner, amount)
    }

    /// Reads and checks the payment instructions of a 402.
    fn instructions(
        &self,
        call: &Call,
        unpaid: &PaidResponse,
    ) -> Result<PaymentInstructions, PayError> {
        let bad = |reason: String| PayError::BadInstructions {
            url: call.url.clone(),
            reason,
        };
        let body: ErrorBody = serde_json::from_slice(&unpaid.body)
            .map_err(|e| bad(format!("the body is not an ACTP error body: {e}")))?;
        let quote = body
            .payment
            .ok_or_else(|| bad("no `payment` field".into()))?;
        if quote.terms.protocol != PROTOCOL {
            return Err(bad(format!("protocol {:?}", quote.terms.protocol)));
        }
        let kernel = &self.inner.kernel;
        if quote.terms.chain_id != kernel.chain_id()
            || quote.terms.kernel != kernel.address()
            || quote.terms.token != kernel.token()
        {
            return Err(PayError::WrongKernel {
                chain_id: quote.terms.chain_id,
                kernel: quote.terms.kernel,
                token: quote.terms.token,
                our_chain_id: kernel.chain_id(),
                our_kernel: kernel.address(),
                our_token: kernel.token(),
            });
        }
        if !quote.method.eq_ignore_ascii_case(call.method.as_str()) {
            return Err(bad(format!(
                "they price {} but the request is {}",
                quote.method, call.method
            )));
        }
        Ok(quote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_path_and_query() {
        assert_eq!(
            target_of("http://127.0.0.1:8080/v1/echo?lang=en").as_deref(),
            Some("/v1/echo?lang=en")
        );
        assert_eq!(target_of("http://h/").as_deref(), Some("/"));
        assert_eq!(target_of("not a url"), None);
    }
}
