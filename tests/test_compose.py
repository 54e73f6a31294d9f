"""docker-compose.yml, read as compose reads it: no secret written in it, every service
of the image hardened and started from the secrets the `secrets` service makes, and
those secrets are everything each service's settings require (strength included)."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tollgate_checkout.config import Settings as Checkout
from tollgate_devstack.compose_secrets import env
from tollgate_keys.config import Settings as Keys
from tollgate_ledger.config import Settings as Ledger
from tollgate_notifier.config import Settings as Notifier
from tollgate_portal.config import Settings as Portal
from tollgate_usage_sync.config import Settings as UsageSync

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())
SETTINGS = {
    "checkout": Checkout,
    "ledger": Ledger,
    "keys": Keys,
    "notifier": Notifier,
    "usage-sync": UsageSync,
    "portal": Portal,
}
SECRET_SHAPED = re.compile(r"(whsec_|tg_(live|test)_|PASSWORD|TOKEN|SECRET|HASH|DELIVERY)", re.IGNORECASE)


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("_FILE") or key == "CHECKOUT_STRIPE_API_KEY":  # a path; the emulator's fake key
                continue
            assert not SECRET_SHAPED.search(key), (name, key)
            assert not SECRET_SHAPED.search(str(value)), (name, key)


@pytest.mark.parametrize("service", SETTINGS)
def test_each_service_is_hardened_and_sources_the_made_secrets(service: str) -> None:
    s = COMPOSE["services"][service]
    assert s["read_only"] is True and s["cap_drop"] == ["ALL"] and s["build"]["target"] == "service"
    assert s["command"][-1].startswith(". /secrets/tollgate.env && exec python3 -m tollgate_")
    assert all(p.startswith("127.0.0.1:") for p in s.get("ports", []))


@pytest.mark.parametrize("service", SETTINGS)
def test_the_made_secrets_are_all_a_service_needs(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, Any] = env("a-postgres-password")
    for key, value in made.items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS[service]()  # type: ignore[call-arg]  # refuses anything missing or weak
    assert settings.http_host == "0.0.0.0"


def test_every_make_is_fresh() -> None:
    first, second = env("x"), env("x")
    assert first["KEYS_HASH_SECRET"] != second["KEYS_HASH_SECRET"]
    assert first["KEYS_DELIVERY_KEYS"] == first["NOTIFIER_DELIVERY_KEYS"]
    assert first["CHECKOUT_STRIPE_WEBHOOK_SECRET"] == first["STRIPE_EMULATOR_WEBHOOK_SECRET"]
