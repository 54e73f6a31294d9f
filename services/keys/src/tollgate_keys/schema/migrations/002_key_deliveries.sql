-- A new key's plaintext, sealed (Fernet, the delivery keys) for the notifier: kept only
-- until the notifier has emailed it, and never carried in an event.
CREATE TABLE key_deliveries (
    key_id     uuid PRIMARY KEY REFERENCES keys (id),
    sealed     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
