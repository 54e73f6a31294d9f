-- Keys emailed whose sealed plaintext the keys service still holds: inserted with the
-- email's row, deleted once the keys service has dropped the plaintext. An email cannot
-- wait for that call, nor that call for the email's commit, so it runs after, retried.
CREATE TABLE keys_to_forget (
    key_id  uuid PRIMARY KEY,
    sent_at timestamptz NOT NULL DEFAULT now()
);
