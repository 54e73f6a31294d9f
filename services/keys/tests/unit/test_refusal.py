from datetime import UTC, datetime, timedelta
from uuid import uuid4

from tollgate_keys.domain import refusal
from tollgate_keys.repo import KeyRow

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def key(**overrides: object) -> KeyRow:
    fields: dict[str, object] = {
        "id": uuid4(),
        "account_id": "cus_1",
        "key_display": "tg_test_…abcd",
        "plan": "p",
        "billing": "prepaid",
        "quota_limit": 10,
        "quota_used": 0,
        "status": "active",
        "expires_at": None,
        "features": [],
    }
    return KeyRow(**(fields | overrides))  # type: ignore[arg-type]


class TestRefusal:
    def test_a_usable_key_has_no_refusal(self) -> None:
        assert refusal(key(), 10, NOW) is None

    def test_reasons_in_order_of_precedence(self) -> None:
        assert refusal(None, 1, NOW) == "not_found"
        assert refusal(key(status="revoked", quota_used=10), 1, NOW) == "revoked"
        assert refusal(key(status="suspended"), 1, NOW) == "suspended"
        assert refusal(key(expires_at=NOW - timedelta(seconds=1)), 1, NOW) == "expired"
        assert refusal(key(quota_used=9), 2, NOW) == "quota_exceeded"

    def test_metered_keys_have_no_quota(self) -> None:
        assert refusal(key(quota_limit=None, quota_used=10**9), 10**6, NOW) is None
