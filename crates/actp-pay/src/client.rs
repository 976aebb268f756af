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
//! [`PayingClient::reconcile`] finishes what a crash or a failed provider left open: it finds escrows of
//! reservations whose outcome was lost, gives back reservations that never became escrows, reclaims escrows
//! whose provider never served once their deadline has passed, disputes mismatches and records refunds.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use actp_client::{ClientError, Kernel};
use actp_core::{
    Address, Amount, B256, State, U256,
    authorization::{
        AUTHORIZATION_HEADER, AuthorizationHeader, RequestAuthorization, TX_ID_HEADER,
    },
    fee::fee_on,
    http::{DELIVERY_PROOF_HEADER, ErrorBody, PROOF_HASH_HEADER, PROTOCOL, PaymentInstructions},
    model::CreateParams,
    proof::{SignedDeliveryProof, content_hash, verify_delivery},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

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
    /// The receipt, as recorded in the ledger.
    pub payment: Option<Payment>,
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
}

impl CallBuilder {
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
}

/// Why an HTTP exchange with a provider failed, without its URL; an untrusted TLS certificate says so and
/// names the option that trusts a private CA.
fn http_failure(e: &reqwest::Error) -> String {
    match actp_client::from_reqwest(e) {
        tls @ ClientError::Tls { .. } => tls.to_string(),
        _ => actp_client::redact_urls(&e.to_string()),
    }
}

