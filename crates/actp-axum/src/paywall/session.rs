//! Calls paid from a session: the checks that grant one (the requester's voucher, one signature recovery; the
//! session's terms the first time it is seen; a hold of the call's maximum that never overdraws the deposit).
//! After the handler: [`super::deliver_session`]; closes: [`super::closer`].

use actp_core::{
    Amount, B256, State, http::PaymentInstructions, proof::content_hash, session::VoucherHeader,
};
use bytes::Bytes;
use http::request::Parts;

use super::{Inner, LookupFailure, Payment, verify::Granted};
use crate::{
    refusal::Refusal,
    route::{Price, Route},
    store::{
        CallHold, CloseReason, HoldRefusal, SessionState, SessionStatus, SessionVoucherRecord,
    },
};

/// A granted session call: its hold, and how to charge it.
pub(super) struct SessionCall {
    pub(super) hold: CallHold,
    /// The route's price: flat calls cost their price, metered ones their usage, dynamic ones their quote.
    pub(super) price: Price,
    /// The call's maximum (what is held).
    pub(super) max: Amount,
    /// Whether the consumer asked to close the session after this call.
    pub(super) close_after: bool,
}

/// Request header a consumer sets on its last call to have the session closed after it.
pub const CLOSE_HEADER: &str = "x-agirails-session-close";

