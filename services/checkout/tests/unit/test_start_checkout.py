import pytest

from tollgate_checkout.domain import DEFAULT_PLANS_PATH, Catalog, Plan
from tollgate_checkout.handlers import StartCheckout, start_checkout
from tollgate_checkout.stripe_gateway import CreatedSession
from tollgate_shared.http import ApiError


class FakeGateway:
    def __init__(self) -> None:
        self.created: list[tuple[str, str, int]] = []

    async def create_session(
        self,
        plan: Plan,
        email: str,
        name: str | None,
        quantity: int,
        idempotency_key: str | None,
        account_id: str | None = None,
        return_url: str | None = None,
    ) -> CreatedSession:
        self.created.append((plan.name, email, quantity))
        return CreatedSession(id="cs_1", url="http://pay", customer="cus_1", mode=plan.mode)


CATALOG = Catalog.load(DEFAULT_PLANS_PATH)


class TestStartCheckout:
    async def test_creates_a_session_for_a_known_plan(self) -> None:
        gateway = FakeGateway()
        session = await start_checkout(StartCheckout("professional", "a@example.com"), CATALOG, gateway)  # type: ignore[arg-type]
        assert session.mode == "payment"
        assert gateway.created == [("professional", "a@example.com", 1)]

    async def test_an_unknown_plan_is_a_422_and_creates_nothing(self) -> None:
        gateway = FakeGateway()
        with pytest.raises(ApiError) as err:
            await start_checkout(StartCheckout("platinum", "a@example.com"), CATALOG, gateway)  # type: ignore[arg-type]
        assert (err.value.status, err.value.code) == (422, "unknown_plan")
        assert gateway.created == []

    async def test_a_subscription_cannot_be_bought_in_bulk(self) -> None:
        with pytest.raises(ApiError) as err:
            await start_checkout(StartCheckout("metered", "a@example.com", quantity=2), CATALOG, FakeGateway())  # type: ignore[arg-type]
        assert err.value.code == "invalid_quantity"


class TestCatalog:
    def test_has_the_three_packs_at_their_prices(self) -> None:
        packs = {n: (CATALOG.get(n).credits, CATALOG.get(n).price) for n in ("starter", "professional", "enterprise")}
        assert {n: (c, p.amount_minor if p else None) for n, (c, p) in packs.items()} == {
            "starter": (1_000, 999),
            "professional": (10_000, 2500),
            "enterprise": (100_000, 9900),
        }
