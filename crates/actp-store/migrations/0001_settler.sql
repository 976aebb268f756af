-- The settlement daemon's state, per chain and kernel (several daemons share it).

-- The first block not yet read. Daemons that read the same blocks apply their changes once: a change from a
-- block below the checkpoint was applied already.
CREATE TABLE settler_checkpoint (
    chain_id bigint NOT NULL,
    kernel bytea NOT NULL,
    next_block bigint NOT NULL,
    PRIMARY KEY (chain_id, kernel)
);

-- Delivered transactions not yet seen leaving DELIVERED. A daemon leases the ones it is about to settle;
-- another takes them over once the lease has expired.
CREATE TABLE settler_pending (
    chain_id bigint NOT NULL,
    kernel bytea NOT NULL,
    tx_id bytea NOT NULL,
    window_end bigint,
    lease_owner text,
    lease_until timestamptz,
    PRIMARY KEY (chain_id, kernel, tx_id)
);
