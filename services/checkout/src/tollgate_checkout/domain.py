"""Plans, and why a Stripe event cannot become a fact. Pure: no I/O. What an event
means for Tollgate is in machines.py."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tollgate_shared.contracts import Money

DEFAULT_PLANS_PATH = Path(__file__).with_name("plans.json")


@dataclass(frozen=True)
class Plan:
    name: str
    product_name: str
    mode: Literal["payment", "subscription"]
    features: tuple[str, ...]
    credits: int = 0
    price: Money | None = None  # a pack's price; a metered plan's, per unit of its meter
    meter: str | None = None  # a metered plan's meter (usage-sync's meters file)

    @property
    def lookup_key(self) -> str:
        """The plan's Price at Stripe, whatever its id (`stripe_sync` keeps it current)."""
        return f"tollgate_{self.name}"

    @property
    def product_id(self) -> str:
        return f"tollgate_{self.name}"


class UnknownPlan(LookupError):
    pass


class Catalog:
    def __init__(self, plans: dict[str, Plan]) -> None:
        self._plans = plans

    @classmethod
    def load(cls, path: Path) -> "Catalog":
        raw = json.loads(path.read_text())["plans"]
        return cls(
            {
                name: Plan(
                    name=name,
                    product_name=p["product_name"],
                    mode=p["mode"],
                    features=tuple(p.get("features", ())),
                    credits=int(p.get("credits", 0)),
                    price=Money(**p["price"]) if "price" in p else None,
                    meter=p.get("meter"),
                )
                for name, p in raw.items()
            }
        )

    def get(self, name: str) -> Plan:
        try:
            return self._plans[name]
        except KeyError:
            raise UnknownPlan(name) from None

    def names(self) -> list[str]:
        return sorted(self._plans)

    def __iter__(self) -> Iterator[Plan]:
        return iter(self._plans[name] for name in self.names())


class Unprocessable(ValueError):
    """A genuine Stripe event we cannot turn into a Tollgate fact (e.g. an unknown plan):
    stored, counted, and replayable once the cause is fixed."""


class Malformed(ValueError):
    """A correctly signed event that lacks what its type promises (no object, no customer)."""
