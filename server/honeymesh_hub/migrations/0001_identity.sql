-- Identity, entitlements, audit: PROTOCOL.md sections 1, 2, 4, 5.
-- Every id is a random UUID chosen by the hub; the audit seq is the one ordinal.

CREATE TABLE hub_secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan       text NOT NULL CHECK (plan IN ('community', 'pro', 'enterprise')),
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    expires_at timestamptz,
    limits     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Admin and reviewer bearer tokens, stored as SHA-256 of the token: a token carries
-- 256 random bits, so a fast hash is enough and a lookup by hash is safe.
CREATE TABLE api_tokens (
    id              uuid PRIMARY KEY,
    role            text NOT NULL CHECK (role IN ('admin', 'reviewer')),
    scope           text CHECK (scope IN ('mesh', 'tenant')),
    scope_tenant_id uuid REFERENCES tenants (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash      bytea NOT NULL UNIQUE,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL,
    CHECK ((role = 'admin' AND scope IS NULL AND scope_tenant_id IS NULL)
        OR (role = 'reviewer' AND scope = 'mesh' AND scope_tenant_id IS NULL)
        OR (role = 'reviewer' AND scope = 'tenant' AND scope_tenant_id IS NOT NULL))
);

CREATE TABLE enrollment_tokens (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    token_hash bytea NOT NULL UNIQUE,
    max_uses   integer NOT NULL CHECK (max_uses >= 1),
    uses       integer NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX enrollment_tokens_tenant ON enrollment_tokens (tenant_id, created_at);

CREATE TABLE nodes (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    name          text NOT NULL,
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb,
    trusted       boolean NOT NULL DEFAULT false,
    enrolled_with uuid REFERENCES enrollment_tokens (id),
    revoked_at    timestamptz,
    created_at    timestamptz NOT NULL
);
CREATE INDEX nodes_tenant ON nodes (tenant_id, created_at);

-- A node's keys: exactly one current key (rotated_at IS NULL); a rotated key keeps
-- working until grace_until and stays readable for anyone checking old signatures.
CREATE TABLE node_keys (
    keyid       text PRIMARY KEY CHECK (keyid ~ '^[0-9a-f]{64}$'),
    node_id     uuid NOT NULL REFERENCES nodes (id),
    public_key  bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    grace_until timestamptz,
    replaced_by text REFERENCES node_keys (keyid) DEFERRABLE INITIALLY DEFERRED
);
CREATE UNIQUE INDEX node_keys_one_current ON node_keys (node_id) WHERE rotated_at IS NULL;
CREATE INDEX node_keys_node ON node_keys (node_id);

-- Request nonces while Redis is unreachable (PROTOCOL.md section 2).
CREATE TABLE request_nonces (
    keyid      text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (keyid, nonce)
);
CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);

CREATE TABLE allowlist (
    id         uuid PRIMARY KEY,
    cidr       cidr NOT NULL UNIQUE,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX allowlist_cidr ON allowlist USING gist (cidr inet_ops);

INSERT INTO allowlist (id, cidr, reason, created_at)
SELECT gen_random_uuid(), c::cidr, 'public resolver', now()
FROM unnest(ARRAY['1.1.1.1/32', '1.0.0.1/32', '8.8.8.8/32', '8.8.4.4/32', '9.9.9.9/32',
                  '149.112.112.112/32', '2606:4700:4700::1111/128',
                  '2606:4700:4700::1001/128', '2001:4860:4860::8888/128',
                  '2001:4860:4860::8844/128', '2620:fe::fe/128']) AS c;

-- Append-only: every admin, review and automatic action (PROTOCOL.md section 4).
CREATE TABLE audit_log (
    seq     bigserial PRIMARY KEY,
    time    timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text,
    reason  text,
    details jsonb
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
