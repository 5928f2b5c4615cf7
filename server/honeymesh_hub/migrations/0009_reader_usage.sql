-- Use of each reader key (issue #15): polls served on the reader routes, decisions in
-- those answers, and the time of its last authenticated request. Each replica adds
-- what it counted to these columns every few seconds (services/readerusage.py), so
-- the figures of every replica add up here; never one write a request.
ALTER TABLE reader_keys
    ADD COLUMN polls            bigint NOT NULL DEFAULT 0 CHECK (polls >= 0),
    ADD COLUMN decisions_served bigint NOT NULL DEFAULT 0 CHECK (decisions_served >= 0),
    ADD COLUMN last_seen_at     timestamptz;
