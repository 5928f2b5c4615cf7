-- Reader keys (PROTOCOL.md sections 1, 4 and 13, r2): a consumer that cannot sign
-- (CrowdSec bouncer, firewall fetching a URL, TAXII client) reads one tenant's view
-- with a key. Stored as SHA-256 of the key, like api_tokens: a key carries 256 random
-- bits, so a fast hash is enough and a lookup by hash is safe.
CREATE TABLE reader_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX reader_keys_tenant ON reader_keys (tenant_id, created_at);
