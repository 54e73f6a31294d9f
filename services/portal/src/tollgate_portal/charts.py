"""Usage as the dashboard draws it: hourly and daily series per key, an SVG bar chart the
server renders (no script, no CDN), and the same numbers as CSV."""

import csv
import html
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PALETTE = ("#1d4ed8", "#b45309", "#047857", "#9d174d", "#5b21b6", "#0e7490")


@dataclass(frozen=True)
class Series:
    buckets: list[datetime]  # the start of each hour (or day)
    per_key: dict[str, list[int]]  # key display -> units per bucket

    @property
    def totals(self) -> list[int]:
        return [sum(values[i] for values in self.per_key.values()) for i in range(len(self.buckets))]


def series(rows: list[Any], names: dict[str, str], *, days: int, now: datetime | None = None) -> Series:
    """Units per key per hour (days=1: the last 24 hours) or per day (the last `days`)."""
    now = now or datetime.now(UTC)
    hourly = days == 1
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    end = (
        now.replace(minute=0, second=0, microsecond=0)
        if hourly
        else now.replace(hour=0, minute=0, second=0, microsecond=0)
    )
    count = 24 if hourly else days
    buckets = [end - step * (count - 1 - i) for i in range(count)]
    index = {b: i for i, b in enumerate(buckets)}
    per_key: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    for r in rows:
        at = r["hour"] if hourly else r["hour"].replace(hour=0)
        if at in index:
            per_key[names.get(str(r["key_id"]), str(r["key_id"])[:8])][index[at]] += int(r["units"])
    return Series(buckets, dict(per_key))


def svg(s: Series, title: str, *, hourly: bool) -> str:
    """Stacked bars, one colour per key, with a text alternative for screen readers."""
    width, height, pad = 720, 220, 36
    top = max([*s.totals, 1])
    bar_w = (width - 2 * pad) / len(s.buckets)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="t-{id(s)}" class="chart" '
        f'preserveAspectRatio="xMidYMid meet"><title id="t-{id(s)}">{html.escape(title)}: '
        f"{sum(s.totals):,} units in all, at most {top:,} in one {'hour' if hourly else 'day'}</title>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#6b7280"/>',
        f'<text x="{pad - 4}" y="{pad}" text-anchor="end" font-size="11" fill="#374151">{top:,}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end" font-size="11" fill="#374151">0</text>',
    ]
    base = [0] * len(s.buckets)
    for n, (key, values) in enumerate(sorted(s.per_key.items())):
        colour = PALETTE[n % len(PALETTE)]
        for i, v in enumerate(values):
            if not v:
                continue
            h = (height - 2 * pad) * v / top
            y = height - pad - h - (height - 2 * pad) * base[i] / top
            parts.append(
                f'<rect x="{pad + i * bar_w + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{html.escape(key)}: {v:,}</title></rect>'
            )
            base[i] += v
    for i, b in enumerate(s.buckets):
        if i % (6 if hourly else 5) == 0:
            label = b.strftime("%H:00" if hourly else "%d %b")
            parts.append(
                f'<text x="{pad + i * bar_w:.1f}" y="{height - pad + 16}" font-size="11" fill="#374151">{label}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(s: Series) -> list[tuple[str, str, int]]:
    """(key, colour, total units) in the chart's order."""
    return [(key, PALETTE[n % len(PALETTE)], sum(v)) for n, (key, v) in enumerate(sorted(s.per_key.items()))]


def to_csv(s: Series, *, hourly: bool) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["hour" if hourly else "day", "key", "units"])
    for key, values in sorted(s.per_key.items()):
        for b, v in zip(s.buckets, values, strict=True):
            w.writerow([b.isoformat(), key, v])
    return out.getvalue()
