-- Published rows stay for a retention window instead of being deleted at once, so the
-- outbox's unique event_id also stops a fact from being published twice when a second
-- upstream message (e.g. another Stripe event for the same payment) describes it again.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS published_at timestamptz;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
