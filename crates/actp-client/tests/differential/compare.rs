//! Comparing the kernel with the model after a step: transactions, balances, fees, governance, vault views.

use actp_core::{Address, B256, U256, model::KernelView};

use super::{ACTORS, World};

impl World {
    pub(crate) async fn compare(&self, touched: &[B256]) -> Result<(), String> {
        let k = &self.clients[0];
        for id in touched {
            let (Some(m), Ok(c)) = (self.model.transaction(*id), k.get(*id).await) else {
                continue;
            };
            let window_field = m.window_end.unwrap_or(m.dispute_window);
            let expect = (
                m.state,
                m.amount,
                m.updated_at,
                m.deadline,
                window_field,
                m.fee_bps,
                m.escrowed,
                m.metadata,
                m.dispute_initiator.unwrap_or_default(),
            );
            let got = (
                c.state,
                c.amount,
                c.updated_at,
                c.deadline,
                c.dispute_window,
                c.fee_bps,
                c.escrow_contract != Address::ZERO,
                c.metadata,
                c.dispute_initiator,
            );
            if expect != got {
                return Err(format!(
                    "transaction {id} differs:\n  model {expect:?}\n  chain {got:?}"
                ));
            }
            if k.remaining(*id).await.unwrap() != m.remaining() {
                return Err(format!("remaining of {id} differs"));
            }
            self.compare_session(*id).await?;
        }
        let kernel = self.devnet.deployment().kernel;
        let mut who: Vec<Address> = (0..=ACTORS + 1).map(|i| self.addr(i)).collect();
        who.push(kernel);
        for a in who {
            let (m, c) = (self.model.balance_of(a), k.balance_of(a).await.unwrap());
            if a != self.addr(0) && m != c {
                return Err(format!("balance of {a} differs: model {m}, chain {c}"));
            }
        }
        let (m, c) = (self.model.accrued_fees(), k.accrued_fees().await.unwrap());
        if m != c {
            return Err(format!("accrued fees differ: model {m}, chain {c}"));
        }
        Ok(())
    }

    /// The governance views against the model: admin, pauser, pause, and who may resolve now.
    pub(crate) async fn compare_governance(&self) -> Result<(), String> {
        let kernel = self.kernel_contract();
        let admin = kernel.admin().call().await.unwrap();
        let pauser = kernel.pauser().call().await.unwrap();
        let paused = kernel.paused().call().await.unwrap();
        let expect = (self.model.admin(), self.model.pauser(), self.model.paused());
        if expect != (admin, pauser, paused) {
            return Err(format!(
                "governance differs: model {expect:?}, chain {:?}",
                (admin, pauser, paused)
            ));
        }
        for i in 0..=ACTORS + 1 {
            let a = self.addr(i);
            let c = kernel.isResolver(a).call().await.unwrap();
            // Views see the last mined block's time; the model is asked at the same time.
            let t = self.devnet.now().await.unwrap();
            let m = self.model.is_resolver(a, t);
            if c != m {
                return Err(format!("isResolver({a}) at {t}: model {m}, chain {c}"));
            }
        }
        Ok(())
    }

    /// The vault views by escrow id, asked as every account: `remaining` (resolves the caller's own alias
    /// first) and `verifyEscrow` naming that account as the requester (against the model's provider).
    pub(crate) async fn compare_aliases(&self, escrow_ids: &[B256]) -> Result<(), String> {
        use futures::StreamExt;
        let kernel = self.kernel_contract();
        // Every (escrow id, caller) and (escrow id, requester, provider) view, asked 32 at a time.
        let mut asks = Vec::new();
        for escrow_id in escrow_ids {
            for i in 0..=ACTORS + 1 {
                asks.push((*escrow_id, self.addr(i), None));
                for p in 0..=ACTORS + 1 {
                    asks.push((*escrow_id, self.addr(i), Some(self.addr(p))));
                }
            }
        }
        let answers: Vec<_> = futures::stream::iter(asks)
            .map(|(escrow_id, a, provider)| {
                let kernel = kernel.clone();
                async move {
                    let chain = match provider {
                        None => (
                            false,
                            kernel.remaining(escrow_id).from(a).call().await.unwrap(),
                        ),
                        Some(p) => {
                            let v = kernel
                                .verifyEscrow(escrow_id, a, p, U256::ZERO)
                                .call()
                                .await
                                .unwrap();
                            (v.isActive, v.escrowAmount)
                        }
                    };
                    (escrow_id, a, provider, chain)
                }
            })
            .buffered(32)
            .collect()
            .await;
        for (escrow_id, a, provider, chain) in answers {
            match provider {
                None => {
                    let m = self.model.remaining_of(escrow_id, a);
                    if chain.1 != m {
                        return Err(format!(
                            "remaining({escrow_id}) asked by {a}: model {m}, chain {}",
                            chain.1
                        ));
                    }
                }
                Some(provider) => {
                    let m = self.model.verify_escrow(escrow_id, a, provider, U256::ZERO);
                    if chain != m {
                        return Err(format!(
                            "verifyEscrow({escrow_id}, {a}, {provider}): model {m:?}, chain {chain:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn kernel_contract(
        &self,
    ) -> actp_client::bindings::EscrowKernel::EscrowKernelInstance<alloy::providers::DynProvider>
    {
        actp_client::bindings::EscrowKernel::new(
            self.devnet.deployment().kernel,
            self.devnet.provider(),
        )
    }
}
