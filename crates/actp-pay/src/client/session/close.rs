//! Taking a session out of use: a lost call, asking the provider to close, ending on chain, and closing every
//! session when the agent is done.

use actp_core::{
    Amount, U256,
    http::{TX_ID_HEADER, VOUCHER_HEADER},
    proof::content_hash,
    session::{SessionVoucher, VoucherHeader},
};
use http::StatusCode;

use crate::{
    client::{Call, PayingClient},
    error::PayError,
    ledger::{Payment, PaymentState, unix_now},
};

impl PayingClient {
    /// The call in flight on `payment` has no known outcome: it counts at its maximum, and the session is
    /// closed.
    pub(in crate::client) async fn lose(
        &self,
        payment: &Payment,
        why: &str,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let payment = inner
            .ledger
            .update(inner.agent, &payment.key, |p| {
                if let Some(s) = p.session.as_mut()
                    && let Some(call) = s.pending.take()
                {
                    s.lost = Amount::from_base_units(
                        s.lost.base_units().saturating_add(call.max.base_units()),
                    );
                }
                p.note = Some(format!("a call was lost: {why}"));
            })
            .await?;
        tracing::warn!(tx_id = %payment.tx_id.unwrap_or_default(), why, "session call lost; closing the session");
        self.retire(&payment, why).await
    }

    /// Takes the session out of use and asks the provider to close it; if the provider cannot be asked, asks
    /// the kernel to end it (the provider then has the grace period to close).
    pub(in crate::client) async fn retire(
        &self,
        payment: &Payment,
        why: &str,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let payment = inner
            .ledger
            .update(inner.agent, &payment.key, |p| {
                if let Some(s) = p.session.as_mut() {
                    s.closing_since.get_or_insert(unix_now());
                }
            })
            .await?;
        match self.ask_close(&payment).await {
            Ok(()) => Ok(payment),
            Err(refused) => {
                tracing::warn!(
                    tx_id = %payment.tx_id.unwrap_or_default(), why, refused = %refused,
                    "the provider could not be asked to close; ending the session on chain"
                );
                self.end_on_chain(payment).await
            }
        }
    }

    /// `POST`s the provider's close path with a voucher over that request (it raises nothing).
    async fn ask_close(&self, payment: &Payment) -> Result<(), String> {
        let inner = &*self.inner;
        let account = payment.session.as_ref().ok_or("not a session")?;
        let tx_id = payment.tx_id.unwrap_or_default();
        let expires = unix_now() + inner.config.authorization_validity.as_secs();
        let voucher = SessionVoucher::for_request(
            tx_id,
            U256::ZERO,
            "POST",
            &account.close_path,
            content_hash(b""),
            expires,
        );
        let signer = inner.kernel.signer().ok_or("no signing key")?;
        let signature = signer
            .sign_hash(&voucher.signing_hash(&inner.kernel.domain()))
            .await
            .map_err(|e| e.to_string())?;
        let call = Call {
            method: http::Method::POST,
            url: format!("{}{}", account.origin, account.close_path),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            session: None,
        };
        let header = VoucherHeader::from_signature(&voucher, signature).to_string();
        let response = self
            .send_with(
                &call,
                &[(TX_ID_HEADER, tx_id.to_string()), (VOUCHER_HEADER, header)],
            )
            .await?;
        // 409: closing or closed already.
        if response.status.is_success() || response.status == StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                response.status.as_u16(),
                crate::client::deliver::message_of(&response.body)
            ))
        }
    }

    /// Asks the kernel to end the session (requester only; the provider keeps the grace period to close).
    pub(in crate::client) async fn end_on_chain(
        &self,
        payment: Payment,
    ) -> Result<Payment, PayError> {
        let inner = &*self.inner;
        let tx_id = payment.tx_id.unwrap_or_default();
        match inner.kernel.end_session(tx_id).await {
            Ok(_) => {
                tracing::info!(%tx_id, "session ended on chain; the provider has its grace period to close");
                Ok(inner
                    .ledger
                    .update(inner.agent, &payment.key, |p| {
                        if let Some(s) = p.session.as_mut() {
                            s.ended = true;
                            s.closing_since.get_or_insert(unix_now());
                        }
                    })
                    .await?)
            }
            // Closed meanwhile, or ended already (refused before sending, or reverted on chain because the
            // provider's close was mined first): reconcile follows the chain from here.
            Err(e) if e.rejection().is_some() => {
                tracing::info!(%tx_id, error = %e, "the session could not be ended; it is closed or ending already");
                Ok(payment)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks the provider of every session of this agent still taking calls to close it (ending it on chain
    /// where the provider cannot be reached). Call it when the agent is done; [`PayingClient::reconcile`]
    /// then follows each to its settlement and refund, ending on chain any the provider does not close within
    /// [`PayConfig::session_close_wait`](super::PayConfig::session_close_wait). Returns how many were asked.
    pub async fn close_sessions(&self) -> Result<u64, PayError> {
        let inner = &*self.inner;
        let mut asked = 0;
        for p in inner.ledger.open_sessions(inner.agent).await? {
            let Some(service_hash) = p.session.as_ref().map(|s| s.service_hash) else {
                continue;
            };
            let slot = self.slot(p.provider, service_hash);
            let mut current = slot.lock().await;
            let Some(p) = inner.ledger.payment(inner.agent, &p.key).await? else {
                continue;
            };
            let Some(session) = &p.session else { continue };
            if p.state != PaymentState::Funded || session.closing_since.is_some() {
                continue;
            }
            if session.pending.is_some() {
                self.lose(
                    &p,
                    "the call in flight when the agent stopped never got its receipt",
                )
                .await?;
            } else {
                self.retire(&p, "the agent is done").await?;
            }
            if current.as_deref() == Some(p.key.as_str()) {
                *current = None;
            }
            asked += 1;
        }
        Ok(asked)
    }
}
