from datetime import UTC, datetime, timedelta
from uuid import uuid4

from tollgate_shared.contracts import UsageRecorded
from tollgate_usage_sync.domain import DEFAULT_METERS_PATH, Meter, load_meters, report_identifier, window_start


def usage(**kw: object) -> UsageRecorded:
    fields: dict[str, object] = {
        "key_id": uuid4(),
        "account_id": "cus_1",
        "plan": "metered",
        "billing": "metered",
        "units": 5,
    }
    return UsageRecorded(**(fields | kw))


class TestWindows:
    def test_windows_align_to_the_hour(self) -> None:
        at = datetime(2026, 3, 1, 10, 59, 59, tzinfo=UTC)
        assert window_start(at, timedelta(hours=1)) == datetime(2026, 3, 1, 10, tzinfo=UTC)

    def test_every_replica_computes_the_same_identifier(self) -> None:
        start = datetime(2026, 3, 1, 10, tzinfo=UTC)
        assert report_identifier("cus_1", "api_calls", start) == report_identifier("cus_1", "api_calls", start)
        assert report_identifier("cus_1", "api_calls", start) != report_identifier("cus_2", "api_calls", start)
        assert len(report_identifier("cus_" + "x" * 200, "api_calls", start)) <= 100


class TestMeters:
    def test_the_default_meter_sums_metered_units(self) -> None:
        (meter,) = load_meters(DEFAULT_METERS_PATH)
        assert meter.matches(usage())
        assert meter.value_of(usage()) == 5
        assert not meter.matches(usage(billing="prepaid"))

    def test_a_count_meter_counts_events(self) -> None:
        meter = Meter("requests", "tg_requests", "count")
        assert meter.value_of(usage(units=40)) == 1