impl Inner {
    /// Grants a call paid from session `tx_id` with `voucher`, holding `max` on it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn verify_session(
        &self,
        route: &Route,
        parts: &Parts,
        body: Bytes,
        target: &str,
        max: Amount,
        tx_id: B256,
        voucher: VoucherHeader,
        payment: impl Fn() -> Box<PaymentInstructions>,
    ) -> Result<Granted, Refusal> {
        let Some(config) = self.sessions.as_ref().filter(|_| route.sessions) else {
            return Err(Refusal::SessionsNotAccepted {
                route: format!("{} {}", route.method, route.path),
                payment: payment(),
            });
        };
        let now = self.clock.now();
        let state = match self.store.session(tx_id).await {
            Ok(Some(state)) => state,
            Ok(None) => self.first_sight(tx_id, now, config).await?,
            Err(e) => return Err(self.storage_failed(&e)),
        };
        if state.status != SessionStatus::Open {
            return Err(not_open(tx_id, state.status, max));
        }
        let body_hash = content_hash(&body);
        let signed = voucher.voucher(tx_id, parts.method.as_str(), target, body_hash);
        voucher
            .verify(
                &signed,
                &self.domain,
                state.requester,
                now,
                self.max_authorization_validity,
            )
            .map_err(Refusal::Unauthorized)?;
        let record = SessionVoucherRecord {
            cumulative: voucher.cumulative,
            request_hash: signed.requestHash,
            expires_at: voucher.expires_at,
            signature: voucher.signature.as_bytes().to_vec().into(),
        };
        let hold = match self.hold(tx_id, max, &record, now).await {
            Err(Refusal::SessionUsedUp { .. }) if self.refresh_deposit(tx_id, &state).await => {
                // The consumer topped the session up: hold against the new deposit.
                self.hold(tx_id, max, &record, now).await?
            }
            other => other?,
        };
        Ok(Granted {
            payment: Payment {
                tx_id,
                requester: state.requester,
                amount: state.deposit,
                price: max,
                deadline: state.deadline,
            },
            body,
            request_hash: signed.requestHash,
            started: state.started,
            session: Some(SessionCall {
                hold,
                price: route.price.clone(),
                max,
                close_after: parts.headers.contains_key(CLOSE_HEADER),
            }),
        })
    }

    async fn hold(
        &self,
        tx_id: B256,
        max: Amount,
        voucher: &SessionVoucherRecord,
        now: u64,
    ) -> Result<CallHold, Refusal> {
        match self
            .store
            .hold(tx_id, max.to_u256(), voucher.clone(), now)
            .await
        {
            Ok(Some(Ok(hold))) => Ok(hold),
            Ok(Some(Err(HoldRefusal::UsedUp { remaining, needed }))) => {
                Err(Refusal::SessionUsedUp {
                    tx_id,
                    remaining: remaining.to_string(),
                    needed: needed.to_string(),
                    closing: false,
                })
            }
            Ok(Some(Err(HoldRefusal::VoucherBelowOwed { owed, cumulative }))) => {
                Err(Refusal::VoucherBelowOwed {
                    tx_id,
                    owed: owed.to_string(),
                    cumulative: cumulative.to_string(),
                })
            }
            Ok(Some(Err(HoldRefusal::NotOpen(status)))) => Err(not_open(tx_id, status, max)),
            Ok(None) => Err(Refusal::NotASession { tx_id }),
            Err(e) => Err(self.storage_failed(&e)),
        }
    }

    /// Reads the session's deposit again; `true` if a top-up raised it (and the account now says so).
    async fn refresh_deposit(&self, tx_id: B256, known: &SessionState) -> bool {
        let Ok(record) = self.lookup(tx_id).await else {
            return false;
        };
        if record.amount <= known.deposit {
            return false;
        }
        let deposit = record.amount;
        matches!(
            self.store
                .update_session(tx_id, |s| s.deposit = s.deposit.max(deposit))
                .await,
            Ok(Some(_))
        )
    }

    /// The first call of a session at this provider: the session's terms from chain, checked against this
    /// provider's, become its account.
    async fn first_sight(
        &self,
        tx_id: B256,
        now: u64,
        config: &super::SessionConfig,
    ) -> Result<SessionState, Refusal> {
        let record = match self.lookup(tx_id).await {
            Ok(record) => record,
            Err(LookupFailure::NotFound) => return Err(Refusal::NotASession { tx_id }),
            Err(LookupFailure::Unavailable(reason)) => {
                tracing::warn!(%reason, "transaction read failed");
                return Err(self.chain_unavailable());
            }
        };
        if record.provider != self.terms.provider {
            return Err(Refusal::WrongProvider {
                tx_id,
                provider: record.provider,
                expected: self.terms.provider,
            });
        }
        let terms =
            match tokio::time::timeout(self.chain_timeout, self.kernel.session_of(tx_id)).await {
                Ok(Ok(Some(terms))) => terms,
                Ok(Ok(None)) => return Err(Refusal::NotASession { tx_id }),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "session read failed");
                    return Err(self.chain_unavailable());
                }
                Err(_) => return Err(self.chain_unavailable()),
            };
        let refuse = |reason: String| Refusal::SessionTermsRefused { tx_id, reason };
        if !matches!(record.state, State::Committed | State::InProgress) {
            return Err(closed(
                tx_id,
                &SessionStatus::Failed {
                    reason: format!("{} on chain", record.state),
                },
            ));
        }
        if terms.close_by != 0 {
            return Err(refuse(format!(
                "the requester asked to end it (the provider may close until {})",
                terms.close_by
            )));
        }
        let service_hash = actp_core::ids::service_hash(&config.service);
        if record.service_hash != service_hash {
            return Err(refuse(format!(
                "its serviceHash is {}, but sessions here are opened for service {:?} ({service_hash})",
                record.service_hash, config.service
            )));
        }
        if record.amount < config.min_deposit.to_u256() {
            return Err(Refusal::DepositTooSmall {
                tx_id,
                deposit: record.amount.to_string(),
                minimum: config.min_deposit.base_units().to_string(),
            });
        }
        if terms.grace < config.min_grace.as_secs() {
            return Err(refuse(format!(
                "its grace period of {}s is shorter than the {}s this provider needs to close",
                terms.grace,
                config.min_grace.as_secs()
            )));
        }
        let earliest_deadline = now + self.min_time_to_deadline + config.close_margin.as_secs();
        if record.deadline < earliest_deadline {
            return Err(refuse(format!(
                "its deadline {} leaves too little time: open sessions with a deadline after {earliest_deadline}",
                record.deadline
            )));
        }
        let mut fresh = SessionState::new(record.requester, record.amount, record.deadline, now);
        fresh.started = record.state == State::InProgress;
        self.store
            .session_or_insert(tx_id, fresh)
            .await
            .map_err(|e| self.storage_failed(&e))
    }

    fn chain_unavailable(&self) -> Refusal {
        Refusal::ChainUnavailable {
            retry_after: self.retry_after,
        }
    }
}

/// A call on a session that takes no more: used up (402, with what to do), or closing or closed (409).
fn not_open(tx_id: B256, status: SessionStatus, max: Amount) -> Refusal {
    match status {
        SessionStatus::Closing {
            reason: CloseReason::UsedUp,
        } => Refusal::SessionUsedUp {
            tx_id,
            remaining: "0".into(),
            needed: max.base_units().to_string(),
            closing: true,
        },
        status => closed(tx_id, &status),
    }
}

fn closed(tx_id: B256, status: &SessionStatus) -> Refusal {
    let status = match status {
        SessionStatus::Open => "open".to_owned(),
        SessionStatus::Closing { reason } => format!("closing ({reason:?})").to_lowercase(),
        SessionStatus::Closed { .. } => "closed".to_owned(),
        SessionStatus::Failed { reason } => format!("no longer usable ({reason})"),
    };
    Refusal::SessionClosed { tx_id, status }
}
