-- Every change to what a credential lookup reads (store/identity.py, store/readers.py)
-- is announced on `honeymesh_credentials` at commit (NOTIFY is transactional): each
-- replica's listener then stops trusting what its caches hold (keydirectory.py), so a
-- revoke or a PATCH reaches every replica at once instead of after a cache TTL, and a
-- replica that hears every change may keep a key longer than that TTL. Statement
-- level, so a bulk change is one notice. An INSERT needs none: a cached miss is never
-- kept past the short TTL. A reader key's last use (written once a minute) is left
-- out: it changes nothing a lookup decides.
CREATE FUNCTION honeymesh_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('honeymesh_credentials', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER credentials_changed AFTER UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION honeymesh_credentials_changed();
CREATE TRIGGER credentials_changed AFTER UPDATE OR DELETE OR TRUNCATE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION honeymesh_credentials_changed();
CREATE TRIGGER credentials_changed AFTER UPDATE OR DELETE OR TRUNCATE ON node_keys
    FOR EACH STATEMENT EXECUTE FUNCTION honeymesh_credentials_changed();
CREATE TRIGGER credentials_changed
    AFTER UPDATE OF tenant_id, name, key_hash, expires_at, revoked_at OR DELETE OR TRUNCATE
    ON reader_keys
    FOR EACH STATEMENT EXECUTE FUNCTION honeymesh_credentials_changed();
