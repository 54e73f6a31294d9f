from datetime import UTC, datetime, timedelta

import pytest

from tollgate_ledger.domain import (
    CREDITS_CONSUMED,
    Balance,
    ChainedRecord,
    Entry,
    Grant,
    Movement,
    Posting,
    Unbalanced,
    alert_for,
    alert_state,
    allocate,
    booking_period,
    chain_hash,
    customer_credits,
    next_period,
    period_bounds,
    period_of,
)

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def credits(**totals: int) -> Balance:
    return Balance("customer:c:credits", "c", "liability", "CALLS", flags=("no_overdraft",), **totals)


class TestEntries:
    def test_an_entry_must_sum_to_zero_per_asset(self) -> None:
        with pytest.raises(Unbalanced):
            Entry("k", "usage", NOW, (Posting(customer_credits("c"), 5), Posting(CREDITS_CONSUMED, -4)))

    def test_an_entry_needs_postings(self) -> None:
        with pytest.raises(Unbalanced):
            Entry("k", "usage", NOW, ())

    def test_a_posting_moves_something(self) -> None:
        with pytest.raises(ValueError):
            Posting(CREDITS_CONSUMED, 0)


class TestBalances:
    def test_current_is_in_the_accounts_normal_direction(self) -> None:
        assert credits(credits_posted=100, debits_posted=30).current == 70

    def test_conservative_available_counts_only_pending_outflows(self) -> None:
        b = credits(credits_posted=100, debits_pending=30, credits_pending=50)
        assert (b.current, b.pending, b.available_conservative, b.available_optimistic) == (100, 20, 70, 120)
        assert b.available == 70

    def test_the_spend_rule_chooses_which_figure_gates_spending(self) -> None:
        b = Balance("x", "c", "liability", "CALLS", credits_posted=100, credits_pending=50, spend_rule="optimistic")
        assert b.available == 150

    def test_no_overdraft_counts_pending_outflows(self) -> None:
        assert credits(credits_posted=10, debits_pending=11).violation() == "overdraft"
        assert credits(credits_posted=10, debits_pending=10).violation() is None

    def test_no_positive_refuses_any_inflow_beyond_outflows(self) -> None:
        b = Balance("x", "s", "liability", "CALLS", flags=("no_positive",))
        assert b.moved(Movement("x", credits_posted=1)).violation() == "positive_balance"

    def test_a_closed_account_takes_no_movement(self) -> None:
        b = Balance("x", "s", "asset", "CALLS", flags=("closed",))
        assert b.moved(Movement("x", debits_posted=1)).violation() == "account_closed"


class TestAlerts:
    @pytest.mark.parametrize(
        ("available", "state"), [(0, "exhausted"), (-5, "exhausted"), (99, "low"), (100, "ok"), (500, "ok")]
    )
    def test_states(self, available: int, state: str) -> None:
        assert alert_state(available, 100) == state

    def test_each_crossing_is_announced_once(self) -> None:
        assert alert_for("ok", "ok") is None
        assert alert_for("ok", "low") == "low_balance"
        assert alert_for("low", "exhausted") == "exhausted"
        assert alert_for("exhausted", "ok") == "replenished"
        assert alert_for("low", "ok") == "replenished"


class TestGrants:
    def test_burn_promotional_before_paid_then_soonest_expiry(self) -> None:
        grants = [
            Grant("paid-late", 100, 10, None),
            Grant("paid-soon", 100, 10, NOW + timedelta(days=1)),
            Grant("promo", 10, 5, NOW + timedelta(days=30)),
        ]
        taken, short = allocate(grants, 18, NOW)
        assert taken == {"promo": 5, "paid-soon": 10, "paid-late": 3}
        assert short == 0

    def test_expired_grants_are_not_burned_and_shortfall_is_reported(self) -> None:
        taken, short = allocate([Grant("old", 10, 50, NOW - timedelta(seconds=1))], 7, NOW)
        assert (taken, short) == ({}, 7)


class TestPeriods:
    def test_calendar_months_in_utc(self) -> None:
        assert period_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-12"
        assert period_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
        assert next_period("2026-12") == "2027-01"

    def test_a_late_entry_goes_to_the_first_open_period(self) -> None:
        october = datetime(2026, 10, 15, tzinfo=UTC)
        assert booking_period(october, None) == "2026-10"
        assert booking_period(october, "2026-10") == "2026-11"
        assert booking_period(october, "2026-09") == "2026-10"


class TestChain:
    def record(self, **kw: object) -> ChainedRecord:
        fields: dict[str, object] = dict(
            seq=1,
            idempotency_key="k",
            kind="usage",
            business_time=NOW,
            created_at=NOW,
            period="2026-11",
            source_ref=None,
            reverses=None,
            postings=(("a", "CALLS", 5), ("b", "CALLS", -5)),
        )
        return ChainedRecord(**(fields | kw))  # type: ignore[arg-type]

    def test_any_change_to_content_or_link_changes_the_hash(self) -> None:
        base = chain_hash(bytes(32), self.record())
        assert chain_hash(bytes(32), self.record()) == base
        assert chain_hash(bytes(32), self.record(postings=(("a", "CALLS", 6), ("b", "CALLS", -6)))) != base
        assert chain_hash(bytes(32), self.record(kind="refund")) != base
        assert chain_hash(b"\x01" * 32, self.record()) != base
