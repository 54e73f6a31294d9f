"""The guide's example consumer (examples/balance_mirror.py), run against the stack as a
service of someone else's would run it: its copy of a customer's balance is the
ledger's, to the unit and the version, and a copy rebuilt from the start agrees."""

import asyncio
import importlib.util
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from tollgate_devstack import infra
from tollgate_devstack.config import REPO_ROOT
from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.tls import ensure_certificates
from tollgate_shared.acls import Acl, grant

from .helpers import rows

spec = importlib.util.spec_from_file_location("balance_mirror", REPO_ROOT / "examples" / "balance_mirror.py")
assert spec is not None and spec.loader is not None
balance_mirror = importlib.util.module_from_spec(spec)
spec.loader.exec_module(balance_mirror)


async def test_the_example_keeps_the_ledgers_balances(stack: dict[str, Any], demo: Demo) -> None:
    mirror, stop = balance_mirror.BalanceMirror(), asyncio.Event()
    following = asyncio.create_task(balance_mirror.follow(mirror, stack["kafka"], stop=stop))
    try:
        email = f"mirror+{secrets.token_hex(4)}@example.com"
        session = await demo.buy("starter", email)
        await demo.pay(session["id"])
        key, _ = await demo.key_from_email(email)
        assert (await demo.validate(key, 7))["isValid"]
        ledger = await demo.balance_equal(session["customer"], 993)

        def mirrored() -> Any:
            return mirror.credits_of(session["customer"])

        copy = await eventually(
            "the mirror to have the balance", _now(mirrored), until=lambda b: b["version"] == ledger["version"]
        )
        assert (copy["current"], copy["available"], copy["pending"]) == (993, 993, 0)
        # Published, so the ledger's outbox no longer holds it: nothing could add it twice.
        kept = await rows(stack, "ledger", "SELECT count(*) FROM outbox WHERE key LIKE $1", f"%{session['customer']}%")
        assert kept[0][0] == 0
    finally:
        stop.set()
        await following

    # A copy rebuilt from the start of the compacted topic comes to the same state.
    rebuilt, stop = balance_mirror.BalanceMirror(), asyncio.Event()
    following = asyncio.create_task(balance_mirror.follow(rebuilt, stack["kafka"], stop=stop))
    try:
        again = await eventually(
            "the rebuilt copy", _now(lambda: rebuilt.credits_of(session["customer"])),
            until=lambda b: b["version"] == ledger["version"],
        )  # fmt: skip
        assert again == copy
    finally:
        stop.set()
        await following


def _now(read: Any) -> Any:
    async def probe() -> Any:
        return read()

    return probe


async def test_a_team_granted_what_the_guide_says_runs_the_example_as_its_own_user(
    stack: dict[str, Any], demo: Demo
) -> None:
    launcher = stack["launcher"]
    if not launcher.own_kafka:
        pytest.skip("Kafka came from outside the stack: no SASL_SSL listener of the stack's")
    granted, refused = f"billing{secrets.token_hex(3)}", f"nobody{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    for user in (granted, refused):
        infra.add_kafka_user(launcher.cfg, user, password)
    # The two grants docs/consuming-events.md tells the cluster's operator to make; `refused` gets none.
    await grant(
        stack["kafka"],
        [
            Acl(f"User:{granted}", "topic", "ledger.balances", "Read"),
            Acl(f"User:{granted}", "group", f"{granted}.", "Read", prefixed=True),
        ],
    )
    email = f"team+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", email)
    await demo.pay(session["id"])
    ledger = await demo.balance_equal(session["customer"], 1000)

    async def run_example(user: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(REPO_ROOT / "examples" / "balance_mirror.py"),
            "--bootstrap", launcher.cfg.kafka_secure_bootstrap, "--user", user, "--group", f"{user}.mirror",
            "--cafile", str(ensure_certificates(launcher.cfg.tls_dir).ca),
            env={**os.environ, "KAFKA_PASSWORD": password},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    example = await run_example(granted)
    try:
        wanted = f"customer:{session['customer']}:credits"
        while True:  # every balance from the start of the topic; this customer's among them
            line = await asyncio.wait_for(example.stdout.readline(), 60)  # type: ignore[union-attr]
            assert line, (await example.stderr.read()).decode()  # type: ignore[union-attr]
            balance = json.loads(line)
            if balance["ledger_account"] == wanted and balance["version"] == ledger["version"]:
                break
        assert balance["available"] == 1000
    finally:
        example.kill()
        await example.wait()

    stranger = await run_example(refused)
    _, err = await asyncio.wait_for(stranger.communicate(), 60)
    assert stranger.returncode == 1 and "cannot follow ledger.balances" in err.decode()


def test_the_example_needs_no_tollgate_code() -> None:
    source = (Path(REPO_ROOT) / "examples" / "balance_mirror.py").read_text()
    assert "tollgate_" not in source
