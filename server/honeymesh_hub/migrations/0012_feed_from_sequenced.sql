-- The feed serves the sequenced rows (store/feed.py), so that every event carries its
-- place in the transparency log (PROTOCOL.md 8 r2, 15 r2): deltas in the feed's
-- (xid, seq) order, snapshots as of a sequenced position.
CREATE INDEX sequenced_position ON sequenced (xid, seq);
-- A snapshot pages additions by candidate; removals are never in one.
CREATE INDEX sequenced_added ON sequenced (candidate_id) WHERE kind = 'added';
