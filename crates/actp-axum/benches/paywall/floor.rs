//! The crypto floor of one session call: the voucher's signature recovery, the receipt's signature, and the
//! hashing (request body, response body, the voucher's and the receipt's EIP-712 hashes). Timed in the CPU time
//! of the thread that runs it, the measure the paywall's own cost is read in, so that a burst of load on this
//! shared machine delays both and moves neither.

use std::time::Duration;

use actp_client::Signer;
use actp_core::{
    U256,
    proof::content_hash,
    session::{SessionReceipt, SessionVoucher, VoucherHeader},
};
use alloy_sol_types::Eip712Domain;

use super::cpu::thread_cpu_time;
use super::sessions::voucher_header;
use super::support::BODY;

/// What one session call's crypto needs, built once.
pub(crate) struct Floor {
    header: VoucherHeader,
    voucher: SessionVoucher,
    receipt: SessionReceipt,
    answer: String,
    domain: Eip712Domain,
    requester: actp_core::Address,
    provider: Signer,
    now: u64,
}

/// The floor's parts, each per call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parts {
    pub(crate) recover: Duration,
    pub(crate) sign: Duration,
    pub(crate) hashing: Duration,
}

impl Parts {
    pub(crate) fn total(&self) -> Duration {
        self.recover + self.sign + self.hashing
    }
}

impl Floor {
    /// The first call of `session` (priced `price`, out of `deposit`), its voucher signed by `requester` and its
    /// receipt by `provider`, answered `answer`; vouchers are checked at chain time `now`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        session: actp_core::B256,
        price: U256,
        deposit: U256,
        requester: &Signer,
        provider: Signer,
        domain: Eip712Domain,
        answer: String,
        expires: u64,
        now: u64,
    ) -> Self {
        let header = voucher_header(session, price, requester, &domain, expires);
        let voucher = header.voucher(session, "POST", "/paid", content_hash(BODY.as_bytes()));
        let receipt = SessionReceipt::first(
            session,
            price,
            deposit - price,
            voucher.requestHash,
            content_hash(answer.as_bytes()),
        );
        Self {
            header,
            voucher,
            receipt,
            answer,
            domain,
            requester: requester.address(),
            provider,
            now,
        }
    }

    /// Each part timed over `n` runs, in this thread's CPU time. None of them awaits anything that is not
    /// ready, so the task stays on one thread throughout.
    pub(crate) async fn time(&self, n: u32) -> Parts {
        let start = thread_cpu_time();
        for _ in 0..n {
            self.header
                .verify(&self.voucher, &self.domain, self.requester, self.now, 300)
                .unwrap();
        }
        let recover = thread_cpu_time().saturating_sub(start) / n;
        let start = thread_cpu_time();
        for _ in 0..n {
            self.provider
                .sign_hash(&self.receipt.hash(&self.domain))
                .await
                .unwrap();
        }
        let sign = thread_cpu_time().saturating_sub(start) / n;
        let start = thread_cpu_time();
        for _ in 0..n {
            std::hint::black_box((
                content_hash(BODY.as_bytes()),
                content_hash(self.answer.as_bytes()),
                self.voucher.signing_hash(&self.domain),
                self.receipt.hash(&self.domain),
            ));
        }
        let hashing = thread_cpu_time().saturating_sub(start) / n;
        Parts {
            recover,
            sign,
            hashing,
        }
    }
}
