-- One row per issued API key. Only the SHA-256 digest of a key is stored,
-- never its plaintext.
CREATE TABLE zerotrust_api_keys (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    scopes       TEXT[] NOT NULL,
    digest       BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- Every authenticated request looks a key up by its digest, and two keys must
-- never share one.
CREATE UNIQUE INDEX zerotrust_api_keys_digest ON zerotrust_api_keys (digest);

-- Listing keys by owner, oldest first.
CREATE INDEX zerotrust_api_keys_owner ON zerotrust_api_keys (owner, created_at, id);