/// The deadline of a new escrow: `ttl` from `now`, or a minute past the provider's earliest acceptable
/// deadline if that is later; never more than `max_ttl` from `now` (the caller has refused instructions whose
/// earliest deadline lies beyond that). Saturating: numbers from the network cannot overflow it.
fn escrow_deadline(now: u64, ttl: u64, min_deadline: u64, max_ttl: u64) -> u64 {
    let wanted = now.saturating_add(ttl).max(min_deadline.saturating_add(60));
    wanted.min(now.saturating_add(max_ttl)).max(min_deadline)
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

/// What [`PayingClient::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Reservations whose escrow was found on chain (now spend).
    pub recovered: u64,
    /// Reservations with no escrow, given back.
    pub released: u64,
    /// Unserved escrows cancelled after their deadline and refunded.
    pub reclaimed: u64,
    /// Escrows seen settled (or settled now, with [`AfterDelivery::SettleNow`]).
    pub settled: u64,
    /// Mismatched deliveries disputed.
    pub disputed: u64,
    /// Disputes resolved or escrows cancelled by the provider, refunds recorded.
    pub refunded: u64,
    /// Still waiting (in flight, before a deadline, within a window).
    pub waiting: u64,
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
        if let Some(existing) = inner.ledger.payment(inner.agent, key)?
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
        let fee = Amount::try_from_u256(fee_on(U256::ZERO, amount.to_u256(), inner.fee_bps))
            .unwrap_or_default();
        let (block, now) = inner.kernel.head().await?;
        // Everything in a 402 comes from a party the agent does not trust: a provider may not make it lock
        // funds longer than its policy allows.
        let max_ttl = inner.ledger.policy(inner.agent)?.escrow_ttl_limit();
        if quote.min_deadline > now.saturating_add(max_ttl) {
            return Err(BudgetError::EscrowTooLong {
                agent: inner.agent,
                provider: quote.terms.provider,
                needed_seconds: quote.min_deadline - now,
                max_seconds: max_ttl,
            }
            .into());
        }
        let reserved = inner.ledger.reserve(Intent {
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
        })??;
        let payment = match reserved {
            Reserved::Existing(existing) => return self.resume(existing, call).await,
            Reserved::New(payment, soft) => {
                for limit in &soft {
                    tracing::warn!(
                        agent = %limit.agent, cap = %limit.cap, used = %limit.used, limit = %limit.limit,
                        period = %limit.period, "soft spend threshold crossed"
                    );
                    if let Some(hook) = &inner.on_soft {
                        hook(limit);
                    }
                }
                payment
            }
        };
        let payment = self.fund(payment, &quote).await?;
        self.deliver(payment, call, false).await
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

    /// Phase two: allowance, last look at the kill switch, `createAndFund`, reservation → spend.
    async fn fund(
        &self,
        payment: Payment,
        quote: &PaymentInstructions,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let (agent, key) = (inner.agent, payment.key.clone());
        let release = |note: String| {
            inner.ledger.update(agent, &key, |p| {
                p.state = PaymentState::Released;
                p.note = Some(note);
            })
        };
        let amount = payment.amount.base_units();
        let in_flight = {
            let mut n = inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            *n = n.saturating_add(amount);
            InFlight(inner, amount)
        };
        let prepared = async {
            self.top_up_allowance().await?;
            let now = inner.kernel.chain_time().await?;
            Ok::<_, ClientError>(now)
        }
        .await;
        let now = match prepared {
            Ok(now) => now,
            Err(e) => {
                release(format!("not funded: {e}"))?;
                return Err(e.into());
            }
        };
        if let Err(refused) = inner.ledger.kill_switch().check(agent) {
            release(refused.to_string())?;
            return Err(refused.into());
        }
        let deadline = escrow_deadline(
            now,
            inner.config.escrow_ttl.as_secs(),
            quote.min_deadline,
            inner.ledger.policy(agent)?.escrow_ttl_limit(),
        );
        let terms = CreateParams::new(
            quote.terms.provider,
            payment.amount.to_u256(),
            deadline,
            inner.config.dispute_window.as_secs(),
            quote.service_hash,
        );
        let created = inner.kernel.create_and_fund(&terms).await;
        drop(in_flight);
        match created {
            Ok(tx_id) => {
                tracing::info!(%tx_id, amount = %payment.amount, provider = %payment.provider, "escrow funded");
                Ok(inner.ledger.update(agent, &key, |p| {
                    p.state = PaymentState::Funded;
                    p.tx_id = Some(tx_id);
                    p.deadline = Some(deadline);
                })?)
            }
            // Refused before anything was sent: no escrow exists.
            Err(e @ (ClientError::Rejected { .. } | ClientError::Token(_))) => {
                release(format!("not funded: {e}"))?;
                Err(e.into())
            }
            // Possibly sent: keep the reservation until reconcile knows.
            Err(e) => Err(PayError::Unconfirmed {
                key,
                message: e.to_string(),
            }),
        }
    }

    /// Approves the kernel for everything being escrowed now (plus `approve_ahead`) when the allowance
    /// does not cover it. Top-ups are serialized, so concurrent calls never overwrite each other's approval.
    async fn top_up_allowance(&self) -> Result<(), ClientError> {
        let inner = &*self.inner;
        let _one = inner.approving.lock().await;
        let needed = *inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let have = inner.kernel.allowance(inner.agent).await?;
        if have < U256::from(needed) {
            let target = needed.saturating_add(inner.config.approve_ahead.base_units());
            inner.kernel.approve(U256::from(target)).await?;
        }
        Ok(())
    }

    /// A call whose key already has a payment: never a second escrow.
    async fn resume(&self, payment: Payment, call: &Call) -> Result<PaidResponse, PayError> {
        match (payment.state, payment.tx_id) {
            (PaymentState::Funded, Some(_)) => self.deliver(payment, call, true).await,
            (PaymentState::Reserved, _) => {
                // An earlier attempt's outcome was lost: find its escrow first.
                let payment = self.recover(payment).await?;
                if payment.state == PaymentState::Funded {
                    self.deliver(payment, call, true).await
                } else {
                    Err(PayError::Unconfirmed {
                        key: payment.key,
                        message: "the escrow of an earlier attempt is not confirmed yet".into(),
                    })
                }
            }
            (_, Some(tx_id)) => Err(PayError::AlreadyServed {
                key: payment.key,
                tx_id,
            }),
            (_, None) => Err(PayError::Unconfirmed {
                key: payment.key,
                message: format!("the payment is {}", payment.state),
            }),
        }
    }

    /// Sends the paid request (retrying with the same txId while the provider fails) and verifies it.
    async fn deliver(
        &self,
        payment: Payment,
        call: &Call,
        resumed: bool,
    ) -> Result<PaidResponse, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        let deadline = payment.deadline.unwrap_or_default();
        let target = target_of(&call.url).ok_or_else(|| PayError::Unreachable {
            url: call.url.clone(),
            message: "not a valid URL".into(),
        })?;
        let mut backoff = inner.config.retry_backoff;
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            let expires =
                inner.kernel.chain_time().await? + inner.config.authorization_validity.as_secs();
            let request = RequestAuthorization::new(
                tx_id,
                call.method.as_str(),
                &target,
                content_hash(&call.body),
                expires,
            );
            let signer = inner
                .kernel
                .signer()
                .ok_or_else(|| ClientError::Config("no signing key".into()))?;
            let signature = signer.sign_typed(&request, &inner.kernel.domain()).await?;
            let authorization = AuthorizationHeader::from_signature(&request, signature);
            let failure = match self
                .send_http(call, Some((tx_id, authorization.to_string())))
                .await
            {
                Ok(r) if r.status.is_success() => break r,
                Ok(r) if r.status.is_server_error() => {
                    if let Some(wait) = retry_after(&r.headers) {
                        backoff = wait;
                    }
                    format!("{} {}", r.status.as_u16(), message_of(&r.body))
                }
                // An earlier, interrupted attempt of this call was served: its response is lost, and the
                // escrow pays for that one request. It is never paid again.
                Ok(r) if r.status == StatusCode::CONFLICT && resumed => {
                    inner.ledger.update(inner.agent, &payment.key, |p| {
                        p.note = Some(
                            "served to an earlier, interrupted attempt; the response was lost"
                                .into(),
                        );
                    })?;
                    return Err(PayError::AlreadyServed {
                        key: payment.key,
                        tx_id,
                    });
                }
                Ok(r) => {
                    return Err(PayError::Refused {
                        tx_id,
                        status: r.status.as_u16(),
                        message: message_of(&r.body),
                        deadline,
                    });
                }
                Err(e) => e,
            };
            if attempts >= inner.config.attempts.max(1) {
                return Err(PayError::ProviderFailed {
                    tx_id,
                    attempts,
                    message: failure,
                    deadline,
                });
            }
            tracing::info!(%tx_id, attempts, failure = %failure, "provider failed; retrying with the same transaction");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        };
        self.verify(payment, response).await
    }

    async fn verify(
        &self,
        payment: Payment,
        mut response: PaidResponse,
    ) -> Result<PaidResponse, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let announced: Option<B256> = header(PROOF_HASH_HEADER).and_then(|h| h.parse().ok());
        let checked = match header(DELIVERY_PROOF_HEADER) {
            None => Err(("the response carries no delivery proof".to_owned(), None)),
            Some(value) => match SignedDeliveryProof::from_header_value(&value) {
                Err(e) => Err((format!("the delivery proof is unreadable: {e}"), None)),
                Ok(signed) => verify_delivery(
                    &signed,
                    &response.body,
                    tx_id,
                    payment.provider,
                    &inner.kernel.domain(),
                    announced,
                )
                .map_err(|m| (m.to_string(), Some(Box::new(m)))),
            },
        };
        match checked {
            Ok(proof_hash) => {
                let mut payment = inner.ledger.update(inner.agent, &payment.key, |p| {
                    p.state = PaymentState::Served;
                    p.proof_hash = Some(proof_hash);
                })?;
                if inner.config.after_delivery == AfterDelivery::SettleNow {
                    payment = self.settle_when_delivered(payment).await?;
                }
                response.payment = Some(payment);
                Ok(response)
            }
            Err((reason, mismatch)) => {
                tracing::warn!(%tx_id, %reason, "delivery does not match its proof");
                let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
                    p.state = PaymentState::Mismatched;
                    p.note = Some(reason.clone());
                })?;
                let disputed = if inner.config.on_mismatch == OnMismatch::Dispute {
                    self.dispute_when_delivered(&payment).await?
                } else {
                    false
                };
                Err(PayError::DeliveryMismatch {
                    tx_id,
                    reason,
                    mismatch,
                    disputed,
                    body: response.body,
                })
            }
        }
    }

    /// Waits (up to `delivery_wait`) for the provider to mark `tx_id` delivered; returns its state then.
    async fn delivered(&self, tx_id: B256) -> Result<State, PayError> {
        let inner = &*self.inner;
        let until = tokio::time::Instant::now() + inner.config.delivery_wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let state = inner.kernel.get(tx_id).await?.state;
            if state != State::Committed && state != State::InProgress {
                return Ok(state);
            }
            if tokio::time::Instant::now() >= until {
                return Ok(state);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Settles a verified delivery as requester once the chain shows DELIVERED with the same proof hash; a
    /// different hash on chain is a mismatch and is disputed instead.
    async fn settle_when_delivered(&self, payment: Payment) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        match self.delivered(tx_id).await? {
            State::Delivered => {}
            State::Settled => {
                return Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
                    p.state = PaymentState::Settled
                })?);
            }
            // Not delivered yet: the window (or a later reconcile) takes it from here.
            _ => return Ok(payment),
        }
        let recorded = inner
            .kernel
            .recorded_proof_hash(tx_id, payment.block)
            .await?;
        if recorded.is_some() && recorded != payment.proof_hash {
            let note = format!(
                "the proof hash recorded on chain ({}) is not the one delivered ({})",
                recorded.unwrap_or_default(),
                payment.proof_hash.unwrap_or_default()
            );
            let payment = inner.ledger.update(inner.agent, &payment.key, |p| {
                p.state = PaymentState::Mismatched;
                p.note = Some(note);
            })?;
            self.dispute_when_delivered(&payment).await?;
            return Ok(inner
                .ledger
                .payment(inner.agent, &payment.key)?
                .unwrap_or(payment));
        }
        inner.kernel.settle(tx_id).await?;
        tracing::info!(%tx_id, "settled as requester");
        Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
            p.state = PaymentState::Settled
        })?)
    }

    /// Disputes a mismatched delivery once the provider has marked it delivered. `false` if it was not
    /// delivered in time (reconcile disputes it later, within the window).
    async fn dispute_when_delivered(&self, payment: &Payment) -> Result<bool, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        if self.delivered(tx_id).await? != State::Delivered {
            return Ok(false);
        }
        inner.kernel.dispute(tx_id, Vec::new()).await?;
        tracing::warn!(%tx_id, "delivery disputed");
        inner.ledger.update(inner.agent, &payment.key, |p| {
            p.state = PaymentState::Disputed
        })?;
        Ok(true)
    }

    /// One HTTP exchange; `paid` adds the transaction id and authorization headers.
    async fn send_http(
        &self,
        call: &Call,
        paid: Option<(B256, String)>,
    ) -> Result<PaidResponse, String> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), &call.url)
            .headers(call.headers.clone())
            .body(call.body.clone());
        if let Some((tx_id, authorization)) = paid {
            request = request
                .header(TX_ID_HEADER, tx_id.to_string())
                .header(AUTHORIZATION_HEADER, authorization);
        }
        let response = request.send().await.map_err(|e| http_failure(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| http_failure(&e))?;
        Ok(PaidResponse {
            status,
            headers,
            body,
            payment: None,
        })
    }

    /// Finds the escrow of a reservation whose outcome was lost: an escrow created by the agent from the
    /// reservation's block on, with its provider, amount and service, that no other payment claims. With none
    /// and nothing of the agent's still pending at the node, the reservation is given back.
    async fn recover(&self, payment: Payment) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let service_hash = actp_core::ids::service_hash(&payment.service);
        for created in inner.kernel.created_by(inner.agent, payment.block).await? {
            if created.provider == payment.provider
                && created.amount == payment.amount.to_u256()
                && created.service_hash == service_hash
                && !inner.ledger.knows_tx(created.id)?
            {
                let record = inner.kernel.get(created.id).await?;
                if record.state == State::Initiated {
                    continue;
                }
                return Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
                    p.state = PaymentState::Funded;
                    p.tx_id = Some(created.id);
                    p.deadline = Some(record.deadline);
                    p.note = Some("escrow found on chain after an interrupted payment".into());
                })?);
            }
        }
        if inner.kernel.has_pending(inner.agent).await? {
            return Ok(payment);
        }
        Ok(inner.ledger.update(inner.agent, &payment.key, |p| {
            p.state = PaymentState::Released;
            p.note = Some(
                "no escrow was created: the interrupted payment never reached the chain".into(),
            );
        })?)
    }

    /// Finishes what calls left open (see the module docs). Safe to run at any time, from a loop or a cron;
    /// calls running in this process are left alone.
    pub async fn reconcile(&self) -> Result<ReconcileReport, PayError> {
        let inner = &*self.inner;
        let mut report = ReconcileReport::default();
        let now = inner.kernel.chain_time().await?;
        for payment in inner.ledger.payments(inner.agent)? {
            if payment.state.is_final()
                || inner
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&payment.key)
            {
                continue;
            }
            let key = payment.key.clone();
            let update = |state: PaymentState, refunded: Option<U256>| {
                inner.ledger.update(inner.agent, &key, |p| {
                    p.state = state;
                    if let Some(r) = refunded {
                        p.refunded = Amount::try_from_u256(r).unwrap_or(p.amount).min(p.amount);
                    }
                })
            };
            let Some(tx_id) = payment.tx_id else {
                let after = self.recover(payment).await?;
                match after.state {
                    PaymentState::Funded => report.recovered += 1,
                    PaymentState::Released => report.released += 1,
                    _ => report.waiting += 1,
                }
                continue;
            };
            let record = inner.kernel.get(tx_id).await?;
            match (payment.state, record.state) {
                (_, State::Settled) if payment.state != PaymentState::Disputed => {
                    update(PaymentState::Settled, None)?;
                    report.settled += 1;
                }
                (_, State::Cancelled) | (PaymentState::Disputed, State::Settled) => {
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    let state = if payment.state == PaymentState::Disputed {
                        PaymentState::Resolved
                    } else {
                        PaymentState::Refunded
                    };
                    update(state, Some(refunded))?;
                    report.refunded += 1;
                }
                (PaymentState::Funded, State::Committed | State::InProgress)
                    if now > record.deadline =>
                {
                    inner.kernel.cancel(tx_id).await?;
                    let refunded = inner.kernel.refunded(tx_id, payment.block).await?;
                    update(PaymentState::Refunded, Some(refunded))?;
                    tracing::info!(%tx_id, "unserved escrow reclaimed after its deadline");
                    report.reclaimed += 1;
                }
                (PaymentState::Mismatched, State::Delivered) => {
                    if self.dispute_when_delivered(&payment).await? {
                        report.disputed += 1;
                    } else {
                        report.waiting += 1;
                    }
                }
                (PaymentState::Served, State::Delivered)
                    if inner.config.after_delivery == AfterDelivery::SettleNow =>
                {
                    let after = self.settle_when_delivered(payment).await?;
                    if after.state == PaymentState::Settled {
                        report.settled += 1;
                    } else {
                        report.waiting += 1;
                    }
                }
                (_, State::Disputed) if payment.state != PaymentState::Disputed => {
                    update(PaymentState::Disputed, None)?;
                    report.waiting += 1;
                }
                _ => report.waiting += 1,
            }
        }
        Ok(report)
    }
}

/// A provider's `Retry-After` in seconds, capped at 10 s.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(10)))
}

/// The `message` of an ACTP error body, or the body's start.
fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body).map_or_else(
        |_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        |b| format!("{}: {}", b.code, b.message),
    )
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

    #[test]
    fn retry_after_is_capped() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("600"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(10)));
    }

    #[test]
    fn message_of_reads_error_bodies() {
        let body = br#"{"error":"Conflict","code":"already_used","message":"used"}"#;
        assert_eq!(message_of(body), "already_used: used");
        assert_eq!(message_of(b"plain"), "plain");
    }
}
