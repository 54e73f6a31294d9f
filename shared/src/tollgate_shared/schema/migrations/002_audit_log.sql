-- Every request an operator or another service made on this service's admin listener:
-- who (a token's name), what, when and from where. Rows are only ever added: the
-- service's role may insert and read them, and ../sql/audit.sql refuses edits from anyone.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    caller   text        NOT NULL,
    audience text        NOT NULL,
    method   text        NOT NULL,
    path     text        NOT NULL,
    query    text        NOT NULL DEFAULT '',
    status   int         NOT NULL,
    client   text
);
CREATE INDEX audit_log_at ON audit_log (at);
