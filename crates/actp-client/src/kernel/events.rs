//! The kernel's history, read from its events in block ranges the node accepts: proof hashes recorded at
//! delivery, refunds, the escrows a requester created, and whether an account has sends pending.

use super::*;

impl Kernel {
    /// This kernel's logs of one event from `from_block` to the head, narrowed by `topics`, read in block
    /// ranges the node accepts.
    async fn event_logs(
        &self,
        signature: B256,
        topics: impl FnOnce(Filter) -> Filter,
        from_block: u64,
    ) -> Result<Vec<alloy::rpc::types::Log>> {
        let filter = topics(
            Filter::new()
                .address(self.address)
                .event_signature(signature),
        );
        let head = self.block_number().await?;
        self.logs
            .read(&self.provider, &filter, from_block, head)
            .await
    }

    /// The logs of `filter` (its block range is replaced) from `from_block` to `to_block`, in ranges the node
    /// accepts: how long histories are read from public RPCs.
    pub async fn logs(
        &self,
        filter: &Filter,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<alloy::rpc::types::Log>> {
        self.logs
            .read(&self.provider, filter, from_block, to_block)
            .await
    }

    /// The proof hash recorded on chain when `id` was delivered (its `DeliveryProofRecorded` event), scanning
    /// from `from_block`; `None` if it was delivered without one or not yet.
    pub async fn recorded_proof_hash(&self, id: B256, from_block: u64) -> Result<Option<B256>> {
        let logs = self
            .event_logs(
                EscrowKernel::DeliveryProofRecorded::SIGNATURE_HASH,
                |f| f.topic1(id),
                from_block,
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| EscrowKernel::DeliveryProofRecorded::decode_log(&l.inner).ok())
            .map(|e| e.proofHash)
            .last())
    }

    /// The transactions `requester` created from `from_block` on (their `TransactionCreated` events), oldest
    /// first: how a paying client that crashed between sending a payment and recording it finds the escrow.
    pub async fn created_by(&self, requester: Address, from_block: u64) -> Result<Vec<Created>> {
        let logs = self
            .event_logs(
                EscrowKernel::TransactionCreated::SIGNATURE_HASH,
                |f| f.topic2(requester.into_word()),
                from_block,
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| {
                let e = EscrowKernel::TransactionCreated::decode_log(&l.inner).ok()?;
                Some(Created {
                    id: e.transactionId,
                    provider: e.provider,
                    amount: e.amount,
                    service_hash: e.serviceHash,
                    block: l.block_number.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Whether the node holds transactions sent by `who` that are not mined yet (its pending nonce is ahead
    /// of its latest one).
    pub async fn has_pending(&self, who: Address) -> Result<bool> {
        let count = |pending: bool| async move {
            self.config
                .retry
                .run("nonce", || async {
                    let call = self.provider.get_transaction_count(who);
                    let call = if pending {
                        call.pending()
                    } else {
                        call.latest()
                    };
                    call.await.map_err(rpc_error)
                })
                .await
        };
        Ok(count(true).await? > count(false).await?)
    }

    /// What the kernel refunded to the requester of `id` (its `EscrowRefunded` events from `from_block` on):
    /// the whole escrow after a cancellation, the requester's share after a dispute resolution.
    pub async fn refunded(&self, id: B256, from_block: u64) -> Result<U256> {
        let logs = self
            .event_logs(
                EscrowKernel::EscrowRefunded::SIGNATURE_HASH,
                |f| f.topic1(id),
                from_block,
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| EscrowKernel::EscrowRefunded::decode_log(&l.inner).ok())
            .fold(U256::ZERO, |sum, e| sum + e.amount))
    }
}
