-- signals_provenance (indicator_value, scope_key, received_at DESC, id) serves every
-- read signals_candidate served; one index fewer to maintain on every publish.
DROP INDEX signals_candidate;
