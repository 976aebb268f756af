-- The paying client's ledger, shared by every agent process: one row per agent (the lock that serializes
-- changes to its records, and its kill switch), its records by key, and the index from kernel transaction to
-- payment.

CREATE TABLE ledger_agents (
    agent bytea PRIMARY KEY,
    suspended boolean NOT NULL DEFAULT false,
    reason text,
    suspended_at timestamptz
);

CREATE TABLE ledger_records (
    agent bytea NOT NULL REFERENCES ledger_agents (agent),
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (agent, key)
);

CREATE TABLE ledger_tx (
    tx_id bytea PRIMARY KEY,
    agent bytea NOT NULL,
    key text NOT NULL
);
