"""Dropping re-published usage records with one watermark per key, not one row per record."""

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
        total = usage.get("key_units_total")
        key = usage["key_id"]
        if total is None:
            fresh.append(usage)  # an old producer without totals: cannot dedup, count it
        elif total > marks.get(key, 0):
            marks[key] = total
            fresh.append(usage)
    return fresh, {k: v for k, v in marks.items() if watermarks.get(k) != v}
