import pytest

from tollgate_ledger.domain import (
    CREDITS_CONSUMED,
    Balance,
    Posting,
    Unbalanced,
    assert_balanced,
    burn_postings,
    customer_credits,
    purchase_postings,
)


def per_asset(postings: list[Posting]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in postings:
        out[p.account.asset] = out.get(p.account.asset, 0) + p.amount
    return out


class TestEntries:
    def test_a_purchase_balances_in_each_asset(self) -> None:
        postings = purchase_postings("cus_1", 10_000, 2500, "usd")
        assert per_asset(postings) == {"CALLS": 0, "USD/2": 0}

    def test_a_purchase_credits_the_customers_liability(self) -> None:
        postings = purchase_postings("cus_1", 10_000, 2500, "usd")
        credits = [p for p in postings if p.account == customer_credits("cus_1")]
        assert [p.amount for p in credits] == [-10_000]

    def test_a_burn_moves_credits_to_revenue(self) -> None:
        postings = burn_postings("cus_1", 7)
        assert {(p.account.id, p.amount) for p in postings} == {
            (customer_credits("cus_1").id, 7),
            (CREDITS_CONSUMED.id, -7),
        }

    def test_unbalanced_or_empty_entries_are_refused(self) -> None:
        with pytest.raises(Unbalanced):
            assert_balanced([Posting(customer_credits("cus_1"), 5)])
        with pytest.raises(Unbalanced):
            assert_balanced([])

    def test_zero_postings_are_refused(self) -> None:
        with pytest.raises(ValueError, match="non-zero"):
            Posting(CREDITS_CONSUMED, 0)


class TestBalance:
    def balance(self, **kw: int) -> Balance:
        fields = {"debits_posted": 0, "credits_posted": 0, "debits_pending": 0, "credits_pending": 0, "version": 1} | kw
        return Balance(account_id="customer:cus_1:credits", type="liability", asset="CALLS", **fields)

    def test_current_is_credits_less_debits_for_a_liability(self) -> None:
        assert self.balance(credits_posted=100, debits_posted=30).current == 70

    def test_available_subtracts_pending_spend_but_ignores_pending_income(self) -> None:
        b = self.balance(credits_posted=100, debits_pending=20, credits_pending=50)
        assert (b.current, b.pending, b.available) == (100, 30, 80)
