"""The demo is the end-to-end test: one purchase through all five services."""

from tollgate_devstack.demo import Demo


class TestMoneyPath:
    async def test_a_prepaid_pack_from_checkout_to_exhausted_quota(self, demo: Demo) -> None:
        await demo.prepaid_pack()

    async def test_a_metered_plan_is_reported_to_stripe_for_the_closed_window(self, demo: Demo) -> None:
        await demo.metered_plan()
