-- Each sequenced event as the feed serves it (its leaf less `event`, with its `leaf`
-- place, compact JSON), made once by the sequencer: a snapshot page joins these texts
-- instead of parsing and rebuilding every leaf on every page (store/feed.py).
ALTER TABLE sequenced ADD COLUMN event text;
UPDATE sequenced
SET event = ((convert_from(leaf, 'UTF8')::jsonb - 'event')
             || jsonb_build_object('leaf', jsonb_build_object(
                  'log', CASE WHEN scope_key = 'mesh' THEN 'mesh' ELSE 'tenant:' || scope_key END,
                  'index', log_index)))::text
WHERE leaf IS NOT NULL;
