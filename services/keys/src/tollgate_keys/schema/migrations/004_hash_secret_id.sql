-- Which hash secret a key's hash is under: a fingerprint of the secret (keyformat.secret_id;
-- the secret cannot be had from it). A key under a previous secret is moved to the current
-- one the first time it is used after a rotation; GET /v1/admin/hash-secrets counts the
-- live keys under each, so the previous secret is dropped only when none are left on it.
-- NULL: issued before fingerprints were kept, under the secret current then.
ALTER TABLE keys ADD COLUMN hash_secret_id text;
