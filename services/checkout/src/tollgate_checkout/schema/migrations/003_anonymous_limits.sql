-- Anonymous checkouts counted per client address and per email in fixed windows: each
-- creates a Stripe customer, so nobody may create them without end. Shared by every
-- replica; old windows are deleted as new ones start.
CREATE TABLE checkout_attempts (
    scope        text        NOT NULL,  -- 'address' or 'email'
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    attempts     int         NOT NULL,
    PRIMARY KEY (scope, subject, window_start)
);
