"""schemathesis (a fuzzer nobody here wrote) against every listener of every service,
from the OpenAPI document the service serves: no answer is a 5xx, and every answer is
one the document declares (status, content type, headers, body schema); malformed
input is refused; an undeclared method says which methods there are.

Each service runs here as a process of its own, on a schema of its own with its
consumers off, so that what the fuzzer creates, closes or revokes is seen by no other
test. Operator routes are fuzzed with an operator token, customer routes with a real
customer's key.
"""

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tollgate_devstack.config import SERVICES
from tollgate_devstack.demo import Demo
from tollgate_devstack.processes import free_port, wait_until

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "unsupported_method",
    ]
)
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def fuzzed(stack: dict[str, Any]) -> Iterator[dict[str, tuple[str, str]]]:
    """Each service's public and admin URL, in processes of the test's own."""
    launcher, tag = stack["launcher"], secrets.token_hex(3)
    started: dict[str, tuple[str, str]] = {}
    for name in SERVICES:
        public, admin = free_port(), free_port()
        prefix = name.upper() + "_"
        env = launcher.env_for(name, stack["database_url"], stack["kafka"]) | {
            prefix + "SCHEMA_NAME": f"fuzz_{name}_{tag}",
            prefix + "HTTP_PORT": str(public),
            prefix + "ADMIN_PORT": str(admin),
            prefix + "CONSUMERS_ENABLED": "false",
            prefix + "GROUP_ID": f"fuzz-{name}-{tag}",
            prefix + "LOG_LEVEL": "WARNING",
        }
        launcher.procs.start(f"fuzz-{name}", [sys.executable, "-m", f"tollgate_{name}"], env)
        started[name] = (f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}")
    try:
        for name, (public_url, _) in started.items():
            wait_until(
                f"fuzz-{name}",
                lambda url=public_url: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,  # type: ignore[misc]
                90,
                lambda n=name: launcher.procs.log_tail(f"fuzz-{n}"),  # type: ignore[misc]
            )
        yield started
    finally:
        for name in started:
            launcher.procs.stop(f"fuzz-{name}")


@pytest.fixture(scope="module")
def customer_key(stack: dict[str, Any]) -> str:
    import asyncio

    async def buy() -> str:
        async with Demo(stack, say=lambda _: None) as demo:
            email = f"fuzz+{secrets.token_hex(4)}@example.com"
            session = await demo.buy("starter", email)
            await demo.pay(session["id"])
            key, _ = await demo.key_from_email(email)
            return key

    return asyncio.run(buy())


@pytest.mark.parametrize("listener", ["public", "admin"])
@pytest.mark.parametrize("service", SERVICES)
def test_every_answer_is_declared_and_none_is_a_server_error(
    fuzzed: dict[str, tuple[str, str]],
    stack: dict[str, Any],
    customer_key: str,
    service: str,
    listener: str,
    tmp_path: Path,
) -> None:
    public, admin = fuzzed[service]
    url = public if listener == "public" else admin
    credential = customer_key if listener == "public" else stack["operator_token"]
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--workers",
            "1",  # the tool's own lambda descriptions are not thread-safe (hypothesis 6.170)
            "--seed",
            "20261207",
            "--header",
            f"Authorization: Bearer {credential}",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested:" in run.stdout  # it reached the document and ran operations
