-- The review workflow: PROTOCOL.md section 7 (leases, two-reviewer rule, the queue).

-- A reviewer's lease on a candidate. `claimed_by` is the token id (leases belong to
-- one token); the name is kept to show other reviewers who holds it. A lease whose
-- `lease_expires_at` has passed (by the hub's clock) is free.
ALTER TABLE candidates
    ADD COLUMN claimed_by       uuid,
    ADD COLUMN claimed_by_name  text,
    ADD COLUMN lease_expires_at timestamptz;

-- Decisions in the order they were made. A broad range's first approval is a
-- decision row that changes no state; the approvals that count are those after the
-- candidate's latest state change, so the order must be exact, not by timestamp.
ALTER TABLE decisions ADD COLUMN seq bigserial;
CREATE INDEX decisions_candidate_seq ON decisions (candidate_id, seq);

-- The review queue's keyset pages, one index per order (services/review.py):
--   order=reporters: reporters DESC, id DESC  (this index read backwards)
--   order=oldest:    first_seen ASC, id ASC
CREATE INDEX candidates_queue_reporters ON candidates (state, scope_key, reporters, id);
CREATE INDEX candidates_queue_oldest ON candidates (state, scope_key, first_seen, id);
