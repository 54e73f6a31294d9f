import json
from collections.abc import Iterator

import pytest
import structlog

from tollgate_shared.logging import REDACTED, configure_logging, redact_secrets, redact_text

KEY = "tg_test_0123456789ABCDEFabcdefXYZ123"


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class TestRedaction:
    def test_masks_api_keys_and_webhook_secrets_in_text(self) -> None:
        text = redact_text(f"key {KEY} and whsec_abc123 and Bearer s3cr3t")
        assert KEY not in text
        assert "whsec_abc123" not in text
        assert "s3cr3t" not in text

    def test_drops_fields_named_like_secrets(self) -> None:
        out = redact_secrets(None, "info", {"event": "x", "admin_token": "t", "nested": {"password": "p"}})
        assert out["admin_token"] == REDACTED
        assert out["nested"]["password"] == REDACTED

    def test_json_logs_never_carry_a_key(self, capsys) -> None:  # type: ignore[no-untyped-def]
        configure_logging("test", "INFO")
        structlog.get_logger().info("validated", api_key=KEY, detail=f"using {KEY}")
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert KEY not in json.dumps(line)
        assert line["service"] == "test"
