from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from tollgate_shared.contracts import UsageIntake, UsageRecorded, parse_usage
from tollgate_shared.usage_dedup import fresh_usage
from tollgate_usage_sync.domain import (
    DEFAULT_METERS_PATH,
    Meter,
    load_meters,
    report_identifier,
    status_class,
    window_start,
)


def usage(**kw: object) -> UsageIntake:
    fields: dict[str, object] = dict(key_id=uuid4(), account_id="cus_1", plan="metered", billing="metered", units=5)
    return parse_usage(UsageRecorded(**(fields | kw)).model_dump_json())


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
        assert meter.matches(usage()) and meter.value_of(usage()) == 5
        assert not meter.matches(usage(billing="prepaid"))

    def test_a_count_meter_counts_events(self) -> None:
        assert Meter("requests", "tg_requests", "count").value_of(usage(units=40)) == 1

    def test_filters_on_route_method_and_status_class(self) -> None:
        meter = Meter("ok_search", "tg_ok", "count", {"route": "/v1/search*", "method": "GET", "status_class": "2xx"})
        assert meter.matches(usage(route="/v1/search/items", method="get", status=200))
        assert not meter.matches(usage(route="/v1/other", method="GET", status=200))
        assert not meter.matches(usage(route="/v1/search", method="POST", status=200))
        assert not meter.matches(usage(route="/v1/search", method="GET", status=503))
        assert not meter.matches(usage(route=None, method="GET", status=200))

    def test_unique_meters_name_their_members(self) -> None:
        u = usage()
        assert Meter("k", "e", "unique_keys").member_of(u) == u.key_id
        assert Meter("c", "e", "unique_customers").member_of(u) == "cus_1"

    @pytest.mark.parametrize("bad", [{"aggregation": "max"}, {"filter": {"colour": "red"}}])
    def test_a_misconfigured_meter_is_refused(self, bad: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            Meter(**({"name": "m", "stripe_event_name": "e", "aggregation": "sum"} | bad))  # type: ignore[arg-type]

    def test_status_classes(self) -> None:
        assert (status_class(204), status_class(429), status_class(None)) == ("2xx", "4xx", None)


class TestDedup:
    def test_a_republished_record_is_dropped_by_the_key_watermark(self) -> None:
        key = uuid4()
        first = [usage(key_id=key, units=2, key_units_total=2), usage(key_id=key, units=3, key_units_total=5)]
        fresh, marks = fresh_usage(first + first, {})
        assert fresh == first and marks == {str(key): 5}

    def test_records_at_or_under_a_stored_watermark_were_counted_before(self) -> None:
        key = uuid4()
        records = [usage(key_id=key, units=1, key_units_total=n) for n in (4, 5, 6)]
        fresh, marks = fresh_usage(records, {str(key): 5})
        assert [u.key_units_total for u in fresh] == [6] and marks == {str(key): 6}

    def test_records_without_totals_are_counted(self) -> None:
        fresh, marks = fresh_usage([usage(), usage()], {})
        assert len(fresh) == 2 and marks == {}
