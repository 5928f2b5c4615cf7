-- CrowdSec Local API, bouncer side (PROTOCOL.md 13.1, r2).
--
-- A bouncer's decision id is an integer (a string crashes real bouncers), stable for
-- that decision and unique on the hub: an identity column, never reused.
ALTER TABLE candidates ADD COLUMN crowdsec_id bigint GENERATED ALWAYS AS IDENTITY UNIQUE;

-- One stream position per reader key, so whichever replica answers the next poll
-- serves the changes since the last answer that was fully written. A position is a
-- point in the feed log's (xid, seq) order (store/feed.py), with the visibility epoch
-- of the tenant it was taken under: a position of an older epoch answers as startup.
CREATE TABLE crowdsec_positions (
    key_id     uuid PRIMARY KEY REFERENCES reader_keys (id) ON DELETE CASCADE,
    xid        xid8 NOT NULL,
    seq        bigint NOT NULL,
    epoch      integer NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Whether a bouncer held a decision at its position: the candidate's last event
-- before it (an extension is then a delete and a re-add).
CREATE INDEX feed_log_candidate ON feed_log (candidate_id, xid, seq);
