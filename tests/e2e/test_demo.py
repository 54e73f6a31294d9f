"""The demo is the end-to-end test: one purchase through all five services."""

from typing import Any

from tollgate_devstack.demo import Demo


class TestMoneyPath:
    async def test_a_prepaid_pack_from_checkout_to_exhausted_quota(self, stack: dict[str, Any]) -> None:
        demo = Demo(stack)
        try:
            await demo.prepaid_pack()
        finally:
            await demo.http.aclose()

    async def test_a_metered_plan_is_reported_to_stripe_for_the_closed_window(self, stack: dict[str, Any]) -> None:
        demo = Demo(stack)
        try:
            await demo.metered_plan()
        finally:
            await demo.http.aclose()
