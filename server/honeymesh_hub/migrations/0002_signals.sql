-- Signals, candidates and the feed log: PROTOCOL.md sections 6, 7 and 8.

-- One row per (indicator, sharing scope): the unit of review. `scope_key` is 'mesh'
-- or the tenant id, so the natural key is one plain unique index.
CREATE TABLE candidates (
    id              uuid PRIMARY KEY,
    indicator_type  text NOT NULL CHECK (indicator_type IN ('ip', 'cidr')),
    indicator_value text NOT NULL,
    network         cidr NOT NULL,
    scope           text NOT NULL CHECK (scope IN ('mesh', 'tenant')),
    scope_tenant_id uuid REFERENCES tenants (id),
    scope_key       text NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'retracted')),
    origin          text CHECK (origin IN ('review', 'auto', 'trusted')),
    scenarios       text[] NOT NULL DEFAULT '{}',
    reporters       integer NOT NULL DEFAULT 0,
    tenants         integer NOT NULL DEFAULT 0,
    signal_count    integer NOT NULL DEFAULT 0,
    max_confidence  smallint NOT NULL DEFAULT 0,
    max_ttl_seconds integer NOT NULL DEFAULT 0,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    expires_at      timestamptz,
    -- a reviewer's ttl_seconds caps later extensions (PROTOCOL.md section 7)
    expiry_cap      timestamptz,
    approved_at     timestamptz,
    decided_at      timestamptz,
    -- set once a reviewer rejects or retracts: automation never approves it again
    reviewer_locked boolean NOT NULL DEFAULT false,
    reason          text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK ((scope = 'mesh' AND scope_tenant_id IS NULL AND scope_key = 'mesh')
        OR (scope = 'tenant' AND scope_tenant_id IS NOT NULL
            AND scope_key = scope_tenant_id::text))
);
CREATE UNIQUE INDEX candidates_natural ON candidates (indicator_value, scope_key);
CREATE INDEX candidates_network ON candidates USING gist (network inet_ops);
CREATE INDEX candidates_state_expiry ON candidates (expires_at) WHERE state = 'approved';

-- Which nodes and tenants reported a candidate: the distinct counts are kept by
-- inserting here with ON CONFLICT DO NOTHING and counting only the new rows.
CREATE TABLE candidate_reporters (
    indicator_value text NOT NULL,
    scope_key       text NOT NULL,
    node_id         uuid NOT NULL REFERENCES nodes (id),
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    -- latest receipt of a signal with confidence at or above the corroboration bar
    qualified_at    timestamptz,
    PRIMARY KEY (indicator_value, scope_key, node_id)
);
CREATE INDEX candidate_reporters_node ON candidate_reporters (node_id);

CREATE TABLE candidate_tenants (
    indicator_value text NOT NULL,
    scope_key       text NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (indicator_value, scope_key, tenant_id)
);

-- A signal exactly as its node signed it: the payload bytes are never re-serialised.
CREATE TABLE signals (
    id              uuid PRIMARY KEY,
    node_id         uuid NOT NULL REFERENCES nodes (id),
    signal_uuid     uuid NOT NULL,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    keyid           text NOT NULL REFERENCES node_keys (keyid),
    indicator_value text NOT NULL,
    scope_key       text NOT NULL,
    payload         bytea NOT NULL,
    sig             bytea NOT NULL,
    scenario        text NOT NULL,
    confidence      smallint NOT NULL,
    ttl_seconds     integer NOT NULL,
    observed_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    UNIQUE (node_id, signal_uuid)
);
CREATE INDEX signals_candidate ON signals (indicator_value, scope_key, received_at DESC);

-- Decisions: every state change of a candidate, by a reviewer or by a rule.
CREATE TABLE decisions (
    id           uuid PRIMARY KEY,
    candidate_id uuid NOT NULL REFERENCES candidates (id),
    action       text NOT NULL,
    from_state   text NOT NULL,
    to_state     text NOT NULL,
    origin       text,
    actor        text NOT NULL,
    reason       text,
    ttl_seconds  integer,
    time         timestamptz NOT NULL
);
CREATE INDEX decisions_candidate ON decisions (candidate_id, time);

-- The feed log (PROTOCOL.md section 8). `xid` is the writing transaction's id: a
-- reader serves only events whose transaction is below its snapshot's xmin (so
-- finished), in (xid, seq) order, which makes "no event is ever skipped" hold
-- whatever commits concurrently (see services/feed.py).
CREATE TABLE feed_log (
    seq             bigserial PRIMARY KEY,
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    candidate_id    uuid NOT NULL REFERENCES candidates (id),
    kind            text NOT NULL CHECK (kind IN ('added', 'removed')),
    reason          text CHECK (reason IN ('expired', 'retracted')),
    scope_key       text NOT NULL,
    entry           jsonb NOT NULL,
    time            timestamptz NOT NULL
);
CREATE INDEX feed_log_order ON feed_log (xid, seq);
