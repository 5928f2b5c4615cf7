-- What a tenant's nodes may see, as a counter that moves whenever it shrinks (the
-- tenant loses mesh, is suspended, or its entitlement lapses and is renewed). Feed
-- cursors carry the epoch they were issued under; a cursor of an older epoch is
-- answered with a snapshot (PROTOCOL.md 8 r2), so no node keeps enforcing decisions
-- it may no longer see.
ALTER TABLE tenants ADD COLUMN visibility_epoch integer NOT NULL DEFAULT 0;
