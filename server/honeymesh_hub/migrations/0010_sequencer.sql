-- The sequencer (services/sequencer.py, store/sequencer.py): one writer at a time, on
-- whichever replica holds the state row's lock, takes the feed events that are final
-- (their transaction is below the oldest one running) in the feed's (xid, seq) order
-- and gives each its place in the one order every later reader sees: `ord`, and a
-- `date_added` (TAXII 2.1, PROTOCOL.md 14 r2) that is strictly increasing with it.
-- Unlike feed_log these rows are never compacted: they are the objects' history.

-- The hub's identity, made once: the STIX identity of the hub and the mesh
-- collection's id (the same on every replica), and when it was made.
CREATE TABLE hub_identity (
    id              integer PRIMARY KEY CHECK (id = 1),
    hub_id          uuid NOT NULL,
    mesh_collection uuid NOT NULL,
    created_at      timestamptz NOT NULL
);
INSERT INTO hub_identity (id, hub_id, mesh_collection, created_at)
VALUES (1, gen_random_uuid(), gen_random_uuid(), date_trunc('milliseconds', clock_timestamp()));

CREATE TABLE sequenced (
    ord          bigint PRIMARY KEY,
    date_added   timestamptz NOT NULL UNIQUE,
    xid          xid8 NOT NULL,
    seq          bigint NOT NULL,
    -- no foreign key: its KEY SHARE lock would make the sequencer wait on a
    -- candidate row an allowlist add holds while it waits for older transactions
    candidate_id uuid NOT NULL,
    scope_key    text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('added', 'removed')),
    reason       text,
    entry        jsonb NOT NULL,
    -- the event's time, made strictly increasing per candidate (a STIX version)
    time         timestamptz NOT NULL,
    -- the candidate's first approval: its STIX `created`
    created      timestamptz NOT NULL,
    -- false once a later event of the same candidate is sequenced (match[version]=last)
    latest       boolean NOT NULL DEFAULT true
);
CREATE INDEX sequenced_scope ON sequenced (scope_key, date_added);
CREATE INDEX sequenced_scope_latest ON sequenced (scope_key, date_added) WHERE latest;
CREATE INDEX sequenced_candidate ON sequenced (candidate_id, ord);

-- Where the sequencer stands: every feed event at or before (xid, seq) is sequenced,
-- the last with `ord` and `date_added`.
CREATE TABLE sequencer_state (
    id         integer PRIMARY KEY CHECK (id = 1),
    xid        xid8 NOT NULL,
    seq        bigint NOT NULL,
    ord        bigint NOT NULL,
    date_added timestamptz NOT NULL
);
INSERT INTO sequencer_state (id, xid, seq, ord, date_added)
SELECT 1, '0', 0, 0, created_at FROM hub_identity;
