"""Revenue recognition in money: first credits in, first recognised, to the cent."""

from hypothesis import given
from hypothesis import strategies as st

from tollgate_ledger.domain import customer_prepaid, revenue_from_usage
from tollgate_ledger.recognition import Recognition, Terms


def test_a_pack_recognises_its_price_per_credit_as_credits_leave() -> None:
    terms = Terms("g", paid_minor=2_000, granted=1_000, currency="usd", remaining=1_000)
    assert terms.worth(300) == 600


def test_the_last_credit_takes_what_the_pack_still_holds() -> None:
    terms = Terms("g", paid_minor=1_000, granted=3, currency="usd", remaining=3)
    first = terms.worth(1)
    terms = terms.recognising(1, first)
    second = terms.worth(1)
    terms = terms.recognising(1, second)
    assert (first, second, terms.worth(1)) == (333, 333, 334)


def test_money_returned_is_not_recognised_again() -> None:
    # 1,000 credits for $20.00; a $5.00 refund took 250 unused credits and $5.00 back.
    terms = Terms("g", 2_000, 1_000, "usd", remaining=750, returned_minor=500)
    assert terms.worth(750) == 1_500


def test_postings_move_prepaid_to_revenue_per_currency_and_skip_free_grants() -> None:
    rec = Recognition.of({"paid": Terms("paid", 2_000, 1_000, "usd", 1_000)})
    postings = rec.postings("cus_1", {"promo": 50, "paid": 100}, revenue_from_usage)
    assert [(p.account.id, p.amount) for p in postings] == [
        (customer_prepaid("cus_1", "usd").id, 200),
        (revenue_from_usage("usd").id, -200),
    ]
    assert rec.done == {"paid": (100, 200)}


@given(
    paid=st.integers(1, 10**9),
    granted=st.integers(1, 10**6),
    cuts=st.lists(st.integers(1, 10**6), max_size=30),
)
def test_however_the_credits_are_spread_a_used_up_pack_recognises_exactly_its_price(
    paid: int, granted: int, cuts: list[int]
) -> None:
    terms, recognised = Terms("g", paid, granted, "usd", granted), 0
    for cut in cuts:
        units = min(cut, terms.remaining)
        if not units:
            break
        minor = terms.worth(units)
        assert minor >= 0
        terms, recognised = terms.recognising(units, minor), recognised + minor
    if terms.remaining:
        recognised += terms.worth(terms.remaining)
    assert recognised == paid
