"""What usage-sync exports on /metrics: meter-event reports to Stripe by meter and result.

`failed` is a report Stripe refused (a 4xx): that window will not be billed until
someone looks, so alert on it. `retrying` is a 429, a 5xx or no answer, sent again later
under the same identifier.
"""

from prometheus_client import Counter

REPORTS = Counter(
    "tollgate_usage_sync_reports_total",
    "Closed usage windows reported to Stripe, by meter and result: confirmed, retrying or failed.",
    ["meter", "result"],
)


def known_meters(names: list[str]) -> None:
    """Every meter's series exists at 0 from the first scrape, so the first refused report
    moves it and the alert on increase() sees the move."""
    for name in names:
        for result in ("confirmed", "retrying", "failed"):
            REPORTS.labels(name, result)
