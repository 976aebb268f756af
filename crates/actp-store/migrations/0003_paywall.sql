-- A provider's paywall, shared by its replicas. Every row carries its scope: the chain, kernel and provider
-- (`<chainId>/<kernel>/<provider>`), so several paywalls can share one database.

-- One row per transaction a request paid with: at most one request is served per transaction. An active
-- claim lasts `until`: one whose replica died while serving reads as released after that.
CREATE TABLE paywall_claims (
    scope text NOT NULL,
    tx_id bytea NOT NULL,
    status text NOT NULL,
    until timestamptz,
    request_hash bytea NOT NULL,
    started boolean NOT NULL DEFAULT false,
    proof_hash bytea,
    delivery_tx bytea,
    failure text,
    PRIMARY KEY (scope, tx_id)
);

-- Which replica sends the outbox, until when: one sender at a time, so that the replicas, which share the
-- provider's key, never race each other for its nonces. Another takes over once the lease has expired.
CREATE TABLE paywall_sender (
    scope text PRIMARY KEY,
    owner text NOT NULL,
    until timestamptz NOT NULL
);

-- Deliveries and session closes still to be put on chain. The sender leases the ones it sends; another takes
-- them over once the lease has expired. `leases` counts the owners it has had (more than one: check the chain
-- before sending).
CREATE TABLE paywall_outbox (
    seq bigserial PRIMARY KEY,
    scope text NOT NULL,
    tx_id bytea NOT NULL,
    proof_hash bytea NOT NULL,
    started boolean NOT NULL,
    session boolean NOT NULL,
    lease_owner text,
    lease_until timestamptz,
    leases integer NOT NULL DEFAULT 0
);
CREATE INDEX paywall_outbox_scope ON paywall_outbox (scope, seq);

-- Each session's account (the paywall's own encoding), changed only under its row lock.
CREATE TABLE paywall_sessions (
    scope text NOT NULL,
    tx_id bytea NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (scope, tx_id)
);

-- What the calls in flight on a session hold, each until its lease ends (a replica killed mid-call leaves a
-- hold that expires instead of one held forever).
CREATE TABLE paywall_holds (
    id bigserial PRIMARY KEY,
    scope text NOT NULL,
    tx_id bytea NOT NULL,
    max text NOT NULL,
    until timestamptz NOT NULL
);
CREATE INDEX paywall_holds_session ON paywall_holds (scope, tx_id);
