from tollgate_keys.domain import Limits, limits_from_features


class TestLimitsFromFeatures:
    def test_reads_every_rate_feature(self) -> None:
        features = ["api:rate:minute:100", "api:rate:hour:1000", "api:rate:day:10000", "api:units:minute:500"]
        assert limits_from_features(features) == Limits(100, 1000, 10000, 500)

    def test_ignores_other_features_and_nonsense(self) -> None:
        assert (
            limits_from_features(["search:advanced", "api:rate:week:5", "api:rate:minute:0", "api:rate:minute:ten"])
            == Limits()
        )

    def test_the_first_of_two_conflicting_features_wins(self) -> None:
        assert limits_from_features(["api:rate:minute:10", "api:rate:minute:99"]).requests_per_minute == 10
