-- Where to write to a customer about their account: learnt from the key events, which
-- carry the address the customer paid with. Balance alerts and payment failures name
-- only the account.
CREATE TABLE contacts (
    account_id text PRIMARY KEY,
    email      text NOT NULL,
    name       text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
