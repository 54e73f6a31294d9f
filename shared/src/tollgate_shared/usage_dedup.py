"""Dropping re-published usage records with one watermark per key, not one row per record."""

import asyncpg

from .contracts import UsageIntake


def fresh_usage(usages: list[UsageIntake], watermarks: dict[str, int]) -> tuple[list[UsageIntake], dict[str, int]]:
    """Per key, only units beyond the watermark are new.

    `key_units_total` strictly increases per key and one key's records arrive in order
    (one partition per account), so anything at or under the watermark was counted.
    Returns the fresh records and the watermarks that moved.
    """
    marks = dict(watermarks)
    fresh = []
    for usage in usages:
        total = usage.key_units_total
        key = usage.key_id
        if total is None:
            fresh.append(usage)  # an old producer without totals: cannot dedup, count it
        elif total > marks.get(key, 0):
            marks[key] = total
            fresh.append(usage)
    return fresh, {k: v for k, v in marks.items() if watermarks.get(k) != v}


async def drop_republished(conn: asyncpg.Connection, usages: list[UsageIntake]) -> list[UsageIntake]:
    """The fresh records of a batch, raising the watermarks in `conn`'s transaction.

    Needs a `key_watermarks (key_id text PRIMARY KEY, units_total bigint)` table in the
    service's schema. Rows are locked in key order, so concurrent batches cannot deadlock.
    """
    keyed = sorted({u.key_id for u in usages if u.key_units_total is not None})
    rows = (
        await conn.fetch(
            "SELECT key_id, units_total FROM key_watermarks WHERE key_id = ANY($1::text[]) ORDER BY key_id FOR UPDATE",
            keyed,
        )
        if keyed
        else []
    )
    fresh, moved = fresh_usage(usages, {r["key_id"]: r["units_total"] for r in rows})
    if moved:
        await conn.execute(
            "INSERT INTO key_watermarks (key_id, units_total) SELECT * FROM unnest($1::text[], $2::bigint[]) "
            "ON CONFLICT (key_id) DO UPDATE SET units_total = GREATEST(key_watermarks.units_total, "
            "EXCLUDED.units_total)",
            list(moved),
            list(moved.values()),
        )
    return fresh
