"""Revenue recognised in money as prepaid credits leave their grants.

A paid grant sold `granted` credits for `paid_minor`: its credits leave it (used, or
expired) in burn order, and each time the money that many credits are worth moves from
the customer's prepaid account (deferred revenue) to revenue. The worth is cumulative,
floor(paid × units recognised so far / granted), so however a grant's credits are spread
over entries it recognises the same money; the grant's last credit takes whatever
prepaid money it still holds, so a grant used up or expired leaves not a cent deferred.
What a refund or a lost dispute took back out of the grant's prepaid money is returned,
not recognised.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from .domain import Account, Posting, customer_prepaid


@dataclass(frozen=True)
class Terms:
    """What one paid grant was sold for, and how much of it has left prepaid."""

    grant_id: str
    paid_minor: int
    granted: int
    currency: str
    remaining: int
    recognised_units: int = 0
    recognised_minor: int = 0
    returned_minor: int = 0

    @property
    def prepaid_left(self) -> int:
        return self.paid_minor - self.recognised_minor - self.returned_minor

    def worth(self, units: int) -> int:
        """The money `units` more credits leaving the grant recognise."""
        if units >= self.remaining:
            return self.prepaid_left
        after = self.recognised_units + units
        due = self.paid_minor * after // self.granted - self.paid_minor * self.recognised_units // self.granted
        return max(0, min(due, self.prepaid_left))

    def recognising(self, units: int, minor: int) -> "Terms":
        return replace(
            self,
            remaining=self.remaining - units,
            recognised_units=self.recognised_units + units,
            recognised_minor=self.recognised_minor + minor,
        )


@dataclass
class Recognition:
    """Running terms of the paid grants a Book takes credits from, and what it recognised."""

    terms: dict[str, Terms]
    done: dict[str, tuple[int, int]]  # grant -> (units, minor) recognised in this Book

    @classmethod
    def of(cls, terms: dict[str, Terms]) -> "Recognition":
        return cls(dict(terms), {})

    def currencies(self) -> list[str]:
        return sorted({t.currency for t in self.terms.values()})

    def checkpoint(self) -> tuple[dict[str, Terms], dict[str, tuple[int, int]]]:
        return dict(self.terms), dict(self.done)

    def restore(self, point: tuple[dict[str, Terms], dict[str, tuple[int, int]]]) -> None:
        """Forget what was recognised since `point` (an entry the Book refused)."""
        self.terms, self.done = dict(point[0]), dict(point[1])

    def postings(self, account_id: str, taken: dict[str, int], revenue: Callable[[str], Account]) -> list[Posting]:
        """Prepaid debited and revenue credited, per currency, for the credits `taken`
        from `account_id`'s grants (free grants, promotions and adjustments, earn nothing)."""
        by_currency: dict[str, int] = defaultdict(int)
        for grant_id, units in taken.items():
            terms = self.terms.get(grant_id)
            if terms is None or units <= 0:
                continue
            minor = terms.worth(units)
            self.terms[grant_id] = terms.recognising(units, minor)
            was = self.done.get(grant_id, (0, 0))
            self.done[grant_id] = (was[0] + units, was[1] + minor)
            by_currency[terms.currency] += minor
        postings = []
        for currency, minor in sorted(by_currency.items()):
            if minor:
                postings += [Posting(customer_prepaid(account_id, currency), minor), Posting(revenue(currency), -minor)]
        return postings
