-- Feed compaction watermark (PROTOCOL.md section 8): a cursor at or below it answers
-- 410 cursor_expired, since the events after it may have been deleted.
CREATE TABLE feed_state (
    id            integer PRIMARY KEY CHECK (id = 1),
    compacted_xid xid8 NOT NULL,
    compacted_seq bigint NOT NULL
);
INSERT INTO feed_state (id, compacted_xid, compacted_seq) VALUES (1, '0', 0);

CREATE INDEX feed_log_time ON feed_log (time);
CREATE INDEX feed_log_scope ON feed_log (scope_key, xid, seq);
CREATE INDEX candidates_active ON candidates (scope_key, id) WHERE state = 'approved';
CREATE INDEX signals_provenance ON signals (indicator_value, scope_key, received_at DESC, id);
