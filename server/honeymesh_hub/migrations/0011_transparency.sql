-- The transparency log (PROTOCOL.md 15 r2; tlog.py, store/tlog.py). One append-only
-- RFC 9162 Merkle log per scope, of every sequenced feed event, appended by the
-- sequencer in its own transaction, so the logs' order is the sequenced order and a
-- replica that dies mid-append leaves nothing half-written.

-- Each sequenced event's place in its scope's log, and its leaf: the RFC 8785 JSON of
-- the event as the feed serves it. NULL until logged (rows from before this migration
-- are logged by the sequencer's first rounds, in `ord` order, before anything new).
ALTER TABLE sequenced ADD COLUMN log_index bigint;
ALTER TABLE sequenced ADD COLUMN leaf bytea;
CREATE UNIQUE INDEX sequenced_log ON sequenced (scope_key, log_index);
CREATE INDEX sequenced_unlogged ON sequenced (ord) WHERE log_index IS NULL;

-- Every complete subtree of every log: node (level, index) is the root over leaves
-- [index * 2^level, (index + 1) * 2^level). Any proof needs O(log n) of them.
CREATE TABLE tlog_nodes (
    log   text NOT NULL,
    level smallint NOT NULL,
    index bigint NOT NULL,
    hash  bytea NOT NULL,
    PRIMARY KEY (log, level, index)
);

-- Each log's latest tree and the checkpoint the hub signed for it.
CREATE TABLE tlog_heads (
    log        text PRIMARY KEY,
    size       bigint NOT NULL,
    root       bytea NOT NULL,
    checkpoint text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Nodes' cosignatures of checkpoints they verified: one line per node and tree size.
CREATE TABLE tlog_cosignatures (
    log        text NOT NULL,
    size       bigint NOT NULL,
    node_id    uuid NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    line       text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (log, size, node_id)
);
