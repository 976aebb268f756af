//! The checks a paid request must pass before its handler runs, in order: a price, a transaction id, the
//! transaction (learned from the kernel's events, or else read on chain: one read however many requests
//! ask), the requester's signature over this request,
//! the local claim record, state, amount, deadline and service; then the claim (local or on chain). A
//! request carrying a voucher is a session call: [`super::session`] grants it.

use actp_client::{ClientError, TransactionRecord};
use actp_core::{
    Address, Amount, B256, Rejection, State, U256,
    authorization::{AuthorizationHeader, RequestAuthorization, request_hash},
    http::{AUTHORIZATION_HEADER, PaymentInstructions, TX_ID_HEADER, VOUCHER_HEADER},
    proof::content_hash,
    session::VoucherHeader,
};
use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderValue, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::field;

use super::{BoxError, ClaimMode, Inner, LookupFailure, Payment, session::SessionCall};
use crate::{
    refusal::Refusal,
    route::{Price, PriceRequest, Route},
    store::{ClaimOutcome, ClaimStatus},
};

/// A request that passed every check and holds the claim.
pub(super) struct Granted {
    pub(super) payment: Payment,
    pub(super) body: Bytes,
    pub(super) request_hash: B256,
    pub(super) started: bool,
    /// A call paid from a session: its hold and how to charge it.
    pub(super) session: Option<SessionCall>,
}

pub(super) async fn verify<B>(
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
    let target = request_target(parts);
    let price = match &route.price {
        Price::Free => Amount::ZERO,
        Price::Flat(a) => *a,
        Price::Metered(m) => m.max,
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
    if let Some(voucher) = voucher_header(parts)? {
        return paywall
            .verify_session(route, parts, body, &target, price, tx_id, voucher, payment)
            .await;
    }
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

    let learned = paywall
        .follower
        .as_ref()
        .and_then(|f| f.funded(tx_id))
        .map(|f| Facts {
            requester: f.requester,
            provider: paywall.terms.provider,
            state: State::Committed,
            amount: f.amount,
            deadline: f.deadline,
            service_hash: f.service_hash,
        });
    let record = match learned {
        Some(facts) => facts,
        None => match paywall.lookup(tx_id).await {
            Ok(record) => Facts::from(&record),
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
        },
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
    let retry_in_progress = match paywall.store.claim_of(tx_id).await {
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
    if paywall
        .sessions
        .as_ref()
        .is_some_and(|c| record.service_hash == actp_core::ids::service_hash(&c.service))
    {
        return Err(Refusal::VoucherRequired { tx_id });
    }
    if record.service_hash != service_hash {
        return Err(Refusal::ServiceMismatch {
            tx_id,
            expected: service_hash,
            got: record.service_hash,
            payment: payment(),
        });
    }

    let started = match paywall.store.claim(tx_id, request_hash).await {
        Ok(ClaimOutcome::Claimed { started }) => started,
        Ok(ClaimOutcome::Taken) => return Err(Refusal::AlreadyUsed { tx_id }),
        Err(e) => return Err(paywall.storage_failed(&e)),
    };
    if let Some(follower) = &paywall.follower {
        follower.forget(tx_id);
    }
    let started = if paywall.claim_mode == ClaimMode::OnChain && !started {
        paywall
            .claim_on_chain(tx_id, record.deadline, payment)
            .await?;
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
        session: None,
    })
}

/// What the checks need of a transaction: its record read from chain, or what its funding fixed, learned
/// from the kernel's events ([`super::follow`]).
struct Facts {
    requester: Address,
    provider: Address,
    state: State,
    amount: U256,
    deadline: u64,
    service_hash: B256,
}

impl From<&TransactionRecord> for Facts {
    fn from(r: &TransactionRecord) -> Self {
        Facts {
            requester: r.requester,
            provider: r.provider,
            state: r.state,
            amount: r.amount,
            deadline: r.deadline,
            service_hash: r.service_hash,
        }
    }
}

/// The `X-AGIRAILS-VOUCHER` header, if the request carries one.
pub(super) fn voucher_header(parts: &Parts) -> Result<Option<VoucherHeader>, Refusal> {
    let Some(value) = parts.headers.get(VOUCHER_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .map_err(|_| {
            actp_core::authorization::AuthorizationError::MalformedVoucher("not ASCII".into())
        })
        .and_then(str::parse::<VoucherHeader>)
        .map(Some)
        .map_err(Refusal::MalformedAuthorization)
}

pub(super) async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Refusal>
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

/// The path and query the client sent (what it signed): the original URI's, also under `Router::nest`,
/// which strips the prefix from the URI this service sees.
pub(super) fn request_target(parts: &Parts) -> String {
    let uri = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(&parts.uri, |o| &o.0);
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

/// `0x` and 64 hex digits, nothing else.
pub(super) fn parse_tx_id(value: &HeaderValue) -> Option<B256> {
    let s = value.to_str().ok()?.trim();
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.len() != 64 {
        return None;
    }
    hex.parse().ok()
}

impl Inner {
    /// One read per transaction however many requests ask at once.
    pub(super) async fn lookup(&self, tx_id: B256) -> Result<TransactionRecord, LookupFailure> {
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
        deadline: u64,
        payment: impl Fn() -> Box<PaymentInstructions>,
    ) -> Result<(), Refusal> {
        let outcome = tokio::time::timeout(self.claim_timeout, self.kernel.start(tx_id)).await;
        let refusal = match outcome {
            Ok(Ok(_)) => {
                if let Err(e) = self.store.mark_started(tx_id).await {
                    tracing::warn!(error = %e, "could not record IN_PROGRESS locally");
                }
                return Ok(());
            }
            // Refused at the estimate, or mined and reverted because another replica's start landed
            // first: either way the kernel's rejection decides.
            Ok(Err(e)) if matches!(e.rejection(), Some(Rejection::DeadlinePassed { .. })) => {
                Refusal::DeadlinePassed {
                    tx_id,
                    deadline,
                    now: self.clock.now(),
                    payment: payment(),
                }
            }
            Ok(Err(e)) if e.rejection().is_some() => {
                tracing::info!(error = %e, "on-chain claim lost");
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
        if let Err(e) = self.store.release(tx_id).await {
            tracing::error!(error = %e, "could not release the claim");
        }
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
