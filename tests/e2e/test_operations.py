"""What a platform team relies on: health, readiness, and logs without secrets."""

import re
from typing import Any

import httpx
import pytest

from tollgate_devstack.config import SERVICES

KEY = re.compile(r"tg_(?:test|live)_[0-9A-Za-z]{28}")


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_is_healthy_and_ready(stack: dict[str, Any], service: str) -> None:
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{stack[service]}/healthz")
        ready = await http.get(f"{stack[service]}/readyz")
        metrics = await http.get(f"{stack[service]}/metrics")
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": True, "kafka": True}
    assert metrics.status_code == 200
    assert "python_info" in metrics.text


def test_no_key_or_secret_appears_in_any_service_log(stack: dict[str, Any]) -> None:
    """Runs after the demo tests in this package (pytest's file order): keys were issued and used."""
    launcher = stack["launcher"]
    for service in SERVICES:
        text = launcher.log_path(service).read_text(errors="replace")
        assert not KEY.search(text), f"{service} logged an API key"
        assert stack["webhook_secret"] not in text
        assert stack["admin_token"] not in text
